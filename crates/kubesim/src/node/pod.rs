//! One pod's life on the node: sandbox, init containers in order, containers with restarts and back-off, image
//! pulls, probes, status and events, and graceful termination when the pod is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::logs::{self, LogSink};
use super::netns::{self, NodeNetwork};
use super::probes::{self, Probe};
use super::runner::Ctx;
use super::sandbox::{self, Entry, Namespaces, Sandbox};
use super::spec::{self, Program};
use super::status::{self, ContainerRecord, PodRuntime, State, Terminated};
use super::{Inner, database, lock, sys};

/// Container restart and image pull back-off: 1 s, doubling, capped at 8 s (the kubelet: 10 s to 300 s).
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// A container that ran this long starts its back-off afresh.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);
/// Grace periods are capped so deletions stay quick in tests.
const GRACE_CAP: Duration = Duration::from_secs(10);
/// How often a readiness probe that has not succeeded yet is retried.
const UNREADY_RETRY: Duration = Duration::from_millis(200);
/// How long ErrImagePull shows before ImagePullBackOff.
const ERR_IMAGE_PULL_HOLD: Duration = Duration::from_secs(1);

/// The delay before restart number `restarts` (0-based): the first restart is immediate, as in the kubelet.
pub fn backoff(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (restarts - 1).min(16);
    (BACKOFF_BASE * factor).min(BACKOFF_CAP)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Init(usize),
    Main(usize),
}

impl Slot {
    fn spec(self, pod: &Value) -> Value {
        let (field, index) = match self {
            Slot::Init(i) => ("initContainers", i),
            Slot::Main(i) => ("containers", i),
        };
        pod.pointer(&format!("/spec/{field}/{index}"))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

enum Outcome {
    /// The container finished for good (true: it succeeded).
    Done(bool),
    /// The pod is being deleted.
    Stopped,
}

/// The log files of a container's current and previous instance.
#[derive(Default)]
struct InstanceLogs {
    current: Option<PathBuf>,
    previous: Option<PathBuf>,
    /// The current instance's line feed while it runs (for `kubectl logs -f`).
    feed: Option<broadcast::WeakSender<String>>,
}

pub(super) struct PodState {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub dir: PathBuf,
    /// The process marker of this pod (see `sys::MARKER`).
    pub marker: String,
    object: Mutex<Value>,
    pub deleting: CancellationToken,
    vanished: AtomicBool,
    runtime: Mutex<PodRuntime>,
    sandbox: Mutex<Option<Arc<Sandbox>>>,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// Per container: its instance logs.
    logs: Mutex<BTreeMap<String, InstanceLogs>>,
    groups: Mutex<BTreeSet<i32>>,
    exec_groups: Mutex<BTreeSet<i32>>,
}

struct StoreLookup<'a>(&'a crate::store::Store);

impl spec::Lookup for StoreLookup<'_> {
    fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.0.get(resource, namespace, name)
    }
}

impl sandbox::VolumeSource for StoreLookup<'_> {
    fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.0.get(resource, namespace, name)
    }
}

fn text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(2)];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..len].to_string()
}

impl PodState {
    pub fn new(object: &Value, pods_dir: &Path, prefix: &str) -> PodState {
        let uid = text(object, "/metadata/uid");
        let name = text(object, "/metadata/name");
        let hostname = Some(text(object, "/spec/hostname"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| name.clone());
        let state = PodState {
            dir: pods_dir.join(&uid),
            marker: format!("{prefix}/{uid}"),
            namespace: text(object, "/metadata/namespace"),
            hostname: hostname.chars().take(63).collect(),
            name,
            uid,
            object: Mutex::new(object.clone()),
            deleting: CancellationToken::new(),
            vanished: AtomicBool::new(false),
            runtime: Mutex::new(PodRuntime::default()),
            sandbox: Mutex::new(None),
            entries: Mutex::new(BTreeMap::new()),
            logs: Mutex::new(BTreeMap::new()),
            groups: Mutex::new(BTreeSet::new()),
            exec_groups: Mutex::new(BTreeSet::new()),
        };
        state.observe(object);
        state
    }

    /// A newer version of the pod object was stored.
    pub fn observe(&self, object: &Value) {
        *lock(&self.object) = object.clone();
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            self.deleting.cancel();
        }
    }

    /// The pod object is gone from the store (removed by someone else).
    pub fn vanish(&self) {
        self.vanished.store(true, Ordering::SeqCst);
        self.deleting.cancel();
    }

    pub fn object(&self) -> Value {
        lock(&self.object).clone()
    }

    pub fn sandbox(&self) -> Option<Arc<Sandbox>> {
        lock(&self.sandbox).clone()
    }

    pub fn namespaces(&self) -> Option<Arc<Namespaces>> {
        self.sandbox()?.namespaces()
    }

    pub fn entry(&self, container: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).get(container).cloned()
    }

    pub fn default_container(&self) -> String {
        text(&self.object(), "/spec/containers/0/name")
    }

    pub fn log_path(&self, container: &str, previous: bool) -> Option<PathBuf> {
        let logs = lock(&self.logs);
        let InstanceLogs {
            current,
            previous: before,
            ..
        } = logs.get(container)?;
        if previous { before.clone() } else { current.clone() }
    }

    /// The current instance's log file and its feed of new lines (None once it has stopped).
    pub fn log_feed(&self, container: &str) -> Option<(PathBuf, Option<broadcast::Receiver<String>>)> {
        let logs = lock(&self.logs);
        let entry = logs.get(container)?;
        let receiver = entry
            .feed
            .as_ref()
            .and_then(broadcast::WeakSender::upgrade)
            .map(|sender| sender.subscribe());
        Some((entry.current.clone()?, receiver))
    }

    fn attach_log_feed(&self, container: &str, sink: &LogSink) {
        if let Some(entry) = lock(&self.logs).get_mut(container) {
            entry.feed = Some(sink.feed());
        }
    }

    fn rotate_log(&self, container: &str, path: PathBuf) {
        let mut logs = lock(&self.logs);
        let entry = logs.entry(container.to_string()).or_default();
        if let Some(old) = entry.previous.take() {
            let _ = std::fs::remove_file(old);
        }
        entry.previous = entry.current.take();
        entry.current = Some(path);
        entry.feed = None;
    }

    pub fn track_exec(&self, pgid: i32) {
        let mut groups = lock(&self.exec_groups);
        groups.retain(|g| sys::process_alive(*g as u32));
        groups.insert(pgid);
    }

    /// The grace period for stopping containers now.
    fn grace(&self) -> Duration {
        if self.vanished.load(Ordering::SeqCst) {
            return Duration::from_secs(2).min(GRACE_CAP);
        }
        let object = self.object();
        let seconds = object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .or_else(|| object.pointer("/spec/terminationGracePeriodSeconds"))
            .and_then(Value::as_u64)
            .unwrap_or(30);
        Duration::from_secs(seconds).min(GRACE_CAP)
    }

    /// SIGKILL to every process group of the pod.
    pub fn kill_everything(&self) {
        let groups: Vec<i32> = lock(&self.groups)
            .iter()
            .chain(lock(&self.exec_groups).iter())
            .copied()
            .collect();
        for group in groups {
            sys::signal_group(group, libc::SIGKILL);
        }
    }

    pub fn destroy_sandbox(&self, network: &NodeNetwork) {
        lock(&self.entries).clear();
        if let Some(sandbox) = lock(&self.sandbox).take() {
            sandbox.destroy();
            if let Some(veth) = lock(&sandbox.veth).take() {
                network.detach(&veth);
            }
            // Only now may another pod get this address.
            network.release_address(sandbox.address);
        }
    }

    fn with_runtime(&self, inner: &Inner, change: impl FnOnce(&mut PodRuntime)) {
        // The store is updated under the runtime lock, so concurrent containers never publish stale statuses.
        let mut runtime = lock(&self.runtime);
        change(&mut runtime);
        let now = status::now();
        inner.store.update("pods", &self.namespace, &self.name, |object| {
            if object.pointer("/metadata/uid").and_then(Value::as_str) != Some(self.uid.as_str()) {
                return;
            }
            let rendered = status::render(&runtime, object.get("status"), &now);
            object["status"] = rendered;
        });
    }

    fn with_container(&self, inner: &Inner, slot: Slot, change: impl FnOnce(&mut ContainerRecord)) {
        self.with_runtime(inner, |runtime| {
            let record = match slot {
                Slot::Init(i) => runtime.init.get_mut(i),
                Slot::Main(i) => runtime.main.get_mut(i),
            };
            if let Some(record) = record {
                change(record);
            }
        });
    }
}

pub(super) async fn run_pod(inner: Arc<Inner>, pod: Arc<PodState>) {
    let object = pod.object();
    let has_init = object.pointer("/spec/initContainers/0").is_some();
    let record = |container: &Value, reason: &str| {
        let image = text(container, "/image");
        ContainerRecord::new(
            &text(container, "/name"),
            &spec::qualified_image(&image),
            State::waiting(reason, None),
        )
    };
    pod.with_runtime(&inner, |runtime| {
        runtime.restart_policy = Some(text(&object, "/spec/restartPolicy"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "Always".into());
        runtime.start_time = Some(status::now());
        runtime.host_ip = Some(netns::NODE_IP.to_string());
        let list = |field: &str| {
            object
                .pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        runtime.init = list("initContainers")
            .iter()
            .map(|c| record(c, "PodInitializing"))
            .collect();
        let main_reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        runtime.main = list("containers").iter().map(|c| record(c, main_reason)).collect();
    });
    let ready = tokio::select! {
        ready = create_sandbox(&inner, &pod) => ready,
        _ = pod.deleting.cancelled() => false,
    };
    if ready {
        run_containers(&inner, &pod).await;
    }
    finish(&inner, &pod).await;
}

/// Creates the sandbox, retrying (FailedCreatePodSandBox) until it works or the pod is deleted.
async fn create_sandbox(inner: &Arc<Inner>, pod: &Arc<PodState>) -> bool {
    loop {
        match try_create_sandbox(inner, pod).await {
            Ok(()) => return true,
            Err(error) => {
                inner.event(
                    pod,
                    "Warning",
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {error:#}"),
                );
                pod.destroy_sandbox(&inner.network);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = pod.deleting.cancelled() => return false,
                }
            }
        }
    }
}

async fn try_create_sandbox(inner: &Arc<Inner>, pod: &Arc<PodState>) -> anyhow::Result<()> {
    let address = inner
        .network
        .allocate_address()
        .ok_or_else(|| anyhow::anyhow!("no free pod address in 10.244.0.0/24"))?;
    let created = Sandbox::create(
        &inner.spawner,
        &inner.programs.sleep,
        pod.dir.clone(),
        &pod.hostname,
        address,
        &pod.namespace,
        &pod.marker,
    );
    let sandbox = match created {
        Ok(sandbox) => Arc::new(sandbox),
        Err(error) => {
            inner.network.release_address(address);
            return Err(error);
        }
    };
    *lock(&pod.sandbox) = Some(sandbox.clone());
    let namespaces = sandbox
        .namespaces()
        .ok_or_else(|| anyhow::anyhow!("sandbox destroyed"))?;
    let pause = sandbox
        .pause_pid()
        .ok_or_else(|| anyhow::anyhow!("sandbox destroyed"))?;
    let veth = inner.network.attach(pause, &namespaces.net, address).await?;
    *lock(&sandbox.veth) = Some(veth);
    pod.with_runtime(inner, |runtime| {
        runtime.sandbox_ready = true;
        runtime.pod_ip = Some(address.to_string());
    });
    inner.write_hosts_files();
    Ok(())
}

async fn run_containers(inner: &Arc<Inner>, pod: &Arc<PodState>) {
    let object = pod.object();
    let count = |field: &str| {
        object
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    for index in 0..count("initContainers") {
        match run_container(inner, pod, Slot::Init(index)).await {
            Outcome::Done(true) => {}
            Outcome::Stopped => return,
            Outcome::Done(false) => {
                pod.deleting.cancelled().await;
                return;
            }
        }
    }
    let containers = (0..count("containers")).map(|index| run_container(inner, pod, Slot::Main(index)));
    futures::future::join_all(containers).await;
    pod.deleting.cancelled().await;
}

async fn finish(inner: &Arc<Inner>, pod: &Arc<PodState>) {
    pod.kill_everything();
    pod.destroy_sandbox(&inner.network);
    // The pod is gone only when its last process is: a replacement must not meet the old server on its data.
    let marker = pod.marker.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive = sys::marked_processes(|m| m == marker);
            if alive.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in alive {
                sys::kill(pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await;
    let _ = tokio::fs::remove_dir_all(&pod.dir).await;
    if !inner.shutdown.is_cancelled() && !pod.vanished.load(Ordering::SeqCst) {
        let stored = inner.store.get("pods", &pod.namespace, &pod.name);
        if stored.is_some_and(|o| o.pointer("/metadata/uid").and_then(Value::as_str) == Some(pod.uid.as_str())) {
            inner.store.remove("pods", &pod.namespace, &pod.name);
        }
    }
    lock(&inner.pods).remove(&pod.uid);
    inner.hosts_dirty.notify_one();
}

/// Waits `delay`, returning early (false) when the pod is deleted, or (true) when `wake` fires.
async fn pause_for(delay: Duration, stop: &CancellationToken, wake: impl std::future::Future<Output = ()>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = wake => true,
        _ = stop.cancelled() => false,
    }
}

async fn config_change(inner: &Inner) {
    let mut changes = inner.config_changed.subscribe();
    let _ = changes.changed().await;
}

async fn fault_change(inner: &Inner) {
    let mut changes = inner.faults.watch();
    let _ = changes.changed().await;
}

/// Pulls the image (faults make it fail: ErrImagePull, then ImagePullBackOff, retried after the back-off as the
/// kubelet does). False when the pod is deleted.
async fn pull_image(inner: &Inner, pod: &PodState, slot: Slot, image: &str) -> bool {
    let stop = &pod.deleting;
    let mut attempt = 0;
    loop {
        if stop.is_cancelled() {
            return false;
        }
        let failure = if inner.faults.is_unpullable(image) {
            Some(spec::pull_error(image))
        } else if inner.faults.take_rate_limited_pull() {
            Some(spec::rate_limit_error(image))
        } else {
            None
        };
        let Some(message) = failure else {
            let first = lock(&inner.pulled_images).insert(image.to_string());
            if first {
                inner.event(pod, "Normal", "Pulling", &format!("Pulling image \"{image}\""));
                inner.event(
                    pod,
                    "Normal",
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{image}\" in 2ms (2ms including waiting). Image size: 0 bytes."
                    ),
                );
            } else {
                inner.event(
                    pod,
                    "Normal",
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                );
            }
            return true;
        };
        inner.event(pod, "Normal", "Pulling", &format!("Pulling image \"{image}\""));
        inner.event(
            pod,
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{image}\": {message}"),
        );
        inner.event(pod, "Warning", "Failed", "Error: ErrImagePull");
        pod.with_container(inner, slot, |record| {
            record.state = State::waiting("ErrImagePull", Some(message.clone()))
        });
        if !pause_for(ERR_IMAGE_PULL_HOLD, stop, std::future::pending::<()>()).await {
            return false;
        }
        let back_off = format!("Back-off pulling image \"{image}\"");
        inner.event(pod, "Normal", "BackOff", &back_off);
        inner.event(pod, "Warning", "Failed", "Error: ImagePullBackOff");
        pod.with_container(inner, slot, |record| {
            record.state = State::waiting("ImagePullBackOff", Some(back_off.clone()))
        });
        attempt += 1;
        if !pause_for(backoff(attempt), stop, fault_change(inner)).await {
            return false;
        }
    }
}

/// Volumes, mounts and environment of a container, ready to start processes in it.
fn prepare_entry(
    inner: &Inner,
    pod: &PodState,
    name: &str,
    container: &Value,
    env: Vec<(String, String)>,
    database: bool,
) -> Result<(Arc<Entry>, PathBuf), (String, String)> {
    let sandbox = pod.sandbox().ok_or_else(|| {
        (
            "CreateContainerError".to_string(),
            "the pod sandbox is gone".to_string(),
        )
    })?;
    let namespaces = sandbox.namespaces().ok_or_else(|| {
        (
            "CreateContainerError".to_string(),
            "the pod sandbox is gone".to_string(),
        )
    })?;
    let object = pod.object();
    let lookup = StoreLookup(&inner.store);
    let volumes = sandbox::prepare_volumes(&object, &pod.dir, &lookup).map_err(|m| ("FailedMount".to_string(), m))?;
    let dir = sandbox.container_dir(name);
    let files = spec::PodFiles {
        hosts: sandbox.hosts_path(),
        hostname: sandbox.hostname_path(),
        resolv_conf: sandbox.resolv_conf_path(),
        tmp: dir.join("tmp"),
        run_mysqld: dir.join("run-mysqld"),
        database_data: dir.join("data"),
        database_conf_d: dir.join("conf.d"),
        database_my_cnf: dir.join("my.cnf"),
    };
    let prepared = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&files.tmp)?;
        std::fs::create_dir_all(&files.run_mysqld)?;
        if database {
            std::fs::create_dir_all(&files.database_data)?;
            std::fs::create_dir_all(&files.database_conf_d)?;
            std::fs::write(&files.database_my_cnf, spec::database_my_cnf())?;
        }
        Ok(())
    })();
    prepared.map_err(|e| {
        (
            "CreateContainerError".to_string(),
            format!("cannot prepare container files: {e}"),
        )
    })?;
    let binds = spec::binds(container, &volumes, &files, database)
        .map_err(|m| ("CreateContainerConfigError".to_string(), m))?;
    let mnt = sandbox
        .container_mounts(&inner.spawner, &inner.programs.sleep, name, &binds, &pod.marker)
        .map_err(|e| {
            (
                "CreateContainerError".to_string(),
                format!("{e:#} (the kernel must support overlayfs: modprobe overlay)"),
            )
        })?;
    let data_dir = binds
        .iter()
        .find(|b| b.target == Path::new("/var/lib/mysql"))
        .map_or_else(|| files.database_data.clone(), |b| b.source.clone());
    let working_dir = Some(text(container, "/workingDir"))
        .filter(|w| w.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let entry = Arc::new(Entry {
        namespaces,
        mnt,
        env,
        working_dir,
        marker: pod.marker.clone(),
    });
    lock(&pod.entries).insert(name.to_string(), entry.clone());
    Ok((entry, data_dir))
}

async fn run_container(inner: &Arc<Inner>, pod: &Arc<PodState>, slot: Slot) -> Outcome {
    let stop = pod.deleting.clone();
    let container = slot.spec(&pod.object());
    let name = text(&container, "/name");
    let image = text(&container, "/image");
    let policy = lock(&pod.runtime).restart_policy.clone();
    let strings = |pointer: &str| -> Vec<String> {
        container
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let (command, args) = (strings("/command"), strings("/args"));
    let mut instances: u32 = 0;
    let mut crashes: u32 = 0;
    let mut last_terminated: Option<Terminated> = None;
    loop {
        if stop.is_cancelled() {
            return Outcome::Stopped;
        }
        if !pull_image(inner, pod, slot, &image).await {
            return Outcome::Stopped;
        }
        let crash = inner.faults.crashes(&pod.name, &name);
        let program = if crash {
            Program::Command(vec![
                "sh".into(),
                "-c".into(),
                "echo 'kubesim: injected crash: exiting with status 1' >&2; exit 1".into(),
            ])
        } else {
            spec::program(&image, &command, &args)
        };
        let database = matches!(program, Program::Database { .. });
        let env = spec::environment(&pod.object(), &container, &pod.hostname, &StoreLookup(&inner.store))
            .map_err(|message| ("CreateContainerConfigError".to_string(), message));
        let prepared = env.and_then(|env| prepare_entry(inner, pod, &name, &container, env, database));
        let (entry, data_dir) = match prepared {
            Ok(prepared) => prepared,
            Err((reason, message)) => {
                let (waiting, event_reason, event) = if reason == "FailedMount" {
                    (
                        "ContainerCreating".to_string(),
                        "FailedMount",
                        format!("Unable to attach or mount volumes: {message}"),
                    )
                } else {
                    (reason.clone(), "Failed", format!("Error: {message}"))
                };
                let shown = (reason != "FailedMount").then(|| message.clone());
                pod.with_container(inner, slot, |record| record.state = State::waiting(&waiting, shown));
                inner.event(pod, "Warning", event_reason, &event);
                if !pause_for(Duration::from_secs(2), &stop, config_change(inner)).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };

        let log_path = logs::instance_path(&pod.dir, &name, instances);
        pod.rotate_log(&name, log_path.clone());
        let sink = match LogSink::create(&log_path) {
            Ok(sink) => {
                pod.attach_log_feed(&name, &sink);
                sink
            }
            Err(error) => {
                pod.with_container(inner, slot, |record| {
                    record.state = State::waiting("CreateContainerError", Some(error.to_string()))
                });
                if !pause_for(Duration::from_secs(2), &stop, std::future::pending::<()>()).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        let container_id = format!("containerd://{}", random_hex(64));
        let kill = stop.child_token();
        let grace_pod = pod.clone();
        let grace = move || grace_pod.grace();
        let ctx = Ctx {
            spawner: &inner.spawner,
            entry: &entry,
            sink: &sink,
            kill: &kill,
            grace: &grace,
            groups: &pod.groups,
        };
        inner.event(pod, "Normal", "Created", &format!("Created container: {name}"));
        let spawned = match &program {
            Program::Command(argv) => ctx.spawn(argv, None).await.map(Some),
            Program::Database { .. } => Ok(None),
        };
        let started_at = status::now();
        let started_instant = Instant::now();
        let restart_count = instances;
        instances += 1;
        let previous = last_terminated.clone();
        let mut running = match spawned {
            Ok(running) => running,
            Err(error) => {
                let message = format!(
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: {error}: unknown"
                );
                let terminated = Terminated {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(message.clone()),
                    started_at: "1970-01-01T00:00:00Z".into(),
                    finished_at: status::now(),
                    container_id: container_id.clone(),
                };
                pod.with_container(inner, slot, |record| {
                    record.state = State::Terminated(terminated.clone());
                    record.restart_count = restart_count;
                    record.last_state = previous.clone();
                    record.container_id = Some(container_id.clone());
                });
                inner.event(pod, "Warning", "Failed", &format!("Error: {message}"));
                last_terminated = Some(terminated);
                crashes += 1;
                if !restart_wait(inner, pod, slot, &name, crashes, last_terminated.as_ref()).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        let has_startup = container.get("startupProbe").is_some();
        let has_readiness = container.get("readinessProbe").is_some();
        pod.with_container(inner, slot, |record| {
            record.state = State::Running {
                started_at: started_at.clone(),
            };
            record.restart_count = restart_count;
            record.last_state = previous.clone();
            record.container_id = Some(container_id.clone());
            record.image_id = spec::image_id(&image);
            record.started = !has_startup;
            record.ready = matches!(slot, Slot::Main(_)) && !has_readiness && !has_startup;
        });
        inner.event(pod, "Normal", "Started", &format!("Started container {name}"));

        let work = async {
            match (&program, running.as_mut()) {
                (_, Some(process)) => ctx.wait(process).await,
                (Program::Database { server_args }, None) => {
                    database::run(
                        &ctx,
                        &inner.programs.database,
                        &entry.env,
                        &data_dir,
                        server_args,
                        inner.faults.slow_first_start(),
                    )
                    .await
                }
                (Program::Command(_), None) => 127,
            }
        };
        tokio::pin!(work);
        let exit_code = if matches!(slot, Slot::Main(_)) {
            tokio::select! {
                code = &mut work => code,
                (kind, _message) = drive_probes(inner, pod, slot, &container, &entry, &sink) => {
                    inner.event(pod, "Normal", "Killing", &format!("Container {name} failed {kind} probe, will be restarted"));
                    kill.cancel();
                    work.await
                }
            }
        } else {
            work.await
        };
        let terminated = Terminated {
            exit_code,
            reason: Terminated::reason_for(exit_code).into(),
            message: None,
            started_at: started_at.clone(),
            finished_at: status::now(),
            container_id: container_id.clone(),
        };
        pod.with_container(inner, slot, |record| {
            record.state = State::Terminated(terminated.clone());
            record.ready = false;
            record.started = false;
        });
        last_terminated = Some(terminated);
        if stop.is_cancelled() {
            inner.event(pod, "Normal", "Killing", &format!("Stopping container {name}"));
            return Outcome::Stopped;
        }
        match slot {
            Slot::Init(_) if exit_code == 0 => return Outcome::Done(true),
            Slot::Init(_) if policy == "Never" => return Outcome::Done(false),
            Slot::Main(_) if policy == "Never" || (policy == "OnFailure" && exit_code == 0) => {
                return Outcome::Done(exit_code == 0);
            }
            _ => {}
        }
        if started_instant.elapsed() > BACKOFF_RESET_AFTER {
            crashes = 0;
        }
        crashes += 1;
        if !restart_wait(inner, pod, slot, &name, crashes, last_terminated.as_ref()).await {
            return Outcome::Stopped;
        }
    }
}

/// Shows CrashLoopBackOff for the back-off of the `crashes`-th crash and waits it out. False when deleted.
async fn restart_wait(
    inner: &Inner,
    pod: &PodState,
    slot: Slot,
    name: &str,
    crashes: u32,
    last: Option<&Terminated>,
) -> bool {
    let delay = backoff(crashes.saturating_sub(1));
    if delay.is_zero() {
        return !pod.deleting.is_cancelled();
    }
    let message = format!(
        "back-off {}s restarting failed container={name} pod={}_{}({})",
        delay.as_secs(),
        pod.name,
        pod.namespace,
        pod.uid
    );
    inner.event(
        pod,
        "Warning",
        "BackOff",
        &format!(
            "Back-off restarting failed container {name} in pod {}_{}({})",
            pod.name, pod.namespace, pod.uid
        ),
    );
    pod.with_container(inner, slot, |record| {
        record.state = State::waiting("CrashLoopBackOff", Some(message.clone()));
        record.last_state = last.cloned();
    });
    pause_for(delay, &pod.deleting, std::future::pending::<()>()).await
}

/// Runs one probe attempt.
async fn probe_once(inner: &Inner, pod: &PodState, entry: &Entry, probe: &Probe) -> Result<(), String> {
    match &probe.action {
        probes::Action::Exec(argv) => {
            if argv.is_empty() {
                return Err("empty probe command".into());
            }
            let mut command = tokio::process::Command::from(entry.command(argv));
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            let child = inner
                .spawner
                .spawn_tokio(command)
                .await
                .map_err(|e| format!("exec: {e}"))?;
            let pgid = child.id().map_or(0, |p| p as i32);
            lock(&pod.groups).insert(pgid);
            let result = tokio::time::timeout(probe.timeout, child.wait_with_output()).await;
            sys::signal_group(pgid, libc::SIGKILL);
            lock(&pod.groups).remove(&pgid);
            match result {
                Err(_) => Err(format!("command \"{}\" timed out", argv.join(" "))),
                Ok(Err(error)) => Err(error.to_string()),
                Ok(Ok(output)) if output.status.success() => Ok(()),
                Ok(Ok(output)) => {
                    let mut text = String::from_utf8_lossy(&output.stdout).to_string();
                    text.push_str(&String::from_utf8_lossy(&output.stderr));
                    Err(text.trim().to_string())
                }
            }
        }
        action => {
            let ip = pod
                .sandbox()
                .map(|s| std::net::IpAddr::V4(s.address))
                .ok_or("the pod sandbox is gone")?;
            probes::network(action, &entry.namespaces.net, ip, probe.timeout).await
        }
    }
}

fn set_ready(inner: &Inner, pod: &PodState, slot: Slot, ready: bool) {
    pod.with_container(inner, slot, |record| record.ready = ready);
}

/// Runs the container's probes for one instance. Completes only when a startup or liveness probe fails for
/// good, with the probe kind and message.
async fn drive_probes(
    inner: &Inner,
    pod: &PodState,
    slot: Slot,
    container: &Value,
    entry: &Entry,
    sink: &LogSink,
) -> (&'static str, String) {
    let startup = probes::parse(container, "startupProbe");
    let readiness = probes::parse(container, "readinessProbe");
    let liveness = probes::parse(container, "livenessProbe");
    if let Some(probe) = startup {
        tokio::time::sleep(probe.initial_delay).await;
        // Attempts at the probe's period count towards its failure threshold; extra attempts in between (soon,
        // or when the container prints something) only notice success earlier.
        let mut lines = sink.subscribe();
        let mut failures = 0;
        let mut next_counted = Instant::now();
        loop {
            let counted = Instant::now() >= next_counted;
            match probe_once(inner, pod, entry, &probe).await {
                Ok(()) => break,
                Err(message) if counted => {
                    failures += 1;
                    next_counted = Instant::now() + probe.period;
                    inner.event(pod, "Warning", "Unhealthy", &format!("Startup probe failed: {message}"));
                    if failures >= probe.failure_threshold {
                        return ("startup", message);
                    }
                }
                Err(_) => {}
            }
            let until_counted = next_counted.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(UNREADY_RETRY.min(until_counted)) => {}
                _ = lines.recv() => {}
            }
        }
        pod.with_container(inner, slot, |record| {
            record.started = true;
            if readiness.is_none() {
                record.ready = true;
            }
        });
    }
    let readiness_loop = async {
        let Some(probe) = readiness else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(probe.initial_delay).await;
        let mut lines = sink.subscribe();
        let (mut ready, mut successes, mut failures) = (false, 0u32, 0u32);
        let mut last_event: Option<Instant> = None;
        loop {
            match probe_once(inner, pod, entry, &probe).await {
                Ok(()) => {
                    failures = 0;
                    successes += 1;
                    if !ready && successes >= probe.success_threshold {
                        ready = true;
                        set_ready(inner, pod, slot, true);
                    }
                }
                Err(message) => {
                    successes = 0;
                    failures += 1;
                    if last_event.is_none_or(|at| at.elapsed() >= probe.period) {
                        inner.event(
                            pod,
                            "Warning",
                            "Unhealthy",
                            &format!("Readiness probe failed: {message}"),
                        );
                        last_event = Some(Instant::now());
                    }
                    if ready && failures >= probe.failure_threshold {
                        ready = false;
                        set_ready(inner, pod, slot, false);
                    }
                }
            }
            if ready {
                tokio::time::sleep(probe.period).await;
            } else {
                // Not ready yet: retry soon, or as soon as the container prints something.
                tokio::select! {
                    _ = tokio::time::sleep(UNREADY_RETRY.min(probe.period)) => {}
                    _ = lines.recv() => {}
                }
            }
        }
    };
    let liveness_loop = async {
        let Some(probe) = liveness else {
            return std::future::pending::<String>().await;
        };
        tokio::time::sleep(probe.initial_delay).await;
        let mut failures = 0;
        loop {
            match probe_once(inner, pod, entry, &probe).await {
                Ok(()) => failures = 0,
                Err(message) => {
                    failures += 1;
                    inner.event(
                        pod,
                        "Warning",
                        "Unhealthy",
                        &format!("Liveness probe failed: {message}"),
                    );
                    if failures >= probe.failure_threshold {
                        return message;
                    }
                }
            }
            tokio::time::sleep(probe.period).await;
        }
    };
    tokio::select! {
        _ = readiness_loop => unreachable!("the readiness loop never ends"),
        message = liveness_loop => ("liveness", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_is_immediate_then_doubles_up_to_the_cap() {
        let delays: Vec<u64> = (0..7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 8, 8]);
    }
}
