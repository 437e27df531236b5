//! Small reads and writes on single objects: Secret values, a pod label, a StatefulSet annotation, log tails.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, LogParams, Patch, PatchParams};
use serde_json::json;

use super::Cluster;
use super::assess::{Circumstances, PodProgress, assess_pod};
use super::error::ClusterError;
use crate::secret::SecretString;

/// Kinds whose annotations `lab` reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotatedKind {
    StatefulSet,
    PersistentVolumeClaim,
}

impl AnnotatedKind {
    fn resource(self) -> ApiResource {
        match self {
            AnnotatedKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            AnnotatedKind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
        }
    }
}

/// A field manager of its own per label or annotation key: a server-side apply by manager `lab` with only that
/// field would drop every other field `lab` applied, and one manager for several keys would drop the others.
fn field_manager(what: &str, key: &str) -> String {
    format!("lab/{what}/{key}")
}

/// Pure: Secret `data` (base64 already decoded by k8s-openapi) as secret strings. Values are never part of errors.
pub(super) fn secret_strings(namespace: &str, secret: &Secret) -> Result<BTreeMap<String, SecretString>, ClusterError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut values = BTreeMap::new();
    for (key, bytes) in secret.data.iter().flatten() {
        let text = String::from_utf8(bytes.0.clone()).map_err(|_| ClusterError::InvalidObject {
            kind: "Secret".to_string(),
            name: format!("{namespace}/{name}"),
            problem: format!("the value of key {key} is not UTF-8 text; store the password as plain text"),
        })?;
        values.insert(key.clone(), SecretString::new(text));
    }
    // Only a server that has not converted stringData yet (none should) leaves values there.
    for (key, text) in secret.string_data.iter().flatten() {
        values
            .entry(key.clone())
            .or_insert_with(|| SecretString::new(text.clone()));
    }
    Ok(values)
}

impl Cluster {
    /// Every key of the Secret, decoded. The values are never logged.
    pub async fn secret_values(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, SecretString>, ClusterError> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading Secret {namespace}/{name}"), e))?
            .ok_or_else(|| ClusterError::NotFound {
                what: format!("Secret {namespace}/{name}"),
                fix: "run \"lab up\" to apply the manifests that create it".to_string(),
            })?;
        secret_strings(namespace, &secret)
    }

    /// [`Cluster::secret_values`], or `None` when the Secret does not exist.
    pub async fn secret_values_if_present(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, SecretString>>, ClusterError> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading Secret {namespace}/{name}"), e))?;
        secret.map(|secret| secret_strings(namespace, &secret)).transpose()
    }

    /// Whether the PersistentVolumeClaim exists (bound or not).
    pub async fn pvc_exists(&self, namespace: &str, name: &str) -> Result<bool, ClusterError> {
        let found = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading PersistentVolumeClaim {namespace}/{name}"), e))?;
        Ok(found.is_some())
    }

    /// Pods of StatefulSet `statefulset` at ordinals `replicas` and above, as (name, uid): the ones a scale-down is
    /// taking away.
    pub async fn pods_beyond(
        &self,
        namespace: &str,
        statefulset: &str,
        replicas: u32,
    ) -> Result<Vec<(String, String)>, ClusterError> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .list(&Default::default())
            .await
            .map_err(|e| self.fail(format!("listing pods in {namespace}"), e))?;
        Ok(pods
            .items
            .iter()
            .filter(|pod| {
                let owned = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "StatefulSet" && o.name == statefulset);
                let ordinal = pod
                    .metadata
                    .name
                    .as_deref()
                    .and_then(|name| name.strip_prefix(statefulset)?.strip_prefix('-')?.parse::<u32>().ok());
                owned && ordinal.is_some_and(|ordinal| ordinal >= replicas)
            })
            .map(|pod| {
                (
                    pod.metadata.name.clone().unwrap_or_default(),
                    pod.metadata.uid.clone().unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Sets one label on a pod; false when it already had that value (nothing sent).
    pub async fn set_pod_label(
        &self,
        namespace: &str,
        pod: &str,
        key: &str,
        value: &str,
    ) -> Result<bool, ClusterError> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let current = api
            .get_opt(pod)
            .await
            .map_err(|e| self.fail(format!("reading pod {namespace}/{pod}"), e))?
            .ok_or_else(|| pod_not_found(namespace, pod))?;
        if current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
            == Some(value)
        {
            return Ok(false);
        }
        let patch = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": {key: value}}});
        api.patch(
            pod,
            &PatchParams::apply(&field_manager("label", key)).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| self.fail(format!("labelling pod {namespace}/{pod} with {key}={value}"), e))?;
        Ok(true)
    }

    /// One annotation of an object; `None` when the object or the annotation is absent.
    pub async fn annotation(
        &self,
        namespace: &str,
        kind: AnnotatedKind,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, ClusterError> {
        let resource = kind.resource();
        let found = Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &resource)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading {} {namespace}/{name}", resource.kind), e))?;
        Ok(found
            .and_then(|o| o.metadata.annotations)
            .and_then(|mut a| a.remove(key)))
    }

    /// Sets one annotation; false when it already had that value (nothing sent).
    pub async fn set_annotation(
        &self,
        namespace: &str,
        kind: AnnotatedKind,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<bool, ClusterError> {
        let resource = kind.resource();
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &resource);
        let current = api
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading {} {namespace}/{name}", resource.kind), e))?
            .ok_or_else(|| ClusterError::NotFound {
                what: format!("{} {namespace}/{name}", resource.kind),
                fix: "run \"lab up\" to create it".to_string(),
            })?;
        if current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
            == Some(value)
        {
            return Ok(false);
        }
        let patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": name, "annotations": {key: value}}
        });
        api.patch(
            name,
            &PatchParams::apply(&field_manager("annotation", key)).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| self.fail(format!("annotating {} {namespace}/{name} with {key}", resource.kind), e))?;
        Ok(true)
    }

    /// [`Cluster::annotation`] of a PersistentVolumeClaim.
    pub async fn pvc_annotation(&self, namespace: &str, pvc: &str, key: &str) -> Result<Option<String>, ClusterError> {
        self.annotation(namespace, AnnotatedKind::PersistentVolumeClaim, pvc, key)
            .await
    }

    /// [`Cluster::set_annotation`] of a PersistentVolumeClaim.
    pub async fn set_pvc_annotation(
        &self,
        namespace: &str,
        pvc: &str,
        key: &str,
        value: &str,
    ) -> Result<bool, ClusterError> {
        self.set_annotation(namespace, AnnotatedKind::PersistentVolumeClaim, pvc, key, value)
            .await
    }

    /// `spec.replicas` of a StatefulSet; `None` when it does not exist.
    pub async fn statefulset_replicas(&self, namespace: &str, name: &str) -> Result<Option<u32>, ClusterError> {
        let found = Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading StatefulSet {namespace}/{name}"), e))?;
        Ok(found.map(|set| {
            let replicas = set.spec.and_then(|s| s.replicas).unwrap_or(1);
            u32::try_from(replicas).unwrap_or(0)
        }))
    }

    /// The image of `container` in a StatefulSet's pod template; `None` when either does not exist.
    pub async fn statefulset_image(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<Option<String>, ClusterError> {
        let found = Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading StatefulSet {namespace}/{name}"), e))?;
        Ok(found
            .and_then(|set| set.spec)
            .and_then(|spec| spec.template.spec)
            .and_then(|pod| pod.containers.into_iter().find(|c| c.name == container))
            .and_then(|c| c.image))
    }

    /// Whether the pod exists and has condition Ready=True. Waits for nothing.
    pub async fn pod_is_ready(&self, namespace: &str, pod: &str) -> Result<bool, ClusterError> {
        let found = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get_opt(pod)
            .await
            .map_err(|e| self.fail(format!("reading pod {namespace}/{pod}"), e))?;
        Ok(found.is_some_and(|p| assess_pod(&p, &[], &[], &Circumstances::default()) == PodProgress::Ready))
    }

    /// The last `lines` lines of a container's log; `previous` reads the run before the last restart.
    pub async fn pod_log_tail(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        lines: i64,
        previous: bool,
    ) -> Result<String, ClusterError> {
        let params = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(lines),
            previous,
            ..LogParams::default()
        };
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .logs(pod, &params)
            .await
            .map_err(|e| self.fail(format!("reading the log of {namespace}/{pod} container {container}"), e))
    }
}

fn pod_not_found(namespace: &str, pod: &str) -> ClusterError {
    ClusterError::NotFound {
        what: format!("pod {namespace}/{pod}"),
        fix: "run \"lab up\" to create the lab, or check the name with \"kubectl get pods\"".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_is_decoded_and_never_shown() {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mysql-secret", "namespace": "database"},
            "data": {"MYSQL_ROOT_PASSWORD": "cm9vdHBhc3M=", "REPLICATION_USER": "cmVwbA=="}
        }))
        .expect("valid Secret JSON");
        let values = secret_strings("database", &secret).expect("UTF-8 values");
        assert_eq!(values["MYSQL_ROOT_PASSWORD"].expose(), "rootpass");
        assert_eq!(values["REPLICATION_USER"].expose(), "repl");
        assert_eq!(
            format!("{values:?}"),
            "{\"MYSQL_ROOT_PASSWORD\": [redacted], \"REPLICATION_USER\": [redacted]}"
        );
    }

    #[test]
    fn binary_secret_value_is_refused_without_printing_it() {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "mysql-secret"},
            "data": {"MYSQL_ROOT_PASSWORD": "/w=="}
        }))
        .expect("valid Secret JSON");
        let error = secret_strings("database", &secret).expect_err("0xff is not UTF-8");
        assert_eq!(
            error.to_string(),
            "Secret \"database/mysql-secret\" is invalid: the value of key MYSQL_ROOT_PASSWORD is not UTF-8 text; \
             store the password as plain text"
        );
    }

    #[test]
    fn each_key_gets_its_own_field_manager() {
        assert_eq!(field_manager("label", "lab.dev/role"), "lab/label/lab.dev/role");
    }
}
