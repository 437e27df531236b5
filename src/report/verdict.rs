//! The verdict: pure rules over a [`HealthReport`], each with the reason it gives.

use std::collections::BTreeMap;

use super::{HealthReport, Problem, Role, Severity, StepStatus, Verdict, WriteOutcome};

/// A replica further behind than this (seconds) makes the lab DEGRADED. Idle replicas report 0; a few seconds
/// right after the validation write are normal.
pub const LAG_TOLERANCE_SECONDS: u64 = 5;

/// One rule that fired: how bad, what it is about, why in a sentence, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub verdict: Verdict,
    pub subject: String,
    pub text: String,
    pub fix: String,
}

impl Reason {
    /// The reason as a report problem: every BROKEN or DEGRADED verdict comes with the problems that caused it.
    pub fn to_problem(&self) -> Problem {
        Problem {
            subject: self.subject.clone(),
            severity: if self.verdict == Verdict::Broken {
                Severity::Error
            } else {
                Severity::Warning
            },
            cause: self.text.clone(),
            fix: self.fix.clone(),
        }
    }
}

/// HEALTHY unless a rule below fires; the worst rule wins. See [`reasons`] for the rules.
pub fn verdict(report: &HealthReport) -> Verdict {
    reasons(report)
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Healthy)
}

/// Every rule that fires, worst first, without repeats.
///
/// BROKEN (the lab does not do what the tutorial promises):
/// - no pods at all;
/// - a step failed;
/// - a pod not Running or not Ready (a pod leaving because the StatefulSet was scaled down is neither);
/// - a PVC not Bound;
/// - two servers with the same server_id or server_uuid (replication stops with error 1593);
/// - the primary is read-only (writes fail), or a replica is not (ordinary accounts could write on it);
/// - a replica server without replication configured;
/// - a replica whose IO or SQL thread is not `Yes` (`Connecting` included);
/// - a Service routing wrongly;
/// - the validation marker not read back on every replica;
/// - a test write accepted on a replica (`ok: false`), root's as much as the non-admin account's and on MariaDB as
///   much as on MySQL: such a row makes the primary's next write of the same key stop replication (1062);
/// - a problem of severity error.
///
/// DEGRADED (works, but not as it should):
/// - a pod restarted;
/// - a replica more than [`LAG_TOLERANCE_SECONDS`] behind;
/// - a MySQL replica with super_read_only OFF (root can write on it);
/// - a problem of severity warning.
pub fn reasons(report: &HealthReport) -> Vec<Reason> {
    let mut found = Vec::new();
    let ns = report.namespace.as_str();
    let mut broken = |subject: &str, text: String, fix: String| {
        found.push(Reason {
            verdict: Verdict::Broken,
            subject: subject.to_string(),
            text,
            fix,
        })
    };

    if report.pods.is_empty() {
        broken(
            ns,
            format!("no pods in namespace {ns}"),
            "run `lab up` to build the lab (or pass -n NAMESPACE)".into(),
        );
    }
    // A step that stopped the command with an error has that error as a problem already (named after the step).
    let failed_steps = report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed && !report.problems.iter().any(|p| p.subject == s.name));
    for step in failed_steps {
        broken(
            &step.name,
            format!("step \"{}\" failed: {}", step.name, step.detail),
            "fix what the step names, then run `lab up` again: it resumes where it stopped".into(),
        );
    }
    for pod in &report.pods {
        let fix = || {
            format!(
                "`kubectl describe pod -n {ns} {}` shows why; `lab up` waits for it and names the cause",
                pod.name
            )
        };
        if pod.leaving {
            continue;
        }
        if pod.phase != "Running" {
            broken(&pod.name, format!("{} is {}", pod.name, pod.phase), fix());
        } else if !pod.ready {
            broken(&pod.name, format!("{} is not ready", pod.name), fix());
        }
    }
    for pvc in report.pvcs.iter().filter(|p| p.status != "Bound") {
        broken(
            &pvc.name,
            format!("PVC {} is {}", pvc.name, pvc.status),
            format!(
                "`kubectl describe pvc -n {ns} {}` shows why (a claim needs a default StorageClass that can provision it)",
                pvc.name
            ),
        );
    }
    for problem in identity_problems(&report.servers) {
        broken(&problem.subject, problem.cause, problem.fix);
    }
    for server in &report.servers {
        match server.role {
            Role::Primary if server.read_only => broken(
                &server.pod,
                format!("{} is the primary but read-only: writes fail", server.pod),
                "the init container writes read-only=ON only for ordinals above 0: check its script, then delete \
                 the pod so that it restarts with the right config"
                    .into(),
            ),
            Role::Replica if !server.read_only => broken(
                &server.pod,
                format!("{} is a replica but not read-only", server.pod),
                "the init container must write read-only=ON for every replica: check its script, then delete the \
                 pod so that it restarts with it"
                    .into(),
            ),
            Role::Replica if !report.replicas.iter().any(|r| r.pod == server.pod) => broken(
                &server.pod,
                format!("{} is a replica without replication configured", server.pod),
                "run `lab up`: it configures every replica from the recorded binlog origin".into(),
            ),
            _ => {}
        }
    }
    for replica in &report.replicas {
        for (thread, state, error) in [
            ("IO", &replica.io_thread, &replica.last_io_error),
            ("SQL", &replica.sql_thread, &replica.last_sql_error),
        ] {
            if state != "Yes" {
                let (errno, fix) = match error {
                    Some(error) => (format!(" (error {}: {})", error.errno, error.cause), error.fix.clone()),
                    None => (
                        String::new(),
                        "run `lab up`: it starts a replica that points at the primary but is stopped".to_string(),
                    ),
                };
                broken(
                    &replica.pod,
                    format!("{}: {thread} thread is {state}{errno}", replica.pod),
                    fix,
                );
            }
        }
    }
    for service in report.services.iter().filter(|s| !s.ok) {
        let endpoints = if service.endpoints.is_empty() {
            "nothing".to_owned()
        } else {
            service.endpoints.join(", ")
        };
        broken(
            &format!("Service {}", service.name),
            format!(
                "Service {} routes to {endpoints}, expected {}",
                service.name, service.expectation
            ),
            "run `lab up`: it re-applies the Service's selector and puts the role labels back".into(),
        );
    }
    if let Some(validation) = report.validation.as_ref().filter(|v| !v.ok) {
        let missing: Vec<&str> = validation.missing_on.iter().map(|m| m.pod.as_str()).collect();
        let on = if missing.is_empty() {
            String::new()
        } else {
            format!(" on {}", missing.join(", "))
        };
        broken(
            "validation",
            format!("marker {} not read back{on}", validation.marker),
            "the replica's replication errors above say why; `lab verify` repeats the round trip".into(),
        );
    }
    for test in &report.read_only {
        if test.outcome == WriteOutcome::Accepted && !test.ok {
            broken(
                &test.pod,
                format!("{} accepted a write from {}", test.pod, test.account),
                "run `lab up`: it sets the read-only protection of every replica".into(),
            );
        }
    }
    for problem in report.problems.iter().filter(|p| p.severity == Severity::Error) {
        broken(&problem.subject, problem.cause.clone(), problem.fix.clone());
    }

    let mut degraded = |subject: &str, text: String, fix: String| {
        found.push(Reason {
            verdict: Verdict::Degraded,
            subject: subject.to_string(),
            text,
            fix,
        })
    };
    for pod in report.pods.iter().filter(|p| p.restarts > 0) {
        let times = if pod.restarts == 1 { "once" } else { "times" };
        let count = if pod.restarts == 1 {
            String::new()
        } else {
            format!("{} ", pod.restarts)
        };
        degraded(
            &pod.name,
            format!("{} restarted {count}{times}", pod.name),
            format!(
                "`kubectl logs -n {ns} {} --previous` shows why the last run ended",
                pod.name
            ),
        );
    }
    for replica in &report.replicas {
        if let Some(lag) = replica.seconds_behind.filter(|s| *s > LAG_TOLERANCE_SECONDS) {
            degraded(
                &replica.pod,
                format!("{} is {lag}s behind the primary", replica.pod),
                "a burst of writes catches up by itself; if the lag keeps growing, look at the replica's SQL \
                 thread (`lab status`)"
                    .into(),
            );
        }
    }
    for server in &report.servers {
        if server.role == Role::Replica && server.super_read_only == Some(false) {
            degraded(
                &server.pod,
                format!("{}: super_read_only is OFF, root can write", server.pod),
                "run `lab up`: it sets super_read_only on every MySQL replica (SET PERSIST)".into(),
            );
        }
    }
    for problem in report.problems.iter().filter(|p| p.severity == Severity::Warning) {
        degraded(&problem.subject, problem.cause.clone(), problem.fix.clone());
    }

    found.sort_by_key(|r| std::cmp::Reverse(r.verdict));
    let mut seen = std::collections::BTreeSet::new();
    found.retain(|r| seen.insert(r.text.clone()));
    found
}

/// Servers sharing a server_id or a server_uuid, as problems naming the pods. A replica that sees its own
/// server_id (or uuid) on the source refuses to replicate (error 1593).
pub fn identity_problems(servers: &[super::ServerReport]) -> Vec<Problem> {
    let mut by_id: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    let mut by_uuid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for server in servers {
        by_id.entry(server.server_id).or_default().push(&server.pod);
        if let Some(uuid) = server.server_uuid.as_deref() {
            by_uuid.entry(uuid).or_default().push(&server.pod);
        }
    }
    let mut problems = Vec::new();
    for (id, pods) in by_id.into_iter().filter(|(_, pods)| pods.len() > 1) {
        problems.push(Problem {
            subject: pods.join(", "),
            severity: Severity::Error,
            cause: format!(
                "{} server_id {id}: replication stops with error 1593 (a replica ignores or refuses a source with \
                 its own server_id)",
                both_have(&pods)
            ),
            fix: "fix the init container so that each pod gets server-id = ordinal + 1, then delete the pods so \
                  they restart with it"
                .into(),
        });
    }
    for (uuid, pods) in by_uuid.into_iter().filter(|(_, pods)| pods.len() > 1) {
        let copies = &pods[1..];
        problems.push(Problem {
            subject: pods.join(", "),
            severity: Severity::Error,
            cause: format!(
                "{} server_uuid {uuid}: replication stops with error 1593 (a data directory was copied with its \
                 auto.cnf)",
                both_have(&pods)
            ),
            fix: format!(
                "delete auto.cnf from the data directory of {} and restart the pod: the server generates a new \
                 uuid",
                copies.join(", ")
            ),
        });
    }
    problems
}

/// "mysql-0 and mysql-1 both have", "mysql-0, mysql-1 and mysql-2 all have".
fn both_have(pods: &[&str]) -> String {
    match pods {
        [first, second] => format!("{first} and {second} both have"),
        [init @ .., last] => format!("{} and {last} all have", init.join(", ")),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use super::*;

    fn texts(report: &HealthReport) -> Vec<String> {
        reasons(report)
            .into_iter()
            .map(|r| format!("{}: {}", r.verdict, r.text))
            .collect()
    }

    #[test]
    fn a_clean_lab_is_healthy_with_no_reasons() {
        let report = healthy();
        assert_eq!(verdict(&report), Verdict::Healthy);
        assert!(reasons(&report).is_empty());
    }

    #[test]
    fn no_pods_is_broken() {
        let mut report = healthy();
        report.pods.clear();
        assert_eq!(texts(&report), ["BROKEN: no pods in namespace database"]);
    }

    #[test]
    fn restarts_lag_and_warnings_are_degraded() {
        let mut report = healthy();
        report.pods[0].restarts = 1;
        report.pods[1].restarts = 3;
        report.replicas[0].seconds_behind = Some(LAG_TOLERANCE_SECONDS + 1);
        report.problems.push(Problem {
            subject: "mysql-1".into(),
            severity: Severity::Warning,
            cause: "super_read_only cannot be set on MariaDB".into(),
            fix: "use lab --enforce-read-only".into(),
        });
        assert_eq!(
            texts(&report),
            [
                "DEGRADED: mysql-0 restarted once",
                "DEGRADED: mysql-1 restarted 3 times",
                "DEGRADED: mysql-1 is 6s behind the primary",
                "DEGRADED: super_read_only cannot be set on MariaDB",
            ]
        );
        assert_eq!(verdict(&report), Verdict::Degraded);
    }

    #[test]
    fn lag_within_tolerance_is_healthy() {
        let mut report = healthy();
        report.replicas[0].seconds_behind = Some(LAG_TOLERANCE_SECONDS);
        assert_eq!(verdict(&report), Verdict::Healthy);
    }

    #[test]
    fn a_mysql_replica_without_super_read_only_is_degraded() {
        let mut report = healthy();
        report.servers[1].super_read_only = Some(false);
        assert_eq!(
            texts(&report),
            ["DEGRADED: mysql-1: super_read_only is OFF, root can write"]
        );
        report.servers[1].super_read_only = None;
        assert_eq!(verdict(&report), Verdict::Healthy, "MariaDB has no super_read_only");
    }

    #[test]
    fn stopped_threads_pods_storage_and_routing_are_broken() {
        let mut report = healthy();
        report.steps[0].status = StepStatus::Failed;
        report.pods[1].ready = false;
        report.pods[2].phase = "Pending".into();
        report.pvcs[1].status = "Pending".into();
        report.replicas[0].io_thread = "Connecting".into();
        report.replicas[0].last_io_error = Some(ErrorReport {
            errno: 2061,
            message: "Authentication plugin 'caching_sha2_password' reported error".into(),
            cause: "c".into(),
            fix: "f".into(),
        });
        report.replicas[0].sql_thread = "No".into();
        report.services[2] = service("mysql-replicas", &[], false, "the replicas, not mysql-0");
        assert_eq!(
            texts(&report),
            [
                "BROKEN: step \"preflight\" failed: Kubernetes v1.33.1, default StorageClass standard, namespace free",
                "BROKEN: mysql-1 is not ready",
                "BROKEN: mysql-client is Pending",
                "BROKEN: PVC data-mysql-1 is Pending",
                "BROKEN: mysql-1: IO thread is Connecting (error 2061: c)",
                "BROKEN: mysql-1: SQL thread is No",
                "BROKEN: Service mysql-replicas routes to nothing, expected the replicas, not mysql-0",
            ]
        );
    }

    #[test]
    fn every_reason_behind_the_verdict_is_a_problem_with_a_fix() {
        let mut report = healthy();
        report.replicas[0].sql_thread = "No".into();
        report.replicas[0].last_sql_error = Some(ErrorReport {
            errno: 1062,
            message: "Duplicate entry '2' for key 'PRIMARY'".into(),
            cause: "a row was written on the replica".into(),
            fix: "delete the row on the replica, then START REPLICA SQL_THREAD".into(),
        });
        report.replicas[0].io_thread = "No".into();
        report.finalize();
        assert_eq!(report.verdict, Verdict::Broken);
        let problems: Vec<(&str, Severity, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.subject.as_str(), p.severity, p.cause.as_str(), p.fix.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "mysql-1",
                    Severity::Error,
                    "mysql-1: IO thread is No",
                    "run `lab up`: it starts a replica that points at the primary but is stopped"
                ),
                (
                    "mysql-1",
                    Severity::Error,
                    "mysql-1: SQL thread is No (error 1062: a row was written on the replica)",
                    "delete the row on the replica, then START REPLICA SQL_THREAD"
                ),
            ]
        );
        let again = report.clone();
        report.finalize();
        assert_eq!(report.problems, again.problems, "finalize adds each problem once");
    }

    #[test]
    fn a_pod_leaving_after_a_scale_down_is_not_broken() {
        let mut report = healthy();
        let mut leaving = pod("mysql-2", "10.244.0.8", Some(Role::Replica));
        leaving.phase = "Terminating".into();
        leaving.ready = false;
        leaving.leaving = true;
        report.pods.push(leaving.clone());
        assert_eq!(verdict(&report), Verdict::Healthy, "{:?}", texts(&report));
        leaving.leaving = false;
        report.pods.pop();
        report.pods.push(leaving);
        assert_eq!(texts(&report), ["BROKEN: mysql-2 is Terminating"]);
    }

    #[test]
    fn any_accepted_write_on_a_replica_is_broken_root_on_mariadb_included() {
        let mut report = healthy();
        for server in &mut report.servers {
            server.flavor = ServerFlavor::Mariadb;
            server.super_read_only = None;
        }
        report.read_only[0] = read_only("mysql-1", "root", WriteOutcome::Accepted, false);
        assert_eq!(texts(&report), ["BROKEN: mysql-1 accepted a write from root"]);
        report.read_only[1] = read_only("mysql-1", "lab_probe", WriteOutcome::Accepted, false);
        assert_eq!(
            texts(&report),
            [
                "BROKEN: mysql-1 accepted a write from root",
                "BROKEN: mysql-1 accepted a write from lab_probe"
            ]
        );
        assert_eq!(verdict(&report), Verdict::Broken);
    }

    #[test]
    fn read_only_settings_and_missing_replication_are_broken() {
        let mut report = healthy();
        report.servers[0].read_only = true;
        report.servers[1].read_only = false;
        report.servers[1].super_read_only = Some(false);
        report.replicas.clear();
        report.validation = report.validation.map(|mut v| {
            v.ok = false;
            v.read_on.clear();
            v.missing_on = vec![MissingRead {
                pod: "mysql-1".into(),
                reason: "the row is not there".into(),
            }];
            v
        });
        report.problems.push(Problem {
            subject: "step apply".into(),
            severity: Severity::Error,
            cause: "the namespace database is not lab's".into(),
            fix: "choose another namespace".into(),
        });
        assert_eq!(
            texts(&report),
            [
                "BROKEN: mysql-0 is the primary but read-only: writes fail",
                "BROKEN: mysql-1 is a replica but not read-only",
                "BROKEN: marker lab-1748779200000-4242 not read back on mysql-1",
                "BROKEN: the namespace database is not lab's",
                "DEGRADED: mysql-1: super_read_only is OFF, root can write",
            ]
        );
        report.servers[1].read_only = true;
        assert!(texts(&report).contains(&"BROKEN: mysql-1 is a replica without replication configured".to_owned()));
    }

    #[test]
    fn duplicate_server_ids_and_uuids_name_the_pods_and_the_fix() {
        let mut servers = healthy().servers;
        servers[1].server_id = 1;
        servers.push(server(
            "mysql-2",
            1,
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            Role::Replica,
        ));
        let problems = identity_problems(&servers);
        assert_eq!(
            problems,
            [
                Problem {
                    subject: "mysql-0, mysql-1, mysql-2".into(),
                    severity: Severity::Error,
                    cause: "mysql-0, mysql-1 and mysql-2 all have server_id 1: replication stops with error 1593 (a \
                            replica ignores or refuses a source with its own server_id)"
                        .into(),
                    fix: "fix the init container so that each pod gets server-id = ordinal + 1, then delete the pods \
                          so they restart with it"
                        .into(),
                },
                Problem {
                    subject: "mysql-0, mysql-2".into(),
                    severity: Severity::Error,
                    cause: "mysql-0 and mysql-2 both have server_uuid 3e11fa47-71ca-11e1-9e33-c80aa9429562: \
                            replication stops with error 1593 (a data directory was copied with its auto.cnf)"
                        .into(),
                    fix: "delete auto.cnf from the data directory of mysql-2 and restart the pod: the server \
                          generates a new uuid"
                        .into(),
                },
            ]
        );
        let mut report = healthy();
        report.servers = servers;
        report.finalize();
        assert_eq!(report.verdict, Verdict::Broken);
        let broken_reasons = texts(&report).iter().filter(|t| t.contains("server_uuid")).count();
        assert_eq!(
            broken_reasons, 1,
            "the problem added by finalize and the rule give one reason"
        );
    }

    #[test]
    fn mariadb_servers_without_uuid_are_not_duplicates() {
        let mut servers = healthy().servers;
        for server in &mut servers {
            server.server_uuid = None;
            server.flavor = ServerFlavor::Mariadb;
        }
        assert!(identity_problems(&servers).is_empty());
    }
}
