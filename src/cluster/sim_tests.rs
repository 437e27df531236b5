//! Adapter tests against kubesim, the simulated cluster: the real kube client over loopback, pods run as local
//! processes. Plain `#[test]`s: kubesim runs its own runtime, each test builds one for the client.

use std::sync::Mutex;
use std::time::Duration;

use kube::api::DynamicObject;
use kubesim::{Kubesim, Options};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::cluster::*;
use crate::manifests::ManifestSet;

const NAMESPACE: &str = "database";
/// First starts of the database take a while on a small machine.
const POD_BUDGET: Duration = Duration::from_secs(180);

struct Lab {
    runtime: tokio::runtime::Runtime,
    cluster: Cluster,
    // Dropped last: stops the simulated cluster after the client is gone.
    sim: Kubesim,
}

impl Lab {
    fn start() -> Lab {
        let sim = Kubesim::start(Options::default()).expect("kubesim starts");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let target = ClusterTarget {
            kubeconfig: Some(sim.kubeconfig_path().to_path_buf()),
            context: Some("kubesim".into()),
        };
        let cluster = runtime
            .block_on(Cluster::connect(&target))
            .expect("kubeconfig of kubesim loads");
        Lab { runtime, cluster, sim }
    }

    fn run<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }
}

/// The lab's manifests with one database pod: enough for every adapter path, half the start-up time.
fn objects() -> Vec<DynamicObject> {
    ManifestSet::embedded()
        .with_namespace(NAMESPACE)
        .and_then(|set| set.with_replicas(1))
        .expect("embedded manifests accept the edits")
        .objects()
        .cloned()
        .collect()
}

fn deadline(budget: Duration) -> Instant {
    Instant::now() + budget
}

/// Records progress lines, to check that waits report what they see.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Lines {
    fn push(&self, line: &str) {
        self.0.lock().expect("lines lock").push(line.to_string());
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines lock").clone()
    }
}

/// The first packet a MySQL/MariaDB server sends: protocol 10 and its version string.
async fn server_greeting(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let length = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    if payload.first() != Some(&10) {
        return Err(std::io::Error::other(format!(
            "not a protocol 10 greeting: {payload:?}"
        )));
    }
    let end = payload
        .iter()
        .skip(1)
        .position(|b| *b == 0)
        .map_or(payload.len(), |p| p + 1);
    Ok(String::from_utf8_lossy(&payload[1..end]).into_owned())
}

#[test]
fn lab_lifecycle_apply_wait_forward_label_snapshot_teardown() {
    let lab = Lab::start();
    let cluster = &lab.cluster;

    let preflight = lab
        .run(cluster.preflight(NAMESPACE))
        .expect("preflight passes on kubesim");
    assert_eq!(preflight.default_storage_class, "standard");
    assert_eq!(preflight.namespace, NamespaceState::Absent);
    assert_eq!(preflight.server_url, lab.sim.url());
    assert!(
        preflight.server_version.starts_with('v'),
        "{}",
        preflight.server_version
    );

    let objects = objects();
    let first = lab.run(cluster.apply(NAMESPACE, &objects)).expect("first apply");
    assert_eq!(first.len(), objects.len());
    assert!(first.iter().all(|a| a.changed && a.created), "{first:?}");
    assert_eq!(first[0].kind, "Namespace");
    assert_eq!(first[0].name, NAMESPACE);

    // The watch is dropped a few times: the wait must not notice beyond a log line.
    lab.sim.faults().drop_next_watches(3);
    let lines = Lines::default();
    lab.run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(POD_BUDGET), &|l| lines.push(l)))
        .expect("mysql-0 becomes Ready");
    let seen = lines.all();
    assert_eq!(seen.last().map(String::as_str), Some("mysql-0: Ready"), "{seen:?}");

    let again = lab.run(cluster.apply(NAMESPACE, &objects)).expect("second apply");
    let changed: Vec<_> = again
        .iter()
        .filter(|a| a.changed)
        .map(|a| format!("{} {}", a.kind, a.name))
        .collect();
    assert!(changed.is_empty(), "a repeated apply changed {changed:?}");

    let secret = lab
        .run(cluster.secret_values(NAMESPACE, "mysql-secret"))
        .expect("secret is readable");
    assert!(!secret["MYSQL_ROOT_PASSWORD"].expose().is_empty());
    assert_eq!(format!("{:?}", secret["MYSQL_ROOT_PASSWORD"]), "[redacted]");

    let forward = lab
        .run(cluster.forward(NAMESPACE, "mysql-0", 3306))
        .expect("port-forward opens");
    // Two connections in a row: each gets its own port-forward.
    for _ in 0..2 {
        let greeting = lab
            .run(server_greeting(forward.addr()))
            .expect("the database greets through the forward");
        assert!(greeting.contains("MariaDB"), "kubesim runs mariadbd: {greeting}");
    }
    let addr = forward.addr();
    drop(forward);
    let refused = lab.run(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::net::TcpStream::connect(addr).await
    });
    assert!(refused.is_err(), "the listener closes with the Forward");

    assert!(
        lab.run(cluster.set_pod_label(NAMESPACE, "mysql-0", "lab.dev/role", "primary"))
            .expect("label")
    );
    assert!(
        !lab.run(cluster.set_pod_label(NAMESPACE, "mysql-0", "lab.dev/role", "primary"))
            .expect("label again")
    );
    let origin = r#"{"file":"mysql-bin.000001","position":328}"#;
    assert_eq!(
        lab.run(cluster.pvc_annotation(NAMESPACE, "data-mysql-0", "lab.dev/binlog-origin"))
            .expect("read"),
        None
    );
    assert!(
        lab.run(cluster.set_pvc_annotation(NAMESPACE, "data-mysql-0", "lab.dev/binlog-origin", origin))
            .expect("set")
    );
    assert_eq!(
        lab.run(cluster.pvc_annotation(NAMESPACE, "data-mysql-0", "lab.dev/binlog-origin"))
            .expect("read")
            .as_deref(),
        Some(origin)
    );
    // The label and annotation managers leave the manifests' fields alone: re-applying changes nothing and keeps them.
    let third = lab.run(cluster.apply(NAMESPACE, &objects)).expect("third apply");
    assert!(third.iter().all(|a| !a.changed), "{third:?}");
    assert_eq!(
        lab.run(cluster.statefulset_replicas(NAMESPACE, "mysql")).expect("read"),
        Some(1)
    );
    assert!(lab.run(cluster.pod_is_ready(NAMESPACE, "mysql-0")).expect("read"));
    assert!(!lab.run(cluster.pod_is_ready(NAMESPACE, "mysql-9")).expect("read"));

    let snapshot = lab.run(cluster.snapshot(NAMESPACE)).expect("snapshot");
    let mysql0 = snapshot
        .pods
        .iter()
        .find(|p| p.name == "mysql-0")
        .expect("mysql-0 in the snapshot");
    assert!(mysql0.ready && mysql0.phase == "Running", "{mysql0:?}");
    assert_eq!(mysql0.labels.get("lab.dev/role").map(String::as_str), Some("primary"));
    assert!(mysql0.ip.is_some() && mysql0.node.is_some(), "{mysql0:?}");
    assert_eq!(
        snapshot
            .pvcs
            .iter()
            .map(|p| (p.name.as_str(), p.phase.as_str()))
            .collect::<Vec<_>>(),
        [("data-mysql-0", "Bound")]
    );
    let primary = snapshot
        .services
        .iter()
        .find(|s| s.name == "mysql-primary")
        .expect("mysql-primary");
    assert_eq!(primary.endpoints, ["mysql-0"]);
    let set = snapshot.statefulset.as_ref().expect("StatefulSet mysql");
    assert_eq!((set.replicas, set.ready_replicas), (1, 1));

    let outcome = lab
        .run(cluster.teardown(NAMESPACE, false, false, deadline(Duration::from_secs(60))))
        .expect("teardown");
    assert!(outcome.changed());
    assert!(outcome.deleted.contains(&format!("Namespace {NAMESPACE}")), "{outcome}");
    assert!(
        outcome
            .deleted
            .contains(&"PersistentVolumeClaim data-mysql-0".to_string()),
        "{outcome}"
    );
    assert!(
        lab.sim
            .objects("namespaces", None)
            .iter()
            .all(|n| n["metadata"]["name"] != NAMESPACE)
    );
    assert!(lab.sim.objects("pods", Some(NAMESPACE)).is_empty());

    let again = lab
        .run(cluster.teardown(NAMESPACE, false, false, deadline(Duration::from_secs(10))))
        .expect("idempotent");
    assert!(!again.changed());
    assert_eq!(
        again.to_string(),
        "namespace database does not exist: nothing to delete"
    );
}

/// Waits for the wall clock to reach the next second: managedFields times have one-second resolution.
fn next_second() {
    let start = jiff::Timestamp::now().as_second();
    while jiff::Timestamp::now().as_second() == start {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reapply_of_the_same_objects_changes_nothing_and_a_content_change_is_reported() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    let objects = objects();
    let first = lab.run(cluster.apply(NAMESPACE, &objects)).expect("first apply");
    assert!(first.iter().all(|a| a.changed && a.created), "{first:?}");

    // In a later second the server rewrites lab's managedFields entry and bumps every resourceVersion.
    next_second();
    let again = lab.run(cluster.apply(NAMESPACE, &objects)).expect("second apply");
    let changed: Vec<_> = again.iter().filter(|a| a.changed || a.created).collect();
    assert!(changed.is_empty(), "a repeated apply reported {changed:?}");

    let mut edited = objects.clone();
    let service = edited
        .iter_mut()
        .find(|o| o.metadata.name.as_deref() == Some("mysql-primary"))
        .expect("the primary's Service");
    service
        .metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "db".into());
    next_second();
    let third = lab.run(cluster.apply(NAMESPACE, &edited)).expect("third apply");
    let changed: Vec<_> = third
        .iter()
        .filter(|a| a.changed)
        .map(|a| format!("{} {}", a.kind, a.name))
        .collect();
    assert_eq!(changed, ["Service mysql-primary"]);
    assert!(third.iter().all(|a| !a.created), "{third:?}");
}

#[test]
fn teardown_with_keep_data_keeps_the_claims_and_waits_for_the_pods() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    lab.run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(POD_BUDGET), &|_| {}))
        .expect("mysql-0 Ready");

    let outcome = lab
        .run(cluster.teardown(NAMESPACE, true, false, deadline(Duration::from_secs(60))))
        .expect("teardown");
    assert!(outcome.deleted.contains(&"StatefulSet mysql".to_string()), "{outcome}");
    assert!(outcome.deleted.contains(&"Pod mysql-client".to_string()), "{outcome}");
    assert!(
        outcome.deleted.contains(&"Secret mysql-secret".to_string()),
        "{outcome}"
    );
    assert!(
        !outcome
            .deleted
            .iter()
            .any(|d| d.starts_with("Namespace") || d.starts_with("PersistentVolumeClaim")),
        "{outcome}"
    );
    assert_eq!(
        outcome.kept,
        [
            "PersistentVolumeClaim data-mysql-0".to_string(),
            format!("Namespace {NAMESPACE}")
        ]
    );
    assert!(
        lab.sim.objects("pods", Some(NAMESPACE)).is_empty(),
        "pods are gone when teardown returns"
    );
    assert_eq!(lab.sim.objects("persistentvolumeclaims", Some(NAMESPACE)).len(), 1);
}

#[test]
fn unpullable_image_fails_the_wait_at_once_with_the_registrys_answer() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.sim.faults().unpullable_image("mysql:nope");
    let objects: Vec<DynamicObject> = ManifestSet::embedded()
        .with_namespace(NAMESPACE)
        .and_then(|s| s.with_replicas(1))
        .and_then(|s| s.with_image("mysql:nope"))
        .expect("edits")
        .objects()
        .cloned()
        .collect();
    lab.run(cluster.apply(NAMESPACE, &objects)).expect("apply");
    let started = std::time::Instant::now();
    let error = lab
        .run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(POD_BUDGET), &|_| {}))
        .expect_err("the image cannot be pulled");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed fast, not at the deadline"
    );
    let text = error.to_string();
    assert!(
        text.starts_with("mysql-0 cannot pull image \"mysql:nope\" (ErrImagePull")
            || text.starts_with("mysql-0 cannot pull image \"mysql:nope\" (ImagePullBackOff"),
        "{text}"
    );
    assert!(
        text.contains(": not found): "),
        "the registry's answer is named: {text}"
    );
    // The context is "kubesim", not a kind cluster's: `kind load` is no fix here.
    assert!(
        text.ends_with(
            "check the image name and tag, and that the node can pull it (the registry is reachable from the node; a \
             private registry needs an imagePullSecret)"
        ),
        "{text}"
    );
    assert_eq!(
        crate::exit::Classify::exit_status(&error),
        crate::exit::ExitStatus::Unreachable
    );
}

#[test]
fn crashing_database_fails_the_wait_with_its_log() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.sim.faults().set_crash(Some("mysql".into()));
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    let error = lab
        .run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(POD_BUDGET), &|_| {}))
        .expect_err("the container crashes");
    let ClusterError::PodFailed(problem) = &error else {
        panic!("expected a pod failure, got {error}")
    };
    assert_eq!(problem.reason, "CrashLoopBackOff");
    assert!(
        problem
            .cause
            .starts_with("mysql-0 container \"mysql\" keeps crashing (CrashLoopBackOff, "),
        "{error}"
    );
    assert!(problem.cause.contains("last exit code 1"), "{error}");
    assert!(problem.log_tail.is_some(), "the log tail is attached: {error}");
    assert!(
        error.to_string().contains("\nlast log lines of container \"mysql\""),
        "{error}"
    );
}

#[test]
fn preflight_without_a_default_storage_class_says_claims_would_stay_pending() {
    let lab = Lab::start();
    lab.sim.remove_default_storage_class();
    let error = lab.run(lab.cluster.preflight(NAMESPACE)).expect_err("no default class");
    let text = error.to_string();
    assert!(text.starts_with("the cluster has no default StorageClass"), "{text}");
    assert!(text.contains("would stay Pending forever"), "{text}");
    assert_eq!(
        crate::exit::Classify::exit_status(&error),
        crate::exit::ExitStatus::Usage
    );
}

#[test]
fn foreign_namespace_is_refused_unless_forced() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    let foreign: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {"team": "payments"}}
    }))
    .expect("namespace object");
    lab.run(cluster.apply(NAMESPACE, &[foreign]))
        .expect("create a namespace lab does not own");
    let error = lab.run(cluster.preflight(NAMESPACE)).expect_err("not lab's");
    assert_eq!(
        error.to_string(),
        "namespace \"database\" exists and is not managed by lab (no app.kubernetes.io/managed-by label); choose \
         another with --namespace, or pass --force to use it anyway"
    );
    let forced = lab
        .run(cluster.preflight_with(NAMESPACE, true, deadline(Duration::from_secs(10))))
        .expect("forced");
    assert_eq!(forced.namespace, NamespaceState::Foreign { managed_by: None });
    let error = lab
        .run(cluster.teardown(NAMESPACE, false, false, deadline(Duration::from_secs(10))))
        .expect_err("not lab's");
    assert!(matches!(error, ClusterError::NamespaceNotOwned { .. }), "{error}");
    let outcome = lab
        .run(cluster.teardown(NAMESPACE, false, true, deadline(Duration::from_secs(10))))
        .expect("forced");
    assert_eq!(outcome.kept, [format!("Namespace {NAMESPACE}")]);
    assert!(
        lab.sim
            .objects("namespaces", None)
            .iter()
            .any(|n| n["metadata"]["name"] == NAMESPACE)
    );
}

#[test]
fn unknown_context_in_the_simulators_kubeconfig_lists_kubesim() {
    let lab = Lab::start();
    let target = ClusterTarget {
        kubeconfig: Some(lab.sim.kubeconfig_path().to_path_buf()),
        context: Some("prod".into()),
    };
    let Err(error) = lab.run(Cluster::connect(&target)) else {
        panic!("prod is not in the kubeconfig")
    };
    assert_eq!(
        error.to_string(),
        format!(
            "context \"prod\" is not in kubeconfig {}; contexts there: kubesim; pass one of them with --context",
            lab.sim.kubeconfig_path().display()
        )
    );
}

#[test]
fn a_failed_port_forward_closes_only_that_connection() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    lab.run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(POD_BUDGET), &|_| {}))
        .expect("mysql-0 Ready");
    let forward = lab
        .run(cluster.forward(NAMESPACE, "mysql-0", 3306))
        .expect("port-forward opens");
    lab.sim.faults().drop_next_port_forwards(1);
    let first = lab.run(server_greeting(forward.addr()));
    assert!(
        first.is_err(),
        "the dropped forward closes the local connection: {first:?}"
    );
    let second = lab
        .run(server_greeting(forward.addr()))
        .expect("the next connection gets a new forward");
    assert!(second.contains("MariaDB"), "{second}");
}

#[test]
fn a_provisioning_failure_that_may_clear_is_waited_for_and_shown() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.sim.faults().set_pvc_never_binds(true);
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    let started = std::time::Instant::now();
    let error = lab
        .run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(Duration::from_secs(6)), &|_| {}))
        .expect_err("the claim stays Pending");
    assert!(started.elapsed() >= Duration::from_secs(5), "waited until the deadline");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "timed out after 6s waiting for pod database/mysql-0 to become Ready; last state seen: waiting for \
             PersistentVolumeClaim data-mysql-0 to be bound (ProvisioningFailed: failed to provision volume with \
             StorageClass \"standard\": "
        ),
        "{text}"
    );
    assert_eq!(
        crate::exit::Classify::exit_status(&error),
        crate::exit::ExitStatus::Unreachable
    );
}

#[test]
fn a_slow_first_start_times_out_with_the_last_state_seen() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.sim.faults().set_slow_first_start(Some(Duration::from_secs(60)));
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    let error = lab
        .run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(Duration::from_secs(4)), &|_| {}))
        .expect_err("not Ready within 4 s");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "timed out after 4s waiting for pod database/mysql-0 to become Ready; last state seen: containers \
             starting, not Ready yet"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\"kubectl describe pod -n database mysql-0\" shows more"),
        "{text}"
    );
}

#[test]
fn claims_without_a_default_storage_class_fail_the_wait_with_the_binding_event() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.sim.remove_default_storage_class();
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    let error = lab
        .run(cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(Duration::from_secs(30)), &|_| {}))
        .expect_err("the claim cannot bind");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "mysql-0 waits for PersistentVolumeClaim data-mysql-0, which cannot be bound (FailedBinding: "
        ),
        "{text}"
    );
    assert!(text.contains("the cluster has no default StorageClass"), "{text}");
}

#[test]
fn a_cluster_without_nodes_fails_the_wait_once_the_grace_period_is_over() {
    let lab = Lab::start();
    let cluster = &lab.cluster;
    lab.sim.store().remove("nodes", "", kubesim::NODE_NAME);
    lab.run(cluster.apply(NAMESPACE, &objects())).expect("apply");
    let started = std::time::Instant::now();
    let lines = Lines::default();
    let error = lab
        .run(
            cluster.wait_pod_ready(NAMESPACE, "mysql-0", deadline(Duration::from_secs(60)), &|l| {
                lines.push(l)
            }),
        )
        .expect_err("no node takes the pod");
    let elapsed = started.elapsed();
    // Nothing changes after the scheduler's verdict: the wait wakes up by itself when the grace period is over.
    assert!(
        elapsed >= NO_NODE_GRACE && elapsed < NO_NODE_GRACE + Duration::from_secs(10),
        "failed after {elapsed:?}"
    );
    assert!(
        lines
            .all()
            .contains(&"mysql-0: not scheduled yet (no nodes available to schedule pods)".to_string()),
        "{:?}",
        lines.all()
    );
    let ClusterError::PodFailed(problem) = &error else {
        panic!("expected a pod failure, got {error}")
    };
    assert_eq!(
        problem.cause,
        "mysql-0 cannot be scheduled: the cluster has no nodes (Unschedulable: no nodes available to schedule pods)"
    );
}
