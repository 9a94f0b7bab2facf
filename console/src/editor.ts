// The code editor: CodeMirror 6 with Python highlighting, line numbers, and a mark on the line an error came
// from. Colours are our own (not CodeMirror's default highlight style) so every token reads at 4.5:1 or better.

import { EditorView } from 'codemirror';
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { python } from '@codemirror/lang-python';
import { bracketMatching, foldGutter, foldKeymap, HighlightStyle, indentOnInput, syntaxHighlighting } from '@codemirror/language';
import { EditorState, Prec, RangeSet, StateEffect, StateField } from '@codemirror/state';
import {
  Decoration, drawSelection, GutterMarker, gutterLineClass, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, keymap, lineNumbers, type DecorationSet,
} from '@codemirror/view';
import { tags } from '@lezer/highlight';

const highlightStyle = HighlightStyle.define([
  { tag: [tags.keyword, tags.controlKeyword, tags.operatorKeyword, tags.definitionKeyword, tags.moduleKeyword], color: '#7a1e9c' },
  { tag: [tags.string, tags.special(tags.string)], color: '#a31515' },
  { tag: tags.comment, color: '#4d6b4d', fontStyle: 'italic' },
  { tag: [tags.number, tags.bool, tags.null], color: '#0f6b45' },
  { tag: [tags.function(tags.definition(tags.variableName)), tags.definition(tags.className)], color: '#1a4fa0' },
  { tag: [tags.className, tags.standard(tags.variableName)], color: '#0b5e78' },
  { tag: tags.self, color: '#7a1e9c' },
  { tag: tags.invalid, color: '#b00020' },
]);

// The error line: a decoration on the line in the text, and a class on its line number in the gutter.
const setErrorLine = StateEffect.define<number | null>();

class ErrorGutterMarker extends GutterMarker {
  override elementClass = 'cm-error-gutter';
}
const errorGutterMarker = new ErrorGutterMarker();

const errorLineField = StateField.define<{ decorations: DecorationSet; gutter: RangeSet<GutterMarker> }>({
  create: () => ({ decorations: Decoration.none, gutter: RangeSet.empty }),
  update(value, transaction) {
    let next = {
      decorations: value.decorations.map(transaction.changes),
      gutter: value.gutter.map(transaction.changes),
    };
    for (const effect of transaction.effects) {
      if (!effect.is(setErrorLine)) continue;
      const number = effect.value;
      if (number === null || number < 1 || number > transaction.state.doc.lines) {
        next = { decorations: Decoration.none, gutter: RangeSet.empty };
        continue;
      }
      const line = transaction.state.doc.line(number);
      next = {
        decorations: Decoration.set([
          Decoration.line({
            class: 'cm-error-line',
            attributes: { title: `Error on line ${number}`, 'data-error-line': String(number) },
          }).range(line.from),
        ]),
        gutter: RangeSet.of([errorGutterMarker.range(line.from)]),
      };
    }
    return next;
  },
  provide: (field) => [
    EditorView.decorations.from(field, (value) => value.decorations),
    gutterLineClass.from(field, (value) => value.gutter),
  ],
});

export interface CodeEditor {
  readonly view: EditorView;
  code(): string;
  setCode(code: string): void;
  /** Marks a line (1-based) as the error's, or clears the mark with null. Returns whether the line exists. */
  markErrorLine(line: number | null): boolean;
  /** Puts the cursor on a line and focuses the editor. */
  goToLine(line: number): void;
}

export function createEditor(parent: HTMLElement, initialCode: string, onRun: () => void): CodeEditor {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: initialCode,
      extensions: [
        // Ctrl/Cmd+Enter runs the code; it takes precedence over the default "insert blank line".
        Prec.highest(keymap.of([{ key: 'Mod-Enter', run: () => { onRun(); return true; }, preventDefault: true }])),
        // codemirror's basicSetup less its search panel and linting, which a scratch editor for short programs
        // does without (about 45 kB less). Completion stays: the Python support pulls its module in anyway.
        lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), foldGutter(), drawSelection(),
        indentOnInput(), bracketMatching(), closeBrackets(), autocompletion(), highlightActiveLine(),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...foldKeymap, ...completionKeymap]),
        // Tab indents, as in any code editor. Keyboard users leave the editor with Escape then Tab (CodeMirror's
        // escape hatch), which the hint under the editor says.
        keymap.of([indentWithTab]),
        python(),
        syntaxHighlighting(highlightStyle),
        errorLineField,
        EditorView.contentAttributes.of({ 'aria-label': 'Code', 'aria-describedby': 'editor-hint' }),
      ],
    }),
  });
  return {
    view,
    code: () => view.state.doc.toString(),
    setCode(code) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: code }, effects: setErrorLine.of(null) });
    },
    markErrorLine(line) {
      const exists = line !== null && line >= 1 && line <= view.state.doc.lines;
      view.dispatch({ effects: setErrorLine.of(exists ? line : null) });
      if (exists) {
        view.dispatch({ effects: EditorView.scrollIntoView(view.state.doc.line(line).from, { y: 'center' }) });
      }
      return exists;
    },
    goToLine(line) {
      const target = view.state.doc.line(Math.min(Math.max(line, 1), view.state.doc.lines));
      view.dispatch({ selection: { anchor: target.from }, scrollIntoView: true });
      view.focus();
    },
  };
}
