//! `lab status`: the health report alone, fast and read-only. It waits for nothing: pods that are not Ready are
//! reported as such.

use std::time::Duration;

use tokio::time::Instant;

use super::inspect::{self, Checks};
use super::{Session, connect_cluster, find_lab, pod_name};
use crate::plan::Runner;
use crate::report::HealthReport;
use crate::settings::Settings;

/// A Ready pod whose database does not answer within this is reported as unreachable.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

pub async fn run(settings: &Settings, runner: &mut Runner<'_>) -> anyhow::Result<HealthReport> {
    let reporter = runner.reporter();
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let (pods, accounts) = find_lab(&cluster, namespace).await?;
    let deadline = Instant::now() + CONNECT_BUDGET.min(settings.timeout);
    let mut sessions = Vec::new();
    for ordinal in 0..pods {
        let pod = pod_name(ordinal);
        if !cluster.pod_is_ready(namespace, &pod).await? {
            continue;
        }
        match Session::open(&cluster, namespace, &pod, &accounts.root, deadline).await {
            Ok(session) => sessions.push(session),
            Err(error) => reporter.note(&format!("{pod}: {error:#}")),
        }
    }
    let report = inspect::build_report(
        &cluster,
        namespace,
        sessions.iter_mut().collect(),
        &[],
        Checks {
            tutorial_passwords: Some(accounts.uses_tutorial_passwords()),
            ..Checks::default()
        },
    )
    .await?;
    for session in sessions {
        session.close().await;
    }
    Ok(report)
}
