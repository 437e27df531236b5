//! Preflight: is the cluster reachable, which version, does it have a default StorageClass, and may `lab` use the
//! namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::ListParams;
use tokio::time::Instant;

use super::error::ClusterError;
use super::{Cluster, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// How long [`Cluster::preflight`] waits for an earlier namespace of the same name to finish terminating (its pods
/// get their grace period first).
pub const NAMESPACE_TERMINATION_WAIT: Duration = Duration::from_secs(180);

/// What preflight found; the caller prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    pub server_url: String,
    pub context: Option<String>,
    /// `gitVersion` of the API server, e.g. `v1.35.0`.
    pub server_version: String,
    pub default_storage_class: String,
    /// The namespace's state after waiting: never [`NamespaceState::Terminating`].
    pub namespace: NamespaceState,
    /// Set when an earlier namespace of that name was still being deleted and preflight waited for it.
    pub waited_for_termination: Option<Duration>,
}

/// Whose the namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceState {
    Absent,
    /// Labelled `app.kubernetes.io/managed-by=lab`.
    Lab,
    /// Exists without `lab`'s label; `managed_by` is whatever the label says instead.
    Foreign {
        managed_by: Option<String>,
    },
    /// Being deleted: it must be gone before anything can be created in it.
    Terminating,
}

impl std::fmt::Display for NamespaceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamespaceState::Absent => f.write_str("absent (will be created)"),
            NamespaceState::Lab => f.write_str("managed by lab"),
            NamespaceState::Foreign {
                managed_by: Some(owner),
            } => {
                write!(f, "not managed by lab ({MANAGED_BY_LABEL}={owner})")
            }
            NamespaceState::Foreign { managed_by: None } => {
                write!(f, "not managed by lab (no {MANAGED_BY_LABEL} label)")
            }
            NamespaceState::Terminating => f.write_str("being deleted"),
        }
    }
}

/// Pure: the state of a namespace as read from the cluster (`None` = not found).
pub fn namespace_state(namespace: Option<&Namespace>) -> NamespaceState {
    let Some(namespace) = namespace else {
        return NamespaceState::Absent;
    };
    let phase = namespace.status.as_ref().and_then(|s| s.phase.as_deref());
    if namespace.metadata.deletion_timestamp.is_some() || phase == Some("Terminating") {
        return NamespaceState::Terminating;
    }
    let managed_by = namespace.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL));
    match managed_by {
        Some(value) if value == MANAGED_BY_VALUE => NamespaceState::Lab,
        other => NamespaceState::Foreign {
            managed_by: other.cloned(),
        },
    }
}

/// Pure: the names of the namespaces that hold a lab, sorted: labelled `app.kubernetes.io/managed-by=lab` and not
/// being deleted (a namespace in termination is a teardown in progress, not a lab to grade).
pub fn lab_namespace_names(namespaces: &[Namespace]) -> Vec<String> {
    let mut names: Vec<String> = namespaces
        .iter()
        .filter(|n| namespace_state(Some(n)) == NamespaceState::Lab)
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// Pure: the name of the default StorageClass, if any. Several defaults: the newest wins, as the API server's
/// admission plugin decides; names break ties so the answer is stable.
pub fn default_storage_class(classes: &[StorageClass]) -> Option<String> {
    classes
        .iter()
        .filter(|class| {
            let annotations = class.metadata.annotations.as_ref();
            [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
                .iter()
                .any(|key| annotations.and_then(|a| a.get(*key)).is_some_and(|v| v == "true"))
        })
        .max_by_key(|class| {
            (
                class.metadata.creation_timestamp.as_ref().map(|t| t.0),
                std::cmp::Reverse(class.metadata.name.clone()),
            )
        })
        .and_then(|class| class.metadata.name.clone())
}

impl Cluster {
    /// Every namespace that holds a lab (see [`lab_namespace_names`]), sorted by name.
    pub async fn lab_namespaces(&self) -> Result<Vec<String>, ClusterError> {
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
        let namespaces = Api::<Namespace>::all(self.client.clone())
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.fail("listing namespaces", e))?;
        Ok(lab_namespace_names(&namespaces.items))
    }

    /// [`Cluster::preflight_with`] without `--force`, waiting up to [`NAMESPACE_TERMINATION_WAIT`] for a namespace
    /// that is still being deleted.
    pub async fn preflight(&self, namespace: &str) -> Result<Preflight, ClusterError> {
        self.preflight_with(namespace, false, Instant::now() + NAMESPACE_TERMINATION_WAIT)
            .await
    }

    /// Checks, in order: the API server answers (`/version`), a default StorageClass exists, and `namespace` is
    /// absent or `lab`'s (someone else's only with `force`). A namespace still being deleted is waited for until
    /// `deadline`.
    pub async fn preflight_with(
        &self,
        namespace: &str,
        force: bool,
        deadline: Instant,
    ) -> Result<Preflight, ClusterError> {
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| self.unreachable("GET /version", e))?;

        let classes = Api::<StorageClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| self.fail("listing StorageClasses", e))?;
        let Some(default_class) = default_storage_class(&classes.items) else {
            let classes = classes.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
            let kind = super::assess::kind_cluster(self.context.as_deref()).is_some();
            return Err(ClusterError::NoDefaultStorageClass { classes, kind });
        };

        let mut waited = None;
        let mut state = self.namespace_state(namespace).await?;
        if state == NamespaceState::Terminating {
            let started = Instant::now();
            self.wait_namespace_gone(namespace, None, deadline).await?;
            waited = Some(started.elapsed());
            state = self.namespace_state(namespace).await?;
        }
        if let NamespaceState::Foreign { managed_by } = &state
            && !force
        {
            return Err(ClusterError::NamespaceNotOwned {
                namespace: namespace.to_string(),
                managed_by: managed_by.clone(),
            });
        }

        Ok(Preflight {
            server_url: self.server_url.clone(),
            context: self.context.clone(),
            server_version: version.git_version,
            default_storage_class: default_class,
            namespace: state,
            waited_for_termination: waited,
        })
    }

    pub(super) async fn namespace_state(&self, namespace: &str) -> Result<NamespaceState, ClusterError> {
        let found = Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await
            .map_err(|e| self.fail(format!("reading namespace {namespace}"), e))?;
        Ok(namespace_state(found.as_ref()))
    }

    /// The first request: even a Status reply (e.g. 401) is reported as "cannot reach" with the server's message,
    /// since nothing else can work.
    fn unreachable(&self, action: &str, error: kube::Error) -> ClusterError {
        let message = match &error {
            kube::Error::Api(status) => format!("{action}: {} ({})", status.message, status.code),
            other => format!("{action}: {}", super::connect::error_chain(other)),
        };
        ClusterError::Unreachable {
            server: self.server_url.clone(),
            context: self.context.clone(),
            kubeconfig: self.kubeconfig.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn namespace(value: serde_json::Value) -> Namespace {
        serde_json::from_value(value).expect("valid namespace JSON")
    }

    fn class(name: &str, default: Option<&str>, created: &str) -> StorageClass {
        let annotations = default
            .map(|v| json!({ DEFAULT_CLASS_ANNOTATION: v }))
            .unwrap_or(json!({}));
        serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "provisioner": "rancher.io/local-path"
        }))
        .expect("valid StorageClass JSON")
    }

    #[test]
    fn only_labelled_namespaces_that_are_not_being_deleted_hold_a_lab() {
        let namespaces = [
            namespace(json!({"metadata": {"name": "student-2", "labels": {MANAGED_BY_LABEL: "lab"}}})),
            namespace(json!({"metadata": {"name": "student-1", "labels": {MANAGED_BY_LABEL: "lab"}}})),
            namespace(json!({"metadata": {"name": "helm-app", "labels": {MANAGED_BY_LABEL: "Helm"}}})),
            namespace(json!({"metadata": {"name": "default"}})),
            namespace(
                json!({"metadata": {"name": "leaving", "labels": {MANAGED_BY_LABEL: "lab"}},
                             "status": {"phase": "Terminating"}}),
            ),
        ];
        assert_eq!(lab_namespace_names(&namespaces), ["student-1", "student-2"]);
    }

    #[test]
    fn namespace_ownership_follows_the_managed_by_label() {
        assert_eq!(namespace_state(None), NamespaceState::Absent);
        let ours = namespace(
            json!({"metadata": {"name": "database", "labels": {MANAGED_BY_LABEL: "lab"}},
                                    "status": {"phase": "Active"}}),
        );
        assert_eq!(namespace_state(Some(&ours)), NamespaceState::Lab);
        let helm = namespace(json!({"metadata": {"name": "database", "labels": {MANAGED_BY_LABEL: "Helm"}}}));
        assert_eq!(
            namespace_state(Some(&helm)),
            NamespaceState::Foreign {
                managed_by: Some("Helm".into())
            }
        );
        let bare = namespace(json!({"metadata": {"name": "database"}}));
        assert_eq!(
            namespace_state(Some(&bare)),
            NamespaceState::Foreign { managed_by: None }
        );
        assert_eq!(
            NamespaceState::Foreign {
                managed_by: Some("Helm".into())
            }
            .to_string(),
            "not managed by lab (app.kubernetes.io/managed-by=Helm)"
        );
        assert_eq!(NamespaceState::Absent.to_string(), "absent (will be created)");
    }

    #[test]
    fn a_terminating_namespace_is_terminating_whoever_owns_it() {
        let going = namespace(json!({
            "metadata": {"name": "database", "labels": {MANAGED_BY_LABEL: "lab"},
                         "deletionTimestamp": "2025-05-01T10:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"}
        }));
        assert_eq!(namespace_state(Some(&going)), NamespaceState::Terminating);
        let phase_only = namespace(json!({"metadata": {"name": "x"}, "status": {"phase": "Terminating"}}));
        assert_eq!(namespace_state(Some(&phase_only)), NamespaceState::Terminating);
    }

    #[tokio::test]
    async fn unreachable_server_is_named_with_context_and_kubeconfig() {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: gone\nclusters:\n- name: c\n  cluster:\n    server: \
                 http://127.0.0.1:{port}\ncontexts:\n- name: gone\n  context:\n    cluster: c\n    user: u\nusers:\n- \
                 name: u\n  user: {{}}\n"
            ),
        )
        .expect("write kubeconfig");
        let target = super::super::ClusterTarget {
            kubeconfig: Some(path.clone()),
            context: None,
        };
        let cluster = Cluster::connect(&target).await.expect("kubeconfig is valid");
        let error = cluster.preflight("database").await.expect_err("nothing listens there");
        let text = error.to_string();
        let expected = format!(
            "cannot reach the Kubernetes API server at http://127.0.0.1:{port} (context gone, kubeconfig {}): GET \
             /version: ",
            path.display()
        );
        assert!(text.starts_with(&expected), "{text}");
        assert!(text.contains("Connection refused"), "{text}");
        assert!(text.ends_with("Create one with \"kind create cluster\", check it with \"kubectl cluster-info\", or pick another with --context"), "{text}");
        assert_eq!(
            crate::exit::Classify::exit_status(&error),
            crate::exit::ExitStatus::Unreachable
        );
    }

    #[test]
    fn default_storage_class_needs_the_annotation() {
        assert_eq!(default_storage_class(&[]), None);
        let classes = [
            class("fast", None, "2025-01-01T00:00:00Z"),
            class("slow", Some("false"), "2025-01-01T00:00:00Z"),
        ];
        assert_eq!(default_storage_class(&classes), None);
        let classes = [
            class("fast", None, "2025-01-01T00:00:00Z"),
            class("standard", Some("true"), "2025-01-01T00:00:00Z"),
        ];
        assert_eq!(default_storage_class(&classes).as_deref(), Some("standard"));
    }

    #[test]
    fn newest_of_several_defaults_wins_and_beta_annotation_counts() {
        let classes = [
            class("standard", Some("true"), "2025-01-01T00:00:00Z"),
            class("local-path", Some("true"), "2025-03-01T00:00:00Z"),
        ];
        assert_eq!(default_storage_class(&classes).as_deref(), Some("local-path"));
        let beta: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "old", "annotations": {BETA_DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": "k8s.io/minikube-hostpath"
        }))
        .expect("valid StorageClass JSON");
        assert_eq!(default_storage_class(&[beta]).as_deref(), Some("old"));
    }
}
