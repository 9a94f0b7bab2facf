//! The CRD reference (`docs/crd-reference.md`), generated from the same schema the API server enforces, so it
//! cannot drift: every field of spec and status with its type, default, bounds, rules and description.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::PythonExecution;

/// The reference as Markdown.
pub fn markdown() -> String {
    let crd = serde_json::to_value(PythonExecution::crd()).unwrap_or_default();
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let mut out = String::from(
        "# PythonExecution reference\n\n\
         Generated from the CRD (`cargo run -p pyexec-crds --bin crdgen -- --reference > docs/crd-reference.md`); \
         a test fails when it is stale. Group `pyexec.io`, version `v1alpha1`, kind `PythonExecution`, namespaced, \
         short name `pyexec`. Design and examples: [kubernetes.md](kubernetes.md).\n",
    );
    for part in ["spec", "status"] {
        out.push_str(&format!("\n## `{part}`\n\n"));
        if let Some(rules) = schema["properties"][part]["x-kubernetes-validations"].as_array() {
            for rule in rules {
                out.push_str(&format!(
                    "Rule: `{}` ({})\n\n",
                    rule["rule"].as_str().unwrap_or(""),
                    rule["message"].as_str().unwrap_or("")
                ));
            }
        }
        out.push_str("| field | type | default | constraints | description |\n|---|---|---|---|---|\n");
        walk(&schema["properties"][part], part, &mut out);
    }
    out
}

fn walk(node: &Value, path: &str, out: &mut String) {
    let Some(properties) = node["properties"].as_object() else { return };
    let required: Vec<&str> =
        node["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for (name, field) in properties {
        let here = format!("{path}.{name}");
        let (kind, items) = type_of(field);
        let mut constraints = Vec::new();
        if required.contains(&name.as_str()) {
            constraints.push("required".to_string());
        }
        for (key, label) in [
            ("minimum", "min"),
            ("maximum", "max"),
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("maxItems", "max items"),
            ("pattern", "pattern"),
        ] {
            let value = field.get(key).or_else(|| items.and_then(|i| i.get(key)));
            if let Some(v) = value {
                let shown = match v {
                    Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| format!("{}", f as i64)),
                    Value::String(s) => format!("`{s}`"),
                    other => other.to_string(),
                };
                constraints.push(format!("{label} {shown}"));
            }
        }
        if let Some(values) = field["enum"].as_array() {
            let names: Vec<String> = values.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")).collect();
            constraints.push(format!("one of {}", names.join(", ")));
        }
        for rule in field["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(items.and_then(|i| i["x-kubernetes-validations"].as_array()).into_iter().flatten())
        {
            constraints.push(format!("rule: {}", rule["message"].as_str().unwrap_or("")));
        }
        let default = match &field["default"] {
            Value::Null => String::new(),
            Value::Object(_) => "see fields".into(),
            v => format!("`{v}`"),
        };
        let description = field["description"].as_str().unwrap_or("").replace('\n', " ").replace('|', "\\|");
        out.push_str(&format!(
            "| `{here}` | {kind} | {default} | {} | {description} |\n",
            constraints.join("; ").replace('|', "\\|")
        ));
        walk(field, &here, out);
        if let Some(items) = items {
            walk(items, &format!("{here}[]"), out);
        }
    }
}

fn type_of(field: &Value) -> (String, Option<&Value>) {
    if field["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return ("int or string".into(), None);
    }
    match field["type"].as_str() {
        Some("array") => {
            let items = &field["items"];
            let (inner, _) = type_of(items);
            (format!("list of {inner}"), Some(items))
        }
        Some(t) => (t.to_string(), None),
        None if field["enum"].is_array() => ("string".into(), None),
        None => ("object".into(), None),
    }
}
