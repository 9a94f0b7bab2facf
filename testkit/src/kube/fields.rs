//! Field ownership, as server-side apply keeps it: every leaf field of an object (maps are walked, lists are
//! atomic) has the managers that set it, each with the kind of write (`Apply`, or `Update` for creates, replaces
//! and merge/JSON patches). An apply keeps what other managers own, answers a conflict where it would change a
//! value another manager owns (unless forced, which takes the field over), and removes the fields its manager
//! applied before but leaves out now. The ownership is rendered as `metadata.managedFields` (FieldsV1).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// A field: the keys from the object's root.
pub type Path = Vec<String>;

/// How a manager last wrote a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Apply,
    Update,
}

/// Who owns which field of one object.
#[derive(Debug, Clone, Default)]
pub struct Owners(BTreeMap<Path, BTreeSet<(String, Op)>>);

/// The fields of `object` that ownership covers: everything but `apiVersion`, `kind` and the server-set metadata
/// (only labels, annotations, finalizers and owner references of `metadata` are owned).
pub fn leaves(object: &Value) -> BTreeMap<Path, Value> {
    fn walk(value: &Value, path: &mut Path, out: &mut BTreeMap<Path, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            other => {
                out.insert(path.clone(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    let Some(map) = object.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = v.get(field) {
                        walk(v, &mut vec![k.clone(), field.to_owned()], &mut out);
                    }
                }
            }
            _ => walk(v, &mut vec![k.clone()], &mut out),
        }
    }
    out
}

/// The value at `path`, if any.
pub fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |o, k| o.get(k))
}

/// Sets the value at `path`, making the maps on the way.
pub fn set(object: &mut Value, path: &[String], value: Value) {
    let mut at = object;
    for k in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at.as_object_mut().unwrap().entry(k.clone()).or_insert(Value::Null);
    }
    *at = value;
}

/// Removes the value at `path`.
pub fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let parent = parents.iter().try_fold(object, |o, k| o.get_mut(k));
    if let Some(Value::Object(map)) = parent {
        map.remove(last);
    }
}

impl Owners {
    /// Records an update by `manager` from `before` to `after`: the fields it changed or added (within `scope`)
    /// are its alone; fields it removed are no one's.
    pub fn update(&mut self, before: &Value, after: &Value, manager: &str, scope: &dyn Fn(&[String]) -> bool) {
        let (old, new) = (leaves(before), leaves(after));
        for (path, value) in new.iter().filter(|(p, _)| scope(p)) {
            if old.get(path) != Some(value) {
                self.0.insert(path.clone(), BTreeSet::from([(manager.to_owned(), Op::Update)]));
            }
        }
        self.0.retain(|path, _| !scope(path) || new.contains_key(path));
    }

    /// Server-side apply of `applied` by `manager` to `current` (fields outside `scope` ignored): the new object,
    /// or the conflicting fields and their managers.
    pub fn apply(
        &mut self,
        current: &Value,
        applied: &Value,
        manager: &str,
        force: bool,
        scope: &dyn Fn(&[String]) -> bool,
    ) -> Result<Value, Vec<(Path, String)>> {
        let me = (manager.to_owned(), Op::Apply);
        let fields: BTreeMap<Path, Value> = leaves(applied).into_iter().filter(|(p, _)| scope(p)).collect();
        let mut conflicts = Vec::new();
        for (path, value) in &fields {
            if get(current, path) == Some(value) {
                continue;
            }
            for (other, op) in self.0.get(path).into_iter().flatten() {
                if (other, op) != (&me.0, &me.1) {
                    conflicts.push((path.clone(), other.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
        let mut result = current.clone();
        // What this manager applied before and leaves out now goes, unless someone else owns it too.
        let dropped: Vec<Path> = self
            .0
            .iter()
            .filter(|(path, managers)| scope(path) && managers.contains(&me) && !fields.contains_key(*path))
            .map(|(path, _)| path.clone())
            .collect();
        for path in dropped {
            let managers = self.0.get_mut(&path).unwrap();
            managers.remove(&me);
            if managers.is_empty() {
                self.0.remove(&path);
                remove(&mut result, &path);
            }
        }
        for (path, value) in fields {
            let changed = get(current, &path) != Some(&value);
            let managers = self.0.entry(path.clone()).or_default();
            if changed {
                managers.clear();
            }
            managers.insert(me.clone());
            set(&mut result, &path, value);
        }
        Ok(result)
    }

    /// `metadata.managedFields`: one entry per manager and operation (and subresource where `subresource` names
    /// one for a path).
    pub fn managed_fields(
        &self,
        api_version: &Value,
        subresource: &dyn Fn(&[String]) -> Option<&'static str>,
    ) -> Value {
        let mut entries: BTreeMap<(String, Op, Option<&'static str>), Value> = BTreeMap::new();
        for (path, managers) in &self.0 {
            for (manager, op) in managers {
                let fields = entries.entry((manager.clone(), *op, subresource(path))).or_insert_with(|| json!({}));
                let mut at = fields;
                for k in path {
                    at = at.as_object_mut().unwrap().entry(format!("f:{k}")).or_insert_with(|| json!({}));
                }
            }
        }
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|((manager, op, sub), fields)| {
                let mut entry = json!({
                    "manager": manager,
                    "operation": if op == Op::Apply { "Apply" } else { "Update" },
                    "apiVersion": api_version,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                });
                if let Some(sub) = sub {
                    entry["subresource"] = json!(sub);
                }
                entry
            })
            .collect();
        Value::Array(entries)
    }

    /// Whether nothing is owned.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
