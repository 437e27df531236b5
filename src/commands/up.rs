//! `lab up`: the tutorial as an ordered plan, from nothing (or from wherever an earlier run stopped) to a
//! proven primary/replica pair and a health report.

use anyhow::Context as _;
use futures::future::try_join_all;
use tokio::time::Instant;

use super::inspect;
use super::{
    Accounts, DATABASE_PORT, ORIGIN_ANNOTATION, ORIGIN_PVC, PRIMARY_POD, ROLE_LABEL, SECRET, STATEFULSET, Session,
    connect_cluster, pod_name, primary_host,
};
use crate::cluster::{Cluster, Preflight};
use crate::database::{Coordinates, Credentials, ReplicaStatus, SourceConfig};
use crate::exit::UsageError;
use crate::manifests::ManifestSet;
use crate::manifests::{DATABASE_CONTAINER, PARALLEL};
use crate::plan::{Reporter, Runner, Step};
use crate::report::HealthReport;
use crate::settings::{ManifestSettings, Settings};

/// Loads the manifests and applies the `--image`, `--replicas`, `--parallel` and `--namespace` edits to the parsed
/// objects.
pub fn load_manifests(manifests: &ManifestSettings, namespace: &str) -> anyhow::Result<ManifestSet> {
    let set = match &manifests.dir {
        Some(dir) => ManifestSet::from_dir(dir)?,
        None => ManifestSet::embedded(),
    };
    let set = set
        .with_namespace(namespace)?
        .with_image(&manifests.image)?
        .with_replicas(manifests.replicas)?;
    Ok(if manifests.parallel {
        set.with_parallel_start()
    } else {
        set
    })
}

pub async fn run(
    settings: &Settings,
    manifests: &ManifestSettings,
    runner: &mut Runner<'_>,
) -> anyhow::Result<HealthReport> {
    let reporter = runner.reporter();
    let deadline = Instant::now() + settings.timeout;
    let namespace = settings.namespace.as_str();
    let set = load_manifests(manifests, namespace)?;
    let objects: Vec<_> = set.objects().cloned().collect();
    let cluster = connect_cluster(settings).await?;
    reporter.note(&format!(
        "cluster {} (context {}), namespace {namespace}",
        cluster.server_url(),
        cluster.context().unwrap_or("-")
    ));

    runner
        .run("preflight", async {
            let preflight = cluster.preflight(namespace).await?;
            let running = cluster
                .statefulset_image(namespace, STATEFULSET, DATABASE_CONTAINER)
                .await?;
            check_image_change(namespace, running.as_deref(), set.database_image())?;
            let policy = cluster
                .statefulset_pod_management_policy(namespace, STATEFULSET)
                .await?;
            check_pod_management_change(namespace, policy.as_deref(), set.pod_management_policy())?;
            Ok(Step::passed(describe_preflight(&preflight), ()))
        })
        .await?;

    runner
        .run("apply manifests", async {
            let applied = cluster.apply(namespace, &objects).await?;
            let changed: Vec<String> = applied
                .iter()
                .filter(|a| a.changed)
                .map(|a| format!("{}/{}", a.kind, a.name))
                .collect();
            let detail = if changed.is_empty() {
                format!("all {} objects already as declared", applied.len())
            } else {
                format!("applied {}", changed.join(", "))
            };
            Ok(Step::changed_if(!changed.is_empty(), detail, ()))
        })
        .await?;

    let accounts = Accounts::from_secret(&cluster.secret_values(namespace, SECRET).await?)?;

    let mut primary = runner
        .run(
            "wait for mysql-0",
            wait_for_database(&cluster, namespace, PRIMARY_POD, &accounts.root, deadline, reporter),
        )
        .await?;

    let origin = runner
        .run(
            "primary setup",
            primary_setup(&cluster, namespace, &mut primary, &accounts),
        )
        .await?;

    let mut replicas = Vec::new();
    for ordinal in 1..manifests.replicas {
        let pod = pod_name(ordinal);
        let session = runner
            .run(
                &format!("wait for {pod}"),
                wait_for_database(&cluster, namespace, &pod, &accounts.root, deadline, reporter),
            )
            .await?;
        replicas.push(session);
    }

    let source = SourceConfig {
        host: primary_host(namespace),
        port: DATABASE_PORT,
        credentials: accounts.replication.clone(),
        origin: origin.clone(),
    };
    runner
        .run(
            "configure replicas",
            configure_replicas(&mut replicas, &source, deadline),
        )
        .await?;

    runner
        .run("role labels", label_roles(&cluster, namespace, &primary, &replicas))
        .await?;

    inspect::prove_and_report(
        runner,
        &cluster,
        namespace,
        primary,
        replicas,
        &accounts.probe,
        deadline,
    )
    .await
}

/// Refuses to swap the database image of an existing lab: the StatefulSet would restart every server on data
/// another server version (or flavour) wrote, and the client pod, whose spec cannot change, would fail to apply
/// half-way through.
pub fn check_image_change(namespace: &str, running: Option<&str>, requested: Option<&str>) -> Result<(), UsageError> {
    match (running, requested) {
        (Some(running), Some(requested)) if running != requested => Err(UsageError::new(format!(
            "the lab in namespace {namespace} runs {running}; --image {requested} would restart its databases on \
             data written by {running}: run `lab teardown` first (its data goes with it), or pass --image {running}"
        ))),
        _ => Ok(()),
    }
}

/// Refuses to change how an existing lab starts its pods: a StatefulSet's podManagementPolicy cannot change (the
/// API server answers 422), so the apply would fail half-way, after the objects before the StatefulSet.
pub fn check_pod_management_change(namespace: &str, running: Option<&str>, requested: &str) -> Result<(), UsageError> {
    match running {
        Some(running) if running != requested => {
            let keep = if running == PARALLEL {
                "pass --parallel"
            } else {
                "leave out --parallel"
            };
            Err(UsageError::new(format!(
                "the lab in namespace {namespace} starts its pods {running} but the manifests ask for {requested}, \
                 and a StatefulSet's podManagementPolicy cannot change: {keep} to keep it, or run `lab teardown \
                 --keep-data` first (the databases' data stays for the next `lab up`)"
            )))
        }
        _ => Ok(()),
    }
}

fn describe_preflight(preflight: &Preflight) -> String {
    format!(
        "Kubernetes {}, default StorageClass {}, namespace {}",
        preflight.server_version, preflight.default_storage_class, preflight.namespace
    )
}

/// Waits until the pod is Ready and its database answers `SELECT 1` through a port-forward.
pub async fn wait_for_database(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    root: &Credentials,
    deadline: Instant,
    reporter: &dyn Reporter,
) -> anyhow::Result<Step<Session>> {
    let title = format!("wait for {pod}");
    let progress = |detail: &str| reporter.step_progress(&title, detail);
    cluster.wait_pod_ready(namespace, pod, deadline, &progress).await?;
    progress("Ready; connecting to the database through a port-forward");
    let session = Session::open(cluster, namespace, pod, root, deadline).await?;
    let version = session.db.version().raw.clone();
    Ok(Step::passed(format!("Ready, {version} accepts queries"), session))
}

/// Replication account, then the binlog origin, then `appdb`: in this order, unlike the tutorial.
///
/// The tutorial creates `appdb` first and takes `SHOW MASTER STATUS` afterwards, so the replica starts past the
/// `CREATE DATABASE` event, never learns of `appdb`, and stops with error 1049 at the first table. The origin is
/// recorded on the primary's PVC, so that a re-run or a replica added later starts from the same place.
async fn primary_setup(
    cluster: &Cluster,
    namespace: &str,
    primary: &mut Session,
    accounts: &Accounts,
) -> anyhow::Result<Step<Coordinates>> {
    primary.db.ensure_replication_user(&accounts.replication).await?;
    let recorded = cluster.pvc_annotation(namespace, ORIGIN_PVC, ORIGIN_ANNOTATION).await?;
    let (origin, captured) = match recorded.as_deref().map(parse_origin) {
        Some(Ok(origin)) => (origin, false),
        Some(Err(error)) => return Err(error),
        None => {
            let origin = primary.db.capture_coordinates().await?;
            let value = serde_json::to_string(&RecordedOrigin::now(&origin))?;
            cluster
                .set_pvc_annotation(namespace, ORIGIN_PVC, ORIGIN_ANNOTATION, &value)
                .await?;
            (origin, true)
        }
    };
    primary.db.ensure_appdb().await?;
    primary.db.ensure_probe_user(&accounts.probe).await?;
    let detail = if captured {
        format!(
            "captured binlog origin {}:{} before creating appdb",
            origin.file, origin.position
        )
    } else {
        format!("binlog origin {}:{} already recorded", origin.file, origin.position)
    };
    Ok(Step::changed_if(captured, detail, origin))
}

/// The origin as recorded in the PVC annotation.
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordedOrigin {
    file: String,
    position: u64,
    captured_at: String,
}

impl RecordedOrigin {
    fn now(origin: &Coordinates) -> Self {
        RecordedOrigin {
            file: origin.file.clone(),
            position: origin.position,
            captured_at: jiff::Timestamp::now().to_string(),
        }
    }
}

fn parse_origin(text: &str) -> anyhow::Result<Coordinates> {
    let recorded: RecordedOrigin = serde_json::from_str(text).with_context(|| {
        format!(
            "the annotation {ORIGIN_ANNOTATION} on PVC {ORIGIN_PVC} is not valid: remove it \
             (kubectl annotate pvc {ORIGIN_PVC} {ORIGIN_ANNOTATION}-) only if no replica was configured from it"
        )
    })?;
    Ok(Coordinates {
        file: recorded.file,
        position: recorded.position,
    })
}

/// What to do with a replica, given its current replication status.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplicaAction {
    /// Never configured: point it at the primary from the recorded origin.
    Configure,
    /// Already replicating from the primary: leave it alone (re-configuring from the origin would replay rows
    /// it already has).
    Keep,
}

pub fn replica_action(status: Option<&ReplicaStatus>, primary_host: &str) -> ReplicaAction {
    match status {
        Some(status) if status.source_host == primary_host => ReplicaAction::Keep,
        _ => ReplicaAction::Configure,
    }
}

/// Configures every replica concurrently and waits until both replication threads run on each.
async fn configure_replicas(
    replicas: &mut [Session],
    source: &SourceConfig,
    deadline: Instant,
) -> anyhow::Result<Step<()>> {
    let configured = try_join_all(replicas.iter_mut().map(|replica| async move {
        let status = replica.db.replica_status().await?;
        let action = replica_action(status.as_ref(), &source.host);
        if action == ReplicaAction::Configure {
            replica.db.configure_replica(source).await?;
        }
        replica
            .db
            .wait_replication_running(deadline)
            .await
            .with_context(|| format!("{}: replication does not run", replica.pod))?;
        replica.db.protect_replica().await?;
        anyhow::Ok((replica.pod.clone(), action))
    }))
    .await?;
    let newly: Vec<&str> = configured
        .iter()
        .filter(|(_, a)| *a == ReplicaAction::Configure)
        .map(|(p, _)| p.as_str())
        .collect();
    let detail = match (configured.len(), newly.len()) {
        (0, _) => "no replicas (--replicas 1)".to_string(),
        (_, 0) => "every replica already replicates from mysql-0; IO and SQL threads running".to_string(),
        _ => format!(
            "{} now replicate{} from {}:{}; IO and SQL threads running",
            newly.join(", "),
            if newly.len() == 1 { "s" } else { "" },
            source.origin.file,
            source.origin.position
        ),
    };
    Ok(Step::changed_if(!newly.is_empty(), detail, ()))
}

/// Role labels make the Services route correctly: `mysql-replicas` selects `lab.dev/role=replica`.
async fn label_roles(
    cluster: &Cluster,
    namespace: &str,
    primary: &Session,
    replicas: &[Session],
) -> anyhow::Result<Step<()>> {
    let mut changed = cluster
        .set_pod_label(namespace, &primary.pod, ROLE_LABEL, "primary")
        .await?;
    for replica in replicas {
        changed |= cluster
            .set_pod_label(namespace, &replica.pod, ROLE_LABEL, "replica")
            .await?;
    }
    Ok(Step::changed_if(
        changed,
        format!("{} = primary, others = replica", primary.pod),
        (),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_replica_status;

    fn status(host: &str, io: &str) -> ReplicaStatus {
        let column = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        parse_replica_status(&[
            column("Master_Host", host),
            column("Slave_IO_Running", io),
            column("Slave_SQL_Running", "Yes"),
        ])
    }

    #[test]
    fn a_replica_is_configured_only_when_it_does_not_already_replicate_from_the_primary() {
        let host = "mysql-0.mysql-headless.database.svc.cluster.local";
        assert_eq!(replica_action(None, host), ReplicaAction::Configure);
        assert_eq!(replica_action(Some(&status(host, "Yes")), host), ReplicaAction::Keep);
        // Reconnecting after a primary restart: keep it, replication resumes by itself.
        assert_eq!(
            replica_action(Some(&status(host, "Connecting")), host),
            ReplicaAction::Keep
        );
        assert_eq!(
            replica_action(Some(&status("elsewhere", "Yes")), host),
            ReplicaAction::Configure
        );
    }

    #[test]
    fn swapping_the_image_of_an_existing_lab_is_refused_with_the_way_out() {
        assert!(
            check_image_change("database", None, Some("mysql:8.4")).is_ok(),
            "a new lab"
        );
        assert!(
            check_image_change("database", Some("mysql:8.4"), Some("mysql:8.4")).is_ok(),
            "a re-run"
        );
        let error = check_image_change("database", Some("mysql:8.4"), Some("mariadb:11.4")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the lab in namespace database runs mysql:8.4; --image mariadb:11.4 would restart its databases on data \
             written by mysql:8.4: run `lab teardown` first (its data goes with it), or pass --image mysql:8.4"
        );
    }

    #[test]
    fn changing_how_an_existing_lab_starts_its_pods_is_refused_with_the_way_out() {
        assert!(
            check_pod_management_change("database", None, "Parallel").is_ok(),
            "a new lab"
        );
        assert!(check_pod_management_change("database", Some("Parallel"), "Parallel").is_ok());
        assert!(check_pod_management_change("database", Some("OrderedReady"), "OrderedReady").is_ok());
        let error = check_pod_management_change("database", Some("OrderedReady"), "Parallel").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the lab in namespace database starts its pods OrderedReady but the manifests ask for Parallel, and a \
             StatefulSet's podManagementPolicy cannot change: leave out --parallel to keep it, or run `lab teardown \
             --keep-data` first (the databases' data stays for the next `lab up`)"
        );
        let error = check_pod_management_change("database", Some("Parallel"), "OrderedReady").unwrap_err();
        assert!(error.to_string().contains(": pass --parallel to keep it,"), "{error}");
    }

    #[test]
    fn load_manifests_applies_parallel_only_when_asked() {
        let settings = |parallel| ManifestSettings {
            image: "mysql:8.4".into(),
            replicas: 2,
            dir: None,
            parallel,
        };
        let ordered = load_manifests(&settings(false), "database").expect("loads");
        assert_eq!(ordered.pod_management_policy(), "OrderedReady");
        let parallel = load_manifests(&settings(true), "database").expect("loads");
        assert_eq!(parallel.pod_management_policy(), "Parallel");
    }

    #[test]
    fn the_recorded_origin_round_trips_and_a_broken_one_names_the_fix() {
        let origin = Coordinates {
            file: "mysql-bin.000001".into(),
            position: 328,
        };
        let text = serde_json::to_string(&RecordedOrigin::now(&origin)).unwrap();
        assert!(text.starts_with(r#"{"file":"mysql-bin.000001","position":328,"captured_at":""#));
        assert_eq!(parse_origin(&text).unwrap(), origin);
        let err = parse_origin("nonsense").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the annotation lab.dev/binlog-origin on PVC data-mysql-0 is not valid")
        );
    }
}
