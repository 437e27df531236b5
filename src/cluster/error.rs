//! `ClusterError`: every way the cluster adapter fails, each message naming the cause and the fix.

use std::time::Duration;

use crate::exit::{Classify, ExitStatus};

use super::assess::PodProblem;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot load kubeconfig {kubeconfig}: {message}; check the file given with --kubeconfig or $KUBECONFIG")]
    Kubeconfig { kubeconfig: String, message: String },

    #[error(
        "context \"{context}\" is not in kubeconfig {kubeconfig}; contexts there: {}; pass one of them with --context",
        list_or_none(available)
    )]
    UnknownContext {
        context: String,
        kubeconfig: String,
        available: Vec<String>,
    },

    #[error(
        "cannot reach the Kubernetes API server at {server} (context {}, kubeconfig {kubeconfig}): {message}; is the \
         cluster running? Create one with \"kind create cluster\", check it with \"kubectl cluster-info\", or pick \
         another with --context",
        context.as_deref().unwrap_or("(current)")
    )]
    Unreachable {
        server: String,
        context: Option<String>,
        kubeconfig: String,
        message: String,
    },

    #[error(
        "namespace \"{namespace}\" exists and is not managed by lab ({}); choose another with --namespace, or pass \
         --force to use it anyway",
        managed_by.as_deref().map(|m| format!("app.kubernetes.io/managed-by={m}")).unwrap_or_else(|| "no app.kubernetes.io/managed-by label".to_string())
    )]
    NamespaceNotOwned {
        namespace: String,
        managed_by: Option<String>,
    },

    #[error(
        "the cluster has no default StorageClass (classes: {}): the StatefulSet's PersistentVolumeClaims would stay \
         Pending forever; {} mark a class default with \"kubectl patch storageclass <name> -p \
         '{{\"metadata\":{{\"annotations\":{{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}}}}'\"",
        list_or_none(classes),
        super::assess::storage_class_hint(*kind)
    )]
    NoDefaultStorageClass {
        classes: Vec<String>,
        /// The context is a kind cluster's, which creates a default class itself.
        kind: bool,
    },

    #[error("{kind} \"{name}\" is invalid: {problem}")]
    InvalidObject {
        kind: String,
        name: String,
        problem: String,
    },

    #[error("applying {kind} \"{name}\" failed: {}; {}", api_message(source), apply_fix(source))]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("{action} failed: {}; {}", api_message(source), api_fix(source))]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error("{what} not found; {fix}")]
    NotFound { what: String, fix: String },

    #[error("timed out after {} waiting for {what}; last state seen: {last_state}; {fix}", seconds(*after))]
    Timeout {
        what: String,
        after: Duration,
        last_state: String,
        fix: String,
    },

    #[error("{0}")]
    PodFailed(Box<PodProblem>),

    #[error("cannot open a local port for the port-forward to {pod}: {message}")]
    Forward { pod: String, message: String },

    #[error("running a command in pod {pod} failed: {message}")]
    Exec { pod: String, message: String },
}

impl ClusterError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> ClusterError {
        ClusterError::Api {
            action: action.into(),
            source,
        }
    }
}

impl Classify for ClusterError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ClusterError::Kubeconfig { .. }
            | ClusterError::UnknownContext { .. }
            | ClusterError::NamespaceNotOwned { .. }
            | ClusterError::NoDefaultStorageClass { .. }
            | ClusterError::InvalidObject { .. } => ExitStatus::Usage,
            ClusterError::Apply { source, .. } | ClusterError::Api { source, .. } => match status_code(source) {
                // The request was understood and refused: bad objects or missing permissions.
                Some(400 | 403 | 422) => ExitStatus::Usage,
                Some(404 | 409) => ExitStatus::Unhealthy,
                _ => ExitStatus::Unreachable,
            },
            ClusterError::NotFound { .. } => ExitStatus::Unhealthy,
            ClusterError::Unreachable { .. }
            | ClusterError::Timeout { .. }
            | ClusterError::PodFailed(_)
            | ClusterError::Forward { .. }
            | ClusterError::Exec { .. } => ExitStatus::Unreachable,
        }
    }
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The server's own message when it sent a Status, else the client error.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

fn api_fix(error: &kube::Error) -> &'static str {
    match status_code(error) {
        Some(401) => "the kubeconfig's credentials were rejected: log in again or pick another --context",
        Some(403) => {
            "the kubeconfig's user lacks permission for this: use an account with admin rights on the namespace"
        }
        Some(404) => "it does not exist (any more): run \"lab up\" to create the lab",
        Some(409) => "someone else changed it at the same time: run the command again",
        Some(_) => "see the server's message above",
        None => "check that the cluster is still reachable (\"kubectl cluster-info\") and run the command again",
    }
}

fn apply_fix(error: &kube::Error) -> &'static str {
    match status_code(error) {
        Some(400 | 422) => "the object in the manifests is invalid: fix it (\"lab render\" shows what is applied)",
        Some(403) if api_message(error).contains("being terminated") => {
            "the namespace is still being deleted: wait until it is gone and run the command again"
        }
        _ => api_fix(error),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// `45s` or `5m 0s`: what a person reads in a timeout message.
pub(crate) fn seconds(duration: Duration) -> String {
    let total = duration.as_secs_f64().round() as u64;
    if total < 60 {
        format!("{total}s")
    } else {
        format!("{}m {}s", total / 60, total % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure(message, reason).with_code(code)))
    }

    #[test]
    fn unknown_context_lists_the_contexts_and_is_a_usage_error() {
        let error = ClusterError::UnknownContext {
            context: "prod".into(),
            kubeconfig: "/home/me/.kube/config".into(),
            available: vec!["kind-kind".into(), "minikube".into()],
        };
        assert_eq!(
            error.to_string(),
            "context \"prod\" is not in kubeconfig /home/me/.kube/config; contexts there: kind-kind, minikube; pass \
             one of them with --context"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn unreachable_names_server_context_and_the_kind_hint() {
        let error = ClusterError::Unreachable {
            server: "https://127.0.0.1:6443".into(),
            context: Some("kind-kind".into()),
            kubeconfig: "/tmp/kc".into(),
            message: "connection refused".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach the Kubernetes API server at https://127.0.0.1:6443 (context kind-kind, kubeconfig /tmp/kc): \
             connection refused; is the cluster running? Create one with \"kind create cluster\", check it with \
             \"kubectl cluster-info\", or pick another with --context"
        );
        assert_eq!(error.exit_status(), ExitStatus::Unreachable);
    }

    #[test]
    fn foreign_namespace_names_its_owner() {
        let error = ClusterError::NamespaceNotOwned {
            namespace: "database".into(),
            managed_by: Some("helm".into()),
        };
        assert_eq!(
            error.to_string(),
            "namespace \"database\" exists and is not managed by lab (app.kubernetes.io/managed-by=helm); choose \
             another with --namespace, or pass --force to use it anyway"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn missing_default_storage_class_says_claims_stay_pending_and_how_to_fix() {
        let error = ClusterError::NoDefaultStorageClass {
            classes: vec!["fast".into()],
            kind: false,
        };
        let text = error.to_string();
        assert!(
            text.starts_with(
                "the cluster has no default StorageClass (classes: fast): the StatefulSet's \
                                  PersistentVolumeClaims would stay Pending forever;"
            ),
            "{text}"
        );
        assert!(text.ends_with(
            "\"kubectl patch storageclass <name> -p '{\"metadata\":{\"annotations\":{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}'\""
        ), "{text}");
        assert!(
            text.contains("; install a provisioner (e.g. rancher's local-path-provisioner) or mark"),
            "{text}"
        );
        assert!(!text.contains("kind"), "not a kind cluster: {text}");
        let on_kind = ClusterError::NoDefaultStorageClass {
            classes: vec![],
            kind: true,
        };
        assert!(
            on_kind
                .to_string()
                .contains("; kind creates \"standard\" (rancher's local-path-provisioner) as the default"),
            "{on_kind}"
        );
    }

    #[test]
    fn apply_errors_carry_the_server_message_and_are_classified_by_code() {
        let invalid = ClusterError::Apply {
            kind: "StatefulSet".into(),
            name: "mysql".into(),
            source: api_error(
                422,
                "Invalid",
                "StatefulSet.apps \"mysql\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden",
            ),
        };
        assert_eq!(
            invalid.to_string(),
            "applying StatefulSet \"mysql\" failed: StatefulSet.apps \"mysql\" is invalid: spec: Forbidden: updates to \
             statefulset spec for fields other than 'replicas' are forbidden; the object in the manifests is invalid: \
             fix it (\"lab render\" shows what is applied)"
        );
        assert_eq!(invalid.exit_status(), ExitStatus::Usage);

        let terminating = ClusterError::Apply {
            kind: "Secret".into(),
            name: "mysql-secret".into(),
            source: api_error(
                403,
                "Forbidden",
                "secrets \"mysql-secret\" is forbidden: unable to create new content in namespace database because it is being terminated",
            ),
        };
        assert!(
            terminating
                .to_string()
                .ends_with("the namespace is still being deleted: wait until it is gone and run the command again")
        );
    }

    #[test]
    fn timeout_names_what_for_how_long_and_the_last_state() {
        let error = ClusterError::Timeout {
            what: "pod database/mysql-1 to become Ready".into(),
            after: Duration::from_secs(300),
            last_state: "containers starting, not Ready yet".into(),
            fix: "raise --timeout".into(),
        };
        assert_eq!(
            error.to_string(),
            "timed out after 5m 0s waiting for pod database/mysql-1 to become Ready; last state seen: containers \
             starting, not Ready yet; raise --timeout"
        );
        assert_eq!(error.exit_status(), ExitStatus::Unreachable);
        assert_eq!(seconds(Duration::from_millis(44_600)), "45s");
    }
}
