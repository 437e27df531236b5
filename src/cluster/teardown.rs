//! Teardown: delete what `lab` created and wait until it is gone. The whole namespace when it is `lab`'s; with
//! `keep_data` everything but the PersistentVolumeClaims (which a namespace deletion would take along).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::error::ClusterError;
use super::preflight::NamespaceState;
use super::{Cluster, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// What teardown did, as entries like `StatefulSet mysql`. Serialises as `{deleted, kept, note}` for `-o json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TeardownOutcome {
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
    /// Set when there was nothing to do, or to explain a choice (a foreign namespace left in place).
    pub note: Option<String>,
}

impl TeardownOutcome {
    /// Whether anything was deleted.
    pub fn changed(&self) -> bool {
        !self.deleted.is_empty()
    }
}

/// `deleted: ...`, `kept: ...` and the note, one per line, each only when there is something to say.
impl std::fmt::Display for TeardownOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut lines = Vec::new();
        if !self.deleted.is_empty() {
            lines.push(format!("deleted: {}", self.deleted.join(", ")));
        }
        if !self.kept.is_empty() {
            lines.push(format!("kept: {}", self.kept.join(", ")));
        }
        if let Some(note) = &self.note {
            lines.push(note.clone());
        }
        if lines.is_empty() {
            lines.push("nothing to delete".to_string());
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Pure: how to tear down, from the namespace's state and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Nothing,
    /// Delete the namespace: everything in it goes.
    Namespace,
    /// Delete `lab`'s objects one by one, claims only if `claims`; the namespace stays.
    Objects {
        claims: bool,
    },
    /// Already being deleted: wait for it.
    WaitForNamespace,
}

pub(super) fn method(
    state: &NamespaceState,
    keep_data: bool,
    force: bool,
    namespace: &str,
) -> Result<Method, ClusterError> {
    Ok(match state {
        NamespaceState::Absent => Method::Nothing,
        NamespaceState::Terminating => Method::WaitForNamespace,
        NamespaceState::Lab if keep_data => Method::Objects { claims: false },
        NamespaceState::Lab => Method::Namespace,
        // Someone else's namespace is never deleted, even with --force: only lab's objects in it.
        NamespaceState::Foreign { .. } if force => Method::Objects { claims: !keep_data },
        NamespaceState::Foreign { managed_by } => {
            return Err(ClusterError::NamespaceNotOwned {
                namespace: namespace.to_string(),
                managed_by: managed_by.clone(),
            });
        }
    })
}

fn lab_objects() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
}

impl Cluster {
    /// Deletes the lab in `namespace` and waits until it is gone. Idempotent: nothing there is a success with a note.
    pub async fn teardown(
        &self,
        namespace: &str,
        keep_data: bool,
        force: bool,
        deadline: Instant,
    ) -> Result<TeardownOutcome, ClusterError> {
        let state = self.namespace_state(namespace).await?;
        let mut outcome = TeardownOutcome::default();
        match method(&state, keep_data, force, namespace)? {
            Method::Nothing => {
                outcome.note = Some(format!("namespace {namespace} does not exist: nothing to delete"));
            }
            Method::WaitForNamespace => {
                self.wait_namespace_gone(namespace, None, deadline).await?;
                outcome
                    .deleted
                    .push(format!("Namespace {namespace} (its deletion was already under way)"));
            }
            Method::Namespace => {
                outcome.deleted = self.inventory(namespace).await?;
                let api = Api::<Namespace>::all(self.client.clone());
                match api.delete(namespace, &DeleteParams::background()).await {
                    Ok(deleted) => {
                        let uid = deleted.left().and_then(|ns| ns.uid());
                        self.wait_namespace_gone(namespace, uid.as_deref(), deadline).await?;
                    }
                    Err(kube::Error::Api(status)) if status.is_not_found() => {}
                    Err(error) => return Err(self.fail(format!("deleting namespace {namespace}"), error)),
                }
                outcome.deleted.push(format!("Namespace {namespace}"));
            }
            Method::Objects { claims } => {
                self.delete_objects(namespace, claims, deadline, &mut outcome).await?;
                if let NamespaceState::Foreign { .. } = state {
                    outcome.note = Some(format!(
                        "namespace {namespace} is not lab's: only objects labelled {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} \
                         were deleted"
                    ));
                } else if outcome.deleted.is_empty() {
                    outcome.note = Some(format!(
                        "nothing of lab's left in namespace {namespace} except the data"
                    ));
                }
                outcome.kept.push(format!("Namespace {namespace}"));
            }
        }
        Ok(outcome)
    }

    /// What a namespace deletion takes along, for the report.
    /// What `lab` created in the namespace (everything carries its label, the StatefulSet's pods and claims
    /// through the templates), named for the outcome. The namespace deletion takes the rest as well (a real cluster
    /// adds token Secrets and ConfigMaps of its own), but those were never `lab`'s to report.
    async fn inventory(&self, namespace: &str) -> Result<Vec<String>, ClusterError> {
        let lab = lab_objects();
        let mut found = Vec::new();
        found.extend(
            self.names::<StatefulSet>(namespace, &lab)
                .await?
                .into_iter()
                .map(|n| format!("StatefulSet {n}")),
        );
        found.extend(
            self.names::<Pod>(namespace, &lab)
                .await?
                .into_iter()
                .map(|n| format!("Pod {n}")),
        );
        found.extend(
            self.names::<Service>(namespace, &lab)
                .await?
                .into_iter()
                .map(|n| format!("Service {n}")),
        );
        found.extend(
            self.names::<Secret>(namespace, &lab)
                .await?
                .into_iter()
                .map(|n| format!("Secret {n}")),
        );
        found.extend(
            self.names::<ConfigMap>(namespace, &lab)
                .await?
                .into_iter()
                .map(|n| format!("ConfigMap {n}")),
        );
        found.extend(
            self.names::<PersistentVolumeClaim>(namespace, &lab)
                .await?
                .into_iter()
                .map(|n| format!("PersistentVolumeClaim {n}")),
        );
        Ok(found)
    }

    async fn names<K>(&self, namespace: &str, params: &ListParams) -> Result<Vec<String>, ClusterError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let list = Api::<K>::namespaced(self.client.clone(), namespace)
            .list(params)
            .await
            .map_err(|e| self.fail(format!("listing {} in {namespace}", K::plural(&())), e))?;
        Ok(list.items.iter().map(|o| o.name_any()).collect())
    }

    /// Deletes lab's StatefulSets first (so nothing recreates pods), then pods, Services, Secrets, ConfigMaps and,
    /// if `claims`, the claims; waits until the pods are gone.
    async fn delete_objects(
        &self,
        namespace: &str,
        claims: bool,
        deadline: Instant,
        outcome: &mut TeardownOutcome,
    ) -> Result<(), ClusterError> {
        let sets = self.delete_labelled::<StatefulSet>(namespace, outcome).await?;

        // Pods of the StatefulSets may lack lab's label: take those owned by a deleted set too.
        let pods_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let pods = pods_api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.fail("listing pods", e))?;
        let mut waiting_for = Vec::new();
        for pod in &pods.items {
            let labelled = pod.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE);
            let owned = pod
                .owner_references()
                .iter()
                .any(|o| o.kind == "StatefulSet" && sets.contains(&o.name));
            if !(labelled || owned) {
                continue;
            }
            let name = pod.name_any();
            match pods_api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => return Err(self.fail(format!("deleting pod {namespace}/{name}"), error)),
            }
            outcome.deleted.push(format!("Pod {name}"));
            waiting_for.push((name, pod.uid().unwrap_or_default()));
        }

        self.delete_labelled::<Service>(namespace, outcome).await?;
        self.delete_labelled::<Secret>(namespace, outcome).await?;
        self.delete_labelled::<ConfigMap>(namespace, outcome).await?;
        if claims {
            self.delete_labelled::<PersistentVolumeClaim>(namespace, outcome)
                .await?;
        } else {
            // Claims from volumeClaimTemplates carry the template's labels, which need not include lab's: list all.
            for claim in self
                .names::<PersistentVolumeClaim>(namespace, &ListParams::default())
                .await?
            {
                outcome.kept.push(format!("PersistentVolumeClaim {claim}"));
            }
        }
        self.wait_pods_gone(namespace, &waiting_for, deadline).await
    }

    /// Deletes every object of kind `K` labelled as lab's; returns their names.
    async fn delete_labelled<K>(
        &self,
        namespace: &str,
        outcome: &mut TeardownOutcome,
    ) -> Result<Vec<String>, ClusterError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        let names = self.names::<K>(namespace, &lab_objects()).await?;
        for name in &names {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => return Err(self.fail(format!("deleting {} {namespace}/{name}", K::kind(&())), error)),
            }
            outcome.deleted.push(format!("{} {name}", K::kind(&())));
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_namespace_is_deleted_whole_unless_data_is_kept() {
        assert_eq!(
            method(&NamespaceState::Lab, false, false, "database").expect("ours"),
            Method::Namespace
        );
        assert_eq!(
            method(&NamespaceState::Lab, true, false, "database").expect("ours"),
            Method::Objects { claims: false }
        );
        assert_eq!(
            method(&NamespaceState::Absent, false, false, "database").expect("gone"),
            Method::Nothing
        );
        assert_eq!(
            method(&NamespaceState::Terminating, true, false, "database").expect("going"),
            Method::WaitForNamespace
        );
    }

    #[test]
    fn outcome_lists_deleted_kept_and_the_note() {
        let outcome = TeardownOutcome {
            deleted: vec!["StatefulSet mysql".into(), "Pod mysql-0".into()],
            kept: vec!["PersistentVolumeClaim data-mysql-0".into(), "Namespace database".into()],
            note: None,
        };
        assert!(outcome.changed());
        assert_eq!(
            outcome.to_string(),
            "deleted: StatefulSet mysql, Pod mysql-0\nkept: PersistentVolumeClaim data-mysql-0, Namespace database"
        );
        let nothing = TeardownOutcome {
            note: Some("namespace database does not exist: nothing to delete".into()),
            ..TeardownOutcome::default()
        };
        assert!(!nothing.changed());
        assert_eq!(
            nothing.to_string(),
            "namespace database does not exist: nothing to delete"
        );
        assert_eq!(
            serde_json::to_value(&outcome).expect("serialisable"),
            serde_json::json!({"deleted": ["StatefulSet mysql", "Pod mysql-0"],
                               "kept": ["PersistentVolumeClaim data-mysql-0", "Namespace database"], "note": null})
        );
    }

    #[test]
    fn foreign_namespace_needs_force_and_is_never_deleted_itself() {
        let foreign = NamespaceState::Foreign { managed_by: None };
        let error = method(&foreign, false, false, "database").expect_err("not ours");
        assert_eq!(
            error.to_string(),
            "namespace \"database\" exists and is not managed by lab (no app.kubernetes.io/managed-by label); choose \
             another with --namespace, or pass --force to use it anyway"
        );
        assert_eq!(
            method(&foreign, false, true, "database").expect("forced"),
            Method::Objects { claims: true }
        );
        assert_eq!(
            method(&foreign, true, true, "database").expect("forced"),
            Method::Objects { claims: false }
        );
    }
}
