//! uv's output, turned into the one line a client reads in `error`. The whole log tail still goes to `stderr`;
//! this line says what went wrong, and how to allow what the server's settings refused.

/// One line saying why uv failed: the sdist refusal with the setting that allows it, else uv's `error:` (or `×`)
/// line with its first cause, else the last line of the log.
pub(super) fn summarize(log: &str, allow_sdist: bool) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !allow_sdist && let Some(line) = lines.iter().find(|l| l.contains("building from source is disabled")) {
        let package = line.split('`').nth(1).map(|p| format!("{p} has")).unwrap_or("a package has".into());
        return format!(
            "{package} no binary wheel for this interpreter and building from source is disabled \
                 (set PYEXEC_ALLOW_SDIST=true on the server to allow it)"
        );
    }
    let Some(at) = lines.iter().position(|l| l.starts_with("error:") || l.starts_with('×')) else {
        return lines.last().copied().unwrap_or("the installer failed").to_owned();
    };
    let error = lines[at].trim_start_matches("error:").trim_start_matches('×').trim();
    // uv explains on the following `cause:` lines; the first is the most specific useful one.
    match lines[at + 1..].iter().find_map(|l| l.strip_prefix("cause:").or_else(|| l.strip_prefix("╰─▶"))) {
        Some(cause) => format!("{error}: {}", cause.trim().trim_start_matches("Because ")),
        None => error.to_owned(),
    }
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
        let log = "Resolved 1 package\n  × Failed to download `x`\n  ╰─▶ error sending request\n";
        assert_eq!(summarize(log, false), "Failed to download `x`: error sending request");
        // Verbatim from uv 0.13.9.
        let log = "error: No solution found when resolving dependencies\n  cause: Because all versions of docopt have no \
                   usable wheels and you require docopt, we can conclude that your requirements are unsatisfiable.\n\n\
                   hint: Wheels are required for `docopt` because building from source is disabled for all packages \
                   (i.e., with `--no-build`)\n";
        assert_eq!(
            summarize(log, false),
            "docopt has no binary wheel for this interpreter and building from source is disabled \
             (set PYEXEC_ALLOW_SDIST=true on the server to allow it)"
        );
        let log = "error: No solution found when resolving dependencies\n  cause: Because nonexistent-pkg was not found \
                   in the package registry and you require nonexistent-pkg, we can conclude that your requirements \
                   are unsatisfiable.\n";
        assert!(summarize(log, false).starts_with(
            "No solution found when resolving dependencies: nonexistent-pkg was not found in the package registry"
        ));
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
        assert_eq!(summarize("Resolved 3 packages\n  killed  \n\n", false), "killed");
        assert_eq!(summarize("", false), "the installer failed");
        // With sdists allowed, the refusal hint cannot be the reason.
        assert_eq!(summarize("error: boom\nhint: building from source is disabled for `x`\n", true), "boom");
    }
}
