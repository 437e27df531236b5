//! Watch-based waits with deadlines. Each is its own loop over `kube::runtime::watcher` with backoff: a dropped or
//! failing watch is logged and resumed, never the end of the wait; only the deadline ends it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Event as KubeEvent, Namespace, PersistentVolumeClaim, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout_at};

use super::Cluster;
use super::assess::{Circumstances, NO_NODE_GRACE, PodProgress, assess_missing_pod, assess_pod, latest_pod_warning};
use super::error::ClusterError;

/// Log lines attached to a crash or init failure.
const LOG_TAIL_LINES: i64 = 20;

/// Objects of one watch, keyed by name, rebuilt on every relist.
struct Mirror<K> {
    current: BTreeMap<String, K>,
    relisting: Option<BTreeMap<String, K>>,
    /// The first complete list arrived: absence now means absence.
    listed: bool,
}

impl<K: Resource + Clone> Mirror<K> {
    fn new() -> Self {
        Mirror {
            current: BTreeMap::new(),
            relisting: None,
            listed: false,
        }
    }

    /// Applies one watcher event; true when the visible contents may have changed.
    fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                if let Some(relisting) = &mut self.relisting {
                    relisting.insert(object.name_any(), object);
                }
                false
            }
            Event::InitDone => {
                if let Some(relisting) = self.relisting.take() {
                    self.current = relisting;
                }
                self.listed = true;
                true
            }
            Event::Apply(object) => {
                self.current.insert(object.name_any(), object);
                true
            }
            Event::Delete(object) => {
                self.current.remove(&object.name_any());
                true
            }
        }
    }
}

/// One update from any of the pod wait's three watches (boxed: the objects differ much in size).
enum Update {
    Pod(Box<Result<Event<Pod>, watcher::Error>>),
    Claim(Box<Result<Event<PersistentVolumeClaim>, watcher::Error>>),
    KubeEvent(Box<Result<Event<KubeEvent>, watcher::Error>>),
    /// A grace period of the diagnosis ran out: assess again even though nothing changed.
    GraceOver,
}

fn watch<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, config).default_backoff()
}

fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

impl Cluster {
    /// Waits until `pod` has condition Ready=True: exists, scheduled, claims bound, init done, containers ready.
    /// Calls `progress` with a line such as `mysql-0: scheduled, init containers running` whenever the state changes.
    /// Fails fast with [`ClusterError::PodFailed`] when [`assess_pod`] finds a problem that will not resolve itself,
    /// with the container's last log lines when they explain it; with [`ClusterError::Timeout`] at `deadline`.
    pub async fn wait_pod_ready(
        &self,
        namespace: &str,
        pod: &str,
        deadline: Instant,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        let pods = watch(Api::<Pod>::namespaced(self.client.clone(), namespace), by_name(pod))
            .map(|item| Update::Pod(Box::new(item)));
        // Claims and events of the whole namespace: few objects, and the pod's claim names come from its spec.
        let claims = watch(
            Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace),
            watcher::Config::default(),
        )
        .map(|item| Update::Claim(Box::new(item)));
        let events = watch(
            Api::<KubeEvent>::namespaced(self.client.clone(), namespace),
            watcher::Config::default(),
        )
        .map(|item| Update::KubeEvent(Box::new(item)));
        let grace_over =
            futures::stream::once(tokio::time::sleep_until(started + NO_NODE_GRACE)).map(|()| Update::GraceOver);
        let mut updates =
            futures::stream::select_all([pods.boxed(), claims.boxed(), events.boxed(), grace_over.boxed()]);

        let mut pod_mirror = Mirror::<Pod>::new();
        let mut claim_mirror = Mirror::<PersistentVolumeClaim>::new();
        let mut event_mirror = Mirror::<KubeEvent>::new();
        let mut last = None::<PodProgress>;
        let mut last_warning = None::<String>;

        let outcome = timeout_at(deadline, async {
            while let Some(update) = updates.next().await {
                let changed = match update {
                    Update::Pod(item) => self.mirror(&mut pod_mirror, *item, "pod", pod),
                    Update::Claim(item) => self.mirror(&mut claim_mirror, *item, "PersistentVolumeClaims", namespace),
                    Update::KubeEvent(item) => self.mirror(&mut event_mirror, *item, "events", namespace),
                    Update::GraceOver => true,
                };
                if !changed || !pod_mirror.listed {
                    continue;
                }
                let claims: Vec<_> = claim_mirror.current.values().cloned().collect();
                let events: Vec<_> = event_mirror.current.values().cloned().collect();
                let current = match pod_mirror.current.get(pod) {
                    Some(object) => {
                        last_warning = latest_pod_warning(object, &events);
                        let circumstances = Circumstances {
                            context: self.context.clone(),
                            waited: started.elapsed(),
                        };
                        assess_pod(object, &claims, &events, &circumstances)
                    }
                    None => assess_missing_pod(namespace, pod, &events),
                };
                if last.as_ref() != Some(&current) {
                    progress(&format!("{pod}: {}", current.describe()));
                }
                match current {
                    PodProgress::Ready => return Ok(()),
                    PodProgress::Failed(mut problem) => {
                        if let Some(source) = &problem.log_source {
                            problem.log_tail = self
                                .log_tail_for_diagnosis(namespace, pod, &source.container, source.previous)
                                .await;
                        }
                        return Err(ClusterError::PodFailed(Box::new(problem)));
                    }
                    other => last = Some(other),
                }
            }
            // `watcher` streams do not end; should one, only the deadline ends the wait.
            std::future::pending().await
        })
        .await;

        outcome.unwrap_or_else(|_elapsed| {
            let mut state = last
                .map(|p| p.describe())
                .unwrap_or_else(|| "no answer from the API server yet".to_string());
            if let Some(warning) = last_warning {
                state.push_str(&format!(", latest warning: {warning}"));
            }
            Err(ClusterError::Timeout {
                what: format!("pod {namespace}/{pod} to become Ready"),
                after: started.elapsed(),
                last_state: state,
                fix: format!(
                    "raise --timeout if the cluster is just slow (first image pulls can take minutes); \"kubectl \
                     describe pod -n {namespace} {pod}\" shows more"
                ),
            })
        })
    }

    /// Waits until the namespace is gone (or replaced by one with another uid).
    pub(super) async fn wait_namespace_gone(
        &self,
        namespace: &str,
        uid: Option<&str>,
        deadline: Instant,
    ) -> Result<(), ClusterError> {
        let api = Api::<Namespace>::all(self.client.clone());
        self.wait_gone(
            api,
            namespace,
            uid,
            deadline,
            format!("namespace {namespace} to be deleted"),
            |ns| {
                ns.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "present".to_string())
            },
        )
        .await
    }

    /// Waits until the PersistentVolumeClaim `name` is gone: a StatefulSet scaled up meanwhile would otherwise find
    /// the terminating claim and its new pod would never be scheduled.
    pub async fn wait_claim_gone(&self, namespace: &str, name: &str, deadline: Instant) -> Result<(), ClusterError> {
        let api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace);
        self.wait_gone(
            api,
            name,
            None,
            deadline,
            format!("PersistentVolumeClaim {namespace}/{name} to be deleted"),
            |claim| {
                let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
                match (&claim.metadata.deletion_timestamp, phase) {
                    (Some(_), _) => "terminating (a pod still uses it)".to_string(),
                    (None, phase) => phase.unwrap_or_else(|| "present".to_string()),
                }
            },
        )
        .await
    }

    /// Waits until none of `pods` (name, uid) exists any more; a pod recreated under the same name with a new uid
    /// counts as gone.
    pub async fn wait_pods_gone(
        &self,
        namespace: &str,
        pods: &[(String, String)],
        deadline: Instant,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        let targets: BTreeSet<(String, String)> = pods.iter().cloned().collect();
        let mut mirror = Mirror::<Pod>::new();
        let mut remaining: Vec<String> = targets.iter().map(|(name, _)| name.clone()).collect();
        if remaining.is_empty() {
            return Ok(());
        }
        let mut stream = Box::pin(watch(
            Api::<Pod>::namespaced(self.client.clone(), namespace),
            watcher::Config::default(),
        ));
        let outcome = timeout_at(deadline, async {
            while let Some(item) = stream.next().await {
                if !self.mirror(&mut mirror, item, "pods", namespace) || !mirror.listed {
                    continue;
                }
                remaining = mirror
                    .current
                    .values()
                    .filter(|p| targets.contains(&(p.name_any(), p.uid().unwrap_or_default())))
                    .map(|p| p.name_any())
                    .collect();
                if remaining.is_empty() {
                    return Ok(());
                }
            }
            // `watcher` streams do not end; should one, only the deadline ends the wait.
            std::future::pending().await
        })
        .await;
        outcome.unwrap_or_else(|_elapsed| {
            Err(ClusterError::Timeout {
                what: format!("pods {} in namespace {namespace} to be deleted", remaining.join(", ")),
                after: started.elapsed(),
                last_state: format!("still present: {}", remaining.join(", ")),
                fix: format!(
                    "a node may be unreachable or a finalizer blocks deletion: \"kubectl get pods -n {namespace}\"; \
                     run the command again to keep waiting"
                ),
            })
        })
    }

    /// Waits until the object `name` is absent, or present with a uid other than `uid`.
    async fn wait_gone<K>(
        &self,
        api: Api<K>,
        name: &str,
        uid: Option<&str>,
        deadline: Instant,
        what: String,
        describe: impl Fn(&K) -> String,
    ) -> Result<(), ClusterError>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let started = Instant::now();
        let mut mirror = Mirror::<K>::new();
        let mut last_state = "no answer from the API server yet".to_string();
        let mut stream = Box::pin(watch(api, by_name(name)));
        let outcome = timeout_at(deadline, async {
            while let Some(item) = stream.next().await {
                if !self.mirror(&mut mirror, item, "object", name) || !mirror.listed {
                    continue;
                }
                match mirror.current.get(name) {
                    None => return Ok(()),
                    Some(object) if uid.is_some() && object.uid().as_deref() != uid => return Ok(()),
                    Some(object) => last_state = describe(object),
                }
            }
            // `watcher` streams do not end; should one, only the deadline ends the wait.
            std::future::pending().await
        })
        .await;
        outcome.unwrap_or_else(|_elapsed| {
            Err(ClusterError::Timeout {
                what,
                after: started.elapsed(),
                last_state,
                fix: "a finalizer or an unreachable node may block the deletion; run the command again to keep waiting"
                    .to_string(),
            })
        })
    }

    /// Feeds one watcher item into a mirror, logging (and otherwise ignoring) watch errors: the watcher relists and
    /// resumes by itself after its backoff.
    fn mirror<K: Resource + Clone>(
        &self,
        mirror: &mut Mirror<K>,
        item: Result<Event<K>, watcher::Error>,
        what: &str,
        name: &str,
    ) -> bool {
        match item {
            Ok(event) => mirror.apply(event),
            Err(error) => {
                tracing::warn!(%error, "watch of {what} {name} failed; retrying");
                false
            }
        }
    }

    /// Best effort: a failure to read logs must not hide the problem they were meant to explain.
    async fn log_tail_for_diagnosis(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<String> {
        match self
            .pod_log_tail(namespace, pod, container, LOG_TAIL_LINES, previous)
            .await
        {
            // The failed instance may already have been restarted (kubelets restart at once after a first
            // failure): its output is then the previous instance's log.
            Ok(tail) if !previous && tail.trim().is_empty() => {
                match self.pod_log_tail(namespace, pod, container, LOG_TAIL_LINES, true).await {
                    Ok(earlier) if !earlier.trim().is_empty() => Some(earlier),
                    _ => Some(tail),
                }
            }
            Ok(tail) => Some(tail),
            Err(error) if previous => {
                tracing::debug!(%error, "no previous log of {pod}/{container}; reading the current one");
                self.pod_log_tail(namespace, pod, container, LOG_TAIL_LINES, false)
                    .await
                    .ok()
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the log of {pod}/{container}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, uid: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "uid": uid}})).expect("valid pod")
    }

    #[test]
    fn mirror_replaces_its_contents_on_relist_and_reports_listed() {
        let mut mirror = Mirror::<Pod>::new();
        assert!(!mirror.apply(Event::Init));
        assert!(!mirror.apply(Event::InitApply(pod("mysql-0", "a"))));
        assert!(!mirror.listed);
        assert!(mirror.apply(Event::InitDone));
        assert!(mirror.listed);
        assert_eq!(mirror.current.keys().collect::<Vec<_>>(), ["mysql-0"]);

        // A relist after a dropped watch: mysql-0 vanished meanwhile, mysql-1 appeared.
        mirror.apply(Event::Init);
        mirror.apply(Event::InitApply(pod("mysql-1", "b")));
        assert_eq!(
            mirror.current.keys().collect::<Vec<_>>(),
            ["mysql-0"],
            "old contents stay until the relist is done"
        );
        mirror.apply(Event::InitDone);
        assert_eq!(mirror.current.keys().collect::<Vec<_>>(), ["mysql-1"]);

        assert!(mirror.apply(Event::Delete(pod("mysql-1", "b"))));
        assert!(mirror.current.is_empty());
    }
}
