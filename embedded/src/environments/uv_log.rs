//! uv's output, turned into the one line a client reads in `error`. The rest of the log tail goes to `stderr`;
//! this line says what went wrong, and how to allow what the server's settings refused, and the lines it says are
//! not repeated there.

/// Why uv failed, in one line, and the log's lines it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    /// The line for `error`.
    pub reason: String,
    /// The indices (in `log.lines()`) of the lines `reason` says, which `stderr` leaves out ([`without`]).
    pub quoted: Vec<usize>,
}

/// One line saying why uv failed: the sdist refusal with the setting that allows it, else uv's `error:` (or `×`)
/// line with its first cause, else the last line of the log.
pub(super) fn summarize(log: &str, allow_sdist: bool) -> Summary {
    let lines: Vec<(usize, &str)> = log.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty()).collect();
    let error_at = lines.iter().position(|(_, l)| l.starts_with("error:") || l.starts_with('×'));
    // uv explains on the following `cause:` lines; the first is the most specific useful one.
    let cause_at = error_at.and_then(|at| {
        lines[at + 1..].iter().position(|(_, l)| l.starts_with("cause:") || l.starts_with("╰─▶")).map(|n| at + 1 + n)
    });
    let refusal = lines.iter().position(|(_, l)| l.contains("building from source is disabled"));
    if let (false, Some(hint)) = (allow_sdist, refusal) {
        let line = lines[hint].1;
        let package = line.split('`').nth(1).map(|p| format!("{p} has")).unwrap_or("a package has".into());
        // The refusal says what uv's error and its cause say (no usable wheels), in the words of this server.
        let quoted = [error_at, cause_at, Some(hint)].into_iter().flatten().map(|i| lines[i].0).collect();
        let reason = format!(
            "{package} no binary wheel for this interpreter and building from source is disabled \
                 (set PYEXEC_ALLOW_SDIST=true on the server to allow it)"
        );
        return Summary { reason, quoted };
    }
    let Some(at) = error_at else {
        return match lines.last() {
            Some((index, line)) => Summary { reason: (*line).to_owned(), quoted: vec![*index] },
            None => Summary { reason: "the installer failed".into(), quoted: Vec::new() },
        };
    };
    let error = lines[at].1.trim_start_matches("error:").trim_start_matches('×').trim();
    match cause_at {
        Some(c) => {
            let cause = lines[c].1.trim_start_matches("cause:").trim_start_matches("╰─▶").trim();
            let reason = format!("{error}: {}", cause.trim_start_matches("Because "));
            Summary { reason, quoted: vec![lines[at].0, lines[c].0] }
        }
        None => Summary { reason: error.to_owned(), quoted: vec![lines[at].0] },
    }
}

/// `log` without the lines `quoted` (indices in `log.lines()`), line ends kept; empty when only blank lines are
/// left.
pub(super) fn without(log: &str, quoted: &[usize]) -> String {
    let rest: String =
        log.split_inclusive('\n').enumerate().filter(|(i, _)| !quoted.contains(i)).map(|(_, line)| line).collect();
    if rest.trim().is_empty() { String::new() } else { rest }
}

/// Why uv could not install a requirement, when its log says the requirement itself was the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unavailable {
    /// The index does not have the name.
    NotFound,
    /// The index has it, but no wheel that installs on the interpreter (and building from source is off).
    NoWheel,
}

/// The names uv's resolver failure blames, and why: `Because X was not found in the package registry ...`,
/// `Because all versions of X have no usable wheels ...`, `X==1.0 has no usable wheels`. uv stops at the first
/// requirement it cannot satisfy, so a log usually names one.
pub(super) fn unavailable(log: &str) -> Vec<(String, Unavailable)> {
    const PHRASES: [(&str, Unavailable); 4] = [
        (" was not found in the package registry", Unavailable::NotFound),
        (" was not found in the provided package locations", Unavailable::NotFound),
        (" have no usable wheels", Unavailable::NoWheel),
        (" has no usable wheels", Unavailable::NoWheel),
    ];
    let mut out = Vec::new();
    for line in log.lines() {
        for (phrase, why) in PHRASES {
            let mut rest = line;
            while let Some(at) = rest.find(phrase) {
                let word = rest[..at].rsplit(char::is_whitespace).next().unwrap_or_default();
                let name = word.split("==").next().unwrap_or_default().trim_matches('`');
                if !name.is_empty() && !out.iter().any(|(n, _)| n == name) {
                    out.push((name.to_owned(), why));
                }
                rest = &rest[at + phrase.len()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_summarized() {
        let reason = |log: &str, allow_sdist: bool| summarize(log, allow_sdist).reason;
        let log = "Resolved 1 package\n  × Failed to download `x`\n  ╰─▶ error sending request\n";
        assert_eq!(reason(log, false), "Failed to download `x`: error sending request");
        // Verbatim from uv 0.13.9.
        let log = "error: No solution found when resolving dependencies\n  cause: Because all versions of docopt have no \
                   usable wheels and you require docopt, we can conclude that your requirements are unsatisfiable.\n\n\
                   hint: Wheels are required for `docopt` because building from source is disabled for all packages \
                   (i.e., with `--no-build`)\n";
        assert_eq!(
            reason(log, false),
            "docopt has no binary wheel for this interpreter and building from source is disabled \
             (set PYEXEC_ALLOW_SDIST=true on the server to allow it)"
        );
        let log = "error: No solution found when resolving dependencies\n  cause: Because nonexistent-pkg was not found \
                   in the package registry and you require nonexistent-pkg, we can conclude that your requirements \
                   are unsatisfiable.\n";
        assert!(reason(log, false).starts_with(
            "No solution found when resolving dependencies: nonexistent-pkg was not found in the package registry"
        ));
    }

    #[test]
    fn the_lines_the_reason_says_are_left_out_of_stderr() {
        let rest = |log: &str| without(log, &summarize(log, false).quoted);
        // As uv 0.13.9 writes it: everything is in the reason.
        let missing = "error: No solution found when resolving dependencies\n  cause: Because nope-xyz was not found in \
                       the package registry and you require nope-xyz==1.0, we can conclude that your requirements are \
                       unsatisfiable.\n";
        assert_eq!(rest(missing), "");
        let no_wheel = "error: No solution found when resolving dependencies\n  cause: Because all versions of docopt \
                        have no usable wheels and you require docopt, we can conclude that your requirements are \
                        unsatisfiable.\n\nhint: Wheels are required for `docopt` because building from source is \
                        disabled for all packages (i.e., with `--no-build`)\n";
        assert_eq!(rest(no_wheel), "", "the refusal says all three lines");
        // The index out of reach: the deeper causes are not in the reason and stay.
        let offline = "Resolved 3 packages in 12ms\nerror: Failed to fetch: `https://pypi.org/simple/six/`\n  cause: \
                       Request failed after 3 retries\n  cause: dns error: failed to lookup address information\n";
        assert_eq!(
            summarize(offline, false).reason,
            "Failed to fetch: `https://pypi.org/simple/six/`: Request failed after 3 retries"
        );
        assert_eq!(
            rest(offline),
            "Resolved 3 packages in 12ms\n  cause: dns error: failed to lookup address information\n"
        );
        assert_eq!(
            rest("Resolved 3 packages\n  killed  \n\n"),
            "Resolved 3 packages\n\n",
            "other lines stay as they were"
        );
    }

    #[test]
    fn the_names_uv_could_not_install_are_found() {
        // Verbatim from uv 0.13.9.
        let missing = "error: No solution found when resolving dependencies\n  cause: Because surely-not-a-real-pkg-xyz \
                       was not found in the package registry and you require surely-not-a-real-pkg-xyz, we can conclude \
                       that your requirements are unsatisfiable.\n";
        assert_eq!(unavailable(missing), [("surely-not-a-real-pkg-xyz".to_owned(), Unavailable::NotFound)]);
        let no_wheel = "error: No solution found when resolving dependencies\n  cause: Because all versions of docopt have \
                        no usable wheels and you require docopt, we can conclude that your requirements are \
                        unsatisfiable.\n\nhint: Wheels are required for `docopt` because building from source is disabled\n";
        assert_eq!(unavailable(no_wheel), [("docopt".to_owned(), Unavailable::NoWheel)]);
        let one_version =
            "  ╰─▶ Because only tiny==1.0 is available and tiny==1.0 has no usable wheels, we can conclude";
        assert_eq!(unavailable(one_version), [("tiny".to_owned(), Unavailable::NoWheel)]);
        assert!(unavailable("error: Failed to download `x`\n  cause: error sending request").is_empty());
        assert!(unavailable("error: Because only numpy>=1.3.0 is available and you require numpy<1.0").is_empty());
    }

    #[test]
    fn without_an_error_line_the_last_line_says_it() {
        assert_eq!(summarize("Resolved 3 packages\n  killed  \n\n", false).reason, "killed");
        assert_eq!(summarize("", false), Summary { reason: "the installer failed".into(), quoted: Vec::new() });
        // With sdists allowed, the refusal hint cannot be the reason.
        let allowed = summarize("error: boom\nhint: building from source is disabled for `x`\n", true);
        assert_eq!(allowed, Summary { reason: "boom".into(), quoted: vec![0] });
    }
}
