//! `metadata.managedFields`, as a real API server writes them: one entry per (manager, operation, subresource),
//! each with `apiVersion`, `time` (RFC 3339, seconds), `fieldsType: FieldsV1` and the set of fields in `fieldsV1`.
//!
//! The time is what makes a re-apply of identical content a write: an Apply entry gets the current time on every
//! apply, so an apply in a later second changes the object and bumps its resourceVersion, as observed on real
//! servers (kubernetes/kubernetes#121404: "everytime the write is in a new second, it writes"). Update entries are
//! only touched when the object's content changes (kubernetes/kubernetes#81673).

use serde_json::{Map, Value, json};

use crate::store::{metadata_mut, now_rfc3339};

/// Who writes, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: &'static str,
    /// "status" for writes to the status subresource.
    pub subresource: Option<&'static str>,
}

impl Writer {
    pub fn apply(manager: &str, status: bool) -> Writer {
        Writer {
            manager: manager.to_string(),
            operation: "Apply",
            subresource: status.then_some("status"),
        }
    }

    pub fn update(manager: &str, status: bool) -> Writer {
        Writer {
            manager: manager.to_string(),
            operation: "Update",
            subresource: status.then_some("status"),
        }
    }

    /// The component of a real cluster that writes `resource` objects the simulator creates or updates itself.
    pub fn internal(resource: &str, status_only: bool) -> Writer {
        let manager = match resource {
            "nodes" => "kubelet",
            "pods" if status_only => "kubelet",
            "namespaces" | "services" if !status_only => "kube-apiserver",
            _ => "kube-controller-manager",
        };
        Writer::update(manager, status_only)
    }
}

/// Metadata fields the server owns: never part of a field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The FieldsV1 set of the fields `object` sets (`f:<field>`; list items named by `name` as `k:{"name":...}`).
pub fn fields_v1(object: &Value) -> Value {
    let Value::Object(fields) = object else {
        return json!({});
    };
    let mut set = Map::new();
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let mut metadata = value.clone();
                if let Some(fields) = metadata.as_object_mut() {
                    fields.retain(|field, _| !SERVER_METADATA.contains(&field.as_str()));
                    if !fields.is_empty() {
                        set.insert("f:metadata".into(), members(&metadata));
                    }
                }
            }
            _ => {
                set.insert(format!("f:{key}"), members(value));
            }
        }
    }
    Value::Object(set)
}

fn members(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, child)| (format!("f:{key}"), members(child)))
                .collect(),
        ),
        Value::Array(items)
            if !items.is_empty() && items.iter().all(|item| item.get("name").is_some_and(Value::is_string)) =>
        {
            Value::Object(
                items
                    .iter()
                    .map(|item| {
                        let key = format!("k:{}", json!({ "name": item["name"] }));
                        let mut element = members(item);
                        if let Some(fields) = element.as_object_mut() {
                            fields.insert(".".into(), json!({}));
                        }
                        (key, element)
                    })
                    .collect(),
            )
        }
        // Scalars and atomic lists are leaves.
        _ => json!({}),
    }
}

/// Deep union of two field sets.
fn union(into: &mut Value, other: &Value) {
    if let (Value::Object(into), Value::Object(other)) = (into, other) {
        for (key, value) in other {
            union(into.entry(key.clone()).or_insert_with(|| json!({})), value);
        }
    }
}

/// The object without what differs between writes of the same content: managedFields and resourceVersion.
pub fn content(object: &Value) -> Value {
    let mut content = object.clone();
    let metadata = metadata_mut(&mut content);
    metadata.remove("managedFields");
    metadata.remove("resourceVersion");
    content
}

/// Records that `writer` set `fields` (a field set from [`fields_v1`]) on `object`, now. An Apply entry is
/// replaced (it holds what the manager applied last); an Update entry gains the fields.
pub fn record(object: &mut Value, writer: &Writer, fields: Value) {
    let api_version = object.get("apiVersion").cloned().unwrap_or_else(|| json!("v1"));
    let metadata = metadata_mut(object);
    let entries = metadata.entry("managedFields").or_insert_with(|| json!([]));
    if !entries.is_array() {
        *entries = json!([]);
    }
    let entries = entries.as_array_mut().expect("just made a list");
    let same = |entry: &Value| {
        entry.get("manager").and_then(Value::as_str) == Some(writer.manager.as_str())
            && entry.get("operation").and_then(Value::as_str) == Some(writer.operation)
            && entry.get("subresource").and_then(Value::as_str) == writer.subresource
    };
    let mut fields = fields;
    if writer.operation == "Update"
        && let Some(previous) = entries.iter().find(|entry| same(entry))
    {
        union(&mut fields, &previous["fieldsV1"]);
    }
    let mut entry = json!({
        "manager": writer.manager,
        "operation": writer.operation,
        "apiVersion": api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(subresource) = writer.subresource {
        entry["subresource"] = json!(subresource);
    }
    match entries.iter_mut().find(|entry| same(entry)) {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
}

/// After a write: keeps `current`'s entries, and records `writer` over `fields` if the content changed (Update) or
/// in any case (Apply: the entry's time moves on every apply).
pub fn after_write(current: &Value, updated: &mut Value, writer: &Writer, fields: Value) {
    match current.pointer("/metadata/managedFields") {
        Some(entries) => {
            metadata_mut(updated).insert("managedFields".into(), entries.clone());
        }
        None => {
            metadata_mut(updated).remove("managedFields");
        }
    }
    if writer.operation == "Apply" || content(current) != content(updated) {
        record(updated, writer, fields);
    }
}

/// The field set of what changed between two versions of an object: the fields whose value is new or different.
pub fn changed_fields(old: &Value, new: &Value) -> Value {
    let strip = |object: &Value| {
        let mut object = content(object);
        if let Some(fields) = object.as_object_mut() {
            fields.remove("apiVersion");
            fields.remove("kind");
        }
        metadata_mut(&mut object).retain(|field, _| !SERVER_METADATA.contains(&field.as_str()));
        object
    };
    difference(Some(&strip(old)), &strip(new)).unwrap_or_else(|| json!({}))
}

fn difference(old: Option<&Value>, new: &Value) -> Option<Value> {
    if old == Some(new) {
        return None;
    }
    match (old, new) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            let changed: Map<String, Value> = new
                .iter()
                .filter_map(|(key, value)| Some((format!("f:{key}"), difference(old.get(key), value)?)))
                .collect();
            (!changed.is_empty()).then_some(Value::Object(changed))
        }
        _ => Some(members(new)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_name_fields_and_keyed_list_items_but_not_server_metadata() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "mysql", "namespace": "db", "labels": { "app": "mysql" } },
            "spec": { "replicas": 2, "template": { "spec": { "containers": [
                { "name": "mysql", "image": "mysql:8.4", "args": ["--x"] }
            ] } } }
        });
        assert_eq!(
            fields_v1(&object),
            json!({
                "f:metadata": { "f:labels": { "f:app": {} } },
                "f:spec": { "f:replicas": {}, "f:template": { "f:spec": { "f:containers": {
                    "k:{\"name\":\"mysql\"}": { ".": {}, "f:name": {}, "f:image": {}, "f:args": {} }
                } } } }
            })
        );
    }

    #[test]
    fn apply_entries_move_on_every_apply_and_update_entries_only_on_change() {
        let current =
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "k": "v" } });
        let mut applied = current.clone();
        after_write(
            &current,
            &mut applied,
            &Writer::apply("lab", false),
            fields_v1(&current),
        );
        let entries = applied["metadata"]["managedFields"].as_array().expect("entries");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "lab");
        assert_eq!(entries[0]["operation"], "Apply");
        assert_eq!(entries[0]["apiVersion"], "v1");
        assert_eq!(entries[0]["fieldsType"], "FieldsV1");
        assert_eq!(entries[0]["fieldsV1"], json!({ "f:data": { "f:k": {} } }));
        assert!(entries[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(entries[0].get("subresource").is_none());

        let mut unchanged = applied.clone();
        after_write(&applied, &mut unchanged, &Writer::update("kubectl", false), json!({}));
        assert_eq!(unchanged, applied, "a no-op update records nothing");

        let mut labelled = applied.clone();
        labelled["metadata"]["labels"] = json!({ "role": "x" });
        after_write(
            &applied,
            &mut labelled,
            &Writer::update("kubectl", false),
            json!({ "f:metadata": { "f:labels": { "f:role": {} } } }),
        );
        let entries = labelled["metadata"]["managedFields"].as_array().expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[1]["manager"].as_str(), entries[1]["operation"].as_str()),
            (Some("kubectl"), Some("Update"))
        );
    }

    #[test]
    fn changed_fields_are_the_new_and_different_ones() {
        let old = json!({ "metadata": { "name": "p" }, "spec": { "a": 1 }, "status": { "phase": "Pending" } });
        let new = json!({ "metadata": { "name": "p" }, "spec": { "a": 1 }, "status": { "phase": "Running", "podIP": "10.0.0.1" } });
        assert_eq!(
            changed_fields(&old, &new),
            json!({ "f:status": { "f:phase": {}, "f:podIP": {} } })
        );
        assert_eq!(
            changed_fields(
                &new,
                &json!({ "metadata": { "name": "p", "labels": { "a": "b" } }, "spec": { "a": 1 }, "status": new["status"] })
            ),
            json!({ "f:metadata": { "f:labels": { "f:a": {} } } })
        );
    }
}
