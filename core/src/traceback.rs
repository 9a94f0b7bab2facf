//! Reads the uncaught exception out of a Python program's standard error.
//!
//! The original matched `^[A-Z][a-zA-Z]*Error:` bottom-up and took the first `File "...", line N` of the whole
//! output, which missed `Exception`, `KeyboardInterrupt` and dotted names and could point at a wrapper. We read the
//! last traceback block the interpreter printed (so chained exceptions report the one that ended the program), take
//! the exception's class name whatever it is, and the line of the outermost frame in the user's files.

use std::sync::LazyLock;

use regex::Regex;

use crate::paths::WORKSPACE_DIR;

/// The uncaught exception of a failed program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Class name without module: `JSONDecodeError`, `KeyboardInterrupt`.
    pub error_type: String,
    /// Line of the outermost frame in the user's files (or of the syntax error).
    pub error_line: Option<u32>,
    /// The exception's message, when it has one.
    pub error_message: Option<String>,
}

/// Longest `error_message` kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 4096;

static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*File "(?P<file>[^"]*)", line (?P<line>\d+)(?P<func>, in .*)?$"#).expect("static regex")
});
static EXCEPTION_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?::(?: (?P<msg>.*))?)?$")
        .expect("static regex")
});

const HEADER: &str = "Traceback (most recent call last):";
const GROUP_HEADER: &str = "Exception Group Traceback (most recent call last):";

/// Parses `stderr`; `None` when it holds no Python traceback.
pub fn parse_error(stderr: &str) -> Option<ErrorInfo> {
    let lines: Vec<&str> = stderr.lines().collect();
    let (start, group) = last_block_start(&lines)?;
    // Exception groups print every line of the top-level group behind a "  | " margin.
    let block: Vec<&str> = lines[start..]
        .iter()
        .map(|l| if group { l.strip_prefix("  | ").or_else(|| l.strip_prefix("  +")).unwrap_or(l) } else { l })
        .collect();

    let mut frames: Vec<(String, u32)> = Vec::new();
    let mut exception_at = None;
    for (i, line) in block.iter().enumerate() {
        if i == 0 && line.trim_end().ends_with(HEADER) {
            continue;
        }
        if line.starts_with(char::is_whitespace) || line.is_empty() || line.starts_with('-') {
            if let Some(c) = FRAME.captures(line)
                && let Ok(n) = c["line"].parse()
            {
                frames.push((c["file"].to_owned(), n));
            }
            continue;
        }
        exception_at = Some(i);
        break;
    }
    let at = exception_at?;
    let caps = EXCEPTION_LINE.captures(block[at].trim_end())?;
    let name = caps.name("name")?.as_str();
    let error_type = name.rsplit('.').next().unwrap_or(name).to_owned();

    let mut message = caps.name("msg").map(|m| m.as_str().to_owned()).unwrap_or_default();
    for line in &block[at + 1..] {
        if line.starts_with("Exception ignored") || line.trim_end().ends_with(HEADER) {
            break;
        }
        if group && line.starts_with('-') {
            break;
        }
        message.push('\n');
        message.push_str(line);
    }
    let message = truncate(message.trim_end());

    let user_prefix = format!("{WORKSPACE_DIR}/");
    let error_line = frames
        .iter()
        .find(|(file, _)| file.starts_with(&user_prefix) || !file.starts_with(['/', '<']))
        .or_else(|| frames.first())
        .map(|(_, line)| *line);

    Some(ErrorInfo { error_type, error_line, error_message: (!message.is_empty()).then_some(message) })
}

/// Index of the line starting the last traceback block, and whether it is an exception group.
fn last_block_start(lines: &[&str]) -> Option<(usize, bool)> {
    let header = lines.iter().rposition(|l| {
        let t = l.trim();
        t == HEADER || t.ends_with(GROUP_HEADER)
    });
    // A syntax error found while compiling the main file has no header: it starts at a frame line without ", in".
    let bare_syntax_error = lines
        .iter()
        .rposition(|l| l.starts_with("  File \"") && FRAME.captures(l).is_some_and(|c| c.name("func").is_none()));
    match (header, bare_syntax_error) {
        (Some(h), Some(s)) if s > h && !frames_follow(lines, h, s) => Some((s, false)),
        (Some(h), _) => Some((h, lines[h].trim().ends_with(GROUP_HEADER))),
        (None, Some(s)) => Some((s, false)),
        (None, None) => None,
    }
}

/// True when every line between a header and a later frame line still belongs to the header's block.
fn frames_follow(lines: &[&str], header: usize, frame: usize) -> bool {
    lines[header + 1..frame].iter().all(|l| l.starts_with(char::is_whitespace) || l.is_empty())
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (String, Option<u32>, Option<String>) {
        let e = parse_error(s).expect("a traceback");
        (e.error_type, e.error_line, e.error_message)
    }

    #[test]
    fn name_error() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    print(undefined_var)\n          ^^^^^^^^^^^^^\nNameError: name 'undefined_var' is not defined\n";
        assert_eq!(parse(s), ("NameError".into(), Some(1), Some("name 'undefined_var' is not defined".into())));
    }

    #[test]
    fn syntax_error_without_header() {
        let s = "  File \"/work/main.py\", line 3\n    if True\n           ^\nSyntaxError: expected ':'\n";
        assert_eq!(parse(s), ("SyntaxError".into(), Some(3), Some("expected ':'".into())));
    }

    #[test]
    fn nested_call_reports_the_outermost_frame() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 10, in <module>\n    main()\n  File \"/work/main.py\", line 7, in main\n    print([][5])\n          ~~^^^\nIndexError: list index out of range\n";
        assert_eq!(parse(s).0, "IndexError");
        assert_eq!(parse(s).1, Some(10));
    }

    #[test]
    fn value_error_from_builtin() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    int(\"x\")\nValueError: invalid literal for int() with base 10: 'x'\n";
        assert_eq!(parse(s).0, "ValueError");
    }

    #[test]
    fn dotted_names_bare_names_and_plain_exception() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 2, in <module>\n    json.loads('x')\n  File \"/usr/lib/python3.11/json/__init__.py\", line 346, in loads\n    return _default_decoder.decode(s)\njson.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n";
        assert_eq!(
            parse(s),
            ("JSONDecodeError".into(), Some(2), Some("Expecting value: line 1 column 1 (char 0)".into()))
        );
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 4, in <module>\n    time.sleep(1)\nKeyboardInterrupt\n";
        assert_eq!(parse(s), ("KeyboardInterrupt".into(), Some(4), None));
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    raise Exception('x')\nException: x\n";
        assert_eq!(parse(s).0, "Exception");
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    raise ValueError\nValueError\n";
        assert_eq!(parse(s), ("ValueError".into(), Some(1), None));
    }

    #[test]
    fn chained_exceptions_report_the_last_one() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 2, in <module>\n    1/0\nZeroDivisionError: division by zero\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"/work/main.py\", line 4, in <module>\n    raise ValueError('bad')\nValueError: bad\n";
        assert_eq!(parse(s), ("ValueError".into(), Some(4), Some("bad".into())));
    }

    #[test]
    fn user_frames_win_over_runtime_frames() {
        let s = "Traceback (most recent call last):\n  File \"<frozen runpy>\", line 198, in _run_module_as_main\n  File \"/work/app/__main__.py\", line 5, in <module>\n    boom()\nRuntimeError: boom\n";
        assert_eq!(parse(s).1, Some(5));
        let helper = "Traceback (most recent call last):\n  File \"/work/main.py\", line 3, in <module>\n    helper.run()\n  File \"/work/helper.py\", line 9, in run\n    raise TypeError('t')\nTypeError: t\n";
        assert_eq!(parse(helper).1, Some(3));
    }

    #[test]
    fn syntax_error_in_an_imported_module() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    import helper\n  File \"/work/helper.py\", line 2\n    def f(\n         ^\nSyntaxError: '(' was never closed\n";
        assert_eq!(parse(s), ("SyntaxError".into(), Some(1), Some("'(' was never closed".into())));
    }

    #[test]
    fn multi_line_messages_and_notes() {
        let s = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    raise ValueError('a\\nb')\nValueError: a\nb\n";
        assert_eq!(parse(s).2, Some("a\nb".into()));
    }

    #[test]
    fn exception_groups() {
        let s = "  + Exception Group Traceback (most recent call last):\n  |   File \"/work/main.py\", line 1, in <module>\n  |     raise ExceptionGroup('many', [ValueError(1)])\n  | ExceptionGroup: many (1 sub-exception)\n  +-+---------------- 1 ----------------\n    | ValueError: 1\n    +------------------------------------\n";
        assert_eq!(parse(s), ("ExceptionGroup".into(), Some(1), Some("many (1 sub-exception)".into())));
    }

    #[test]
    fn output_before_the_traceback_is_ignored() {
        let s = "warning: something odd\nTraceback (most recent call last):\n  File \"/work/main.py\", line 2, in <module>\n    x\nNameError: name 'x' is not defined\n";
        assert_eq!(parse(s).0, "NameError");
    }

    #[test]
    fn no_traceback_no_error() {
        assert_eq!(parse_error(""), None);
        assert_eq!(parse_error("error: disk full\n"), None);
        assert_eq!(parse_error("python: can't open file '/work/x.py': [Errno 2] No such file or directory\n"), None);
    }
}
