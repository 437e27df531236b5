//! ControllerRevisions of a StatefulSet, as the real controller keeps them (pkg/controller/statefulset
//! `getStatefulSetRevisions` and `truncateHistory`, pkg/controller/history): one revision per distinct pod
//! template, named `<sts>-<hash>` like the pods' `controller-revision-hash` label, numbered in the order the
//! templates were last taken; going back to an earlier template renumbers its revision instead of adding one
//! (what `kubectl rollout undo` relies on), and revisions beyond `revisionHistoryLimit` that no pod runs go.

use std::collections::HashSet;

use serde_json::{Value, json};

/// The label a ControllerRevision carries with its hash (`history.ControllerRevisionHashLabel`).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// `spec.revisionHistoryLimit` when unset.
pub const DEFAULT_HISTORY_LIMIT: usize = 10;

/// A stored revision: its name and number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub name: String,
    pub revision: i64,
}

/// What the update revision (the current template's) needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// It is the newest revision already.
    Keep,
    /// No revision holds this template: create one with this number.
    Create(i64),
    /// An older revision holds it (a rollback): it becomes the newest, with this number.
    Renumber(i64),
}

fn sorted(revisions: &[Known]) -> Vec<Known> {
    let mut sorted = revisions.to_vec();
    sorted.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| a.name.cmp(&b.name)));
    sorted
}

/// What to do for the template whose revision is named `wanted`.
pub fn update_step(revisions: &[Known], wanted: &str) -> Step {
    let sorted = sorted(revisions);
    let next = sorted.last().map_or(1, |newest| newest.revision + 1);
    match sorted.iter().position(|known| known.name == wanted) {
        Some(index) if index + 1 == sorted.len() => Step::Keep,
        Some(_) => Step::Renumber(next),
        None => Step::Create(next),
    }
}

/// The revisions to delete: the oldest of those no pod runs and that are neither current nor update revision,
/// beyond `limit`.
pub fn to_prune(revisions: &[Known], live: &HashSet<String>, limit: usize) -> Vec<String> {
    let history: Vec<Known> = sorted(revisions)
        .into_iter()
        .filter(|known| !live.contains(&known.name))
        .collect();
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).map(|known| known.name).collect()
}

/// The template as the API server's typed encoding writes it, which is what the controller stores and what
/// kubectl re-encodes to compare: an ObjectMeta always has `creationTimestamp` (null in a template) and a
/// container always has `resources` (`{}` when empty). Revisions are hashed from this form, so a template that
/// came back through `kubectl rollout undo` is the same revision.
pub fn normalized(template: &Value) -> Value {
    let mut template = template.clone();
    if !template.is_object() {
        return template;
    }
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    let metadata = template["metadata"].as_object_mut().expect("just made an object");
    metadata.entry("creationTimestamp").or_insert(Value::Null);
    for list in ["containers", "initContainers"] {
        if let Some(containers) = template
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        {
            for container in containers.iter_mut().filter(|container| container.is_object()) {
                if container.get("resources").is_none_or(Value::is_null) {
                    container["resources"] = json!({});
                }
            }
        }
    }
    template
}

/// The revision's data: the template as a strategic merge patch that replaces the whole template, byte for byte
/// what `kubectl rollout undo` compares with the StatefulSet's own template and patches back.
pub fn data(template: &Value) -> Value {
    let mut template = normalized(template);
    if let Some(fields) = template.as_object_mut() {
        fields.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// The ControllerRevision `name` (`<sts>-<hash>`) with number `revision` for the StatefulSet's template.
pub fn object(sts: &Value, name: &str, revision: i64) -> Value {
    let sts_name = sts
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hash = name
        .strip_prefix(sts_name)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(name);
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels[HASH_LABEL] = json!(hash);
    let mut metadata = json!({
        "name": name,
        "namespace": sts.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": sts_name,
            "uid": sts.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    // The controller copies the StatefulSet's annotations (a `kubernetes.io/change-cause` shows in the history).
    if let Some(annotations) = sts.pointer("/metadata/annotations").filter(|value| value.is_object()) {
        metadata["annotations"] = annotations.clone();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": metadata,
        "data": data(&template),
        "revision": revision,
    })
}

/// A stored ControllerRevision's name and number.
pub fn known(object: &Value) -> Known {
    Known {
        name: object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        revision: object.get("revision").and_then(Value::as_i64).unwrap_or_default(),
    }
}

/// The StatefulSet's `spec.revisionHistoryLimit`.
pub fn history_limit(sts: &Value) -> usize {
    sts.pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_HISTORY_LIMIT, |limit| limit as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, revision: i64) -> Known {
        Known {
            name: name.into(),
            revision,
        }
    }

    #[test]
    fn a_new_template_gets_the_next_number_and_a_rollback_renumbers() {
        assert_eq!(update_step(&[], "web-a"), Step::Create(1));
        let history = [known("web-a", 1), known("web-b", 2)];
        assert_eq!(update_step(&history, "web-b"), Step::Keep);
        assert_eq!(update_step(&history, "web-c"), Step::Create(3));
        // Back to the first template: its revision becomes number 3, no new revision.
        assert_eq!(update_step(&history, "web-a"), Step::Renumber(3));
        assert_eq!(
            update_step(&[known("web-b", 2), known("web-a", 3)], "web-a"),
            Step::Keep
        );
    }

    #[test]
    fn pruning_keeps_the_limit_and_every_live_revision() {
        let history = [known("r1", 1), known("r2", 2), known("r3", 3), known("r4", 4)];
        let live: HashSet<String> = ["r4".to_string(), "r1".to_string()].into();
        // r2 and r3 are history; with a limit of 1 the older one goes, live r1 stays although it is oldest.
        assert_eq!(to_prune(&history, &live, 1), vec!["r2".to_string()]);
        assert_eq!(to_prune(&history, &live, 0), vec!["r2".to_string(), "r3".to_string()]);
        assert!(to_prune(&history, &live, 2).is_empty());
    }

    #[test]
    fn the_revision_holds_the_template_as_a_replacing_patch() {
        let sts = json!({
            "metadata": {
                "name": "mysql", "namespace": "database", "uid": "u1",
                "annotations": { "kubernetes.io/change-cause": "image 8.0" },
            },
            "spec": { "template": {
                "metadata": { "labels": { "app": "mysql" } },
                "spec": { "containers": [{ "name": "mysql", "image": "mysql:8.0" }] },
            } },
        });
        let revision = object(&sts, "mysql-7b9d5c4f8x", 2);
        assert_eq!(revision["revision"], 2);
        assert_eq!(revision["metadata"]["labels"]["app"], "mysql");
        assert_eq!(revision["metadata"]["labels"][HASH_LABEL], "7b9d5c4f8x");
        assert_eq!(revision["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(revision["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            revision["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "image 8.0"
        );
        assert_eq!(revision["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            revision["data"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "mysql:8.0"
        );
        // As a real server encodes a template: creationTimestamp null, empty resources.
        assert!(revision["data"]["spec"]["template"]["metadata"]["creationTimestamp"].is_null());
        assert!(
            revision["data"]["spec"]["template"]["metadata"]
                .as_object()
                .unwrap()
                .contains_key("creationTimestamp")
        );
        assert_eq!(
            revision["data"]["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({})
        );
    }

    #[test]
    fn a_template_and_its_encoded_form_are_one_revision() {
        let template = json!({ "spec": { "containers": [{ "name": "a", "image": "x" }] } });
        let encoded = normalized(&template);
        assert_ne!(template, encoded);
        assert_eq!(normalized(&encoded), encoded);
        let with_resources = json!({ "spec": { "containers": [{ "name": "a", "image": "x", "resources": { "limits": { "cpu": "1" } } }] } });
        assert_eq!(
            normalized(&with_resources)["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }
}
