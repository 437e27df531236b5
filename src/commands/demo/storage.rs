//! Demo `storage` (tutorial section 6B): a PersistentVolumeClaim outlives its pod (and its StatefulSet). Scaling
//! down removes the last pod but keeps its claim Bound; scaling back mounts the same claim, with the old rows, and
//! replication catches up on what was written meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use super::{Lab, Narrator, demo_marker, restore_size_on_interrupt, statefulset};
use crate::commands::{PRIMARY_POD, pod_name};
use crate::exit::UsageError;

const APPLY_WAIT: Duration = Duration::from_secs(60);
/// Rows written while the replica is away.
const MISSED_ROWS: usize = 3;

pub async fn run(lab: &Lab<'_>, n: &mut Narrator) -> anyhow::Result<()> {
    if lab.pods < 2 {
        return Err(UsageError::new("demo storage needs a replica: run `lab up --replicas 2` first").into());
    }
    let pods = lab.pods;
    let pod = pod_name(pods - 1);
    let set = statefulset();
    let mut primary = lab.session(PRIMARY_POD).await?;
    let mut replica = lab.session(&pod).await?;

    let old = demo_marker("storage", "before");
    n.step(
        &format!("write a row that {pod} replicates"),
        "the row to find again after the pod is gone and back",
        &[lab.sql(
            PRIMARY_POD,
            &format!("INSERT INTO appdb.lab_validation (marker) VALUES ('{old}')"),
        )],
    )
    .await;
    let position = primary.db.write_marker(&old).await?;
    replica.db.wait_for_coordinates(&position, APPLY_WAIT).await?;
    let seen = replica.db.has_marker(&old).await?;
    n.observe(&format!("the row on {pod}"), "present", present(seen), None, seen);
    replica.close().await;

    let before = lab
        .cluster
        .pod_identity(lab.namespace, &pod)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{pod} does not exist"))?;
    let claim = before
        .claim
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{pod} mounts no claim"))?;
    n.step(
        &format!("scale the StatefulSet down to {}", pods - 1),
        "a StatefulSet removes its highest ordinal first; the claims its volumeClaimTemplate created are not \
         deleted with the pods (persistentVolumeClaimRetentionPolicy defaults to Retain)",
        &[
            lab.kubectl(&format!("scale statefulset {set} --replicas={}", pods - 1)),
            lab.kubectl("get pods,pvc"),
        ],
    )
    .await;
    restore_size_on_interrupt(pods);
    let started = Instant::now();
    lab.cluster.scale_statefulset(lab.namespace, set, pods - 1).await?;
    lab.cluster
        .wait_pods_gone(lab.namespace, &[(pod.clone(), before.uid.clone())], lab.deadline)
        .await?;
    n.timed(&format!("{pod} gone"), started.elapsed());
    let gone = lab.cluster.pod_identity(lab.namespace, &pod).await?.is_none();
    n.observe(
        &format!("pod {pod}"),
        "gone",
        if gone { "gone" } else { "still there" }.into(),
        None,
        gone,
    );
    let kept = lab.cluster.claim_identity(lab.namespace, &claim.name).await?;
    n.observe(
        &format!("claim {}", claim.name),
        &format!("still there, same uid {}, Bound", claim.uid),
        kept.as_ref()
            .map_or("deleted".into(), |c| format!("uid {}, {}", c.uid, c.phase)),
        None,
        kept.as_ref().is_some_and(|c| c.uid == claim.uid && c.phase == "Bound"),
    );

    n.step(
        &format!("write {MISSED_ROWS} rows while {pod} is away"),
        "rows the replica misses: it must catch up on them when it returns",
        &[lab.sql(PRIMARY_POD, "INSERT INTO appdb.lab_validation (marker) VALUES (...)")],
    )
    .await;
    let mut missed = Vec::new();
    let mut last = position;
    for i in 0..MISSED_ROWS {
        let marker = demo_marker("storage", &format!("missed-{i}"));
        last = primary.db.write_marker(&marker).await?;
        missed.push(marker);
    }
    n.note(&format!("primary now at {last}"));

    n.step(
        &format!("scale the StatefulSet back to {pods}"),
        "the StatefulSet re-creates the same ordinal, and its volumeClaimTemplate finds the claim by name: the old \
         volume is mounted again, not a new empty one",
        &[lab.kubectl(&format!("scale statefulset {set} --replicas={pods}"))],
    )
    .await;
    let started = Instant::now();
    lab.cluster.scale_statefulset(lab.namespace, set, pods).await?;
    lab.cluster
        .wait_pod_ready(lab.namespace, &pod, lab.deadline, &|_| {})
        .await?;
    n.timed(&format!("{pod} Ready again"), started.elapsed());
    super::clear_repair_on_interrupt();
    let after = lab
        .cluster
        .pod_identity(lab.namespace, &pod)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{pod} did not come back"))?;
    let verdicts = super::identity::judge_identity(&before, &after);
    n.observe(
        &format!("{pod}'s claim"),
        &format!("{} with uid {}", claim.name, claim.uid),
        after
            .claim
            .as_ref()
            .map_or("none".into(), |c| format!("{} with uid {}, {}", c.name, c.uid, c.phase)),
        None,
        verdicts.same_claim,
    );

    n.step(
        &format!("{pod}'s old data is there"),
        "the row written before the scale-down was on the claim all along",
        &[lab.sql(
            &pod,
            &format!("SELECT COUNT(*) FROM appdb.lab_validation WHERE marker = '{old}'"),
        )],
    )
    .await;
    let mut replica = lab.session(&pod).await?;
    let kept = replica.db.has_marker(&old).await?;
    n.observe("the row from before", "present", present(kept), None, kept);

    n.step(
        &format!("{pod} catches up on the rows it missed"),
        "its replication position was kept on the claim too: it resumes from there by itself",
        &[lab.sql(&pod, "SHOW REPLICA STATUS\\G")],
    )
    .await;
    let started = Instant::now();
    let running = replica.db.wait_replication_running(lab.deadline).await;
    n.observe(
        "replication",
        "IO and SQL threads Yes, without START REPLICA",
        match &running {
            Ok(s) => format!("IO {}, SQL {}", s.io_running, s.sql_running),
            Err(error) => error.to_string(),
        },
        None,
        running.is_ok(),
    );
    replica.db.wait_for_coordinates(&last, APPLY_WAIT).await?;
    let mut found = 0;
    for marker in &missed {
        if replica.db.has_marker(marker).await? {
            found += 1;
        }
    }
    n.timed("caught up", started.elapsed());
    n.observe(
        "rows written while it was away",
        &format!("{MISSED_ROWS} of {MISSED_ROWS}"),
        format!("{found} of {MISSED_ROWS}"),
        Some((found as f64, "rows")),
        found == MISSED_ROWS,
    );
    n.note(
        "PVCs outlive pods and StatefulSets: even `kubectl delete statefulset mysql` keeps them; only deleting the \
         claim (`kubectl delete pvc`, or `lab teardown` without --keep-data) deletes the data",
    );
    primary.close().await;
    replica.close().await;
    Ok(())
}

fn present(yes: bool) -> String {
    if yes { "present" } else { "missing" }.into()
}
