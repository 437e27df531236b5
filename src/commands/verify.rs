//! `lab verify`: every check of a finished lab, including a fresh round trip and the read-only test. Changes
//! nothing but the validation table's rows. Exit 0 only if every check passes.

use std::time::Duration;

use tokio::time::Instant;

use super::inspect::{self, Checks};
use super::up::wait_for_database;
use super::{Accounts, PRIMARY_POD, SECRET, STATEFULSET, connect_cluster, pod_name};
use crate::exit::UsageError;
use crate::plan::{Reporter, Runner, Step};
use crate::report::HealthReport;
use crate::settings::Settings;

/// How long verify waits for replication threads that are reconnecting (after a primary restart, say). A connect
/// attempt made while the primary's address was gone only ends at the server's source connect timeout
/// (`slave_net_timeout`, 60 s by default), so the grace must be longer than that.
const RECONNECT_GRACE: Duration = Duration::from_secs(90);

pub async fn run(settings: &Settings, reporter: &dyn Reporter) -> anyhow::Result<HealthReport> {
    let deadline = Instant::now() + settings.timeout;
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let Some(pods) = cluster.statefulset_replicas(namespace, STATEFULSET).await? else {
        return Err(UsageError::new(format!(
            "no lab in namespace {namespace} (no StatefulSet {STATEFULSET}): run `lab up` first, or pass -n NAMESPACE"
        ))
        .into());
    };
    let accounts = Accounts::from_secret(&cluster.secret_values(namespace, SECRET).await?)?;
    let mut runner = Runner::new(reporter);

    let mut primary = runner
        .run(
            "wait for mysql-0",
            wait_for_database(&cluster, namespace, PRIMARY_POD, &accounts.root, deadline, reporter),
        )
        .await?;
    let mut replicas = Vec::new();
    for ordinal in 1..pods {
        let pod = pod_name(ordinal);
        let session = runner
            .run(
                &format!("wait for {pod}"),
                wait_for_database(&cluster, namespace, &pod, &accounts.root, deadline, reporter),
            )
            .await?;
        replicas.push(session);
    }

    runner
        .run("replication threads", async {
            let grace = deadline.min(Instant::now() + RECONNECT_GRACE);
            let mut failures = Vec::new();
            for replica in replicas.iter_mut() {
                if let Err(error) = replica.db.wait_replication_running(grace).await {
                    failures.push(format!("{}: {error}", replica.pod));
                }
            }
            Ok(if failures.is_empty() {
                Step::passed("IO and SQL threads running on every replica", ())
            } else {
                Step::failed(failures.join("; "), ())
            })
        })
        .await?;

    let validation = runner
        .run("validation", inspect::validate(&mut primary, &mut replicas, reporter))
        .await?;
    let read_only = runner
        .run(
            "read-only test",
            inspect::read_only_test(&cluster, namespace, &mut replicas, &accounts.probe, deadline),
        )
        .await?;
    let checks = Checks {
        validation: Some(validation),
        read_only,
    };

    let steps = runner.into_records();
    let sessions = std::iter::once(&mut primary).chain(replicas.iter_mut()).collect();
    let report = inspect::build_report(&cluster, namespace, sessions, &steps, checks).await?;
    primary.close().await;
    for replica in replicas {
        replica.close().await;
    }
    Ok(report)
}
