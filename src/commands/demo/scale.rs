//! Demo `scale` (tutorial section 8): add a replica and remove it again. The new pod is an empty server until it is
//! configured; `lab up` configures it from the binlog origin recorded on the primary's claim (the same plan as a
//! first `lab up`, not a copy of it), it catches up, joins `mysql-replicas`, and the verify checks pass. Scaling
//! back, the report calls the pod that is leaving `leaving`, not broken.

use std::time::Duration;

use tokio::time::Instant;

use super::{Lab, Narrator, demo_marker, restore_size_on_interrupt, statefulset};
use crate::commands::inspect::{Checks, build_report};
use crate::commands::{ORIGIN_ANNOTATION, ORIGIN_PVC, PRIMARY_POD, ROLE_LABEL, Session, pod_name, primary_host};
use crate::exit::UsageError;
use crate::manifests::DATABASE_CONTAINER;
use crate::plan::Runner;
use crate::report::{HealthReport, Severity, Verdict};
use crate::settings::{ManifestSettings, Settings};

const APPLY_WAIT: Duration = Duration::from_secs(60);
const REPLICAS_SERVICE: &str = "mysql-replicas";

pub async fn run(settings: &Settings, lab: &Lab<'_>, n: &mut Narrator, runner: &mut Runner<'_>) -> anyhow::Result<()> {
    let pods = lab.pods;
    if pods >= crate::cli::MAX_REPLICAS {
        return Err(UsageError::new(format!(
            "demo scale adds a pod, and the lab already runs the most ({pods}): run `lab up --replicas {}` first",
            pods - 1
        ))
        .into());
    }
    let set = statefulset();
    let new = pod_name(pods);
    let claim_name = format!("data-{new}");
    let claim_existed = lab.cluster.claim_identity(lab.namespace, &claim_name).await?.is_some();
    let image = lab
        .cluster
        .statefulset_image(lab.namespace, set, DATABASE_CONTAINER)
        .await?
        .ok_or_else(|| anyhow::anyhow!("StatefulSet {set} has no container {DATABASE_CONTAINER}"))?;

    let mut primary = lab.session(PRIMARY_POD).await?;
    let marker = demo_marker("scale", "before");
    n.step(
        "write a row before scaling up",
        "a row the new replica must have too: it copies the primary's history from the recorded origin",
        &[lab.sql(
            PRIMARY_POD,
            &format!("INSERT INTO appdb.lab_validation (marker) VALUES ('{marker}')"),
        )],
    )
    .await;
    let last = primary.db.write_marker(&marker).await?;
    n.note(&format!("primary at {last}"));

    n.step(
        &format!("scale the StatefulSet up to {}", pods + 1),
        "the StatefulSet adds the next ordinal with a new claim; the pod starts as an empty, stand-alone server",
        &[
            lab.kubectl(&format!("scale statefulset {set} --replicas={}", pods + 1)),
            lab.kubectl(&format!("wait --for=condition=Ready pod/{new}")),
        ],
    )
    .await;
    restore_size_on_interrupt(pods);
    let started = Instant::now();
    lab.cluster.scale_statefulset(lab.namespace, set, pods + 1).await?;
    lab.cluster
        .wait_pod_ready(lab.namespace, &new, lab.deadline, &|_| {})
        .await?;
    n.timed(&format!("{new} Ready"), started.elapsed());
    let mut fresh = lab.session(&new).await?;
    let configured = fresh.db.replica_status().await?.is_some();
    fresh.close().await;
    n.observe(
        &format!("{new} replicates"),
        "not yet: a new pod is a stand-alone server until it is configured",
        if configured {
            "already configured"
        } else {
            "not configured"
        }
        .into(),
        None,
        !configured || claim_existed,
    );
    if claim_existed {
        n.note(&format!(
            "claim {claim_name} existed before (an earlier scale-up): {new} started on its old data"
        ));
    }

    let origin = lab
        .cluster
        .pvc_annotation(lab.namespace, ORIGIN_PVC, ORIGIN_ANNOTATION)
        .await?
        .unwrap_or_default();
    n.step(
        &format!("configure {new} with `lab up`"),
        "section 8 by hand is CHANGE REPLICATION SOURCE TO ... START REPLICA on the new pod; `lab up` does it from \
         the binlog origin it recorded on the primary's claim (before appdb existed), so the new replica replays \
         everything, then labels it lab.dev/role=replica so that mysql-replicas routes to it",
        &[
            lab.kubectl(&format!(
                "get pvc {ORIGIN_PVC} -o jsonpath='{{.metadata.annotations.lab\\.dev/binlog-origin}}'"
            )),
            lab.sql(&new, change_source_by_hand(lab.flavor)),
            lab.kubectl(&format!("label pod {new} {ROLE_LABEL}=replica")),
            "lab up".to_string(),
        ],
    )
    .await;
    n.note(&format!("recorded origin on {ORIGIN_PVC}: {origin}"));
    // The built-in manifests with the running image: a lab built from `--manifests DIR` is configured from the
    // built-in ones here (README, Classroom demos).
    let manifests = ManifestSettings {
        image,
        replicas: None,
        dir: None,
        parallel: false,
    };
    let started = Instant::now();
    // `lab demo` always explains: the class sees each step of this `lab up` with the statements it runs.
    let explainer = super::super::up::explain::Explainer::new(true);
    let report = super::super::up::run_explained(settings, &manifests, runner, &explainer).await?;
    n.timed("lab up", started.elapsed());
    let configure = runner
        .records()
        .iter()
        .rev()
        .find(|r| r.name == "configure replicas")
        .map(|r| r.detail.clone())
        .unwrap_or_default();
    n.observe(
        &format!("{new} configured from the recorded origin"),
        &format!("{new} now replicates from the origin"),
        configure.clone(),
        None,
        configured_from_origin(&configure, &new, &origin) || claim_existed,
    );
    let mut replica = lab.session(&new).await?;
    replica.db.wait_for_coordinates(&last, APPLY_WAIT).await?;
    let caught_up = replica.db.has_marker(&marker).await?;
    let status = replica.db.replica_status().await?;
    replica.close().await;
    n.observe(
        &format!("the row from before on {new}"),
        "present (caught up from the origin)",
        if caught_up { "present" } else { "missing" }.into(),
        None,
        caught_up,
    );
    n.observe(
        &format!("{new}'s source"),
        &primary_host(lab.namespace),
        status.as_ref().map_or("none".into(), |s| s.source_host.clone()),
        None,
        status
            .as_ref()
            .is_some_and(|s| s.source_host == primary_host(lab.namespace)),
    );
    let routed = joins_replicas_service(&report, &new);
    n.observe(
        &format!("{REPLICAS_SERVICE} routes to {new}"),
        "yes",
        report
            .services
            .iter()
            .find(|s| s.name == REPLICAS_SERVICE)
            .map_or("no such Service".into(), |s| s.endpoints.join(", ")),
        None,
        routed,
    );
    n.observe(
        "the verify checks after the scale-up",
        "HEALTHY",
        report.verdict.to_string(),
        None,
        report.verdict == Verdict::Healthy,
    );

    n.step(
        &format!("scale back down to {pods}"),
        "the StatefulSet removes the highest ordinal; while it terminates the report calls it leaving, not broken",
        &[
            lab.kubectl(&format!("scale statefulset {set} --replicas={pods}")),
            "lab status".to_string(),
        ],
    )
    .await;
    let leaving_uid = lab
        .cluster
        .pod_identity(lab.namespace, &new)
        .await?
        .map(|p| p.uid)
        .unwrap_or_default();
    let started = Instant::now();
    lab.cluster.scale_statefulset(lab.namespace, set, pods).await?;
    super::clear_repair_on_interrupt();
    // The report right away, while the pod may still be terminating (the sessions of the pods that stay).
    let mut sessions: Vec<Session> = vec![primary];
    for ordinal in 1..pods {
        sessions.push(lab.session(&pod_name(ordinal)).await?);
    }
    let during = build_report(
        &lab.cluster,
        lab.namespace,
        sessions.iter_mut().collect(),
        &[],
        Checks::default(),
    )
    .await?;
    for session in sessions {
        session.close().await;
    }
    let (observed, fine) = judge_scale_down(&during, &new);
    n.observe(
        &format!("the report on {new} while it leaves"),
        "leaving (or gone), never broken",
        observed,
        None,
        fine,
    );
    lab.cluster
        .wait_pods_gone(lab.namespace, &[(new.clone(), leaving_uid)], lab.deadline)
        .await?;
    n.timed(&format!("{new} gone"), started.elapsed());
    if !claim_existed {
        n.note(&format!(
            "its claim {claim_name} stays (a later scale-up would start from that data); the demo created it, so it \
             deletes it: {}",
            lab.kubectl(&format!("delete pvc {claim_name}"))
        ));
        lab.cluster.delete_pvc(lab.namespace, &claim_name).await?;
    }
    Ok(())
}

/// The section 8 statement a student types, in the servers' dialect (MariaDB rejects CHANGE REPLICATION SOURCE
/// with 1064; MySQL 8.4 removed CHANGE MASTER), the password hidden. `lab up` also sets the retry options (see
/// sql/02-replica-setup.sql).
pub fn change_source_by_hand(flavor: crate::database::Flavor) -> &'static str {
    match flavor {
        crate::database::Flavor::MySql => {
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='mysql-0.mysql-headless', SOURCE_USER='repl', \
             SOURCE_PASSWORD='******', SOURCE_LOG_FILE='<file>', SOURCE_LOG_POS=<position>, \
             GET_SOURCE_PUBLIC_KEY=1; START REPLICA"
        }
        crate::database::Flavor::MariaDb => {
            "CHANGE MASTER TO MASTER_HOST='mysql-0.mysql-headless', MASTER_USER='repl', MASTER_PASSWORD='******', \
             MASTER_LOG_FILE='<file>', MASTER_LOG_POS=<position>, MASTER_USE_GTID=no; START SLAVE"
        }
    }
}

/// Pure: `up`'s "configure replicas" detail names the new pod and the recorded origin (`file:position`).
pub fn configured_from_origin(detail: &str, pod: &str, origin_annotation: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Origin {
        file: String,
        position: u64,
    }
    let Ok(origin) = serde_json::from_str::<Origin>(origin_annotation) else {
        return false;
    };
    detail.contains(pod) && detail.contains(&format!("from {}:{}", origin.file, origin.position))
}

/// Pure: the replicas Service routes to the pod.
pub fn joins_replicas_service(report: &HealthReport, pod: &str) -> bool {
    report
        .services
        .iter()
        .any(|s| s.name == REPLICAS_SERVICE && s.ok && s.endpoints.iter().any(|e| e == pod))
}

/// Pure: during a scale-down, the pod that leaves is `leaving` (or already gone), no error names it, and the lab
/// is not BROKEN. Returns what was seen, and whether it is what the demo teaches.
pub fn judge_scale_down(report: &HealthReport, pod: &str) -> (String, bool) {
    let named_broken = report
        .problems
        .iter()
        .any(|p| p.subject == pod && p.severity == Severity::Error);
    let state = match report.pods.iter().find(|p| p.name == pod) {
        Some(p) if p.leaving => format!("{pod} {} and leaving: true", p.phase),
        Some(p) => format!("{pod} {} and leaving: false", p.phase),
        None => format!("{pod} already gone"),
    };
    let leaving_or_gone = report.pods.iter().find(|p| p.name == pod).is_none_or(|p| p.leaving);
    (
        format!("{state}; verdict {}", report.verdict),
        leaving_or_gone && !named_broken && report.verdict != Verdict::Broken,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PodReport, Problem, ServiceReport};

    #[test]
    fn the_statement_shown_follows_the_flavour_and_hides_the_password() {
        use crate::database::Flavor;
        assert!(change_source_by_hand(Flavor::MariaDb).starts_with("CHANGE MASTER TO"));
        assert!(change_source_by_hand(Flavor::MySql).starts_with("CHANGE REPLICATION SOURCE TO"));
        assert!(change_source_by_hand(Flavor::MySql).contains("GET_SOURCE_PUBLIC_KEY=1"));
        for flavor in [Flavor::MySql, Flavor::MariaDb] {
            assert!(change_source_by_hand(flavor).contains("PASSWORD='******'"));
        }
    }

    #[test]
    fn configured_from_origin_needs_the_pod_and_the_recorded_position() {
        let origin = r#"{"file":"mysql-bin.000001","position":328,"captured_at":"2026-01-01T00:00:00Z"}"#;
        let detail = "mysql-2 now replicates from mysql-bin.000001:328; IO and SQL threads running";
        assert!(configured_from_origin(detail, "mysql-2", origin));
        assert!(!configured_from_origin(detail, "mysql-3", origin));
        assert!(!configured_from_origin(
            "every replica already replicates from mysql-0; IO and SQL threads running",
            "mysql-2",
            origin
        ));
        assert!(!configured_from_origin(detail, "mysql-2", "not json"));
    }

    fn pod(name: &str, phase: &str, leaving: bool) -> PodReport {
        PodReport {
            name: name.into(),
            phase: phase.into(),
            ready: phase == "Running",
            restarts: 0,
            node: None,
            ip: None,
            role: None,
            leaving,
        }
    }

    #[test]
    fn a_pod_scaled_away_is_leaving_not_broken() {
        let mut report = HealthReport::new("database", jiff::Timestamp::now());
        report.pods = vec![pod("mysql-0", "Running", false), pod("mysql-2", "Terminating", true)];
        report.verdict = Verdict::Healthy;
        let (text, ok) = judge_scale_down(&report, "mysql-2");
        assert_eq!(text, "mysql-2 Terminating and leaving: true; verdict HEALTHY");
        assert!(ok);
        report.pods.pop();
        assert!(judge_scale_down(&report, "mysql-2").1, "already gone is fine");
        report.pods.push(pod("mysql-2", "Terminating", false));
        assert!(
            !judge_scale_down(&report, "mysql-2").1,
            "a terminating pod not called leaving"
        );
        report.pods[1].leaving = true;
        report.problems.push(Problem {
            subject: "mysql-2".into(),
            severity: Severity::Error,
            cause: "mysql-2 is Terminating".into(),
            fix: "-".into(),
        });
        assert!(!judge_scale_down(&report, "mysql-2").1, "an error naming it");
    }

    #[test]
    fn the_new_pod_must_be_an_endpoint_of_a_correct_replicas_service() {
        let mut report = HealthReport::new("database", jiff::Timestamp::now());
        report.services = vec![ServiceReport {
            name: REPLICAS_SERVICE.into(),
            endpoints: vec!["mysql-1".into(), "mysql-2".into()],
            ok: true,
            expectation: String::new(),
        }];
        assert!(joins_replicas_service(&report, "mysql-2"));
        assert!(!joins_replicas_service(&report, "mysql-3"));
        report.services[0].ok = false;
        assert!(!joins_replicas_service(&report, "mysql-2"));
    }
}
