//! What `lab exercise` reads and changes on the cluster: the active-exercise record (a ConfigMap), a StatefulSet's
//! init script, a Service's selector, and the wait for a StatefulSet rollout.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::time::{Instant, timeout_at};

use super::error::ClusterError;
use super::snapshot::service_snapshot;
use super::{Cluster, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Pure: whether a StatefulSet has rolled out its current template: the controller has seen the latest spec, every
/// pod runs the newest revision, and all of them are ready.
pub fn rolled_out(set: &StatefulSet) -> bool {
    let wanted = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &set.status else {
        return false;
    };
    template_rolled_out(set)
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.ready_replicas.unwrap_or(0) >= wanted
        && status.replicas == wanted
}

/// Pure: whether every pod runs the StatefulSet's current template (its revision is the current one). Unlike
/// [`rolled_out`], pods still to be created or to become ready do not count: a scale-up is not a template change.
pub fn template_rolled_out(set: &StatefulSet) -> bool {
    let Some(status) = &set.status else {
        return false;
    };
    status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0)
        && status.update_revision.is_some()
        && status.update_revision == status.current_revision
}

impl Cluster {
    /// The `data` of a ConfigMap; `None` when it does not exist.
    pub async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ClusterError> {
        let found = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.fail(format!("reading ConfigMap {namespace}/{name}"), e))?;
        Ok(found.map(|c| c.data.unwrap_or_default()))
    }

    /// Creates a ConfigMap carrying lab's label (so `lab teardown` takes it along); false when one with that name
    /// exists already (nothing changed): creating, not applying, makes two concurrent creators see each other.
    pub async fn create_config_map(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<bool, ClusterError> {
        let map: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
            "data": data,
        }))
        .map_err(|e| ClusterError::InvalidObject {
            kind: "ConfigMap".into(),
            name: name.into(),
            problem: e.to_string(),
        })?;
        match Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &map)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.fail(format!("creating ConfigMap {namespace}/{name}"), e)),
        }
    }

    /// Sets keys of an existing ConfigMap's `data` (a merge patch: other keys stay).
    pub async fn update_config_map(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&json!({ "data": data })))
            .await
            .map_err(|e| self.fail(format!("updating ConfigMap {namespace}/{name}"), e))?;
        Ok(())
    }

    /// Deletes a ConfigMap; absent already is fine.
    pub async fn delete_config_map(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        match Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.fail(format!("deleting ConfigMap {namespace}/{name}"), e)),
        }
    }

    /// The shell script of an init container (the last argument of its `command`, as in `sh -c SCRIPT`).
    pub async fn init_script(
        &self,
        namespace: &str,
        statefulset: &str,
        container: &str,
    ) -> Result<Option<String>, ClusterError> {
        let found = Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
            .get_opt(statefulset)
            .await
            .map_err(|e| self.fail(format!("reading StatefulSet {namespace}/{statefulset}"), e))?;
        Ok(found
            .and_then(|set| set.spec)
            .and_then(|spec| spec.template.spec)
            .and_then(|pod| pod.init_containers)
            .and_then(|cs| cs.into_iter().find(|c| c.name == container))
            .and_then(|c| c.command)
            .and_then(|command| command.last().cloned()))
    }

    /// Replaces an init container's script, as `kubectl edit statefulset` does (read, change, write back with the
    /// read's resourceVersion, so a concurrent change is refused rather than lost). The StatefulSet controller
    /// then rolls the pods onto the new template. False when the script was already that (nothing sent).
    pub async fn set_init_script(
        &self,
        namespace: &str,
        statefulset: &str,
        container: &str,
        script: &str,
    ) -> Result<bool, ClusterError> {
        let api = Api::<StatefulSet>::namespaced(self.client.clone(), namespace);
        let action = || format!("editing StatefulSet {namespace}/{statefulset}");
        let mut set = api.get(statefulset).await.map_err(|e| self.fail(action(), e))?;
        let command = set
            .spec
            .as_mut()
            .and_then(|spec| spec.template.spec.as_mut())
            .and_then(|pod| pod.init_containers.as_mut())
            .and_then(|cs| cs.iter_mut().find(|c| c.name == container))
            .and_then(|c| c.command.as_mut())
            .and_then(|command| command.last_mut())
            .ok_or_else(|| ClusterError::InvalidObject {
                kind: "StatefulSet".into(),
                name: format!("{namespace}/{statefulset}"),
                problem: format!("it has no init container {container} with a command; run `lab up` to restore it"),
            })?;
        if command == script {
            return Ok(false);
        }
        *command = script.to_string();
        set.metadata.managed_fields = None;
        api.replace(statefulset, &PostParams::default(), &set)
            .await
            .map_err(|e| self.fail(action(), e))?;
        Ok(true)
    }

    /// Replaces a Service's whole selector, as `kubectl edit service` does. False when it was already that.
    pub async fn set_service_selector(
        &self,
        namespace: &str,
        name: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<bool, ClusterError> {
        let api = Api::<Service>::namespaced(self.client.clone(), namespace);
        let action = || format!("editing Service {namespace}/{name}");
        let mut service = api.get(name).await.map_err(|e| self.fail(action(), e))?;
        let spec = service.spec.get_or_insert_with(Default::default);
        if spec.selector.as_ref() == Some(selector) {
            return Ok(false);
        }
        spec.selector = Some(selector.clone());
        service.metadata.managed_fields = None;
        api.replace(name, &PostParams::default(), &service)
            .await
            .map_err(|e| self.fail(action(), e))?;
        Ok(true)
    }

    /// Waits, on a watch, until the StatefulSet has rolled every pod onto its current template and they are ready
    /// (`kubectl rollout status statefulset NAME`).
    pub async fn wait_rolled_out(&self, namespace: &str, name: &str, deadline: Instant) -> Result<(), ClusterError> {
        self.wait_statefulset(namespace, name, deadline, rolled_out).await
    }

    /// Waits, on a watch, until every pod of the StatefulSet runs its current template ([`template_rolled_out`]).
    pub async fn wait_template_rolled_out(
        &self,
        namespace: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<(), ClusterError> {
        self.wait_statefulset(namespace, name, deadline, template_rolled_out)
            .await
    }

    async fn wait_statefulset(
        &self,
        namespace: &str,
        name: &str,
        deadline: Instant,
        done: fn(&StatefulSet) -> bool,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        let api = Api::<StatefulSet>::namespaced(self.client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = Box::pin(watcher::watcher(api, config).default_backoff());
        let mut last_state = "no answer from the API server yet".to_string();
        let outcome = timeout_at(deadline, async {
            while let Some(item) = stream.next().await {
                let set = match item {
                    Ok(Event::Apply(set) | Event::InitApply(set)) => set,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::debug!("watch on StatefulSet {namespace}/{name}: {error}");
                        continue;
                    }
                };
                if done(&set) {
                    return;
                }
                let status = set.status.clone().unwrap_or_default();
                last_state = format!(
                    "{} of {} pods updated, {} ready",
                    status.updated_replicas.unwrap_or(0),
                    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    status.ready_replicas.unwrap_or(0)
                );
                tracing::debug!("StatefulSet {}: {last_state}", set.name_any());
            }
            std::future::pending::<()>().await
        })
        .await;
        outcome.map_err(|_elapsed| ClusterError::Timeout {
            what: format!("StatefulSet {namespace}/{name} to roll out"),
            after: started.elapsed(),
            last_state,
            fix: format!("see why with \"kubectl -n {namespace} rollout status statefulset {name}\" and \"kubectl -n {namespace} get pods\""),
        })
    }
}

impl Cluster {
    /// Waits, on a watch of the Service's Endpoints, until the pods it routes to satisfy `done` or `deadline` passes
    /// (a Service's Endpoints follow a selector change through a controller); returns the pods last seen, sorted.
    pub async fn wait_endpoints(
        &self,
        namespace: &str,
        service: &str,
        deadline: Instant,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<Vec<String>, ClusterError> {
        let api = Api::<Endpoints>::namespaced(self.client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={service}"));
        let mut stream = Box::pin(watcher::watcher(api, config).default_backoff());
        let shell = Service::default();
        let mut last = Vec::new();
        let _ = timeout_at(deadline, async {
            while let Some(item) = stream.next().await {
                let endpoints = match item {
                    Ok(Event::Apply(e) | Event::InitApply(e)) => Some(e),
                    Ok(Event::Delete(_)) => None,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::debug!("watch on Endpoints {namespace}/{service}: {error}");
                        continue;
                    }
                };
                last = service_snapshot(&shell, endpoints.as_ref()).endpoints;
                if done(&last) {
                    return;
                }
            }
            std::future::pending::<()>().await
        })
        .await;
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(generation: i64, status: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "mysql", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "serviceName": "mysql-headless",
                     "template": {"metadata": {}, "spec": {"containers": []}}},
            "status": status,
        }))
        .expect("a StatefulSet")
    }

    #[test]
    fn a_rollout_is_done_when_the_controller_saw_the_spec_and_every_pod_is_updated_and_ready() {
        let done = json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                          "currentRevision": "mysql-b", "updateRevision": "mysql-b"});
        assert!(rolled_out(&set(3, done.clone())));
        assert!(
            !rolled_out(&set(4, done)),
            "the controller has not seen the latest spec yet"
        );
        let rolling = json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1,
                             "currentRevision": "mysql-a", "updateRevision": "mysql-b"});
        assert!(!rolled_out(&set(3, rolling)));
        let not_ready = json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 2,
                               "currentRevision": "mysql-b", "updateRevision": "mysql-b"});
        assert!(!rolled_out(&set(3, not_ready)));
        let mut no_status = set(1, json!({"replicas": 0}));
        no_status.status = None;
        assert!(!rolled_out(&no_status));
        assert!(!template_rolled_out(&no_status));
    }

    #[test]
    fn a_template_is_rolled_out_when_no_pod_runs_an_older_revision_whatever_the_pod_count() {
        let scaling_up = json!({"observedGeneration": 2, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                                "currentRevision": "mysql-a", "updateRevision": "mysql-a"});
        assert!(template_rolled_out(&set(2, scaling_up.clone())));
        assert!(!rolled_out(&set(2, scaling_up)), "a pod is still to come");
        let rolling = json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1,
                             "currentRevision": "mysql-a", "updateRevision": "mysql-b"});
        assert!(!template_rolled_out(&set(2, rolling.clone())));
        assert!(!template_rolled_out(&set(3, rolling)), "the change is not seen yet");
    }
}
