//! The checks and the report shared by `up`, `verify` and `status`: the validation round trip, the read-only
//! test, and the health report built from the cluster and the databases.

use std::time::Duration;

use anyhow::Context as _;
use futures::future::join_all;
use tokio::time::Instant;

use super::Accounts;
use super::ROLE_LABEL;
use super::checklist::{ChecklistFacts, checklist};
use super::up::explain::{self, Explainer};
use super::{PRIMARY_POD, Session};
use crate::cluster::{Cluster, PodSnapshot, ServiceSnapshot, Snapshot};
use crate::database::{
    Coordinates, Credentials, Flavor, ReadOnlyOutcome, ReplicaStatus, ReplicationProgress, ServerFacts,
    explain_replication_error,
};
use crate::exit::ExitStatus;
use crate::plan::{Reporter, Runner, Step, StepOutcome, StepRecord};
use crate::report::{
    ErrorReport, HealthReport, LogPosition, MissingRead, PodReport, Problem, PvcReport, ReadOnlyReport, ReplicaReport,
    Role, ServerFlavor, ServerReport, ServiceReport, Severity, StepReport, StepStatus, ValidationReport, WriteOutcome,
};

/// How long a replica may take to apply the validation row before the check fails.
const REPLICATION_WAIT: Duration = Duration::from_secs(30);

/// Results of the checks that write (validation) or try to write (read-only test).
#[derive(Debug, Default)]
pub struct Checks {
    pub validation: Option<ValidationReport>,
    pub read_only: Vec<ReadOnlyReport>,
    /// Whether the Secret still holds the tutorial's published passwords (for the checklist).
    pub tutorial_passwords: Option<bool>,
}

/// A marker no earlier run can have written.
pub fn new_marker() -> String {
    let now = jiff::Timestamp::now();
    format!("lab-{}-{}", now.as_millisecond(), std::process::id())
}

/// Writes a unique marker on the primary and reads it back on every replica once the replica has applied the
/// primary's position (a position wait, not a sleep loop).
pub async fn validate(
    primary: &mut Session,
    replicas: &mut [Session],
    marker: String,
    reporter: &dyn Reporter,
) -> anyhow::Result<Step<ValidationReport>> {
    let target = primary
        .db
        .write_marker(&marker)
        .await
        .context("writing the validation row on the primary")?;
    reporter.step_progress("validation", &format!("wrote {marker} on {}", primary.pod));
    crate::interrupt::checkpoint("validation: marker written").await;
    let results = join_all(replicas.iter_mut().map(|replica| {
        let marker = &marker;
        let target = &target;
        async move {
            let seen = async {
                // A replica whose replication already failed will never reach the position: say why now
                // instead of after the whole wait.
                if let Some(ReplicationProgress::Failed(failure)) =
                    replica.db.replica_status().await?.map(|status| status.progress())
                {
                    anyhow::bail!(
                        "replication stopped: {} thread error {}: {}",
                        failure.thread,
                        failure.errno,
                        failure.finding.cause
                    );
                }
                replica.db.wait_for_coordinates(target, REPLICATION_WAIT).await?;
                Ok(replica.db.has_marker(marker).await?)
            }
            .await;
            (replica.pod.clone(), seen)
        }
    }))
    .await;
    let mut read_on = Vec::new();
    let mut missing_on = Vec::new();
    for (pod, seen) in results {
        match seen {
            Ok(true) => read_on.push(pod),
            Ok(false) => missing_on.push(MissingRead {
                pod,
                reason: "the row is not there".into(),
            }),
            Err(error) => missing_on.push(MissingRead {
                pod,
                reason: error.to_string(),
            }),
        }
    }
    let ok = missing_on.is_empty();
    let missing: Vec<String> = missing_on.iter().map(|m| format!("{}: {}", m.pod, m.reason)).collect();
    let report = ValidationReport {
        marker: marker.clone(),
        written_on: primary.pod.clone(),
        read_on,
        missing_on,
        ok,
    };
    Ok(if ok {
        Step::passed(
            format!("{marker} written on {} and read on every replica", primary.pod),
            report,
        )
    } else {
        Step::failed(missing.join("; "), report)
    })
}

/// Tries a write on every replica, inside a transaction that is rolled back, as root and as the non-admin probe
/// account. A refused write (error 1290) passes.
pub async fn read_only_test(
    cluster: &Cluster,
    namespace: &str,
    replicas: &mut [Session],
    probe: &Credentials,
    deadline: Instant,
) -> anyhow::Result<Step<Vec<ReadOnlyReport>>> {
    let mut reports = Vec::new();
    let mut untested = Vec::new();
    for replica in replicas.iter_mut() {
        let attempt = async {
            let root = replica.db.read_only_test().await?;
            crate::interrupt::checkpoint("read-only test: root tested").await;
            let mut probe_session = Session::open(cluster, namespace, &replica.pod, probe, deadline)
                .await
                .with_context(|| format!("logging in as {}", probe.user))?;
            let outcome = probe_session.db.read_only_test().await;
            probe_session.close().await;
            anyhow::Ok((root, outcome?))
        };
        match attempt.await {
            Ok((root, outcome)) => {
                reports.push(read_only_report(&replica.pod, "root", root));
                reports.push(read_only_report(&replica.pod, &probe.user, outcome));
            }
            Err(error) => untested.push(format!("{}: {error:#}", replica.pod)),
        }
    }
    if !untested.is_empty() {
        return Ok(Step::failed(format!("could not test {}", untested.join("; ")), reports));
    }
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{} as {}", r.pod, r.account))
        .collect();
    Ok(if failures.is_empty() {
        let detail = if reports.is_empty() {
            "no replicas to test".to_string()
        } else {
            "replicas refuse writes from root and from ordinary accounts (error 1290)".to_string()
        };
        Step::passed(detail, reports)
    } else {
        Step::failed(format!("writes accepted on {}", failures.join(", ")), reports)
    })
}

/// Judges one read-only attempt: refused (1290) is the expectation for every account on every flavour. An
/// accepted write fails the check, root's included: on MariaDB too, where `lab up` takes READ_ONLY ADMIN away from
/// root (before 12.0) or sets read_only=NO_LOCK_NO_ADMIN (12.0+), since a row written on a replica stops
/// replication (1062) once the primary writes the same key.
pub fn read_only_report(pod: &str, account: &str, outcome: ReadOnlyOutcome) -> ReadOnlyReport {
    match outcome {
        ReadOnlyOutcome::Rejected => ReadOnlyReport {
            pod: pod.to_string(),
            account: account.to_string(),
            outcome: WriteOutcome::Rejected,
            ok: true,
            explanation: "error 1290: the server runs with read-only protection".into(),
        },
        ReadOnlyOutcome::AcceptedAndRolledBack { explanation } => ReadOnlyReport {
            pod: pod.to_string(),
            account: account.to_string(),
            outcome: WriteOutcome::Accepted,
            ok: false,
            explanation,
        },
    }
}

/// The end of `up` and `verify`: the validation round trip and the read-only test, then the report. Closes the
/// sessions.
pub async fn prove_and_report(
    runner: &mut Runner<'_>,
    cluster: &Cluster,
    namespace: &str,
    primary: Session,
    replicas: Vec<Session>,
    accounts: &Accounts,
    deadline: Instant,
) -> anyhow::Result<HealthReport> {
    let explained = Explained {
        explainer: &Explainer::off(),
        context: &explain::Context::new(namespace, primary.db.version().flavor),
    };
    prove_and_report_explained(
        runner, cluster, namespace, primary, replicas, accounts, deadline, explained,
    )
    .await
}

/// `lab up --explain`: what explains the steps below, and for whom.
pub struct Explained<'a> {
    pub explainer: &'a Explainer,
    pub context: &'a explain::Context,
}

/// [`prove_and_report`], each step explained before it runs when the explainer is on.
#[allow(clippy::too_many_arguments)]
pub async fn prove_and_report_explained(
    runner: &mut Runner<'_>,
    cluster: &Cluster,
    namespace: &str,
    mut primary: Session,
    mut replicas: Vec<Session>,
    accounts: &Accounts,
    deadline: Instant,
    explained: Explained<'_>,
) -> anyhow::Result<HealthReport> {
    let Explained { explainer, context } = explained;
    let probe = &accounts.probe;
    let reporter = runner.reporter();
    let dialect = primary.db.dialect().clone();
    let replica_pods: Vec<String> = replicas.iter().map(|r| r.pod.clone()).collect();
    let marker = new_marker();
    explainer.before(context, || {
        explain::validation(&dialect, &replica_pods, &marker, REPLICATION_WAIT.as_secs())
    });
    let validation = runner
        .run(
            "validation",
            validate(&mut primary, &mut replicas, marker.clone(), reporter),
        )
        .await?;
    explainer.before(context, || explain::read_only_test(&dialect, &replica_pods));
    let read_only = runner
        .run(
            "read-only test",
            read_only_test(cluster, namespace, &mut replicas, probe, deadline),
        )
        .await?;
    explainer.before(context, || explain::report(context, &dialect, &replica_pods));
    let checks = Checks {
        validation: Some(validation),
        read_only,
        tutorial_passwords: Some(accounts.uses_tutorial_passwords()),
    };
    let steps = runner.records().to_vec();
    let sessions = std::iter::once(&mut primary).chain(replicas.iter_mut()).collect();
    let report = build_report(cluster, namespace, sessions, &steps, checks).await?;
    primary.close().await;
    for replica in replicas {
        replica.close().await;
    }
    Ok(report)
}

/// A check's report, or the BROKEN report its error makes (as `lab status -n NAMESPACE -o json` prints it), the
/// error noted on stderr: one lab's failure is a row of a class's result, not the end of the command.
pub fn report_or_failure(namespace: &str, runner: &Runner<'_>, result: anyhow::Result<HealthReport>) -> HealthReport {
    result.unwrap_or_else(|error| {
        runner.reporter().note(&format!("{namespace}: {error:#}"));
        failure_report(namespace, runner.records(), &error, crate::exit::classify(&error))
    })
}

/// The report of a command that stopped with an error: the steps it ran, verdict BROKEN, and the error as a
/// problem. Printed with `-o json` so that scripts get one JSON object whatever happened.
pub fn failure_report(
    namespace: &str,
    steps: &[StepRecord],
    error: &anyhow::Error,
    status: ExitStatus,
) -> HealthReport {
    let mut report = HealthReport::new(namespace, jiff::Timestamp::now());
    report.steps = steps.iter().map(step_report).collect();
    let subject = steps
        .iter()
        .rev()
        .find(|s| s.outcome == StepOutcome::Failed)
        .map_or_else(|| "lab".to_string(), |s| s.name.clone());
    let fix = match status {
        ExitStatus::Usage => "correct the configuration the message names, then run the command again",
        ExitStatus::Interrupted => "run `lab up` again: it resumes where this run stopped",
        _ => "fix what the message names, then run `lab up` again: it resumes where this run stopped",
    };
    report.problems.push(Problem {
        subject,
        severity: Severity::Error,
        cause: format!("{error:#}"),
        fix: fix.to_string(),
    });
    report.finalize();
    report
}

/// Builds the health report from a cluster snapshot and the open database sessions (read-only queries).
pub async fn build_report(
    cluster: &Cluster,
    namespace: &str,
    sessions: Vec<&mut Session>,
    steps: &[StepRecord],
    checks: Checks,
) -> anyhow::Result<HealthReport> {
    let snapshot = cluster.snapshot(namespace).await?;
    let mut observed = Observed::default();
    for session in sessions {
        match session.db.facts().await {
            Ok(facts) => observed.servers.push((session.pod.clone(), facts)),
            Err(error) => observed.unreachable.push((session.pod.clone(), error.to_string())),
        }
        if session.pod == PRIMARY_POD {
            observed.primary_position = session.db.capture_coordinates().await.ok();
        } else {
            observed
                .replicas
                .push((session.pod.clone(), session.db.replica_status().await?));
        }
    }
    Ok(assemble(namespace, &snapshot, observed, steps, checks))
}

/// What the databases said.
#[derive(Debug, Default)]
pub struct Observed {
    pub servers: Vec<(String, ServerFacts)>,
    /// Replica pods and their replication status (`None`: replication never configured).
    pub replicas: Vec<(String, Option<ReplicaStatus>)>,
    pub primary_position: Option<Coordinates>,
    /// Ready pods whose database could not be queried, with the error.
    pub unreachable: Vec<(String, String)>,
}

/// Pure: the report from what the cluster and the databases said. The verdict is computed last.
pub fn assemble(
    namespace: &str,
    snapshot: &Snapshot,
    observed: Observed,
    steps: &[StepRecord],
    checks: Checks,
) -> HealthReport {
    let mut report = HealthReport::new(namespace, jiff::Timestamp::now());
    report.steps = steps.iter().map(step_report).collect();
    report.pods = snapshot
        .pods
        .iter()
        .map(|pod| PodReport {
            name: pod.name.clone(),
            phase: pod.phase.clone(),
            ready: pod.ready,
            restarts: pod.restarts,
            node: pod.node.clone(),
            ip: pod.ip.clone(),
            role: match pod.labels.get(ROLE_LABEL).map(String::as_str) {
                Some("primary") => Some(Role::Primary),
                Some("replica") => Some(Role::Replica),
                _ => None,
            },
            leaving: is_leaving(pod, snapshot),
        })
        .collect();
    report.pvcs = snapshot
        .pvcs
        .iter()
        .map(|pvc| PvcReport {
            name: pvc.name.clone(),
            status: pvc.phase.clone(),
            capacity: pvc.capacity.clone(),
            storage_class: pvc.storage_class.clone(),
        })
        .collect();
    report.servers = observed
        .servers
        .iter()
        .map(|(pod, facts)| ServerReport {
            pod: pod.clone(),
            server_id: facts.server_id,
            server_uuid: Some(facts.server_uuid.clone()).filter(|u| !u.is_empty()),
            version: facts.version.raw.clone(),
            flavor: match facts.version.flavor {
                Flavor::MySql => ServerFlavor::Mysql,
                Flavor::MariaDb => ServerFlavor::Mariadb,
            },
            role: if pod == PRIMARY_POD {
                Role::Primary
            } else {
                Role::Replica
            },
            read_only: facts.read_only,
            super_read_only: facts.super_read_only,
        })
        .collect();
    let primary_position = observed.primary_position.as_ref().map(log_position);
    report.replicas = observed
        .replicas
        .iter()
        .filter_map(|(pod, status)| {
            status
                .as_ref()
                .map(|status| replica_report(pod, status, &primary_position))
        })
        .collect();
    let replica_pods: Vec<String> = snapshot
        .pods
        .iter()
        .filter(|p| p.name != PRIMARY_POD && is_database_pod(p) && !is_leaving(p, snapshot))
        .map(|p| p.name.clone())
        .collect();
    // A pod the StatefulSet re-creates starts without the role label lab set (pod labels are not in the template):
    // the primary as much as a replica.
    if let Some(primary) = snapshot.pods.iter().find(|p| p.name == PRIMARY_POD)
        && primary.labels.get(ROLE_LABEL).map(String::as_str) != Some("primary")
    {
        report.problems.push(Problem {
            subject: PRIMARY_POD.into(),
            severity: Severity::Warning,
            cause: format!(
                "{PRIMARY_POD} has lost the role label {ROLE_LABEL}=primary lab sets: the StatefulSet re-created it \
                 without it"
            ),
            fix: "run `lab up`: it puts the role labels back".into(),
        });
    }
    report.services = snapshot.services.iter().filter_map(service_report).collect();
    for (pod, error) in observed.unreachable {
        report.problems.push(Problem {
            subject: pod,
            severity: Severity::Error,
            cause: format!("the database does not answer: {error}"),
            fix: "look at the pod's log (kubectl logs) and run `lab up` to resume".into(),
        });
    }
    for service in &report.services {
        if service.name == REPLICAS_SERVICE && service.ok {
            let missing: Vec<&String> = replica_pods.iter().filter(|p| !service.endpoints.contains(p)).collect();
            if !missing.is_empty() {
                report.problems.push(Problem {
                    subject: REPLICAS_SERVICE.into(),
                    severity: Severity::Warning,
                    cause: format!(
                        "{REPLICAS_SERVICE} does not route to {}: a pod the StatefulSet re-created has lost the role \
                         label lab sets, or is not Ready",
                        missing.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    fix: "run `lab up`: it puts the role labels back".into(),
                });
            }
        }
    }
    report.checklist = checklist(
        namespace,
        snapshot,
        &ChecklistFacts {
            replicas: &observed.replicas,
            tutorial_passwords: checks.tutorial_passwords,
        },
    );
    report.validation = checks.validation;
    report.read_only = checks.read_only;
    report.finalize();
    report
}

fn is_database_pod(pod: &PodSnapshot) -> bool {
    pod.labels.get("app").is_some_and(|a| a == "mysql")
}

/// A database pod being deleted whose ordinal the StatefulSet no longer has: scaled away, leaving the lab.
fn is_leaving(pod: &PodSnapshot, snapshot: &Snapshot) -> bool {
    let ordinal = pod
        .name
        .strip_prefix(&format!("{}-", super::STATEFULSET))
        .and_then(|n| n.parse::<i32>().ok());
    let desired = snapshot.statefulset.as_ref().map(|s| s.replicas);
    pod.phase == "Terminating"
        && is_database_pod(pod)
        && matches!((ordinal, desired), (Some(ordinal), Some(desired)) if ordinal >= desired)
}

const PRIMARY_SERVICE: &str = "mysql-primary";
const REPLICAS_SERVICE: &str = "mysql-replicas";

fn step_report(record: &StepRecord) -> StepReport {
    StepReport {
        name: record.name.clone(),
        status: match record.outcome {
            StepOutcome::Done => StepStatus::Done,
            StepOutcome::Unchanged => StepStatus::Unchanged,
            StepOutcome::Passed => StepStatus::Passed,
            StepOutcome::Failed => StepStatus::Failed,
        },
        duration_ms: u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX),
        detail: record.detail.clone(),
    }
}

fn log_position(coordinates: &Coordinates) -> LogPosition {
    LogPosition {
        file: coordinates.file.clone(),
        position: coordinates.position,
    }
}

fn error_report(errno: u32, message: &str) -> Option<ErrorReport> {
    (errno != 0).then(|| {
        let finding = explain_replication_error(errno, message);
        ErrorReport {
            errno,
            message: message.to_string(),
            cause: finding.cause,
            fix: finding.fix,
        }
    })
}

fn replica_report(pod: &str, status: &ReplicaStatus, primary: &Option<LogPosition>) -> ReplicaReport {
    ReplicaReport {
        pod: pod.to_string(),
        io_thread: status.io_running.to_string(),
        sql_thread: status.sql_running.to_string(),
        seconds_behind: status.seconds_behind,
        source_host: status.source_host.clone(),
        read_position: LogPosition {
            file: status.source_log_file.clone(),
            position: status.read_source_log_pos,
        },
        exec_position: LogPosition {
            file: status.relay_source_log_file.clone(),
            position: status.exec_source_log_pos,
        },
        primary_position: primary.clone(),
        last_io_error: error_report(status.last_io_errno, &status.last_io_error),
        last_sql_error: error_report(status.last_sql_errno, &status.last_sql_error),
    }
}

/// The routing checks: `mysql-primary` must reach exactly mysql-0, `mysql-replicas` must never reach it.
fn service_report(service: &ServiceSnapshot) -> Option<ServiceReport> {
    let endpoints = service.endpoints.clone();
    let (ok, expectation) = match service.name.as_str() {
        PRIMARY_SERVICE => (endpoints == [PRIMARY_POD], format!("routes only to {PRIMARY_POD}")),
        REPLICAS_SERVICE => (
            !endpoints.iter().any(|p| p == PRIMARY_POD),
            format!("routes to replicas, never to {PRIMARY_POD}"),
        ),
        _ => return None,
    };
    Some(ServiceReport {
        name: service.name.clone(),
        endpoints,
        ok,
        expectation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, endpoints: &[&str]) -> ServiceSnapshot {
        ServiceSnapshot {
            name: name.into(),
            selector: Default::default(),
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            not_ready: vec![],
            headless: false,
        }
    }

    #[test]
    fn a_failed_run_still_reports_its_steps_and_the_error_as_a_broken_verdict() {
        let steps = [
            StepRecord {
                name: "preflight".into(),
                outcome: StepOutcome::Passed,
                detail: String::new(),
                duration: std::time::Duration::from_millis(5),
            },
            StepRecord {
                name: "wait for mysql-0".into(),
                outcome: StepOutcome::Failed,
                detail: "cannot pull".into(),
                duration: std::time::Duration::from_millis(900),
            },
        ];
        let error = anyhow::anyhow!("mysql-0 cannot pull image \"x\"");
        let report = failure_report("database", &steps, &error, ExitStatus::Unreachable);
        assert_eq!(report.verdict, crate::report::Verdict::Broken);
        assert_eq!(report.steps.len(), 2);
        assert_eq!(report.steps[1].duration_ms, 900);
        assert_eq!(report.problems[0].subject, "wait for mysql-0");
        assert_eq!(report.problems[0].cause, "mysql-0 cannot pull image \"x\"");
        assert!(report.problems[0].fix.contains("resumes"));
    }

    #[test]
    fn the_primary_service_must_route_only_to_mysql_0() {
        assert!(service_report(&service("mysql-primary", &["mysql-0"])).unwrap().ok);
        assert!(
            !service_report(&service("mysql-primary", &["mysql-0", "mysql-1"]))
                .unwrap()
                .ok
        );
        assert!(!service_report(&service("mysql-primary", &[])).unwrap().ok);
    }

    #[test]
    fn the_replicas_service_must_never_route_to_the_primary() {
        // The tutorial's selector (app: mysql) includes the primary: that is the bug this check catches.
        let tutorial = service_report(&service("mysql-replicas", &["mysql-0", "mysql-1"])).unwrap();
        assert!(!tutorial.ok);
        assert_eq!(tutorial.expectation, "routes to replicas, never to mysql-0");
        assert!(
            service_report(&service("mysql-replicas", &["mysql-1", "mysql-2"]))
                .unwrap()
                .ok
        );
        assert!(service_report(&service("mysql-headless", &["mysql-0"])).is_none());
    }

    #[test]
    fn a_replica_missing_from_the_read_service_is_a_warning_naming_the_fix() {
        let mut snapshot = Snapshot::default();
        for name in ["mysql-0", "mysql-1"] {
            snapshot.pods.push(crate::cluster::PodSnapshot {
                name: name.into(),
                phase: "Running".into(),
                ready: true,
                restarts: 0,
                node: None,
                ip: None,
                labels: [("app".to_string(), "mysql".to_string())].into(),
            });
        }
        snapshot.services.push(service("mysql-replicas", &[]));
        let report = assemble("database", &snapshot, Observed::default(), &[], Checks::default());
        let problem = report
            .problems
            .iter()
            .find(|p| p.subject == "mysql-replicas")
            .expect("a problem");
        assert_eq!(problem.severity, Severity::Warning);
        assert!(
            problem.cause.starts_with("mysql-replicas does not route to mysql-1"),
            "{}",
            problem.cause
        );
        assert_eq!(problem.fix, "run `lab up`: it puts the role labels back");
    }

    #[test]
    fn any_accepted_write_on_a_replica_fails_the_check_root_included() {
        let explanation = ReadOnlyOutcome::AcceptedAndRolledBack {
            explanation: "why".into(),
        };
        for account in ["root", "lab_probe"] {
            let report = read_only_report("mysql-1", account, explanation.clone());
            assert_eq!(
                (report.outcome, report.ok),
                (WriteOutcome::Accepted, false),
                "{account}"
            );
            assert_eq!(report.explanation, "why");
            let refused = read_only_report("mysql-1", account, ReadOnlyOutcome::Rejected);
            assert_eq!(
                (refused.outcome, refused.ok),
                (WriteOutcome::Rejected, true),
                "{account}"
            );
        }
    }
}
