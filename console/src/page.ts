// What every page of the console gives the shell.

import type { Identity } from './types';

export interface Page {
  /** The page's name, for the document title. */
  title: string;
  element: HTMLElement;
  /** Stops what the page still does (following an execution) when the reader leaves it. */
  dispose?(): void;
}

export interface PageContext {
  identity: Identity;
}
