//! The health report: plain data, a verdict, and pure renderers to a table and to JSON.
//!
//! The JSON form is a contract for scripts and grading: snake_case keys in declaration order, enums as lowercase
//! words (the verdict in capitals), `schema_version` bumped on any incompatible change.

mod junit;
mod table;
mod verdict;

use serde::{Deserialize, Serialize};

pub use junit::{TestSuite, Testcase, render_junit, render_junit_all, render_suites, testcases};
pub use table::render_table;
pub use verdict::{LAG_TOLERANCE_SECONDS, Reason, identity_problems, reasons, verdict};

/// Version of the JSON shape below.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `lab` knows about the lab in one namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub schema_version: u32,
    pub verdict: Verdict,
    pub namespace: String,
    /// RFC 3339 UTC, e.g. `2025-06-01T12:00:00Z`.
    pub generated_at: String,
    /// The plan's steps, in order (empty for `status`).
    pub steps: Vec<StepReport>,
    pub pods: Vec<PodReport>,
    pub pvcs: Vec<PvcReport>,
    pub servers: Vec<ServerReport>,
    pub replicas: Vec<ReplicaReport>,
    pub services: Vec<ServiceReport>,
    /// The write-on-primary / read-on-replicas round trip; `None` when not run (`status`).
    pub validation: Option<ValidationReport>,
    pub read_only: Vec<ReadOnlyReport>,
    pub problems: Vec<Problem>,
    /// The tutorial's section 7 production checklist, every item a program can check. Never changes the verdict.
    pub checklist: Vec<ChecklistItem>,
}

/// One item of the production checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    pub item: String,
    pub status: CheckStatus,
    /// One line of why.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Warning,
    NotChecked,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::NotChecked => "not checked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Every check passed.
    Healthy,
    /// The lab works, but something is not as it should be (see [`verdict`] for the rules).
    Degraded,
    /// The lab does not work as the tutorial promises.
    Broken,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "HEALTHY",
            Verdict::Degraded => "DEGRADED",
            Verdict::Broken => "BROKEN",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    pub duration_ms: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step changed something.
    Done,
    /// The step found its work already done.
    Unchanged,
    /// A check that passed.
    Passed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodReport {
    pub name: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    pub ready: bool,
    /// Container restarts, all containers added up.
    pub restarts: u32,
    pub node: Option<String>,
    pub ip: Option<String>,
    /// From the pod's `lab.dev/role` label; `None` for the client pod or before `lab` labelled it.
    pub role: Option<Role>,
    /// Being deleted because the StatefulSet was scaled below its ordinal: leaving the lab, not broken.
    pub leaving: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvcReport {
    pub name: String,
    /// `Pending`, `Bound`, `Lost`.
    pub status: String,
    pub capacity: Option<String>,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFlavor {
    Mysql,
    Mariadb,
}

impl ServerFlavor {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerFlavor::Mysql => "MySQL",
            ServerFlavor::Mariadb => "MariaDB",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerReport {
    pub pod: String,
    pub server_id: u32,
    /// `@@server_uuid`; `None` on MariaDB, which has none.
    pub server_uuid: Option<String>,
    /// `SELECT VERSION()` as the server says it, e.g. `8.4.5` or `11.4.7-MariaDB-ubu2404`.
    pub version: String,
    pub flavor: ServerFlavor,
    pub role: Role,
    pub read_only: bool,
    /// `None` where the variable does not exist (MariaDB before 12.0).
    pub super_read_only: Option<bool>,
}

/// A binlog position: file and offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub file: String,
    pub position: u64,
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.position)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub pod: String,
    /// `Replica_IO_Running` / `Slave_IO_Running` as the server says it: `Yes`, `No`, `Connecting`.
    pub io_thread: String,
    pub sql_thread: String,
    /// `Seconds_Behind_Source`; `None` (SQL NULL) means "not replicating", not 0.
    pub seconds_behind: Option<u64>,
    pub source_host: String,
    /// How far the IO thread has read the source's binlog (`Source_Log_File`, `Read_Source_Log_Pos`).
    pub read_position: LogPosition,
    /// How far the SQL thread has applied it (`Relay_Source_Log_File`, `Exec_Source_Log_Pos`).
    pub exec_position: LogPosition,
    /// The primary's current binlog position, when it was read.
    pub primary_position: Option<LogPosition>,
    pub last_io_error: Option<ErrorReport>,
    pub last_sql_error: Option<ErrorReport>,
}

/// A replication error with its plain-language explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub errno: u32,
    pub message: String,
    pub cause: String,
    pub fix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    /// Pod names behind the Service (ready addresses).
    pub endpoints: Vec<String>,
    pub ok: bool,
    /// What the Service should route to, in words (e.g. "mysql-0 only").
    pub expectation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub marker: String,
    pub written_on: String,
    /// Replicas where the marker row was read back.
    pub read_on: Vec<String>,
    /// Replicas where it was not, and why.
    pub missing_on: Vec<MissingRead>,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingRead {
    pub pod: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadOnlyReport {
    pub pod: String,
    pub account: String,
    pub outcome: WriteOutcome,
    /// Whether the outcome is acceptable. `false` means the write must have been refused: `lab` reports every
    /// accepted write with `ok: false`, root's on MariaDB included (it takes READ_ONLY ADMIN away from root).
    pub ok: bool,
    pub explanation: String,
}

/// What happened to a test write on a replica (always rolled back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// Refused with error 1290: the replica is protected.
    Rejected,
    Accepted,
}

impl WriteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Rejected => "rejected",
            WriteOutcome::Accepted => "accepted",
        }
    }
}

/// Something wrong, what causes it and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What it is about: a pod, a Service, a step (e.g. "mysql-1", "Service mysql-replicas").
    pub subject: String,
    pub severity: Severity,
    pub cause: String,
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The lab works but not as it should: DEGRADED.
    Warning,
    /// The lab does not work: BROKEN.
    Error,
}

impl HealthReport {
    /// An empty report for `namespace`, dated `generated_at`, to be filled in and then [`finalize`d](Self::finalize).
    pub fn new(namespace: &str, generated_at: jiff::Timestamp) -> HealthReport {
        HealthReport {
            schema_version: SCHEMA_VERSION,
            verdict: Verdict::Healthy,
            namespace: namespace.to_owned(),
            generated_at: generated_at.to_string(),
            steps: Vec::new(),
            pods: Vec::new(),
            pvcs: Vec::new(),
            servers: Vec::new(),
            replicas: Vec::new(),
            services: Vec::new(),
            validation: None,
            read_only: Vec::new(),
            problems: Vec::new(),
            checklist: Vec::new(),
        }
    }

    /// Adds a problem for every reason behind the verdict that is not one already (a stopped thread, a pod not
    /// Ready, a Service routing wrongly, ...), so that a BROKEN or DEGRADED report always says what caused it and
    /// what to do, and sets the verdict.
    pub fn finalize(&mut self) {
        for reason in reasons(self) {
            if !self.problems.iter().any(|p| p.cause == reason.text) {
                self.problems.push(reason.to_problem());
            }
        }
        self.verdict = verdict(self);
    }
}

/// The report as pretty JSON, keys in declaration order, ending with a newline.
pub fn render_json(report: &HealthReport) -> String {
    let mut json = serde_json::to_string_pretty(report).expect("a HealthReport holds only JSON-safe data");
    json.push('\n');
    json
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Reports used by the tests of this module and its children.
    use super::*;

    pub fn healthy() -> HealthReport {
        let generated_at = "2025-06-01T12:00:00Z".parse().expect("valid timestamp");
        let mut report = HealthReport::new("database", generated_at);
        report.steps = vec![
            StepReport {
                name: "preflight".into(),
                status: StepStatus::Done,
                duration_ms: 41,
                detail: "Kubernetes v1.33.1, default StorageClass standard, namespace free".into(),
            },
            StepReport {
                name: "read-only test".into(),
                status: StepStatus::Done,
                duration_ms: 230,
                detail: "replicas refuse writes from ordinary accounts (error 1290)".into(),
            },
        ];
        report.pods = vec![
            pod("mysql-0", "10.244.0.5", Some(Role::Primary)),
            pod("mysql-1", "10.244.0.6", Some(Role::Replica)),
            pod("mysql-client", "10.244.0.7", None),
        ];
        report.pvcs = vec![pvc("data-mysql-0"), pvc("data-mysql-1")];
        report.servers = vec![
            server("mysql-0", 1, "3e11fa47-71ca-11e1-9e33-c80aa9429562", Role::Primary),
            server("mysql-1", 2, "4f22ab58-71ca-11e1-9e33-c80aa9429563", Role::Replica),
        ];
        let position = LogPosition {
            file: "mysql-bin.000001".into(),
            position: 1536,
        };
        report.replicas = vec![ReplicaReport {
            pod: "mysql-1".into(),
            io_thread: "Yes".into(),
            sql_thread: "Yes".into(),
            seconds_behind: Some(0),
            source_host: "mysql-0.mysql-headless.database.svc.cluster.local".into(),
            read_position: position.clone(),
            exec_position: position.clone(),
            primary_position: Some(position),
            last_io_error: None,
            last_sql_error: None,
        }];
        report.services = vec![
            service("mysql-headless", &["mysql-0", "mysql-1"], true, "every mysql pod"),
            service("mysql-primary", &["mysql-0"], true, "mysql-0 only"),
            service("mysql-replicas", &["mysql-1"], true, "the replicas, not mysql-0"),
        ];
        report.validation = Some(ValidationReport {
            marker: "lab-1748779200000-4242".into(),
            written_on: "mysql-0".into(),
            read_on: vec!["mysql-1".into()],
            missing_on: Vec::new(),
            ok: true,
        });
        report.read_only = vec![
            read_only("mysql-1", "root", WriteOutcome::Rejected, true),
            read_only("mysql-1", "lab_probe", WriteOutcome::Rejected, true),
        ];
        report.finalize();
        report
    }

    /// mysql-1 was set up by hand with a copied config: same server_id, IO thread stuck.
    pub fn broken() -> HealthReport {
        let mut report = healthy();
        report.pods[1].restarts = 2;
        report.servers[1].server_id = 1;
        let replica = &mut report.replicas[0];
        replica.io_thread = "No".into();
        replica.seconds_behind = None;
        replica.exec_position.position = 328;
        replica.read_position.position = 328;
        replica.last_io_error = Some(ErrorReport {
            errno: 13117,
            message: "Fatal error: The replica I/O thread stops because source and replica have equal MySQL \
                      server ids"
                .into(),
            cause: "mysql-0 and mysql-1 have the same server_id".into(),
            fix: "give each pod server-id = ordinal + 1".into(),
        });
        report.services[2] = service(
            "mysql-replicas",
            &["mysql-0", "mysql-1"],
            false,
            "the replicas, not mysql-0",
        );
        if let Some(validation) = report.validation.as_mut() {
            validation.read_on.clear();
            validation.missing_on = vec![MissingRead {
                pod: "mysql-1".into(),
                reason: "timed out after 30s waiting for mysql-bin.000001:1536".into(),
            }];
            validation.ok = false;
        }
        report.finalize();
        report
    }

    /// A MariaDB lab: no server_uuid, no super_read_only, root can write on the replica.
    pub fn degraded_mariadb() -> HealthReport {
        let mut report = healthy();
        for server in &mut report.servers {
            server.flavor = ServerFlavor::Mariadb;
            server.version = "11.4.7-MariaDB-ubu2404".into();
            server.server_uuid = None;
            server.super_read_only = None;
        }
        report.replicas[0].seconds_behind = Some(12);
        report.read_only[0] = read_only("mysql-1", "root", WriteOutcome::Accepted, true);
        report.read_only[0].explanation =
            "MariaDB root holds READ_ONLY ADMIN: protect it with REVOKE READ_ONLY ADMIN".into();
        report.problems.push(Problem {
            subject: "mysql-1".into(),
            severity: Severity::Warning,
            cause: "root can write on the replica (MariaDB has no super_read_only)".into(),
            fix: "write only through mysql-primary, or revoke READ_ONLY ADMIN from root on the replica".into(),
        });
        report.finalize();
        report
    }

    pub fn pod(name: &str, ip: &str, role: Option<Role>) -> PodReport {
        PodReport {
            name: name.into(),
            phase: "Running".into(),
            ready: true,
            restarts: 0,
            node: Some("kind-control-plane".into()),
            ip: Some(ip.into()),
            role,
            leaving: false,
        }
    }

    pub fn pvc(name: &str) -> PvcReport {
        PvcReport {
            name: name.into(),
            status: "Bound".into(),
            capacity: Some("5Gi".into()),
            storage_class: Some("standard".into()),
        }
    }

    pub fn server(pod: &str, server_id: u32, uuid: &str, role: Role) -> ServerReport {
        ServerReport {
            pod: pod.into(),
            server_id,
            server_uuid: Some(uuid.into()),
            version: "8.4.5".into(),
            flavor: ServerFlavor::Mysql,
            role,
            read_only: role == Role::Replica,
            super_read_only: Some(role == Role::Replica),
        }
    }

    pub fn service(name: &str, endpoints: &[&str], ok: bool, expectation: &str) -> ServiceReport {
        ServiceReport {
            name: name.into(),
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            ok,
            expectation: expectation.into(),
        }
    }

    pub fn read_only(pod: &str, account: &str, outcome: WriteOutcome, ok: bool) -> ReadOnlyReport {
        ReadOnlyReport {
            pod: pod.into(),
            account: account.into(),
            outcome,
            ok,
            explanation: match outcome {
                WriteOutcome::Rejected => "error 1290: the server runs with read-only protection".into(),
                WriteOutcome::Accepted => "the write went through and was rolled back".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn json_round_trips_healthy_and_broken_reports() {
        for report in [healthy(), broken(), degraded_mariadb()] {
            let json = render_json(&report);
            assert!(json.ends_with("}\n"));
            let back: HealthReport = serde_json::from_str(&json).expect("the JSON parses back");
            assert_eq!(back, report);
        }
    }

    #[test]
    fn json_uses_the_documented_shape() {
        let json: serde_json::Value = serde_json::from_str(&render_json(&broken())).expect("JSON");
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["verdict"], "BROKEN");
        assert_eq!(json["generated_at"], "2025-06-01T12:00:00Z");
        assert_eq!(json["steps"][0]["status"], "done");
        assert_eq!(json["steps"][0]["duration_ms"], 41);
        assert_eq!(json["pods"][2]["role"], serde_json::Value::Null);
        assert_eq!(json["pods"][1]["role"], "replica");
        assert_eq!(json["pods"][1]["leaving"], false);
        assert_eq!(json["servers"][0]["flavor"], "mysql");
        assert_eq!(json["replicas"][0]["seconds_behind"], serde_json::Value::Null);
        assert_eq!(json["replicas"][0]["read_position"]["file"], "mysql-bin.000001");
        assert_eq!(json["replicas"][0]["last_io_error"]["errno"], 13117);
        assert_eq!(json["read_only"][0]["outcome"], "rejected");
        assert_eq!(json["problems"][0]["severity"], "error");
        let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "checklist",
                "generated_at",
                "namespace",
                "pods",
                "problems",
                "pvcs",
                "read_only",
                "replicas",
                "schema_version",
                "servers",
                "services",
                "steps",
                "validation",
                "verdict"
            ],
            "serde_json::Value sorts keys; the set of keys is the contract"
        );
        let text = render_json(&healthy());
        assert!(
            text.starts_with(
                "{\n  \"schema_version\": 1,\n  \"verdict\": \"HEALTHY\",\n  \"namespace\": \"database\",\n"
            ),
            "rendered keys keep declaration order: {text}"
        );
    }

    #[test]
    fn finalize_adds_identity_problems_once_and_sets_the_verdict() {
        let mut report = broken();
        let count = report.problems.len();
        report.finalize();
        assert_eq!(report.problems.len(), count, "finalize is idempotent");
        assert_eq!(report.verdict, Verdict::Broken);
        assert_eq!(healthy().verdict, Verdict::Healthy);
        assert_eq!(degraded_mariadb().verdict, Verdict::Degraded);
    }
}
