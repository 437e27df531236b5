//! Strategic merge patch (`application/strategic-merge-patch+json`), which `kubectl apply`, `kubectl patch` and
//! `kubectl set` send: a JSON merge patch where lists with a patch merge key (`containers` by `name`, `ports` by
//! `containerPort`) merge element by element, lists with the merge strategy of scalars take the union, and
//! the `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/` directives apply. The merge
//! keys and strategies are those of the served OpenAPI documents (`x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`).

use serde_json::{Map, Value};

use crate::openapi;
use crate::status::ApiError;

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `target`, an object whose schema is `schema` (`Null` when unknown: plain merge semantics).
pub fn apply(target: &mut Value, patch: &Value, schema: &Value) -> Result<(), ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
    };
    merge_map(target, patch, schema)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>, schema: &Value) -> Result<(), ApiError> {
    let schema = openapi::resolve(schema);
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(ApiError::bad_request(format!("unknown patch type {other:?} in a map"))),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let fields = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if key == "$retainKeys" || key.starts_with(SET_ORDER) || key.starts_with(DELETE_FROM_LIST) {
            continue;
        }
        let field_schema = property(schema, key);
        match value {
            Value::Null => {
                fields.remove(key);
            }
            Value::Object(child) => {
                let current = fields.entry(key.clone()).or_insert(Value::Null);
                merge_map(current, child, field_schema)?;
                if current.is_null() {
                    fields.remove(key);
                }
            }
            Value::Array(items) => {
                let current = fields.remove(key).unwrap_or(Value::Null);
                fields.insert(key.clone(), merge_list(current, items, field_schema)?);
            }
            scalar => {
                fields.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_FROM_LIST)
            && let (Some(Value::Array(current)), Some(removed)) = (fields.get_mut(list), value.as_array())
        {
            current.retain(|item| !removed.contains(item));
        }
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(SET_ORDER)
            && let (Some(Value::Array(current)), Some(order)) = (fields.get_mut(list), value.as_array())
        {
            let merge_key = openapi::resolve(property(schema, list))
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
                .map(str::to_string);
            reorder(current, order, merge_key.as_deref());
        }
    }
    if let Some(Value::Array(retained)) = patch.get("$retainKeys") {
        fields.retain(|key, _| retained.iter().any(|name| name.as_str() == Some(key)));
    }
    Ok(())
}

/// A property's schema: from the properties, else the value schema of a map (borrowed: every schema lives in the
/// built documents).
fn property<'a>(schema: &'a Value, key: &str) -> &'a Value {
    static NONE: Value = Value::Null;
    schema
        .get("properties")
        .and_then(|properties| properties.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|values| values.is_object()))
        .unwrap_or(&NONE)
}

fn merge_list(current: Value, patch: &[Value], schema: &Value) -> Result<Value, ApiError> {
    let strategy = schema
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !strategy.split(',').any(|part| part == "merge") {
        return Ok(Value::Array(patch.to_vec()));
    }
    let mut items = match current {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let item_schema = schema.get("items").unwrap_or(&Value::Null);
    let Some(merge_key) = schema.get("x-kubernetes-patch-merge-key").and_then(Value::as_str) else {
        // A set of scalars: the union, in order.
        for value in patch {
            if !items.contains(value) {
                items.push(value.clone());
            }
        }
        return Ok(Value::Array(items));
    };
    if patch
        .iter()
        .any(|element| element.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let replaced = patch.iter().filter(|element| element.get("$patch").is_none()).cloned();
        return Ok(Value::Array(replaced.collect()));
    }
    for element in patch {
        let Value::Object(element) = element else {
            return Err(ApiError::bad_request(format!(
                "the list merged by {merge_key:?} holds something that is not an object: {element}"
            )));
        };
        let key = element.get(merge_key).ok_or_else(|| {
            ApiError::bad_request(format!(
                "map: {} does not contain declared merge key: {merge_key}",
                Value::Object(element.clone())
            ))
        })?;
        let position = items.iter().position(|item| item.get(merge_key) == Some(key));
        if element.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(position) = position {
                items.remove(position);
            }
            continue;
        }
        match position {
            Some(position) => merge_map(&mut items[position], element, item_schema)?,
            None => {
                let mut added = Value::Null;
                merge_map(&mut added, element, item_schema)?;
                items.push(added);
            }
        }
    }
    Ok(Value::Array(items))
}

/// The elements named in `order` (by merge key, or by value for scalars) in that order, then the others.
fn reorder(items: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    let identity = |item: &Value| match merge_key {
        Some(key) => item.get(key).cloned(),
        None => Some(item.clone()),
    };
    let rank = |item: &Value| {
        identity(item)
            .and_then(|id| {
                order.iter().position(|wanted| match merge_key {
                    Some(key) => wanted.get(key) == Some(&id),
                    None => *wanted == id,
                })
            })
            .unwrap_or(order.len())
    };
    items.sort_by_key(|item| rank(item));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::by_plural;

    fn statefulset_schema() -> Value {
        openapi::definition_schema(by_plural("statefulsets").unwrap())
            .cloned()
            .unwrap()
    }

    fn statefulset() -> Value {
        json!({
            "spec": { "template": { "spec": {
                "containers": [
                    { "name": "mysql", "image": "mysql:8.4", "ports": [{ "containerPort": 3306, "name": "mysql" }],
                      "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }] },
                    { "name": "sidecar", "image": "busybox" },
                ],
                "volumes": [{ "name": "data", "emptyDir": {} }],
            } } },
            "metadata": { "finalizers": ["a"] },
        })
    }

    /// What kubectl apply sent when only the image changed (captured with -v=8, trimmed).
    #[test]
    fn containers_merge_by_name_and_keep_what_the_patch_does_not_mention() {
        let mut object = statefulset();
        let patch = json!({ "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "mysql" }, { "name": "sidecar" }],
            "containers": [{ "name": "mysql", "image": "mysql:8.0" }],
        } } } });
        apply(&mut object, &patch, &statefulset_schema()).unwrap();
        let mysql = &object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(mysql["image"], "mysql:8.0");
        assert_eq!(mysql["ports"][0]["containerPort"], 3306);
        assert_eq!(mysql["env"].as_array().unwrap().len(), 2);
        assert_eq!(object["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
    }

    #[test]
    fn directives_delete_replace_reorder_and_retain() {
        let mut object = statefulset();
        let patch = json!({
            "metadata": { "finalizers": ["b"] },
            "spec": { "template": { "spec": {
                "$setElementOrder/containers": [{ "name": "sidecar" }, { "name": "mysql" }],
                "containers": [
                    { "name": "mysql", "env": [{ "name": "A", "$patch": "delete" }, { "name": "C", "value": "3" }] },
                    { "name": "new", "image": "x" },
                ],
                "volumes": [{ "name": "data", "$retainKeys": ["name", "configMap"], "configMap": { "name": "c" } }],
            } } },
        });
        apply(&mut object, &patch, &statefulset_schema()).unwrap();
        let spec = &object["spec"]["template"]["spec"];
        let names: Vec<&str> = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|container| container["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "mysql", "new"]);
        assert_eq!(
            spec["containers"][1]["env"],
            json!([{ "name": "B", "value": "2" }, { "name": "C", "value": "3" }])
        );
        assert_eq!(
            spec["volumes"],
            json!([{ "name": "data", "configMap": { "name": "c" } }])
        );
        assert_eq!(object["metadata"]["finalizers"], json!(["a", "b"]), "a set merges");

        let replace = json!({ "spec": { "template": { "spec": {
            "containers": [{ "$patch": "replace" }, { "name": "only", "image": "y" }],
        } } } });
        apply(&mut object, &replace, &statefulset_schema()).unwrap();
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "only", "image": "y" }])
        );
        // Lists without a merge strategy are replaced; null removes.
        let atomic = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "only", "args": ["x"] }] } } },
                             "metadata": { "finalizers": null } });
        apply(&mut object, &atomic, &statefulset_schema()).unwrap();
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["x"])
        );
        assert!(object["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn an_element_without_its_merge_key_is_refused() {
        let mut object = statefulset();
        let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "image": "x" }] } } } });
        let error = apply(&mut object, &patch, &statefulset_schema()).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(
            error.message.contains("does not contain declared merge key: name"),
            "{}",
            error.message
        );
    }
}
