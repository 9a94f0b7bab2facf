//! `docs/api-reference.md` is the rendering of the OpenAPI document the server serves; it must be current.
//! `UPDATE_DOCS=1 cargo test -p pyexec-apiserver --test api_reference` rewrites it.

#![allow(clippy::unwrap_used)]

#[test]
fn the_committed_api_reference_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api-reference.md");
    let generated = pyexec_apiserver::routes::markdown_reference();
    if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api-reference.md is stale: run UPDATE_DOCS=1 cargo test -p pyexec-apiserver --test api_reference"
    );
}
