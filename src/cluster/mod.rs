//! The cluster adapter: the only module that imports kube. Connects, checks the cluster, applies objects, waits on
//! pods with watches, forwards ports, reads Secrets, snapshots the lab for the report, and tears it down.
//!
//! Decisions (pod diagnosis, namespace ownership, default StorageClass, snapshot rows) are pure functions next to
//! the adapter code that feeds them, tested without a server.

mod apply;
mod assess;
mod connect;
mod error;
mod exercise;
mod forward;
mod lifecycle;
mod objects;
mod preflight;
mod snapshot;
mod teardown;
mod wait;

#[cfg(test)]
mod sim_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource};

pub use apply::Applied;
pub use assess::{
    Circumstances, LogSource, NO_NODE_GRACE, PodProblem, PodProgress, assess_missing_pod, assess_pod,
    latest_pod_warning,
};
pub use connect::ClusterTarget;
pub use error::ClusterError;
pub use forward::Forward;
pub use lifecycle::{ClaimIdentity, ExecOutput, PodIdentity, claim_name};
pub use objects::AnnotatedKind;
pub use preflight::{NamespaceState, Preflight, default_storage_class, lab_namespace_names, namespace_state};
pub use snapshot::{PodSnapshot, PvcSnapshot, ServiceSnapshot, Snapshot, StatefulSetSnapshot, StorageClassSnapshot};
pub use teardown::TeardownOutcome;

/// Label every object `lab` applies carries; a namespace with it is `lab`'s.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "lab";
/// Field manager of every server-side apply of the manifests.
pub const FIELD_MANAGER: &str = "lab";

/// A connection to one cluster. Cheap to clone: clones share the client and the kind cache.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    server_url: String,
    context: Option<String>,
    kubeconfig: String,
    /// `pinned_kind` answers per group/version/kind: one discovery request per kind, not per object.
    kinds: Arc<Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>>,
}

impl Cluster {
    /// Loads the kubeconfig and builds a client. Sends no request: reachability is checked by [`Cluster::preflight`]
    /// (and any later request that fails to connect reports [`ClusterError::Unreachable`]).
    pub async fn connect(target: &ClusterTarget) -> Result<Cluster, ClusterError> {
        let connection = connect::connect(target).await?;
        Ok(Cluster {
            client: connection.client,
            server_url: connection.server_url,
            context: connection.context,
            kubeconfig: connection.kubeconfig,
            kinds: Arc::default(),
        })
    }

    /// The API server URL, without a trailing slash.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The kubeconfig context in use, when one is known.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// Turns a failed request into an error: a Status from the server stays an API error, anything else (refused,
    /// timed out, TLS) means the server could not be reached.
    fn fail(&self, action: impl Into<String>, error: kube::Error) -> ClusterError {
        let action = action.into();
        match error {
            kube::Error::Api(_) => ClusterError::api(action, error),
            other => ClusterError::Unreachable {
                server: self.server_url.clone(),
                context: self.context.clone(),
                kubeconfig: self.kubeconfig.clone(),
                message: format!("{action}: {}", connect::error_chain(&other)),
            },
        }
    }
}
