//! Server-side apply of the manifests' objects, in order, with field manager `lab` and force; reports per object
//! whether the cluster changed.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};

use super::error::ClusterError;
use super::{Cluster, FIELD_MANAGER};

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: String,
    pub name: String,
    /// The object was created or its content changed.
    pub changed: bool,
    /// The object did not exist before.
    pub created: bool,
}

/// Pure: (changed, created) from the object before the apply (None = absent) and the apply's result. Changed means
/// different content, not a new resourceVersion: a real API server rewrites the time of the manager's
/// managedFields entry on a re-apply of identical content in a later second, and that write bumps the
/// resourceVersion (kubernetes/kubernetes#121404). Status is left out too: controllers write it meanwhile.
pub(super) fn outcome(before: Option<&DynamicObject>, after: &DynamicObject) -> (bool, bool) {
    match before {
        None => (true, true),
        Some(before) => (content(before) != content(after), false),
    }
}

/// What an apply can change: the object without status and the server's bookkeeping.
fn content(object: &DynamicObject) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("status");
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
        for noise in ["managedFields", "resourceVersion", "generation"] {
            metadata.remove(noise);
        }
    }
    value
}

/// Pure: the object's kind and name, and the namespace it is to be applied in (None for cluster-scoped kinds).
/// Objects naming another namespace are refused rather than silently moved.
pub(super) fn placement(
    object: &DynamicObject,
    namespaced: bool,
    namespace: &str,
) -> Result<(GroupVersionKind, String), ClusterError> {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_else(|| "object".to_string());
    let name = object.metadata.name.clone().unwrap_or_default();
    let invalid = |problem: String| ClusterError::InvalidObject {
        kind: kind.clone(),
        name: name.clone(),
        problem,
    };
    let types = object
        .types
        .as_ref()
        .ok_or_else(|| invalid("it has no apiVersion and kind".to_string()))?;
    if name.is_empty() {
        return Err(invalid("it has no metadata.name".to_string()));
    }
    let gvk = GroupVersionKind::try_from(types).map_err(|e| invalid(format!("bad apiVersion: {e}")))?;
    if namespaced {
        if let Some(own) = object.metadata.namespace.as_deref()
            && own != namespace
        {
            return Err(invalid(format!(
                "it names namespace {own} but lab applies to namespace {namespace}; remove metadata.namespace or make \
                 it match --namespace"
            )));
        }
    } else if gvk.group.is_empty() && gvk.kind == "Namespace" && name != namespace {
        return Err(invalid(format!(
            "the manifests create namespace {name} but lab applies to namespace {namespace}; make them match"
        )));
    }
    Ok((gvk, name))
}

impl Cluster {
    /// Applies `objects` in order into `namespace` (server-side apply, field manager `lab`, force) and stops at the
    /// first failure.
    pub async fn apply(&self, namespace: &str, objects: &[DynamicObject]) -> Result<Vec<Applied>, ClusterError> {
        let mut applied = Vec::with_capacity(objects.len());
        for object in objects {
            let done = self.apply_one(namespace, object).await?;
            // Half the manifests applied: the next run applies the rest.
            crate::interrupt::checkpoint(&format!("apply manifests: {}/{} applied", done.kind, done.name)).await;
            applied.push(done);
        }
        Ok(applied)
    }

    async fn apply_one(&self, namespace: &str, object: &DynamicObject) -> Result<Applied, ClusterError> {
        let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        // Placement is checked twice: the cheap checks before discovery, the namespace check once scope is known.
        let (gvk, name) = placement(object, false, namespace)?;
        let (resource, capabilities) = self.resolve(&gvk, &name).await?;
        let namespaced = capabilities.scope == Scope::Namespaced;
        placement(object, namespaced, namespace)?;

        // `constrain` is a no-op for cluster-scoped kinds.
        let api =
            Api::<DynamicObject>::dynamic(self.client.clone(), &resource, &capabilities.scope).constrain(namespace);
        let mut object = object.clone();
        if namespaced {
            object.metadata.namespace = Some(namespace.to_string());
        }
        let apply_error = |source: kube::Error| match source {
            kube::Error::Api(_) => ClusterError::Apply {
                kind: kind.clone(),
                name: name.clone(),
                source,
            },
            other => self.fail(format!("applying {kind} {name}"), other),
        };
        let before = api.get_opt(&name).await.map_err(apply_error)?;
        let after = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(apply_error)?;
        let (changed, created) = outcome(before.as_ref(), &after);
        tracing::debug!(kind, name, changed, created, "applied");
        Ok(Applied {
            kind,
            name,
            changed,
            created,
        })
    }

    /// The stored `spec.podManagementPolicy` of a StatefulSet (the server defaults it to OrderedReady); None when
    /// there is no such StatefulSet. The field cannot change once set, so `lab up` checks it before applying.
    pub async fn statefulset_pod_management_policy(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ClusterError> {
        let found = Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading StatefulSet {namespace}/{name}"), e))?;
        Ok(found.map(|set| {
            set.spec
                .and_then(|spec| spec.pod_management_policy)
                .unwrap_or_else(|| "OrderedReady".to_string())
        }))
    }

    /// `pinned_kind` once per kind for the life of this `Cluster`.
    async fn resolve(
        &self,
        gvk: &GroupVersionKind,
        name: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ClusterError> {
        if let Some(found) = self.kinds.lock().expect("kind cache lock poisoned").get(gvk) {
            return Ok(found.clone());
        }
        let found = pinned_kind(&self.client, gvk).await.map_err(|error| match error {
            kube::Error::Api(status) if status.is_not_found() => ClusterError::InvalidObject {
                kind: gvk.kind.clone(),
                name: name.to_string(),
                problem: format!("the cluster does not serve API {}", api_version(gvk)),
            },
            kube::Error::Discovery(discovery) => ClusterError::InvalidObject {
                kind: gvk.kind.clone(),
                name: name.to_string(),
                problem: format!(
                    "the cluster does not serve kind {} in API {}: {discovery}",
                    gvk.kind,
                    api_version(gvk)
                ),
            },
            other => self.fail(format!("looking up kind {} {}", api_version(gvk), gvk.kind), other),
        })?;
        self.kinds
            .lock()
            .expect("kind cache lock poisoned")
            .insert(gvk.clone(), found.clone());
        Ok(found)
    }
}

fn api_version(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        gvk.version.clone()
    } else {
        format!("{}/{}", gvk.group, gvk.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).expect("valid object JSON")
    }

    fn stored(resource_version: &str, time: &str, replicas: u32, ready: u32) -> DynamicObject {
        object(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {
                "name": "mysql", "namespace": "database", "uid": "u1", "resourceVersion": resource_version,
                "generation": replicas,
                "managedFields": [{ "manager": "lab", "operation": "Apply", "apiVersion": "apps/v1", "time": time,
                                    "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": { "f:replicas": {} } } }]
            },
            "spec": { "replicas": replicas },
            "status": { "readyReplicas": ready }
        }))
    }

    #[test]
    fn changed_only_when_created_or_the_content_differs() {
        let before = stored("12", "2026-01-01T10:00:00Z", 2, 1);
        assert_eq!(outcome(None, &before), (true, true));
        // A re-apply in a later second: new managedFields time and resourceVersion, same content.
        let reapplied = stored("15", "2026-01-01T10:00:01Z", 2, 1);
        assert_eq!(outcome(Some(&before), &reapplied), (false, false));
        // The controller updated the status meanwhile: still not lab's change.
        let status_moved = stored("16", "2026-01-01T10:00:01Z", 2, 2);
        assert_eq!(outcome(Some(&before), &status_moved), (false, false));
        let scaled = stored("17", "2026-01-01T10:00:02Z", 3, 2);
        assert_eq!(outcome(Some(&before), &scaled), (true, false));
    }

    #[test]
    fn placement_takes_kind_and_name_and_keeps_the_namespace_consistent() {
        let service = object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mysql-primary"}}));
        let (gvk, name) = placement(&service, true, "database").expect("valid");
        assert_eq!(
            (
                gvk.group.as_str(),
                gvk.version.as_str(),
                gvk.kind.as_str(),
                name.as_str()
            ),
            ("", "v1", "Service", "mysql-primary")
        );

        let sts = object(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                                "metadata": {"name": "mysql", "namespace": "other"}}));
        let error = placement(&sts, true, "database").expect_err("namespace mismatch");
        assert_eq!(
            error.to_string(),
            "StatefulSet \"mysql\" is invalid: it names namespace other but lab applies to namespace database; remove \
             metadata.namespace or make it match --namespace"
        );

        let namespace = object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}));
        let error = placement(&namespace, false, "database").expect_err("other namespace");
        assert_eq!(
            error.to_string(),
            "Namespace \"lab\" is invalid: the manifests create namespace lab but lab applies to namespace database; \
             make them match"
        );
    }

    #[test]
    fn objects_without_type_or_name_are_refused() {
        let nameless = object(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {}}));
        assert_eq!(
            placement(&nameless, true, "database").expect_err("no name").to_string(),
            "Secret \"\" is invalid: it has no metadata.name"
        );
        let untyped = object(json!({"metadata": {"name": "x"}}));
        assert_eq!(
            placement(&untyped, true, "database").expect_err("no type").to_string(),
            "object \"x\" is invalid: it has no apiVersion and kind"
        );
    }
}
