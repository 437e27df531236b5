//! `lab repair [POD]`: re-seeds a broken or diverged replica from the primary without stopping the primary's writes.
//!
//! For each replica: check that the copy can be written (before anything changes; a replica of a lab that predates
//! the socket account first gets it through replication, marked), mark the replica's claim as being
//! re-seeded, stop and reset its replication, take a consistent snapshot of the primary together with the binlog
//! coordinates that match it, replace the replica's copies of the primary's databases with the snapshot's (table by
//! table, not binlogged), point replication at those coordinates exactly as `lab up` does, wait until it runs,
//! protect the replica again, prove it with a fresh round trip, and mark the claim done.
//!
//! Interruptions: the replica stays read-only for ordinary accounts all along (read_only is never turned off). Until
//! the claim's mark says done, `lab up` leaves the replica alone and names `lab repair`, and `lab repair` without a
//! pod re-seeds it again from the start: a half-loaded copy never replicates.
//!
//! The recorded origin (on data-mysql-0) is left as it is: it says where an EMPTY replica starts, and a snapshot's
//! coordinates are only right for a replica holding that snapshot's data.

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::Instant;

use super::inspect;
use super::up::explain::{as_typed, hidden_source};
use super::up::wait_for_database;
use super::{
    Accounts, PRIMARY_POD, ROLE_LABEL, STATEFULSET, Session, connect_cluster, find_lab, pod_name, primary_host,
    primary_source,
};
use crate::cluster::Cluster;
use crate::database::{
    Coordinates, Credentials, Flavor, ReplicaStatus, ReplicationProgress, ReplicationThread, SeedAccess,
    SnapshotCoordinates, replace_database,
};
use crate::exit::{ExitStatus, UsageError};
use crate::interrupt::checkpoint;
use crate::manifests::DATABASE_CONTAINER;
use crate::plan::{Runner, Step};
use crate::secret::SecretString;
use crate::settings::Settings;

/// The mark on a replica's claim (`data-mysql-N`) while and after it is re-seeded.
pub const REPAIR_ANNOTATION: &str = "lab.dev/repair";
/// Version of the repair JSON shape.
pub const REPAIR_SCHEMA_VERSION: u32 = 1;

/// What Ctrl-C during a repair says: the replica is marked, and `lab repair` starts its copy over.
pub fn interrupted() -> String {
    format!(
        "interrupted. A replica being re-seeded stays marked (annotation {REPAIR_ANNOTATION} on its claim) and \
         read-only: run `lab repair` again to re-seed it from the start; `lab up` leaves it alone until then"
    )
}

/// What `lab repair` did, as `-o json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepairReport {
    pub schema_version: u32,
    pub namespace: String,
    /// Every re-seeded replica replicates again and passed its round trip.
    pub ok: bool,
    pub repaired: Vec<ReplicaRepair>,
    /// Replicas looked at and not re-seeded, with why.
    pub left_alone: Vec<LeftAlone>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeftAlone {
    pub pod: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaRepair {
    pub pod: String,
    /// Why it was re-seeded.
    pub reason: String,
    /// The primary's binlog coordinates that match the copy; replication starts there.
    pub snapshot: Coordinates,
    /// How those coordinates were tied to the snapshot.
    pub snapshot_method: String,
    pub databases: Vec<DatabaseCopy>,
    /// The validation marker written on the primary and read back on the replica.
    pub marker: String,
    pub verified: bool,
    pub detail: String,
    /// What a person would type to do the same (passwords as `******`).
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseCopy {
    pub name: String,
    pub tables: usize,
    pub views: usize,
    pub rows: u64,
}

/// The mark's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairState {
    Seeding,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct RepairMark {
    state: RepairState,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<Coordinates>,
}

/// Pure: whether a claim's mark says a re-seed was started and not finished.
pub fn is_interrupted(mark: Option<&str>) -> bool {
    mark.and_then(|text| serde_json::from_str::<RepairMark>(text).ok())
        .is_some_and(|mark| mark.state == RepairState::Seeding)
}

/// Pure: checks the pod named on the command line. The primary and pods the lab does not have are refused.
pub fn check_target(namespace: &str, pod: &str, pods: u32) -> Result<(), UsageError> {
    if pod == PRIMARY_POD {
        let replicas = match pods {
            0 | 1 => "this lab has no replicas".to_string(),
            2 => "name its replica, mysql-1, or run `lab repair` alone to re-seed every replica that needs it".into(),
            _ => format!(
                "name a replica (mysql-1 … mysql-{}), or run `lab repair` alone to re-seed every replica that needs it",
                pods - 1
            ),
        };
        return Err(UsageError::new(format!(
            "{PRIMARY_POD} is the primary: lab repair re-seeds replicas FROM it and never changes it; {replicas}"
        )));
    }
    let ordinal = pod
        .strip_prefix(&format!("{STATEFULSET}-"))
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| pod == pod_name(*n));
    match ordinal {
        Some(n) if n < pods => Ok(()),
        _ => Err(UsageError::new(format!(
            "the lab in namespace {namespace} has no replica {pod}: its pods are {}; name one of the replicas",
            (0..pods).map(pod_name).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Pure: whether a replica needs a re-seed, from its replication status. `Err` carries why it is left alone.
///
/// Re-seeded: never configured or pointed elsewhere, a re-seed that was interrupted, an SQL thread stopped by an
/// error (its data no longer matches the primary's: 1062, 1032, 1146, 1049 …), an IO thread that lost its binlog
/// position (1236; MySQL 8 wraps it as 13114). Left alone: running or reconnecting replicas, a thread stopped
/// without an error (`lab up` starts it), and IO errors that a copy cannot fix (credentials, server ids).
pub fn assess(status: Option<&ReplicaStatus>, primary_host: &str, interrupted: bool) -> Result<String, String> {
    if interrupted {
        return Ok("an earlier `lab repair` of it was interrupted".into());
    }
    let Some(status) = status else {
        return Ok("replication is not configured on it".into());
    };
    if status.source_host != primary_host {
        return Ok(format!(
            "it replicates from {:?}, not from {PRIMARY_POD}",
            status.source_host
        ));
    }
    match status.progress() {
        ReplicationProgress::Running | ReplicationProgress::Starting => Err("replicates from mysql-0".into()),
        ReplicationProgress::Stopped(thread) => Err(format!(
            "its {thread} thread is stopped without an error: `lab up` starts it where it stopped"
        )),
        ReplicationProgress::Failed(failure) => {
            let fixable = failure.thread == ReplicationThread::Sql || matches!(failure.errno, 1236 | 13114);
            let text = format!(
                "its {} thread stopped with error {}: {}",
                failure.thread, failure.errno, failure.finding.cause
            );
            if fixable {
                Ok(text)
            } else {
                Err(format!(
                    "{text}; a copy of the data does not fix that: {}",
                    failure.finding.fix
                ))
            }
        }
    }
}

pub async fn run(settings: &Settings, pod: Option<&str>, runner: &mut Runner<'_>) -> anyhow::Result<RepairReport> {
    let deadline = Instant::now() + settings.timeout;
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let (pods, accounts) = find_lab(&cluster, namespace).await?;
    if let Some(pod) = pod {
        check_target(namespace, pod, pods)?;
    }
    repair_lab(&cluster, namespace, pods, &accounts, pod, deadline, runner).await
}

/// Re-seeds `pod`, or every replica that needs it (see [`assess`]), in a lab of `pods` pods.
pub async fn repair_lab(
    cluster: &Cluster,
    namespace: &str,
    pods: u32,
    accounts: &Accounts,
    pod: Option<&str>,
    deadline: Instant,
    runner: &mut Runner<'_>,
) -> anyhow::Result<RepairReport> {
    let reporter = runner.reporter();
    let mut primary = runner
        .run(
            "wait for mysql-0",
            wait_for_database(cluster, namespace, PRIMARY_POD, &accounts.root, deadline, reporter),
        )
        .await?;
    let host = primary_host(namespace);

    let mut targets = Vec::new();
    let mut left_alone = Vec::new();
    let candidates: Vec<String> = match pod {
        Some(pod) => vec![pod.to_string()],
        None => (1..pods).map(pod_name).collect(),
    };
    for candidate in candidates {
        let mut replica = runner
            .run(
                &format!("wait for {candidate}"),
                wait_for_database(cluster, namespace, &candidate, &accounts.root, deadline, reporter),
            )
            .await?;
        let mark = cluster
            .pvc_annotation(namespace, &claim(&candidate), REPAIR_ANNOTATION)
            .await?;
        let status = replica.db.replica_status().await?;
        match (pod, assess(status.as_ref(), &host, is_interrupted(mark.as_deref()))) {
            (Some(_), Ok(reason)) => targets.push((replica, reason)),
            (Some(_), Err(reason)) => targets.push((replica, format!("asked for ({reason})"))),
            (None, Ok(reason)) => targets.push((replica, reason)),
            (None, Err(reason)) => {
                replica.close().await;
                left_alone.push(LeftAlone { pod: candidate, reason });
            }
        }
    }
    if targets.is_empty() {
        reporter.note("nothing needs repair: every replica replicates from mysql-0 or is left to `lab up`");
    }

    let mut repaired = Vec::new();
    for (replica, reason) in targets {
        let outcome = reseed(
            cluster,
            namespace,
            &mut primary,
            replica,
            reason,
            accounts,
            deadline,
            runner,
        )
        .await?;
        repaired.push(outcome);
    }
    primary.close().await;
    Ok(RepairReport {
        schema_version: REPAIR_SCHEMA_VERSION,
        namespace: namespace.to_string(),
        ok: repaired.iter().all(|r| r.verified),
        repaired,
        left_alone,
    })
}

impl RepairReport {
    pub fn exit_status(&self) -> ExitStatus {
        if self.ok {
            ExitStatus::Success
        } else {
            ExitStatus::Unhealthy
        }
    }

    /// The summary for people.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if self.repaired.is_empty() {
            text.push_str("Nothing needs repair.\n");
        }
        for r in &self.repaired {
            let mark = if r.verified { "✓" } else { "✗" };
            text.push_str(&format!("{mark} {} re-seeded: {}\n", r.pod, r.reason));
            text.push_str(&format!("    snapshot   {} ({})\n", r.snapshot, r.snapshot_method));
            for db in &r.databases {
                text.push_str(&format!(
                    "    copied     {}: {} tables, {} views, {} rows\n",
                    db.name, db.tables, db.views, db.rows
                ));
            }
            text.push_str(&format!("    verified   {}\n", r.detail));
            text.push_str("    by hand:\n");
            for command in &r.commands {
                text.push_str(&format!("      $ {command}\n"));
            }
        }
        for l in &self.left_alone {
            text.push_str(&format!("· {} left alone: {}\n", l.pod, l.reason));
        }
        text
    }
}

fn claim(pod: &str) -> String {
    format!("data-{pod}")
}

/// The whole re-seed of one replica; see the module's documentation for the order and why.
#[allow(clippy::too_many_arguments)]
async fn reseed(
    cluster: &Cluster,
    namespace: &str,
    primary: &mut Session,
    mut replica: Session,
    reason: String,
    accounts: &Accounts,
    deadline: Instant,
    runner: &mut Runner<'_>,
) -> anyhow::Result<ReplicaRepair> {
    let pod = replica.pod.clone();
    let access = replica.db.dialect().seed_access();

    // Checked before anything else changes: on MariaDB before 12.0 only the socket account can write on a
    // protected replica.
    runner
        .run(&format!("{pod}: write access"), async {
            let detail = ensure_access(cluster, namespace, primary, &mut replica, &access, accounts).await?;
            Ok(Step::passed(detail, ()))
        })
        .await?;

    set_mark(cluster, namespace, &pod, RepairState::Seeding, None).await?;
    runner
        .run(&format!("{pod}: stop replication"), async {
            replica.db.reset_replica().await?;
            Ok(Step::done(
                "replication stopped and reset: nothing is applied onto a partial copy",
                (),
            ))
        })
        .await?;

    let mut snapshot = Session::open(cluster, namespace, PRIMARY_POD, &accounts.root, deadline).await?;
    // Said from the method start_snapshot uses, so that the report cannot drift from it.
    let snapshot_method = match primary.db.dialect().snapshot_coordinates() {
        SnapshotCoordinates::SnapshotStatus => "MariaDB Binlog_snapshot_file/position of the snapshot, no lock",
        SnapshotCoordinates::BriefGlobalReadLock => {
            "MySQL FLUSH TABLES WITH READ LOCK held only while the snapshot started"
        }
    };
    let coordinates = runner
        .run(&format!("{pod}: snapshot of mysql-0"), async {
            let coordinates = snapshot.db.start_snapshot().await?;
            Ok(Step::done(
                format!("consistent snapshot at {coordinates} ({snapshot_method})"),
                coordinates,
            ))
        })
        .await?;

    let databases = runner
        .run(&format!("{pod}: copy"), async {
            let copied = copy(cluster, namespace, &mut snapshot, &mut replica, &access).await?;
            ensure_probe_account(cluster, namespace, &mut replica, &access, &accounts.probe).await?;
            let summary: Vec<String> = copied
                .iter()
                .map(|d| format!("{} ({} tables, {} rows)", d.name, d.tables, d.rows))
                .collect();
            Ok(Step::done(format!("copied {}", summary.join(", ")), copied))
        })
        .await;
    // The snapshot ends whatever happened; on an error the replica stays marked and stopped.
    let ended = snapshot.db.end_snapshot().await;
    snapshot.close().await;
    let databases = databases?;
    ended?;

    let source = primary_source(namespace, &accounts.replication, coordinates.clone());
    runner
        .run(&format!("{pod}: replicate"), async {
            replica.db.configure_replica(&source).await?;
            replica
                .db
                .wait_replication_running(deadline)
                .await
                .with_context(|| format!("{pod}: replication does not run"))?;
            replica.db.protect_replica().await?;
            Ok(Step::done(
                format!("replicates from {coordinates}; protected against writes again"),
                (),
            ))
        })
        .await?;

    let reporter = runner.reporter();
    let validation = runner
        .run(
            &format!("{pod}: round trip"),
            inspect::validate(
                primary,
                std::slice::from_mut(&mut replica),
                inspect::new_marker(),
                reporter,
            ),
        )
        .await?;
    cluster.set_pod_label(namespace, &pod, ROLE_LABEL, "replica").await?;
    if validation.ok {
        set_mark(cluster, namespace, &pod, RepairState::Done, Some(coordinates.clone())).await?;
    }
    let detail = if validation.ok {
        format!("{} written on {PRIMARY_POD} and read back on {pod}", validation.marker)
    } else {
        validation
            .missing_on
            .iter()
            .map(|m| m.reason.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let commands = commands(
        namespace,
        &replica,
        &accounts.replication,
        &access,
        &coordinates,
        &databases,
    );
    replica.close().await;
    Ok(ReplicaRepair {
        pod,
        reason,
        snapshot: coordinates,
        snapshot_method: snapshot_method.to_string(),
        databases,
        marker: validation.marker,
        verified: validation.ok,
        detail,
        commands,
    })
}

/// How long replication may take to bring the socket account to a replica that lacks it.
const ACCOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Makes sure the copy can be written. Socket: the replica must have `'mysql'@'localhost'` (replication brings it
/// from the primary); a replica without it gets it from root, which can still write where the replica was never
/// protected (a replica `lab up` could not configure), or else through replication (a lab built before `lab up`
/// created the account). TCP: root writes after [`crate::database::Db::open_for_seed`].
async fn ensure_access(
    cluster: &Cluster,
    namespace: &str,
    primary: &mut Session,
    replica: &mut Session,
    access: &SeedAccess,
    accounts: &Accounts,
) -> anyhow::Result<String> {
    match access {
        SeedAccess::Tcp(statement) => Ok(format!(
            "root writes the copy over TCP after `{}`; read_only stays ON for every other account",
            statement.text()
        )),
        SeedAccess::Socket if replica.db.has_socket_admin().await? => {
            Ok("the copy goes in through the Unix socket as 'mysql'@'localhost'; read_only stays ON".into())
        }
        SeedAccess::Socket => match replica.db.create_socket_admin_locally().await {
            Ok(()) => Ok("created 'mysql'@'localhost' (unix_socket) on the replica for the copy".into()),
            Err(crate::database::DbError::Statement { code: 1290, .. }) => {
                account_through_replication(cluster, namespace, primary, replica, accounts).await
            }
            Err(error) => Err(error.into()),
        },
    }
}

/// MariaDB before 12.0, a protected replica without the socket account (its lab was built before `lab up` created
/// it): the primary runs the account statements again (as `lab up` does; they change nothing there), and the replica
/// replicates just those from the position before them, then stops. The replica is marked first: its replication
/// is changed from here on, and only a finished re-seed may leave it running.
async fn account_through_replication(
    cluster: &Cluster,
    namespace: &str,
    primary: &mut Session,
    replica: &mut Session,
    accounts: &Accounts,
) -> anyhow::Result<String> {
    let pod = replica.pod.clone();
    set_mark(cluster, namespace, &pod, RepairState::Seeding, None).await?;
    let from = primary.db.capture_coordinates().await?;
    primary.db.ensure_socket_admin().await?;
    let to = primary.db.capture_coordinates().await?;
    replica
        .db
        .configure_replica(&primary_source(namespace, &accounts.replication, from))
        .await?;
    let applied = replica.db.wait_for_coordinates(&to, ACCOUNT_WAIT).await;
    replica.db.reset_replica().await?;
    if applied.is_ok() && replica.db.has_socket_admin().await? {
        return Ok("brought the socket account 'mysql'@'localhost' to the replica through replication".into());
    }
    Err(UsageError::new(format!(
        "{pod} cannot take a copy: root lost READ_ONLY ADMIN there (lab up's protection), and the socket account \
         'mysql'@'localhost' did not arrive through replication ({}). The replica is marked and its replication \
         stopped; give it new, empty data (scale the StatefulSet below it, delete PVC data-{pod}, scale back) and run \
         `lab repair {pod}`",
        applied
            .err()
            .map_or_else(|| "the account is not there".to_string(), |e| e.to_string())
    ))
    .into())
}

async fn set_mark(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    state: RepairState,
    snapshot: Option<Coordinates>,
) -> anyhow::Result<()> {
    let mark = serde_json::to_string(&RepairMark {
        state,
        at: jiff::Timestamp::now().to_string(),
        snapshot,
    })?;
    cluster
        .set_pvc_annotation(namespace, &claim(pod), REPAIR_ANNOTATION, &mark)
        .await?;
    Ok(())
}

/// Replaces each of the primary's databases on the replica with the snapshot's copy.
async fn copy(
    cluster: &Cluster,
    namespace: &str,
    snapshot: &mut Session,
    replica: &mut Session,
    access: &SeedAccess,
) -> anyhow::Result<Vec<DatabaseCopy>> {
    // Nothing to open when the copy goes in through the socket.
    replica.db.open_for_seed().await?;
    let mut copied = Vec::new();
    for database in snapshot.db.user_databases().await? {
        let definition = snapshot.db.database_definition(&database).await?;
        let mut statements = replace_database(&database, &definition);
        let mut copy = DatabaseCopy {
            name: database.clone(),
            tables: 0,
            views: 0,
            rows: 0,
        };
        let mut expected = Vec::new();
        for table in snapshot.db.table_names(&database).await? {
            let table_copy = snapshot.db.copy_table(&database, &table).await?;
            if table.view {
                copy.views += 1;
            } else {
                copy.tables += 1;
                expected.push((table.name.clone(), table_copy.rows));
            }
            copy.rows += table_copy.rows;
            statements.extend(table_copy.statements);
        }
        match access {
            SeedAccess::Tcp(_) => replica.db.load(&statements).await?,
            SeedAccess::Socket => load_through_socket(cluster, namespace, &replica.pod, &statements).await?,
        }
        // Counted back on the replica: a load cut short at a statement boundary would otherwise go unnoticed.
        for (table, rows) in &expected {
            let found = replica.db.row_count(&database, table).await?;
            check_loaded(&replica.pod, &database, table, *rows, found).map_err(anyhow::Error::msg)?;
        }
        checkpoint("repair: database copied").await;
        copied.push(copy);
    }
    Ok(copied)
}

/// The probe account `lab verify` logs in with on replicas: created on the primary after `USE appdb`, it reaches a
/// replica through replication, which a replica added after the primary purged that binlog never got.
async fn ensure_probe_account(
    cluster: &Cluster,
    namespace: &str,
    replica: &mut Session,
    access: &SeedAccess,
    probe: &Credentials,
) -> anyhow::Result<()> {
    match access {
        SeedAccess::Tcp(_) => replica.db.ensure_probe_user_locally(probe).await?,
        SeedAccess::Socket => {
            let statements: Vec<String> = replica
                .db
                .dialect()
                .probe_user(probe)
                .iter()
                .map(|s| s.text().to_string())
                .collect();
            load_through_socket(cluster, namespace, &replica.pod, &statements)
                .await
                .map_err(|error| anyhow::anyhow!("{}", withhold(&format!("{error:#}"), &probe.password)))?;
        }
    }
    Ok(())
}

/// Pure: `text` with the password (as typed and as quoted in SQL) replaced by `******`: the client's errors may
/// quote the statement that carried it.
pub fn withhold(text: &str, password: &SecretString) -> String {
    crate::database::scrub_with(text, std::slice::from_ref(password), "******")
}

/// The pod's own client as the server's OS user, on the Unix socket (unix_socket authentication, no password).
pub const SOCKET_CLIENT: [&str; 9] = [
    "setpriv",
    "--reuid=mysql",
    "--regid=mysql",
    "--clear-groups",
    "--",
    "mariadb",
    "--default-character-set=utf8mb4",
    "--batch",
    "-umysql",
];

/// What the socket script prints last: its absence means the client did not read the whole script.
const LOAD_COMPLETE: &str = "lab-repair-load-complete";

/// Pure: the script the socket client reads: the load settings, the statements, then [`LOAD_COMPLETE`].
pub fn socket_script(statements: &[String]) -> String {
    crate::database::LOAD_PROLOGUE
        .iter()
        .map(|s| s.to_string())
        .chain(statements.iter().cloned())
        .chain([format!("SELECT '{LOAD_COMPLETE}'")])
        .map(|s| format!("{s};\n"))
        .collect()
}

/// Pure: the rows a table has on the replica after the load must be the snapshot's.
pub fn check_loaded(pod: &str, database: &str, table: &str, expected: u64, found: u64) -> Result<(), String> {
    if expected == found {
        return Ok(());
    }
    Err(format!(
        "{pod}: the copy of {database}.{table} has {found} rows, the snapshot {expected}: the load was cut short. The \
         replica stays marked and stopped; run `lab repair {pod}` again"
    ))
}

async fn load_through_socket(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    statements: &[String],
) -> anyhow::Result<()> {
    let output = cluster
        .exec(
            namespace,
            pod,
            DATABASE_CONTAINER,
            &SOCKET_CLIENT,
            &socket_script(statements),
        )
        .await?;
    if !output.success || !output.stdout.contains(LOAD_COMPLETE) {
        anyhow::bail!(
            "{pod}: loading the copy through the socket failed: {}",
            if output.stderr.trim().is_empty() {
                "the client stopped before the end of the copy"
            } else {
                output.stderr.trim()
            }
        );
    }
    Ok(())
}

/// Pure: what a person would type for the same re-seed, passwords as `******`.
fn commands(
    namespace: &str,
    replica: &Session,
    replication: &Credentials,
    access: &SeedAccess,
    snapshot: &Coordinates,
    databases: &[DatabaseCopy],
) -> Vec<String> {
    let dialect = replica.db.dialect();
    let mysql = dialect.flavor() == Flavor::MySql;
    let (client, dump, data_option) = if mysql {
        ("mysql", "mysqldump", "--source-data=2")
    } else {
        ("mariadb", "mariadb-dump", "--master-data=2")
    };
    let pod = &replica.pod;
    let tcp = |pod: &str, sql: &str| {
        format!("kubectl -n {namespace} exec {pod} -- {client} -h127.0.0.1 -uroot -p****** -e \"{sql}\"")
    };
    let mut commands = vec![tcp(pod, &as_typed(&dialect.reset_replica()))];
    let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
    commands.push(format!(
        "kubectl -n {namespace} exec {PRIMARY_POD} -- {dump} -h127.0.0.1 -uroot -p****** --single-transaction \
         {data_option} --databases {} > copy.sql   # the copy and its coordinates ({snapshot})",
        names.join(" ")
    ));
    match access {
        SeedAccess::Tcp(open) => {
            commands.push(tcp(pod, open.text()));
            commands.push(format!(
                "kubectl -n {namespace} exec -i {pod} -- {client} -h127.0.0.1 -uroot -p****** --init-command=\"SET \
                 SESSION sql_log_bin = 0\" < copy.sql"
            ));
        }
        SeedAccess::Socket => commands.push(format!(
            "kubectl -n {namespace} exec -i {pod} -- {} --init-command=\"SET SESSION sql_log_bin = 0\" < copy.sql",
            SOCKET_CLIENT.join(" ")
        )),
    }
    let shown = hidden_source(&primary_source(namespace, replication, snapshot.clone()));
    commands.push(tcp(pod, &as_typed(&dialect.configure_replica(&shown))));
    commands.push(format!("lab verify -n {namespace}"));
    commands
}

/// For `lab up`: a replica whose re-seed was interrupted must not be configured from the origin or started (its copy
/// is partial); `lab repair` finishes it.
pub async fn refuse_interrupted_repairs(cluster: &Cluster, namespace: &str, pods: &[String]) -> anyhow::Result<()> {
    for pod in pods {
        let mark = cluster
            .pvc_annotation(namespace, &claim(pod), REPAIR_ANNOTATION)
            .await?;
        if is_interrupted(mark.as_deref()) {
            return Err(UsageError::new(format!(
                "{pod} was being re-seeded by `lab repair` when it was interrupted: its copy of the data is partial, \
                 so lab up does not configure it. Run `lab repair {pod}` to finish, then `lab up` again"
            ))
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_replica_status;

    const HOST: &str = "mysql-0.mysql-headless.database.svc.cluster.local";

    fn status(host: &str, io: &str, sql: &str, io_errno: u32, sql_errno: u32) -> ReplicaStatus {
        let column = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        parse_replica_status(&[
            column("Master_Host", host),
            column("Slave_IO_Running", io),
            column("Slave_SQL_Running", sql),
            column("Last_IO_Errno", &io_errno.to_string()),
            column("Last_SQL_Errno", &sql_errno.to_string()),
        ])
    }

    #[test]
    fn the_primary_and_pods_the_lab_lacks_are_refused_as_usage_errors() {
        let error = check_target("database", "mysql-0", 3).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("mysql-0 is the primary: lab repair re-seeds replicas FROM it"),
            "{error}"
        );
        assert!(
            error.to_string().ends_with(
                "name a replica (mysql-1 … mysql-2), or run `lab repair` alone to re-seed every replica that needs it"
            ),
            "{error}"
        );
        assert!(
            check_target("database", "mysql-0", 2)
                .unwrap_err()
                .to_string()
                .contains("name its replica, mysql-1,")
        );
        assert!(
            check_target("database", "mysql-0", 1)
                .unwrap_err()
                .to_string()
                .ends_with("this lab has no replicas")
        );
        for bad in ["mysql-3", "mysql-01", "web-1", "mysql-"] {
            let error = check_target("database", bad, 3).unwrap_err().to_string();
            assert_eq!(
                error,
                format!(
                    "the lab in namespace database has no replica {bad}: its pods are mysql-0, mysql-1, mysql-2; name \
                     one of the replicas"
                )
            );
        }
        assert!(check_target("database", "mysql-2", 3).is_ok());
    }

    #[test]
    fn diverged_unconfigured_and_binlog_less_replicas_are_reseeded_the_others_left_alone() {
        let assess = |s: Option<ReplicaStatus>, interrupted| assess(s.as_ref(), HOST, interrupted);
        // A write on the replica, then the primary's write to the same key.
        let diverged = assess(Some(status(HOST, "Yes", "No", 0, 1062)), false).unwrap();
        assert!(
            diverged.starts_with("its SQL thread stopped with error 1062"),
            "{diverged}"
        );
        assert!(assess(None, false).unwrap().contains("not configured"));
        assert!(assess(Some(status("elsewhere", "Yes", "Yes", 0, 0)), false).is_ok());
        // The origin's binlog was purged (MySQL 8 wraps 1236 as 13114, mysql-notes 13/14).
        assert!(assess(Some(status(HOST, "No", "Yes", 1236, 0)), false).is_ok());
        assert!(assess(Some(status(HOST, "No", "Yes", 13114, 0)), false).is_ok());
        // Interrupted re-seeds are done again, whatever the status says.
        assert!(assess(Some(status(HOST, "Yes", "Yes", 0, 0)), true).is_ok());
        // Left alone: healthy, reconnecting, merely stopped, or broken in a way a copy does not fix.
        assert!(assess(Some(status(HOST, "Yes", "Yes", 0, 0)), false).is_err());
        assert!(assess(Some(status(HOST, "Connecting", "Yes", 2003, 0)), false).is_err());
        let stopped = assess(Some(status(HOST, "Yes", "No", 0, 0)), false).unwrap_err();
        assert!(stopped.contains("`lab up` starts it"), "{stopped}");
        // A wrong replication password is not a data problem.
        assert!(assess(Some(status(HOST, "Connecting", "Yes", 1045, 0)), false).is_err());
        let server_id = assess(Some(status(HOST, "No", "Yes", 1593, 0)), false).unwrap_err();
        assert!(
            server_id.contains("a copy of the data does not fix that"),
            "{server_id}"
        );
    }

    #[test]
    fn only_an_unfinished_mark_counts_as_an_interrupted_repair() {
        let seeding = serde_json::to_string(&RepairMark {
            state: RepairState::Seeding,
            at: "2026-01-01T00:00:00Z".into(),
            snapshot: None,
        })
        .unwrap();
        assert_eq!(seeding, r#"{"state":"seeding","at":"2026-01-01T00:00:00Z"}"#);
        assert!(is_interrupted(Some(&seeding)));
        let done = serde_json::to_string(&RepairMark {
            state: RepairState::Done,
            at: "2026-01-01T00:00:00Z".into(),
            snapshot: Some(Coordinates {
                file: "mysql-bin.000002".into(),
                position: 4,
            }),
        })
        .unwrap();
        assert!(!is_interrupted(Some(&done)));
        assert!(!is_interrupted(None));
        assert!(!is_interrupted(Some("garbage")));
    }

    #[test]
    fn a_password_in_the_socket_client_s_error_is_withheld() {
        let password = SecretString::new("p'w");
        assert_eq!(
            withhold("ERROR 1064 near 'IDENTIFIED BY 'p''w'' at line 3", &password),
            "ERROR 1064 near 'IDENTIFIED BY '******'' at line 3"
        );
        assert_eq!(withhold("it was p'w", &password), "it was ******");
    }

    #[test]
    fn the_load_is_checked_to_the_end_and_counted_back() {
        let script = socket_script(&["DROP DATABASE IF EXISTS `appdb`".into()]);
        assert_eq!(
            script,
            "SET NAMES utf8mb4;\nSET SESSION time_zone = '+00:00';\nSET SESSION sql_log_bin = 0;\nSET SESSION \
             foreign_key_checks = 0;\nSET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';\nDROP DATABASE IF EXISTS \
             `appdb`;\nSELECT 'lab-repair-load-complete';\n"
        );
        assert!(check_loaded("mysql-1", "appdb", "t", 500, 500).is_ok());
        assert_eq!(
            check_loaded("mysql-1", "appdb", "t", 500, 499).unwrap_err(),
            "mysql-1: the copy of appdb.t has 499 rows, the snapshot 500: the load was cut short. The replica stays \
             marked and stopped; run `lab repair mysql-1` again"
        );
        assert_eq!(
            SOCKET_CLIENT[..5],
            ["setpriv", "--reuid=mysql", "--regid=mysql", "--clear-groups", "--"]
        );
    }
}
