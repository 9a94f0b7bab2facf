// Finds the line of the user's code where an exception was raised, to mark it in the editor.
//
// A Python traceback lists frames outermost first, so the last frame in the user's code is where the error
// happened (earlier ones are calls leading there; later ones, in other files, are library code it called). The
// server's own `error_line` is the outermost frame instead, which is the right line for a one-line summary but
// not the one to mark. The user's code is `/work/main.py` for a one-off run (tracebacks may also say `main.py`
// or `<string>`) and `<cell-N>` for the N-th call of a session, where only the newest cell is the editor's code:
// frames of earlier cells are functions defined by earlier calls.

const FRAME = /File "(\/work\/main\.py|main\.py|<string>|<cell-(\d+)>)", line (\d+)/g;

/** The line of the last frame in the user's code, or null when the text has none. */
export function lastUserFrameLine(text: string | undefined): number | null {
  if (!text) return null;
  const frames = [...text.matchAll(FRAME)].map((m) => ({ cell: m[2] === undefined ? null : Number(m[2]), line: Number(m[3]) }));
  const cells = frames.flatMap((f) => (f.cell === null ? [] : [f.cell]));
  const currentCell = cells.length ? Math.max(...cells) : null;
  const own = frames.filter((f) => f.cell === null || f.cell === currentCell);
  return own.length ? (own[own.length - 1]?.line ?? null) : null;
}

/**
 * The error line of a result: from the traceback in `error`, else in stderr (where the interpreter prints it),
 * else the server's own `error_line`.
 */
export function errorLineOf(result: { error?: string; stderr?: string; error_line?: number }): number | null {
  return lastUserFrameLine(result.error) ?? lastUserFrameLine(result.stderr) ?? result.error_line ?? null;
}
