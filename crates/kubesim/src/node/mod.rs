//! The simulated kubelet: runs the pods scheduled to `kubesim-node` as real processes in their own namespaces
//! (network behind a bridge, hostname, mounts), with the database image run as a local `mariadbd`, and reports
//! their status and events to the store.
//!
//! Timers are scaled down from the kubelet's: container restart back-off starts at 1 s (Kubernetes: 10 s),
//! doubles and is capped at 8 s (Kubernetes: 300 s); image pull back-off likewise; grace periods are capped at
//! 10 s. Probe periods are the manifest's, except that a readiness probe that has not yet succeeded is retried
//! every 200 ms and whenever the container prints a line (so readiness is seen as soon as it is true); a startup
//! probe likewise, with only the attempts at its period counting as failures.
//!
//! Cleanup: every process carries the environment variable `KUBESIM_NODE=<prefix>/<pod uid>` (inherited by
//! descendants), which is how shutdown, pod teardown and `leftovers` find them; long-lived processes are forked
//! from one thread with `PR_SET_PDEATHSIG`, and a watchdog kills the rest if the simulator dies abruptly.

mod database;
mod hosts;
mod logs;
mod netns;
mod pod;
mod probes;
mod runner;
mod sandbox;
mod spec;
mod status;
mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::faults::Faults;
use crate::pod_logs::{self, Budget, LogOptions};
use crate::store::{Change, ChangeKind, ObjectRef, Store};

pub use self::netns::NODE_IP;
pub(crate) use self::status::timestamp;
/// Where cluster DNS listens (UDP and TCP port 53): the node's own address on the bridge, which every pod
/// reaches directly, as a node-local DNS cache does (the kubelet's `clusterDNS` points there).
pub const DNS_IP: std::net::Ipv4Addr = NODE_IP;
use self::netns::NodeNetwork;
use self::pod::PodState;
use self::sys::Spawner;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain bookkeeping data: still consistent after a panic elsewhere.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Programs the node runs, by absolute path.
#[derive(Clone, Debug)]
struct Programs {
    ip: PathBuf,
    sleep: PathBuf,
    database: database::Programs,
}

/// What this machine lacks to run pods (root, programs), as one message naming each missing piece and its package;
/// `None` when nothing is missing.
pub fn requirements_missing_here() -> Option<String> {
    missing_requirements(sys::is_root(), &|name: &str| sys::find_program(name).is_some())
}

/// What is missing on this machine to run pods, as one message naming each missing piece and its package.
fn missing_requirements(is_root: bool, find: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut problems = Vec::new();
    if !is_root {
        problems
            .push("the node must run as root (it creates network and mount namespaces); run it as root".to_string());
    }
    let needed = [
        ("ip", "iproute2"),
        ("sleep", "coreutils"),
        ("sh", "dash"),
        ("mariadbd", "mariadb-server"),
        ("mariadb-install-db", "mariadb-server"),
        ("mariadb", "mariadb-client"),
    ];
    let mut packages = BTreeSet::new();
    let mut missing = Vec::new();
    for (program, package) in needed {
        if !find(program) {
            missing.push(format!("`{program}`"));
            packages.insert(package);
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "missing {} (install with `apt-get install {}`)",
            missing.join(", "),
            packages.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "kubesim cannot run pods on this machine: {}",
            problems.join("; ")
        ))
    }
}

struct Inner {
    store: Store,
    faults: Faults,
    pods_dir: PathBuf,
    programs: Programs,
    spawner: Spawner,
    network: NodeNetwork,
    pods: Mutex<BTreeMap<String, Arc<PodState>>>,
    shutdown: CancellationToken,
    hosts_dirty: Notify,
    /// Bumped when Secrets, ConfigMaps or volumes change (containers waiting on them retry).
    config_changed: watch::Sender<u64>,
    pulled_images: Mutex<BTreeSet<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The unique name prefix; processes carry `<prefix>/<pod uid>` (see `sys::MARKER`).
    prefix: String,
    shut_down: std::sync::atomic::AtomicBool,
    /// Kills the node's processes should the simulator die without shutting down (see `start_watchdog`).
    watchdog: Mutex<Option<std::process::Child>>,
}

/// The kubelet of the simulated cluster (node name `kubesim-node`).
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// Starts the kubelet loop on the current tokio runtime. Fails naming whatever is missing on the machine.
    pub fn start(store: Store, faults: Faults, work_dir: PathBuf, name_prefix: String) -> anyhow::Result<Node> {
        if let Some(message) = requirements_missing_here() {
            anyhow::bail!(message);
        }
        let program = |name: &str| sys::find_program(name).with_context(|| format!("`{name}` not found"));
        let programs = Programs {
            ip: program("ip")?,
            sleep: program("sleep")?,
            database: database::Programs {
                mariadbd: program("mariadbd")?,
                install_db: program("mariadb-install-db")?,
                client: program("mariadb")?,
            },
        };
        let runtime =
            tokio::runtime::Handle::try_current().context("Node::start must be called inside a tokio runtime")?;
        let pods_dir = work_dir.join("pods");
        std::fs::create_dir_all(&pods_dir).with_context(|| format!("cannot create {}", pods_dir.display()))?;
        let spawner = Spawner::new(runtime.clone(), &name_prefix)?;
        let network = match NodeNetwork::create(&spawner, programs.ip.clone(), &programs.sleep, &name_prefix) {
            Ok(network) => network,
            Err(error) => {
                spawner.stop();
                return Err(error);
            }
        };
        let inner = Arc::new(Inner {
            store,
            faults,
            pods_dir,
            programs,
            spawner,
            prefix: name_prefix.clone(),
            network,
            pods: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            hosts_dirty: Notify::new(),
            config_changed: watch::Sender::new(0),
            pulled_images: Mutex::new(BTreeSet::new()),
            tasks: Mutex::new(Vec::new()),
            shut_down: std::sync::atomic::AtomicBool::new(false),
            watchdog: Mutex::new(start_watchdog(&name_prefix)),
        });
        let dns_sockets = match inner.network.bind(std::net::SocketAddr::from((DNS_IP, 53))) {
            Ok(sockets) => sockets,
            Err(error) => {
                inner.shutdown_now();
                return Err(error.context("cannot start cluster DNS"));
            }
        };
        let proxy_netns = match inner.network.namespace() {
            Ok(netns) => netns,
            Err(error) => {
                inner.shutdown_now();
                return Err(anyhow::Error::new(error).context("cannot start the Service proxy"));
            }
        };
        let watcher = runtime.spawn(watch_store(inner.clone()));
        let hosts = runtime.spawn(refresh_hosts(inner.clone()));
        let dns = runtime.spawn(crate::dns::serve(inner.store.clone(), dns_sockets.0, dns_sockets.1));
        let proxy = runtime.spawn(crate::proxy::serve(inner.store.clone(), proxy_netns));
        lock(&inner.tasks).extend([watcher, hosts, dns, proxy]);
        Ok(Node { inner })
    }

    /// Opens a TCP connection to `port` inside the pod's network namespace (for port-forward).
    pub async fn connect(&self, namespace: &str, pod: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let state = self.inner.find(namespace, pod)?;
        let namespaces = state.namespaces().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("pod \"{pod}\" has no sandbox"))
        })?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        sys::connect_in_namespace(&namespaces.net, addr, Duration::from_secs(5)).await
    }

    /// Spawns `argv` inside the pod's namespaces with the container's env; stdout and stderr piped, stdin piped
    /// when asked.
    pub async fn spawn_exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        argv: &[String],
        stdin: bool,
    ) -> std::io::Result<tokio::process::Child> {
        let (state, entry) = self.exec_target(namespace, pod, container, argv)?;
        let mut command = tokio::process::Command::from(entry.command(argv));
        command
            .stdin(if stdin {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = self
            .inner
            .spawner
            .spawn_tokio(command)
            .await
            .map_err(|err| crate::streams::describe_spawn_failure(argv, err))?;
        if let Some(pid) = child.id() {
            state.track_exec(pid as i32);
        }
        Ok(child)
    }

    /// Spawns `argv` inside the pod like [`Node::spawn_exec`], on a new terminal (exec with `tty=true`): the
    /// terminal is its controlling terminal, stdin, stdout and stderr.
    pub async fn spawn_exec_terminal(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        argv: &[String],
    ) -> std::io::Result<(tokio::process::Child, crate::pty::Terminal)> {
        let (state, entry) = self.exec_target(namespace, pod, container, argv)?;
        let mut command = entry.session_command(argv);
        let terminal = crate::pty::Terminal::attach(&mut command)?;
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let child = self
            .inner
            .spawner
            .spawn_tokio(command)
            .await
            .map_err(|err| crate::streams::describe_spawn_failure(argv, err))?;
        if let Some(pid) = child.id() {
            // The child leads its own session, hence a process group with its pid.
            state.track_exec(pid as i32);
        }
        Ok((child, terminal))
    }

    /// The pod and the running container an exec of `argv` goes into (the pod's first container by default).
    fn exec_target(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        argv: &[String],
    ) -> std::io::Result<(Arc<PodState>, Arc<sandbox::Entry>)> {
        let state = self.inner.find(namespace, pod)?;
        let container = container.map_or_else(|| state.default_container(), str::to_string);
        let entry = state.entry(&container).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("container {container} is not running in pod {pod}"),
            )
        })?;
        if argv.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"));
        }
        Ok((state, entry))
    }

    /// Container log of the current (or previous) instance, its last `tail_lines` lines; None when there is none.
    pub fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        tail_lines: Option<usize>,
    ) -> Option<String> {
        let options = LogOptions {
            tail_lines,
            ..LogOptions::default()
        };
        self.read_logs(namespace, pod, container, previous, &options)
    }

    /// Container log of the current (or previous) instance as a log request with `options` sees it.
    pub fn read_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        options: &LogOptions,
    ) -> Option<String> {
        let state = self.inner.find(namespace, pod).ok()?;
        let container = container.map_or_else(|| state.default_container(), str::to_string);
        let path = state.log_path(&container, previous)?;
        let text = std::fs::read_to_string(path).ok()?;
        Some(Budget::new(options).take(pod_logs::render(&text, options, true)))
    }

    /// The current instance's log so far, then each new line as it is written, until the instance stops (or the
    /// byte limit is reached); None when the container has no instance yet.
    pub fn follow_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        options: LogOptions,
    ) -> Option<BoxStream<'static, Bytes>> {
        let state = self.inner.find(namespace, pod).ok()?;
        let (path, feed) = state.log_feed(container)?;
        let mut reader = logs::LogReader::new(path);
        let mut budget = Budget::new(&options);
        let first = budget.take(pod_logs::render(&reader.read_new(), &options, true));
        let follow = Follow {
            reader,
            feed,
            options,
            budget,
        };
        let first = futures::stream::iter((!first.is_empty()).then(|| Bytes::from(first)));
        let rest = futures::stream::unfold(follow, |mut follow| async move {
            let chunk = follow.next().await?;
            Some((Bytes::from(chunk), follow))
        });
        Some(first.chain(rest).boxed())
    }

    /// Kills every process, removes namespaces, links and files. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        self.inner.shutdown_now();
    }

    /// What of this node is still on the machine (empty = clean).
    pub fn leftovers(&self) -> Vec<String> {
        self.inner.leftovers()
    }
}

/// A followed log after its first part.
struct Follow {
    reader: logs::LogReader,
    /// None once the instance has stopped.
    feed: Option<tokio::sync::broadcast::Receiver<String>>,
    options: LogOptions,
    budget: Budget,
}

impl Follow {
    /// The next lines written, None at the end.
    async fn next(&mut self) -> Option<String> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if self.budget.exhausted() {
                return None;
            }
            let feed = self.feed.as_mut()?;
            // A line was written (or many, when lagging): read what the file has now; a closed feed means the
            // instance stopped, and what it wrote last is read once more.
            if let Err(RecvError::Closed) = feed.recv().await {
                self.feed = None;
            }
            let chunk = self
                .budget
                .take(pod_logs::render(&self.reader.read_new(), &self.options, false));
            if !chunk.is_empty() {
                return Some(chunk);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn find(&self, namespace: &str, name: &str) -> std::io::Result<Arc<PodState>> {
        lock(&self.pods)
            .values()
            .filter(|pod| pod.namespace == namespace && pod.name == name)
            .max_by_key(|pod| !pod.deleting.is_cancelled())
            .cloned()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("pod \"{name}\" is not running on this node"),
                )
            })
    }

    fn event(&self, pod: &PodState, type_: &str, reason: &str, message: &str) {
        let involved = ObjectRef {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        };
        self.store
            .record_event(&pod.namespace, &involved, type_, reason, message);
    }

    fn on_change(self: &Arc<Self>, change: Change) {
        match change.resource.as_str() {
            "pods" => {
                self.reconcile(&change.object, change.kind == ChangeKind::Deleted);
                self.hosts_dirty.notify_one();
            }
            "services" | "endpoints" => self.hosts_dirty.notify_one(),
            "secrets" | "configmaps" | "persistentvolumeclaims" | "persistentvolumes" => {
                self.config_changed.send_modify(|generation| *generation += 1);
            }
            _ => {}
        }
    }

    fn resync(self: &Arc<Self>) {
        let pods = self.store.list("pods", None);
        let live: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string))
            .collect();
        for pod in &pods {
            self.reconcile(pod, false);
        }
        // Pods that vanished while we were not listening.
        let gone: Vec<Arc<PodState>> = lock(&self.pods)
            .values()
            .filter(|p| !live.contains(&p.uid))
            .cloned()
            .collect();
        for pod in gone {
            pod.vanish();
        }
        self.hosts_dirty.notify_one();
    }

    fn reconcile(self: &Arc<Self>, object: &Value, deleted: bool) {
        if self.shutdown.is_cancelled()
            || object.pointer("/spec/nodeName").and_then(Value::as_str) != Some(crate::NODE_NAME)
        {
            return;
        }
        let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) else {
            return;
        };
        let mut pods = lock(&self.pods);
        if let Some(pod) = pods.get(uid) {
            if deleted {
                pod.vanish();
            } else {
                pod.observe(object);
            }
            return;
        }
        if deleted {
            return;
        }
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            // Never started here: nothing to stop.
            drop(pods);
            self.store.remove("pods", namespace, name);
            return;
        }
        let state = Arc::new(PodState::new(object, &self.pods_dir, &self.prefix));
        pods.insert(uid.to_string(), state.clone());
        drop(pods);
        let task = tokio::spawn(pod::run_pod(self.clone(), state));
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Writes every pod's hosts file (its own entries only; other names come from cluster DNS).
    fn write_hosts_files(&self) {
        let ours: Vec<Arc<PodState>> = lock(&self.pods).values().cloned().collect();
        for pod in ours {
            let Some(sandbox) = pod.sandbox() else { continue };
            let mut own = hosts::PodEntry::from_object(&pod.object());
            own.ip = Some(sandbox.address.to_string());
            own.hostname = sandbox.hostname.clone();
            if let Err(error) = sandbox.write_hosts(&hosts::render(&own)) {
                tracing::warn!(pod = %pod.name, %error, "cannot write the hosts file");
            }
        }
    }

    fn shutdown_now(&self) {
        if self.shut_down.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        self.shutdown.cancel();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let pods: Vec<Arc<PodState>> = std::mem::take(&mut *lock(&self.pods)).into_values().collect();
        for pod in &pods {
            pod.kill_everything();
        }
        for pod in &pods {
            pod.destroy_sandbox(&self.network);
        }
        self.network.shutdown();
        // Whatever of ours is still alive (descendants included) is killed until none is left.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let alive = self.processes();
            if alive.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            for pid in alive {
                sys::kill(pid);
                sys::reap(pid as i32);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir_all(&self.pods_dir);
        self.spawner.stop();
        if let Some(mut watchdog) = lock(&self.watchdog).take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    /// Live processes of this node.
    fn processes(&self) -> Vec<u32> {
        let ours = format!("{}/", self.prefix);
        sys::marked_processes(|marker| marker.starts_with(&ours))
    }

    /// While the node runs, only what belongs to pods that are gone counts; after shutdown, everything.
    fn leftovers(&self) -> Vec<String> {
        let ours = format!("{}/", self.prefix);
        let node_marker = format!("{}/node", self.prefix);
        let running = !self.shut_down.load(std::sync::atomic::Ordering::SeqCst);
        let live_pods: BTreeSet<String> = lock(&self.pods).values().map(|p| p.marker.clone()).collect();
        let mut found: Vec<String> = sys::marked_processes(|marker| {
            marker.starts_with(&ours) && !(running && (marker == node_marker || live_pods.contains(marker)))
        })
        .into_iter()
        .map(|pid| {
            let command = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("process {pid} ({})", command.replace('\0', " ").trim())
        })
        .collect();
        if running {
            let known: BTreeSet<String> = lock(&self.pods).values().map(|p| p.uid.clone()).collect();
            if let Ok(entries) = std::fs::read_dir(&self.pods_dir) {
                for entry in entries
                    .flatten()
                    .filter(|e| !known.contains(&e.file_name().to_string_lossy().to_string()))
                {
                    found.push(format!("pod directory {}", entry.path().display()));
                }
            }
            return found;
        }
        if self.network.holder_pid().is_some() {
            found.push("the node network namespace".into());
        }
        for pod in lock(&self.pods).values() {
            found.push(format!("pod {}/{} still tracked", pod.namespace, pod.name));
        }
        if let Ok(entries) = std::fs::read_dir(&self.pods_dir) {
            for entry in entries.flatten() {
                found.push(format!("pod directory {}", entry.path().display()));
            }
        }
        let links = std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten();
        for link in links.filter(|l| l.file_name().to_string_lossy().starts_with(&self.prefix)) {
            found.push(format!("host link {}", link.file_name().to_string_lossy()));
        }
        found
    }
}

/// A shell that waits for its stdin (a pipe only this process holds) to close and then kills every process
/// carrying this node's marker. A clean shutdown kills it first; if the simulator dies abruptly (SIGKILL, a
/// test harness timeout), PR_SET_PDEATHSIG takes the direct children but not their descendants (`sh -c`
/// forks), and this catches those.
fn start_watchdog(prefix: &str) -> Option<std::process::Child> {
    let script = format!(
        "read _closed; for round in 1 2 3; do for p in /proc/[0-9]*; do \
         if grep -qsz \"^{}=$0/\" \"$p/environ\"; then kill -9 \"${{p#/proc/}}\" 2>/dev/null; fi; done; done",
        sys::MARKER
    );
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", &script, prefix])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    match command.spawn() {
        Ok(child) => Some(child),
        Err(error) => {
            tracing::warn!(%error, "no watchdog: processes may outlive an abrupt end of the simulator");
            None
        }
    }
}

async fn watch_store(inner: Arc<Inner>) {
    let mut changes = inner.store.subscribe();
    inner.resync();
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Ok(change) => inner.on_change(change),
                Err(broadcast::error::RecvError::Lagged(_)) => inner.resync(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn refresh_hosts(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = inner.hosts_dirty.notified() => inner.write_hosts_files(),
        }
    }
}

#[cfg(test)]
mod tests;
