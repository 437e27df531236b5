//! kubesim: a simulated Kubernetes cluster for testing `lab`.
//!
//! [`Kubesim::start`] runs an API server on loopback, the controllers (StatefulSet, scheduler, volumes,
//! Endpoints, namespace deletion, garbage collection), a node that runs pods as local processes with cluster DNS
//! ([`dns`]) and Service ClusterIPs that route ([`proxy`]) on its pod network, and writes a kubeconfig for it. Several simulators can run at once.

pub mod api;
pub mod control;
pub mod controllers;
pub mod defaults;
pub mod dns;
pub mod events_view;
pub mod faults;
pub mod kubeconfig;
pub mod managed;
pub mod node;
pub mod openapi;
pub mod pod_logs;
pub mod protobuf;
pub mod proxy;
pub mod pty;
pub mod resources;
pub mod revisions;
pub mod runtime;
pub mod scheduler;
pub mod selectors;
pub mod spdy;
pub mod status;
pub mod store;
pub mod strategic;
pub mod streams;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

pub use faults::Faults;
pub use store::{Change, ChangeKind, ObjectRef, Store};

use crate::control::ControlPlane;
use crate::runtime::PodRuntime;

/// The name of the one node pods are scheduled to.
pub const NODE_NAME: &str = "kubesim-node";

/// How a simulator starts.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Each container's first start takes this long before it is ready (a fault that can also be switched later).
    pub slow_first_start: Option<Duration>,
    /// Control plane only: pods are scheduled but no node runs them (their status is whatever tests write).
    pub without_node: bool,
    /// The node starts not Ready (tainted `node.kubernetes.io/not-ready`) for this long, as a fresh kind node
    /// is while its network plugin starts (a fault that can also be switched later).
    pub node_not_ready_for: Option<Duration>,
}

/// A running simulated cluster. Stops (processes, network namespaces, files) on `stop` or drop, panics included.
pub struct Kubesim {
    url: String,
    kubeconfig_path: PathBuf,
    control: ControlPlane,
    runtime: Option<tokio::runtime::Runtime>,
    /// The API server and the controllers: stopped before the node so nothing new starts while it shuts down.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    node: Option<Arc<node::Node>>,
    work_dir: Option<tempfile::TempDir>,
    work_path: PathBuf,
}

/// Distinguishes simulators started by one process.
static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short prefix for the network namespaces and links of one simulator, unique across processes.
fn name_prefix() -> String {
    let instance = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("ks{:x}{instance:x}", std::process::id() % 0x10000)
}

/// What this machine lacks to run a simulator with a node (root, the programs pods run), as one message naming
/// each missing piece and the package to install; `None` when it can run one. `start` fails with the same message.
pub fn missing_requirements() -> Option<String> {
    node::requirements_missing_here()
}

impl Kubesim {
    /// Blocking: starts its own tokio runtime on background threads; usable from plain #[test] fns (and from async
    /// code, where it blocks the calling thread while starting).
    pub fn start(options: Options) -> anyhow::Result<Kubesim> {
        // A fresh thread has no tokio context, so building and blocking on our runtime works wherever we are called.
        std::thread::Builder::new()
            .name("kubesim-start".into())
            .spawn(move || Kubesim::start_here(options))
            .context("cannot spawn the kubesim start thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("kubesim failed to start: the start thread panicked"))?
    }

    fn start_here(options: Options) -> anyhow::Result<Kubesim> {
        let work_dir = tempfile::Builder::new()
            .prefix("kubesim-")
            .tempdir()
            .context("cannot create the kubesim work directory")?;
        let work_path = work_dir.path().to_path_buf();
        let volumes_dir = work_path.join("volumes");
        std::fs::create_dir_all(&volumes_dir).with_context(|| format!("cannot create {}", volumes_dir.display()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubesim")
            .enable_all()
            .build()
            .context("cannot start the kubesim tokio runtime")?;
        let faults = Faults::default();
        faults.set_slow_first_start(options.slow_first_start);
        if let Some(duration) = options.node_not_ready_for {
            faults.node_not_ready_for(duration);
        }
        let control = ControlPlane::new(Store::new(), faults.clone(), volumes_dir);
        seed(&control);

        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("cannot listen on 127.0.0.1 for the kubesim API server")?;
        let address = listener.local_addr().context("cannot read the API server's address")?;
        let url = format!("http://{address}");
        let router = api::router(control.clone());
        let server = runtime.spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the API server stopped");
            }
        });
        let controllers = {
            let _context = runtime.enter();
            controllers::spawn(control.clone())
        };

        let node = if options.without_node {
            None
        } else {
            let _context = runtime.enter();
            let node = node::Node::start(control.store.clone(), faults, work_path.join("node"), name_prefix())
                .context("the kubesim node cannot run pods on this machine")?;
            let node = Arc::new(node);
            control.attach_runtime(node.clone() as Arc<dyn PodRuntime>);
            Some(node)
        };

        let kubeconfig_path = work_path.join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig::render(&url, "default"))
            .with_context(|| format!("cannot write {}", kubeconfig_path.display()))?;
        tracing::info!(%url, kubeconfig = %kubeconfig_path.display(), "started");
        Ok(Kubesim {
            url,
            kubeconfig_path,
            control,
            runtime: Some(runtime),
            tasks: vec![server, controllers],
            node,
            work_dir: Some(work_dir),
            work_path,
        })
    }

    /// The kubeconfig file (context, cluster and user `kubesim`, namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fault switches; they take effect at once.
    pub fn faults(&self) -> &Faults {
        &self.control.faults
    }

    /// A cluster without a default StorageClass, at once: the fault switch alone lets the controller remove the
    /// class on its next pass, and a client listing classes before that still sees it.
    pub fn remove_default_storage_class(&self) {
        self.control.faults.set_no_default_storage_class(true);
        self.control
            .store
            .remove("storageclasses", "", control::DEFAULT_STORAGE_CLASS);
    }

    /// The object store, for tests that inspect or steer state directly.
    pub fn store(&self) -> &Store {
        &self.control.store
    }

    /// The stored objects of `resource` (plural, e.g. "pods"), in one namespace or all.
    pub fn objects(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.control.store.list(resource, namespace)
    }

    /// A client-side handle on the runtime, to run async work (e.g. a kube client) next to the simulator.
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|runtime| runtime.handle().clone())
    }

    /// What of the pods is still on the machine (empty = clean): meaningful after `shutdown`.
    pub fn leftovers(&self) -> Vec<String> {
        let mut leftovers = self.node.as_ref().map(|node| node.leftovers()).unwrap_or_default();
        if self.work_dir.is_none() && self.work_path.exists() {
            leftovers.push(format!("work directory {}", self.work_path.display()));
        }
        leftovers
    }

    /// Stops everything and removes what the simulator created; idempotent. `leftovers` tells what remains.
    pub fn shutdown(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(node) = self.node.as_ref() {
            match self.runtime.as_ref() {
                Some(runtime) => {
                    let _context = runtime.enter();
                    node.shutdown();
                }
                None => node.shutdown(),
            }
        }
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(2));
            }
        }
        if let Some(work_dir) = self.work_dir.take()
            && let Err(error) = work_dir.close()
        {
            tracing::warn!(%error, "could not remove the work directory");
        }
    }

    /// Stops the simulator (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }
}

impl Drop for Kubesim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What every fresh cluster has: the system namespaces, the node (shaped by the faults switched so far), the
/// `kubernetes` Service.
fn seed(control: &ControlPlane) {
    let namespaces = resources::by_plural("namespaces").expect("namespaces are served");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let _ = control.create(namespaces, "", json!({ "metadata": { "name": name } }), false);
    }
    let kubelet_version = format!("v{}.{}.0", api::KUBERNETES_VERSION.0, api::KUBERNETES_VERSION.1);
    let node = scheduler::node_object(
        &control.faults.node_shape(),
        &node::NODE_IP.to_string(),
        &kubelet_version,
    );
    let _ = control.store.create("nodes", "", node);
    let services = resources::by_plural("services").expect("services are served");
    let kubernetes = json!({
        "metadata": { "name": "kubernetes", "labels": { "component": "apiserver", "provider": "kubernetes" } },
        "spec": { "clusterIP": "10.96.0.1", "ports": [{ "name": "https", "port": 443, "targetPort": 6443 }] },
    });
    let _ = control.create(services, "default", kubernetes, false);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod scheduling_tests;
