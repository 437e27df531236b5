//! What the classroom demos do to a running lab: read a pod's identity (uid, claim, claim uid), delete a pod, scale
//! the StatefulSet, run a command in a pod.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::Api;
use kube::api::{AttachParams, DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::Cluster;
use super::error::ClusterError;

/// Who a pod is: the name stays, the uid changes with every re-creation, the claim (and its uid) stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub uid: String,
    pub ip: Option<String>,
    /// The claim mounted as the `data` volume (the StatefulSet's volumeClaimTemplate), when there is one.
    pub claim: Option<ClaimIdentity>,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimIdentity {
    pub name: String,
    pub uid: String,
    pub phase: String,
}

/// What a command run in a pod printed, and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Pure: the claim a pod mounts (the first persistentVolumeClaim volume).
pub fn claim_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
}

impl Cluster {
    /// The pod's identity; `None` when the pod does not exist.
    pub async fn pod_identity(&self, namespace: &str, pod: &str) -> Result<Option<PodIdentity>, ClusterError> {
        let found = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get_opt(pod)
            .await
            .map_err(|e| self.fail(format!("reading pod {namespace}/{pod}"), e))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let claim = match claim_name(&found) {
            Some(name) => self.claim_identity(namespace, &name).await?,
            None => None,
        };
        Ok(Some(PodIdentity {
            uid: found.metadata.uid.clone().unwrap_or_default(),
            ip: found.status.as_ref().and_then(|s| s.pod_ip.clone()),
            claim,
            labels: found.metadata.labels.clone().unwrap_or_default(),
        }))
    }

    /// A claim's uid and phase; `None` when it does not exist.
    pub async fn claim_identity(&self, namespace: &str, name: &str) -> Result<Option<ClaimIdentity>, ClusterError> {
        let found = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading PersistentVolumeClaim {namespace}/{name}"), e))?;
        Ok(found.map(|claim| ClaimIdentity {
            name: name.to_string(),
            uid: claim.metadata.uid.clone().unwrap_or_default(),
            phase: claim.status.and_then(|s| s.phase).unwrap_or_default(),
        }))
    }

    /// Deletes a pod with its grace period, as `kubectl delete pod` does. The StatefulSet re-creates it.
    pub async fn delete_pod(&self, namespace: &str, pod: &str) -> Result<(), ClusterError> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .delete(pod, &DeleteParams::default())
            .await
            .map_err(|e| self.fail(format!("deleting pod {namespace}/{pod}"), e))?;
        Ok(())
    }

    /// Deletes a PersistentVolumeClaim (the data on it goes with it); absent already is fine.
    pub async fn delete_pvc(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        match Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.fail(format!("deleting PersistentVolumeClaim {namespace}/{name}"), e)),
        }
    }

    /// Creates (or updates) a ClusterIP Service `name` on port 3306 selecting `selector`, labelled as lab's so that
    /// `lab teardown` takes it along should a demo be interrupted before it deletes it.
    pub async fn apply_service(
        &self,
        namespace: &str,
        name: &str,
        selector: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {super::MANAGED_BY_LABEL: super::MANAGED_BY_VALUE}},
            "spec": {"selector": selector, "ports": [{"name": "mysql", "port": 3306, "targetPort": 3306}]},
        });
        Api::<Service>::namespaced(self.client.clone(), namespace)
            .patch(name, &PatchParams::apply("lab").force(), &Patch::Apply(&service))
            .await
            .map_err(|e| self.fail(format!("applying Service {namespace}/{name}"), e))?;
        Ok(())
    }

    /// Deletes a Service; absent already is fine.
    pub async fn delete_service(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        match Api::<Service>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.fail(format!("deleting Service {namespace}/{name}"), e)),
        }
    }

    /// Sets `spec.replicas` of a StatefulSet, as `kubectl scale statefulset NAME --replicas=N` does.
    pub async fn scale_statefulset(&self, namespace: &str, name: &str, replicas: u32) -> Result<(), ClusterError> {
        let patch = json!({"spec": {"replicas": replicas}});
        Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.fail(format!("scaling StatefulSet {namespace}/{name} to {replicas}"), e))?;
        Ok(())
    }

    /// Runs `argv` in a container of the pod (pods/exec), with `stdin` as its input, and collects its output.
    pub async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[&str],
        stdin: &str,
    ) -> Result<ExecOutput, ClusterError> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let params = AttachParams::default().container(container).stdin(true).stderr(true);
        let mut process = api
            .exec(pod, argv.to_vec(), &params)
            .await
            .map_err(|e| self.fail(format!("running a command in pod {namespace}/{pod}"), e))?;
        let io_error = |error: std::io::Error| ClusterError::Exec {
            pod: format!("{namespace}/{pod}"),
            message: error.to_string(),
        };
        if let Some(mut input) = process.stdin() {
            use tokio::io::AsyncWriteExt as _;
            input.write_all(stdin.as_bytes()).await.map_err(io_error)?;
            input.shutdown().await.map_err(io_error)?;
        }
        let mut stdout = String::new();
        let mut stderr = String::new();
        {
            use tokio::io::AsyncReadExt as _;
            let mut out = process.stdout().expect("stdout was requested");
            let mut err = process.stderr().expect("stderr was requested");
            let (a, b) = tokio::join!(out.read_to_string(&mut stdout), err.read_to_string(&mut stderr));
            a.map_err(io_error)?;
            b.map_err(io_error)?;
        }
        let status = match process.take_status() {
            Some(status) => status.await,
            None => None,
        };
        let _ = process.join().await;
        Ok(ExecOutput {
            success: status.is_some_and(|s| s.status.as_deref() == Some("Success")),
            stdout,
            stderr,
        })
    }
}
