//! The web console at `/ui` (docs/console.md): served from the binary with a strict content security policy,
//! built from `console/` exactly as committed, and used in a real headless browser (Debian's Chromium driven by
//! playwright-core, pages checked with axe-core). The browser and build checks need node, `npm ci` in `console/`
//! and `apiserver/tests/ui`, and Chromium, which the test command installs; elsewhere they say SKIPPED unless
//! `PYEXEC_REQUIRE_BROWSER_TEST` is set.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pyexec_testkit::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `None` when the browser tools are there; otherwise skips loudly, or fails when they are required.
fn missing_tools(test: &str, needs: &[(bool, &str)]) -> bool {
    let missing: Vec<&str> = needs.iter().filter(|(present, _)| !present).map(|(_, what)| *what).collect();
    if missing.is_empty() {
        return false;
    }
    assert!(std::env::var_os("PYEXEC_REQUIRE_BROWSER_TEST").is_none(), "{test} required but missing {missing:?}");
    eprintln!("!!! SKIPPED {test}: missing {missing:?}");
    true
}

fn node_present() -> bool {
    Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The `/ui/assets/...` files the page loads.
fn assets_of(index: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in index.match_indices(attr) {
            let rest = &index[at + attr.len()..];
            let url = &rest[..rest.find('"').unwrap()];
            if url.starts_with("/ui/") {
                found.push(url.to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    if Server::external() {
        eprintln!("SKIPPED the_console_is_served_from_the_binary_with_a_strict_policy: it configures its own server");
        return;
    }
    // Keys are set: the page loads without one (it holds no data), the API it calls does not answer without one.
    let s = Server::start_with(&[("PYEXEC_API_KEYS", "alice:alice-key")]).await;
    let mut index = String::new();
    for path in ["/ui", "/ui/"] {
        let r = s.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"), "{headers:?}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in ["default-src 'none'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{csp}");
        }
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-cache", "a new build is picked up at once");
        index = r.text().await.unwrap();
    }
    let assets = assets_of(&index);
    assert!(assets.iter().any(|a| a.ends_with(".js")), "the page loads its script from the server: {index}");
    for asset in &assets {
        let r = s.get(asset).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        let want = if asset.ends_with(".js") { "text/javascript" } else { "text/css" };
        assert!(asset.ends_with(".js") || asset.ends_with(".css") || asset.ends_with(".svg"), "{asset}");
        assert!(asset.ends_with(".svg") || kind.starts_with(want), "{asset}: {kind}");
        assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable", "{asset}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("http://") || asset.ends_with(".js"), "no remote styles: {asset}");
    }
    // Nothing else is served from there: no file of the server, whatever the path.
    for path in ["/ui/nope.js", "/ui/../Cargo.toml", "/ui/%2e%2e/Cargo.toml", "/ui/assets/", "/ui/index.html/x"] {
        let r = s.get(path).send().await.unwrap();
        assert!(matches!(r.status().as_u16(), 404 | 301), "{path}: {}", r.status());
    }
    assert_eq!(json_of(s.get("/api/v1/executions").send().await.unwrap()).await.0, 401);
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn the_embedded_console_is_built_from_its_sources() {
    let console = repo().join("console");
    let needs = [(node_present(), "node"), (console.join("node_modules/vite").is_dir(), "npm ci in console/")];
    if missing_tools("the_embedded_console_is_built_from_its_sources", &needs) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let built = Command::new("npm")
        .args(["run", "--silent", "build", "--", "--outDir"])
        .arg(out.path())
        .arg("--emptyOutDir")
        .current_dir(&console)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "npm run build failed:\n{}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let (fresh, committed) = (tree(out.path()), tree(&console.join("dist")));
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&fresh),
        "console/dist is stale: run `cd console && npm ci && npm run build` and commit console/dist"
    );
    for (name, bytes) in &fresh {
        assert!(
            committed[name] == *bytes,
            "console/dist/{name} is stale: run `cd console && npm ci && npm run build` and commit console/dist"
        );
    }
}

#[tokio::test]
async fn the_console_runs_code_and_browses_work_in_a_real_browser() {
    if Server::external() {
        eprintln!("SKIPPED the_console_runs_code_and_browses_work_in_a_real_browser: it configures its own server");
        return;
    }
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let needs = [
        (node_present(), "node"),
        (ui.join("node_modules/playwright-core").is_dir(), "playwright-core (npm ci in apiserver/tests/ui)"),
        (ui.join("node_modules/axe-core").is_dir(), "axe-core (npm ci in apiserver/tests/ui)"),
        (Path::new(&chromium).exists(), "chromium"),
    ];
    if missing_tools("the_console_runs_code_and_browses_work_in_a_real_browser", &needs) {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_API_KEYS", "alice:alice-key,ops:ops-key"), ("PYEXEC_ADMIN_TENANTS", "ops")])
        .await;
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let (url, shots) = (s.url.clone(), screenshots.clone());
    let require_egress = std::env::var_os("PYEXEC_REQUIRE_EGRESS").is_some();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(ui.join("console_test.mjs"))
            .arg(url)
            .env("CHROMIUM_PATH", chromium)
            .env("PYEXEC_CONSOLE_API_KEY", "alice-key")
            .env("PYEXEC_CONSOLE_SCREENSHOTS", shots)
            // The plot needs matplotlib installed, hence egress: where egress is required, so is the plot.
            .env("PYEXEC_CONSOLE_REQUIRE_PLOT", if require_egress { "1" } else { "" })
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "console browser test failed:\n{stdout}\n{stderr}\nserver log:\n{}", s.log_text());
    assert!(stdout.contains("ok: console"), "{stdout}");
    eprintln!("console screenshots: {}", screenshots.display());
}
