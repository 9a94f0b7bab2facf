// A few DOM helpers, in place of a UI framework: the console is a handful of forms and tables, and building them
// with `h()` keeps every text a text node (never parsed as HTML), which matters when showing what untrusted code
// printed.

export type Child = Node | string | number | null | undefined | false | readonly Child[];

// Handlers take the specific event type of their attribute (a KeyboardEvent for onkeydown); the method form makes
// the parameter bivariant so such handlers are accepted.
type Handler = { bivarianceHack(event: Event): void }['bivarianceHack'];
export type Attrs = Record<string, string | number | boolean | null | undefined | Handler>;

/**
 * Creates an element. Attributes whose value is a function and whose name starts with `on` become event
 * listeners; `true` sets an empty attribute; `false`, `null` and `undefined` leave the attribute out.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === 'function') {
        element.addEventListener(name.slice(2), value);
      } else {
        element.setAttribute(name, value === true ? '' : String(value));
      }
    }
  }
  append(element, children);
  return element;
}

/** Appends children, flattening arrays and skipping empty values. */
export function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) {
      append(parent, child);
    } else if (child instanceof Node) {
      parent.appendChild(child);
    } else {
      parent.appendChild(document.createTextNode(String(child)));
    }
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** Text only screen readers read (a table caption, the name of an icon-like control). */
export function srOnly(text: string): HTMLSpanElement {
  return h('span', { class: 'sr-only' }, text);
}

let idCounter = 0;
/** A document-unique id, to tie labels to fields and headings to regions. */
export function uid(prefix: string): string {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form field: the label's `for` names the control, so every input has an accessible name. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLDivElement {
  if (!control.id) control.id = uid('field');
  let hintElement: HTMLElement | null = null;
  if (hint) {
    hintElement = h('span', { class: 'hint', id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintElement.id);
  }
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintElement);
}

/** A term, its value, and whether the value is long (an id) and gets a double-width cell. */
export type Fact = readonly [string, Child] | readonly [string, Child, boolean];

/** A definition list from label and value pairs; pairs whose value is empty are left out. */
export function definitionList(pairs: readonly Fact[], className = 'facts'): HTMLDListElement {
  const list = h('dl', { class: className });
  for (const [term, value, wide] of pairs) {
    if (value === null || value === undefined || value === false || value === '') continue;
    append(list, [h('div', { class: wide ? 'wide' : null }, h('dt', null, term), h('dd', null, value))]);
  }
  return list;
}
