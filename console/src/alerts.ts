// Where a page reports what went wrong. The message goes into an element with role="alert" created at that
// moment, so screen readers announce it, and it stays visible until the next action clears it.

import { describeError } from './api';
import { h, replace } from './dom';

export class AlertArea {
  readonly element = h('div', { class: 'alerts' });

  /** Shows an error (an ApiError's server message, a network failure) in place of any earlier one. */
  error(error: unknown, context?: string): void {
    const text = describeError(error);
    replace(this.element, h('div', { role: 'alert', class: 'alert alert-error' }, context ? `${context}: ${text}` : text));
  }

  /** A confirmation or a note, announced politely. */
  info(text: string): void {
    replace(this.element, h('div', { role: 'status', class: 'alert alert-info' }, text));
  }

  clear(): void {
    this.element.replaceChildren();
  }
}
