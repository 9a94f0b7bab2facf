//! Admission of PythonExecution writes as the API server does it with the CRD: unknown fields (and `null` where
//! the schema is not `nullable`) are pruned, then the object is validated against the CRD's OpenAPI v3 schema
//! (types, required fields, enums, minimum/maximum, lengths, patterns, maxItems) and its `x-kubernetes-validations`
//! CEL rules (transition rules see `oldSelf` on updates). A refusal is a 422 `Invalid` whose message and causes
//! name the field paths, as the API server's are.
//!
//! The schema comes from `PythonExecution::crd()` (the CRD that `crdgen` writes), so it cannot drift from the
//! generated file. Every CEL rule must compile with the `cel` crate (through `kube-cel`), or be listed in
//! [`UNCOMPILED_RULES_ALLOWED`] with the reason it cannot be checked here: loading the schema panics otherwise, so a
//! new rule never goes unchecked silently.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use kube::CustomResourceExt;
use kube::core::cel::{CompilationError, CompiledSchema, ErrorKind, Validator, compile_schema};
use pyexec_crds::PythonExecution;
use regex::Regex;
use serde_json::{Value, json};

/// CEL rules of the CRD that the `cel` crate cannot compile, each with why that is acceptable. Empty: every rule
/// is checked.
pub const UNCOMPILED_RULES_ALLOWED: &[(&str, &str)] = &[];

/// One field error, as the API server lists it in a Status' `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTypeInvalid`,
    /// `FieldValueTooLong`, `FieldValueTooMany`.
    pub reason: &'static str,
    /// The field path: `spec.limits.memoryMB`, `spec.env[0].name`.
    pub field: String,
    /// The whole message, field path first, as the API server words it.
    pub message: String,
}

struct Admission {
    schema: Value,
    compiled: CompiledSchema,
    validator: Validator,
    patterns: BTreeMap<String, Regex>,
}

fn admission() -> &'static Mutex<Admission> {
    static ADMISSION: OnceLock<Mutex<Admission>> = OnceLock::new();
    ADMISSION.get_or_init(|| Mutex::new(load()))
}

/// The OpenAPI v3 schema of the served version of the PythonExecution CRD.
pub fn execution_schema() -> Value {
    let crd = serde_json::to_value(PythonExecution::crd()).unwrap();
    let versions = crd["spec"]["versions"].as_array().unwrap();
    let served = versions.iter().find(|v| v["storage"] == true).unwrap_or(&versions[0]);
    served["schema"]["openAPIV3Schema"].clone()
}

/// Compiles the CRD's schema and rules, and panics when a rule does not compile and is not allowed not to.
fn load() -> Admission {
    let schema = execution_schema();
    let compiled = compile_schema(&schema);
    let mut failed = Vec::new();
    collect_compilation_errors(&compiled, "", &mut failed);
    let unexpected: Vec<String> = failed
        .into_iter()
        .filter(|(rule, _)| !UNCOMPILED_RULES_ALLOWED.iter().any(|(allowed, _)| allowed == rule))
        .map(|(rule, error)| format!("{rule}: {error}"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "CEL rules of the PythonExecution CRD that the fake API cannot check (fix them, or allow them in \
         UNCOMPILED_RULES_ALLOWED with a reason): {unexpected:#?}"
    );
    let mut patterns = BTreeMap::new();
    collect_patterns(&schema, &mut patterns);
    Admission { schema, compiled, validator: Validator::new(), patterns }
}

fn collect_compilation_errors(node: &CompiledSchema, path: &str, out: &mut Vec<(String, String)>) {
    for error in node.compilation_errors() {
        let rule = match error {
            CompilationError::Parse { rule, .. } => rule.clone(),
            other => format!("{other:?}"),
        };
        out.push((rule, format!("at {}: {error}", if path.is_empty() { "<root>" } else { path })));
    }
    for (name, child) in &node.properties {
        collect_compilation_errors(child, &format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        collect_compilation_errors(items, &format!("{path}[]"), out);
    }
    if let Some(values) = &node.additional_properties {
        collect_compilation_errors(values, &format!("{path}{{}}"), out);
    }
    for child in node.all_of.iter().chain(&node.one_of).chain(&node.any_of) {
        collect_compilation_errors(child, path, out);
    }
}

fn collect_patterns(schema: &Value, out: &mut BTreeMap<String, Regex>) {
    if let Some(pattern) = schema["pattern"].as_str() {
        out.insert(pattern.to_owned(), Regex::new(pattern).unwrap());
    }
    match schema {
        Value::Object(o) => o.values().for_each(|v| collect_patterns(v, out)),
        Value::Array(a) => a.iter().for_each(|v| collect_patterns(v, out)),
        _ => {}
    }
}

/// Checks that every CEL rule of the CRD compiles (or is allowed not to): panics otherwise.
pub fn check_rules_compile() {
    let _ = admission();
}

/// Whether the kind in this collection is admitted against the PythonExecution CRD.
pub fn is_executions(collection: &str) -> bool {
    collection.ends_with("/pythonexecutions")
}

/// Prunes what the API server would drop from a PythonExecution before validating it: fields the schema does
/// not declare (the CRD's schema is structural and does not preserve unknown fields), and `null` where the
/// schema is not `nullable`. `apiVersion`, `kind` and `metadata` at the root are the API server's own.
pub fn prune(object: &mut Value) {
    let admission = admission().lock().unwrap();
    if let Value::Object(root) = object {
        let properties = &admission.schema["properties"];
        root.retain(|k, v| {
            matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                || (properties.get(k).is_some_and(|s| !v.is_null() || s["nullable"] == true))
        });
        for (k, v) in root.iter_mut() {
            if let Some(s) = properties.get(k) {
                prune_value(s, v);
            }
        }
    }
}

fn prune_value(schema: &Value, value: &mut Value) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match value {
        Value::Object(o) => {
            if let Some(properties) = schema["properties"].as_object() {
                o.retain(|k, v| properties.get(k).is_some_and(|s| !v.is_null() || s["nullable"] == true));
                for (k, v) in o.iter_mut() {
                    prune_value(&properties[k], v);
                }
            } else if schema["additionalProperties"].is_object() {
                let values = &schema["additionalProperties"];
                o.retain(|_, v| !v.is_null() || values["nullable"] == true);
                for v in o.values_mut() {
                    prune_value(values, v);
                }
            } else if schema["type"] == "object" && schema["additionalProperties"] != true {
                o.clear();
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            items.iter_mut().for_each(|v| prune_value(&schema["items"], v));
        }
        _ => {}
    }
}

/// Validates a (pruned) PythonExecution against the CRD's schema and CEL rules; `old` is the stored object on an
/// update (for transition rules). The errors, in the API server's order: schema errors, then rule failures.
pub fn validate(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let admission = admission().lock().unwrap();
    let mut errors = Vec::new();
    if let Value::Object(root) = object {
        let properties = &admission.schema["properties"];
        for required in admission.schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !root.contains_key(name) {
                errors.push(required_error(name));
            }
        }
        for (k, v) in root {
            if let Some(s) = properties.get(k) {
                check(&admission.patterns, s, v, k, &mut errors);
            }
        }
    }
    if !errors.is_empty() {
        // The API server does not run the rules on an object its schema refuses.
        return errors;
    }
    // Rules see the object without the API server's own fields at the root, as declared by the schema.
    let strip = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o.as_object_mut() {
            m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
        }
        o
    };
    let old = old.map(strip);
    if let Err(failures) = admission.validator.validate_compiled(&admission.compiled, &strip(object), old.as_ref()) {
        for failure in failures.iter() {
            let field = failure.field_path.clone();
            let value = lookup(object, &field);
            let message = match failure.kind {
                ErrorKind::ValidationFailure => {
                    format!("{field}: Invalid value: \"{}\": {}", type_name(value), failure.message)
                }
                _ => format!(
                    "{field}: Internal error: rule `{}` could not be evaluated: {}",
                    failure.rule, failure.message
                ),
            };
            errors.push(FieldError { reason: "FieldValueInvalid", field, message });
        }
    }
    errors
}

/// The value at a field path such as `spec.env[0]`.
fn lookup<'a>(object: &'a Value, path: &str) -> &'a Value {
    path.split('.').filter(|p| !p.is_empty()).fold(object, |o, part| {
        let mut parts = part.split('[');
        let name = parts.next().unwrap_or("");
        let o = if name.is_empty() { o } else { &o[name] };
        parts.fold(o, |o, index| index.trim_end_matches(']').parse::<usize>().map_or(&Value::Null, |i| &o[i]))
    })
}

fn required_error(field: &str) -> FieldError {
    FieldError { reason: "FieldValueRequired", field: field.to_owned(), message: format!("{field}: Required value") }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How the API server quotes a value in a message.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) | Value::Object(_) => format!("\"{}\"", type_name(value)),
        other => other.to_string(),
    }
}

fn check(patterns: &BTreeMap<String, Regex>, schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let invalid = |errors: &mut Vec<FieldError>, reason: &'static str, what: String| {
        errors.push(FieldError { reason, field: path.to_owned(), message: format!("{path}: {what}") });
    };
    if value.is_null() {
        if schema["nullable"] != true {
            invalid(
                errors,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            );
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    let actual = type_name(value);
    let expected = schema["type"].as_str();
    let type_ok = if int_or_string {
        matches!(actual, "integer" | "string")
    } else {
        match expected {
            None => true,
            Some("number") => matches!(actual, "integer" | "number"),
            Some(t) => t == actual,
        }
    };
    if !type_ok {
        let expected = if int_or_string { "integer,string" } else { expected.unwrap_or("") };
        invalid(
            errors,
            "FieldValueTypeInvalid",
            format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
        );
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        invalid(
            errors,
            "FieldValueNotSupported",
            format!("Unsupported value: {}: supported values: {}", shown(value), list.join(", ")),
        );
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            if let Some(max) = schema["maximum"].as_f64()
                && x > max
            {
                invalid(
                    errors,
                    "FieldValueInvalid",
                    format!("Invalid value: {n}: {path} in body should be less than or equal to {max}"),
                );
            }
            if let Some(min) = schema["minimum"].as_f64()
                && x < min
            {
                invalid(
                    errors,
                    "FieldValueInvalid",
                    format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}"),
                );
            }
        }
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && chars > max
            {
                invalid(errors, "FieldValueTooLong", format!("Too long: may not be more than {max} bytes"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && chars < min
            {
                invalid(
                    errors,
                    "FieldValueInvalid",
                    format!("Invalid value: {}: {path} in body should be at least {min} chars long", shown(value)),
                );
            }
            if let Some(pattern) = schema["pattern"].as_str()
                && !patterns[pattern].is_match(s)
            {
                invalid(
                    errors,
                    "FieldValueInvalid",
                    format!("Invalid value: {}: {path} in body should match '{pattern}'", shown(value)),
                );
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                invalid(
                    errors,
                    "FieldValueTooMany",
                    format!("Too many: {}: must have at most {max} items", items.len()),
                );
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    check(patterns, &schema["items"], item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(o) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !o.contains_key(name) {
                    errors.push(required_error(&format!("{path}.{name}")));
                }
            }
            let properties = schema["properties"].as_object();
            for (k, v) in o {
                let child = properties
                    .and_then(|p| p.get(k))
                    .or_else(|| schema["additionalProperties"].as_object().map(|_| &schema["additionalProperties"]));
                if let Some(child) = child {
                    check(patterns, child, v, &format!("{path}.{k}"), errors);
                }
            }
        }
        _ => {}
    }
}

/// The API server's answer body to a write its admission refused: 422 `Invalid`, one cause per field error.
pub fn invalid_status(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Value {
    let list: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    let listed = if list.len() == 1 { list[0].to_owned() } else { format!("[{}]", list.join(", ")) };
    let causes: Vec<Value> =
        errors.iter().map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field})).collect();
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{kind}.{group} \"{name}\" is invalid: {listed}"),
        "reason": "Invalid",
        "details": {"name": name, "group": group, "kind": kind, "causes": causes},
        "code": 422,
    })
}
