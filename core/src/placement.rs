//! Settings sent where they mean nothing (docs/api.md, "Misplaced settings"). Unknown fields are accepted, as the
//! original accepts them, but a known setting at the wrong level (`timeout_seconds` at the top of `/eval` instead of
//! in `config`) or a near miss of one (`config.timeout`) would be silently ignored, and the code would run with
//! limits its sender did not mean: such a request answers 400 naming the right place.
//!
//! The check reads only the body's keys (values are skipped), so it costs a scan of the body and nothing more.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::ValidationError;

/// Which body is checked: the keys each one takes at its top and in its `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `POST /api/v1/eval` and a session call (`POST /api/v1/sessions/{id}/eval`).
    Eval,
    /// The `metadata` of `POST /api/v1/exec/sync|async`.
    ExecMetadata,
    /// `POST /api/v1/sessions`.
    NewSession,
}

/// Keys of `config` in every body.
const CONFIG_KEYS: [&str; 5] = ["timeout_seconds", "memory_mb", "disk_mb", "cpu_shares", "network_disabled"];
/// Keys of a session's `config` besides those.
const SESSION_CONFIG_KEYS: [&str; 1] = ["idle_timeout_seconds"];
/// Top-level keys of each body that belong there (and not in `config`).
const EVAL_KEYS: [&str; 8] =
    ["code", "files", "entrypoint", "stdin", "python_version", "eval_last_expr", "requirements_txt", "callback_url"];
const EXEC_KEYS: [&str; 9] = [
    "entrypoint",
    "docker_image",
    "python_version",
    "requirements_txt",
    "pre_commands",
    "stdin",
    "env_vars",
    "script_args",
    "callback_url",
];
const SESSION_KEYS: [&str; 3] = ["python_version", "requirements_txt", "env_vars"];

/// Names people write for a setting, and the setting they mean (`config.<it>`).
const NEAR_MISSES: [(&str, &str); 13] = [
    ("timeout", "timeout_seconds"),
    ("timeout_s", "timeout_seconds"),
    ("timeout_sec", "timeout_seconds"),
    ("timeout_secs", "timeout_seconds"),
    ("timeout_ms", "timeout_seconds"),
    ("memory", "memory_mb"),
    ("memory_limit", "memory_mb"),
    ("mem_mb", "memory_mb"),
    ("disk", "disk_mb"),
    ("cpu", "cpu_shares"),
    ("network", "network_disabled"),
    ("network_enabled", "network_disabled"),
    ("idle_timeout", "idle_timeout_seconds"),
];

/// The keys of a body, at the top and inside `config`; values are skipped, not read. (Not `#[serde(flatten)]`: it
/// would buffer every other value, a large `stdin` or file content included, before looking at the keys.)
struct Keys {
    config: Option<Vec<String>>,
    top: Vec<String>,
}

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Keys, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Keys { config: None, top: Vec::new() };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "config" {
                        let config = map.next_value::<Option<HashMap<String, IgnoredAny>>>()?;
                        keys.config = config.map(|c| c.into_keys().collect());
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        keys.top.push(key);
                    }
                }
                Ok(keys)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Checks that no known setting of `body` sits at the wrong level. A body that is not a JSON object is left to the
/// caller's own parsing (which reports it better).
pub fn check(json: &[u8], body: Body) -> Result<(), ValidationError> {
    let Ok(keys) = serde_json::from_slice::<Keys>(json) else { return Ok(()) };
    let config_keys: Vec<&str> = match body {
        Body::NewSession => CONFIG_KEYS.iter().chain(&SESSION_CONFIG_KEYS).copied().collect(),
        _ => CONFIG_KEYS.to_vec(),
    };
    let top_keys: &[&str] = match body {
        Body::Eval => &EVAL_KEYS,
        Body::ExecMetadata => &EXEC_KEYS,
        Body::NewSession => &SESSION_KEYS,
    };
    let mut top: Vec<&String> = keys.top.iter().collect();
    top.sort();
    for key in top {
        if config_keys.contains(&key.as_str()) {
            return Err(misplaced(format!("{key} belongs in config: send {{\"config\": {{\"{key}\": ...}}}}")));
        }
        if let Some(meant) = near_miss(key, &config_keys) {
            return Err(misplaced(format!(
                "{key} is not a setting: the setting is config.{meant} (send {{\"config\": {{\"{meant}\": ...}}}})"
            )));
        }
    }
    let mut inside: Vec<&String> = keys.config.as_ref().map(|c| c.iter().collect()).unwrap_or_default();
    inside.sort();
    for key in inside {
        if top_keys.contains(&key.as_str()) {
            return Err(misplaced(format!("config.{key} belongs at the top level of the body, next to config")));
        }
        if let Some(meant) = near_miss(key, &config_keys) {
            return Err(misplaced(format!("config.{key} is not a setting: the setting is config.{meant}")));
        }
    }
    Ok(())
}

/// The setting `key` is a near miss of, among `settings`.
fn near_miss(key: &str, settings: &[&str]) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    NEAR_MISSES.iter().find(|(miss, meant)| lower == *miss && settings.contains(meant)).map(|(_, meant)| *meant)
}

fn misplaced(message: String) -> ValidationError {
    ValidationError::bad_request(format!("{message} (a setting in the wrong place would be ignored)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str, body: Body) -> String {
        check(json.as_bytes(), body).unwrap_err().message
    }

    #[test]
    fn settings_at_the_wrong_level_are_refused_with_their_place() {
        let m = message(r#"{"code": "1", "timeout_seconds": 1}"#, Body::Eval);
        assert!(m.contains("timeout_seconds belongs in config"), "{m}");
        let m = message(r#"{"code": "1", "config": {"timeout": 1}}"#, Body::Eval);
        assert!(m.contains("config.timeout is not a setting") && m.contains("config.timeout_seconds"), "{m}");
        let m = message(r#"{"code": "1", "timeout": 1}"#, Body::Eval);
        assert!(m.contains("config.timeout_seconds"), "{m}");
        let m = message(r#"{"code": "1", "config": {"python_version": "3.12"}}"#, Body::Eval);
        assert!(m.contains("config.python_version belongs at the top level"), "{m}");
        let m = message(r#"{"config": {"callback_url": "https://hooks.example.com/"}}"#, Body::ExecMetadata);
        assert!(m.contains("config.callback_url belongs at the top level"), "{m}");
        let m = message(r#"{"entrypoint": "main.py", "memory_mb": 64}"#, Body::ExecMetadata);
        assert!(m.contains("memory_mb belongs in config"), "{m}");
        let m = message(r#"{"idle_timeout_seconds": 60}"#, Body::NewSession);
        assert!(m.contains("idle_timeout_seconds belongs in config"), "{m}");
        let m = message(r#"{"config": {"Memory": 64}}"#, Body::NewSession);
        assert!(m.contains("config.memory_mb"), "{m}");
    }

    #[test]
    fn right_places_unknown_fields_and_non_objects_pass() {
        let ok = r#"{"code": "1", "config": {"timeout_seconds": 1, "memory_mb": 64}, "client_tag": "x", "extra": {"timeout": 1}}"#;
        check(ok.as_bytes(), Body::Eval).unwrap();
        check(br#"{"config": {"idle_timeout_seconds": 60}}"#, Body::NewSession).unwrap();
        // Only the sessions' config takes an idle timeout; elsewhere it is an unknown field, as before.
        check(br#"{"code": "1", "config": {"idle_timeout_seconds": 60}}"#, Body::Eval).unwrap();
        check(b"[1, 2]", Body::Eval).unwrap();
        check(b"not json", Body::Eval).unwrap();
    }
}
