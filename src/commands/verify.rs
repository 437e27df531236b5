//! `lab verify`: every check of a finished lab, including a fresh round trip and the read-only test. Changes
//! nothing but the validation table's rows. Exit 0 only if every check passes.

use std::time::Duration;

use tokio::time::Instant;

use super::inspect;
use super::up::wait_for_database;
use super::{PRIMARY_POD, connect_cluster, find_lab, pod_name};
use crate::plan::{Runner, Step};
use crate::report::HealthReport;
use crate::settings::Settings;

/// How long verify waits for replication threads that are reconnecting (after a primary restart, say). A connect
/// attempt made while the primary's address was gone only ends at the server's source connect timeout
/// (`slave_net_timeout`, 60 s by default), so the grace must be longer than that.
const RECONNECT_GRACE: Duration = Duration::from_secs(90);

pub async fn run(settings: &Settings, runner: &mut Runner<'_>) -> anyhow::Result<HealthReport> {
    let reporter = runner.reporter();
    let deadline = Instant::now() + settings.timeout;
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let (pods, accounts) = find_lab(&cluster, namespace).await?;

    let primary = runner
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

    inspect::prove_and_report(runner, &cluster, namespace, primary, replicas, &accounts, deadline).await
}
