//! `/docs` in a real headless browser (Debian's Chromium driven by playwright-core): the operations are listed, the
//! API key goes in through the Authorize dialog, and "Try it out" runs the documented eval example and the
//! execution list, with the page's defaults, against this server. Needs node, `npm ci` in `apiserver/tests/ui`
//! and Chromium, which the test command installs; elsewhere the test says SKIPPED unless
//! `PYEXEC_REQUIRE_BROWSER_TEST` is set.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use pyexec_testkit::*;

#[tokio::test]
async fn swagger_ui_lists_operations_and_runs_the_examples() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<&str> = [
        (Command::new("node").arg("--version").output().is_err(), "node"),
        (!ui.join("node_modules/playwright-core").is_dir(), "playwright-core (npm ci in apiserver/tests/ui)"),
        (!Path::new(&chromium).exists(), "chromium"),
    ]
    .into_iter()
    .filter_map(|(absent, what)| absent.then_some(what))
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("PYEXEC_REQUIRE_BROWSER_TEST").is_none(),
            "browser test required but missing {missing:?}"
        );
        eprintln!("!!! SKIPPED swagger_ui_lists_operations_and_runs_the_examples: missing {missing:?}");
        return;
    }
    // With a key, as a deployment has one: the key must reach the server from the Authorize dialog.
    let key = "docs-test-key";
    let s = Server::start_with(&[("PYEXEC_API_KEYS", key)]).await;
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(ui.join("docs_try_it_out.mjs"))
            .arg(url)
            .env("CHROMIUM_PATH", chromium)
            .env("PYEXEC_DOCS_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: /docs"), "{stdout}");
}
