//! `lab teardown`: deletes what `lab` created and waits until it is gone.

use tokio::time::Instant;

use super::connect_cluster;
use crate::cluster::TeardownOutcome;
use crate::plan::{Runner, Step};
use crate::settings::Settings;

pub struct TeardownRequest {
    pub keep_data: bool,
    pub force: bool,
}

pub async fn run(
    settings: &Settings,
    request: &TeardownRequest,
    runner: &mut Runner<'_>,
) -> anyhow::Result<TeardownOutcome> {
    let deadline = Instant::now() + settings.timeout;
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    runner
        .run("teardown", async {
            let outcome = cluster
                .teardown(namespace, request.keep_data, request.force, deadline)
                .await?;
            let detail = outcome.to_string();
            Ok(Step::changed_if(outcome.changed(), detail, outcome))
        })
        .await
}
