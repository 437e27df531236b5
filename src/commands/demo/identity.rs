//! Demo `identity` (tutorial section 6A): a StatefulSet pod keeps its name and its claim across deletion; only its
//! uid (and IP) change. Its data survives, and replication heals by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{Lab, Narrator, demo_marker};
use crate::commands::{PRIMARY_POD, ROLE_LABEL, pod_name};
use crate::exit::UsageError;

/// How long a replica may take to apply a demo row.
const APPLY_WAIT: Duration = Duration::from_secs(30);
/// How often the replica's IO thread is sampled while the primary is away (the servers have no event for it).
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

pub async fn run(lab: &Lab<'_>, n: &mut Narrator) -> anyhow::Result<()> {
    if lab.pods < 2 {
        return Err(UsageError::new("demo identity needs a replica to watch: run `lab up --replicas 2` first").into());
    }
    let replica_pod = pod_name(1);
    let mut primary = lab.session(PRIMARY_POD).await?;
    let mut replica = lab.session(&replica_pod).await?;
    for pod in [PRIMARY_POD.to_string(), replica_pod.clone()] {
        let is_primary = pod == PRIMARY_POD;
        let marker = demo_marker("identity", &format!("before-{pod}"));
        n.step(
            &format!("write a row before deleting {pod}"),
            "a row to look for afterwards: if it is still there, the data lived on the claim, not in the pod",
            &[lab.sql(
                PRIMARY_POD,
                &format!("INSERT INTO appdb.lab_validation (marker) VALUES ('{marker}')"),
            )],
        )
        .await;
        let position = primary.db.write_marker(&marker).await?;
        replica.db.wait_for_coordinates(&position, APPLY_WAIT).await?;
        let seen = replica.db.has_marker(&marker).await?;
        n.observe(
            &format!("the row on {replica_pod}"),
            "present",
            if seen { "present" } else { "missing" }.into(),
            None,
            seen,
        );

        n.step(
            &format!("who is {pod}"),
            "a pod has a name (stable), a uid (new for every pod object) and the claim it mounts (stable)",
            &[lab.kubectl(&format!(
                "get pod {pod} -o jsonpath='{{.metadata.uid}} {{.spec.volumes[0].persistentVolumeClaim.claimName}}'"
            ))],
        )
        .await;
        let before = lab
            .cluster
            .pod_identity(lab.namespace, &pod)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{pod} does not exist"))?;
        let claim_before = before
            .claim
            .clone()
            .ok_or_else(|| anyhow::anyhow!("{pod} mounts no claim"))?;
        n.note(&format!(
            "{pod}: uid {}, IP {}, claim {} (uid {})",
            before.uid,
            before.ip.as_deref().unwrap_or("-"),
            claim_before.name,
            claim_before.uid
        ));

        n.step(
            &format!("delete {pod}"),
            if is_primary {
                "the StatefulSet controller re-creates a deleted pod under the same name; meanwhile the replica \
                 loses its source and retries (Connecting) every few seconds"
            } else {
                "the StatefulSet controller re-creates a deleted pod under the same name; a replica that restarts \
                 resumes replication from where it stopped (its position is kept on its own volume)"
            },
            &[lab.kubectl(&format!("delete pod {pod}")), lab.kubectl("get pods -w")],
        )
        .await;
        let deleted_at = Instant::now();
        lab.cluster.delete_pod(lab.namespace, &pod).await?;
        let done = AtomicBool::new(false);
        let wait = async {
            let result = async {
                lab.cluster
                    .wait_pods_gone(lab.namespace, &[(pod.clone(), before.uid.clone())], lab.deadline)
                    .await?;
                let gone = deleted_at.elapsed();
                crate::interrupt::checkpoint("demo identity: pod gone").await;
                lab.cluster
                    .wait_pod_ready(lab.namespace, &pod, lab.deadline, &|_| {})
                    .await?;
                anyhow::Ok((gone, deleted_at.elapsed()))
            }
            .await;
            done.store(true, Ordering::SeqCst);
            result
        };
        // While the primary is away, the replica's IO thread is watched (it is a replica's own state only).
        let sample = async {
            let mut states: Vec<String> = Vec::new();
            while is_primary && !done.load(Ordering::SeqCst) {
                if let Ok(Some(status)) = replica.db.replica_status().await {
                    let state = status.io_running.to_string();
                    if states.last() != Some(&state) {
                        states.push(state);
                    }
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            states
        };
        let (waited, io_states) = tokio::join!(wait, sample);
        let (gone, ready) = waited?;
        n.timed(&format!("old {pod} terminated (grace period, SIGTERM)"), gone);
        n.timed(&format!("new {pod} Ready"), ready.saturating_sub(gone));

        n.step(
            &format!("who is {pod} now"),
            "same name, same claim: the StatefulSet's identity; a new uid: it is a new pod object",
            &[
                lab.kubectl(&format!(
                    "get pod {pod} -o jsonpath='{{.metadata.uid}} {{.spec.volumes[0].persistentVolumeClaim.claimName}}'"
                )),
                lab.kubectl(&format!(
                    "get pvc {} -o jsonpath='{{.metadata.uid}}'",
                    claim_before.name
                )),
            ],
        )
        .await;
        let after = lab
            .cluster
            .pod_identity(lab.namespace, &pod)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{pod} did not come back"))?;
        let claim_after = after.claim.clone();
        let verdicts = judge_identity(&before, &after);
        n.observe(
            "pod uid",
            "a new uid",
            format!("{} → {}", before.uid, after.uid),
            None,
            verdicts.new_uid,
        );
        n.observe(
            "claim",
            &format!("{} with uid {}, Bound", claim_before.name, claim_before.uid),
            claim_after
                .as_ref()
                .map_or("none".into(), |c| format!("{} with uid {}, {}", c.name, c.uid, c.phase)),
            None,
            verdicts.same_claim,
        );
        n.note(&format!(
            "IP {} → {} (clients use the name, not the IP)",
            before.ip.as_deref().unwrap_or("-"),
            after.ip.as_deref().unwrap_or("-")
        ));
        let label = after.labels.get(ROLE_LABEL).cloned();
        n.note(&match label {
            Some(role) => format!("{pod} kept its role label {ROLE_LABEL}={role}"),
            None => format!(
                "{pod} came back without the role label {ROLE_LABEL} that lab sets (pod labels are not in the \
                 StatefulSet's template): the report warns of it, and this demo puts it back at the end as \
                 `lab up` does"
            ),
        });

        n.step(
            &format!("the row is still on {pod}"),
            "the data lives on the claim, which the new pod mounts again",
            &[lab.sql(
                &pod,
                &format!("SELECT COUNT(*) FROM appdb.lab_validation WHERE marker = '{marker}'"),
            )],
        )
        .await;
        let mut session = lab.session(&pod).await?;
        let kept = session.db.has_marker(&marker).await?;
        n.observe(
            &format!("the row on the new {pod}"),
            "present",
            if kept { "present" } else { "missing" }.into(),
            None,
            kept,
        );
        if is_primary {
            primary.close().await;
            primary = session;
        } else {
            replica.close().await;
            replica = session;
        }

        n.step(
            &format!("replication heals by itself on {replica_pod}"),
            "nobody runs START REPLICA: the IO thread retries its source until it answers again (or, on a \
             restarted replica, the server starts replication from its saved position)",
            &[lab.sql(&replica_pod, "SHOW REPLICA STATUS\\G")],
        )
        .await;
        if is_primary {
            let left_running = io_states.iter().any(|s| s != "Yes");
            n.observe(
                &format!("{replica_pod}'s IO thread while {pod} was away"),
                "left Yes (Connecting) and came back",
                if io_states.is_empty() {
                    "not sampled".into()
                } else {
                    io_states.join(" → ")
                },
                None,
                left_running,
            );
        }
        let healing = Instant::now();
        let status = replica.db.wait_replication_running(lab.deadline).await;
        n.timed("until both replication threads ran again", healing.elapsed());
        n.observe(
            &format!("{replica_pod} replication"),
            "IO and SQL threads Yes",
            match &status {
                Ok(s) => format!("IO {}, SQL {}", s.io_running, s.sql_running),
                Err(error) => error.to_string(),
            },
            None,
            status.is_ok(),
        );

        let after_marker = demo_marker("identity", &format!("after-{pod}"));
        n.step(
            "a row written now reaches the replica",
            "the proof that replication works again end to end",
            &[
                lab.sql(
                    PRIMARY_POD,
                    &format!("INSERT INTO appdb.lab_validation (marker) VALUES ('{after_marker}')"),
                ),
                lab.sql(
                    &replica_pod,
                    &format!("SELECT COUNT(*) FROM appdb.lab_validation WHERE marker = '{after_marker}'"),
                ),
            ],
        )
        .await;
        let position = primary.db.write_marker(&after_marker).await?;
        let applied = Instant::now();
        replica.db.wait_for_coordinates(&position, APPLY_WAIT).await?;
        let arrived = replica.db.has_marker(&after_marker).await?;
        n.observe(
            &format!("the new row on {replica_pod}"),
            "present",
            if arrived { "present" } else { "missing" }.into(),
            Some((applied.elapsed().as_secs_f64(), "s")),
            arrived,
        );
    }
    primary.close().await;
    replica.close().await;
    Ok(())
}

/// What the tutorial teaches about a re-created pod, judged from its identity before and after.
#[derive(Debug, PartialEq, Eq)]
pub struct IdentityVerdicts {
    pub new_uid: bool,
    pub same_claim: bool,
}

pub fn judge_identity(before: &crate::cluster::PodIdentity, after: &crate::cluster::PodIdentity) -> IdentityVerdicts {
    IdentityVerdicts {
        new_uid: !after.uid.is_empty() && after.uid != before.uid,
        same_claim: match (&before.claim, &after.claim) {
            (Some(b), Some(a)) => a.name == b.name && a.uid == b.uid && a.phase == "Bound",
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClaimIdentity, PodIdentity};

    fn identity(uid: &str, claim_uid: &str, phase: &str) -> PodIdentity {
        PodIdentity {
            uid: uid.into(),
            ip: None,
            claim: Some(ClaimIdentity {
                name: "data-mysql-0".into(),
                uid: claim_uid.into(),
                phase: phase.into(),
            }),
            labels: Default::default(),
        }
    }

    #[test]
    fn a_recreated_pod_has_a_new_uid_and_the_same_bound_claim() {
        let before = identity("a", "c1", "Bound");
        assert_eq!(
            judge_identity(&before, &identity("b", "c1", "Bound")),
            IdentityVerdicts {
                new_uid: true,
                same_claim: true
            }
        );
        // The same pod object (never deleted), a new claim (data lost), a claim not Bound: each is caught.
        assert!(!judge_identity(&before, &identity("a", "c1", "Bound")).new_uid);
        assert!(!judge_identity(&before, &identity("b", "c2", "Bound")).same_claim);
        assert!(!judge_identity(&before, &identity("b", "c1", "Pending")).same_claim);
    }
}
