//! The human form of the report: the verdict and its reasons on top, then one aligned table per section.

use std::fmt::Write as _;

use super::{HealthReport, LogPosition, Verdict, reasons};

/// How a cell is coloured when colour is on. Alignment always uses the plain text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paint {
    Plain,
    Good,
    Warn,
    Bad,
}

struct Cell {
    text: String,
    paint: Paint,
}

fn plain(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        paint: Paint::Plain,
    }
}

fn painted(text: impl Into<String>, paint: Paint) -> Cell {
    Cell {
        text: text.into(),
        paint,
    }
}

fn ok_cell(ok: bool) -> Cell {
    if ok {
        painted("ok", Paint::Good)
    } else {
        painted("FAIL", Paint::Bad)
    }
}

fn thread_cell(state: &str) -> Cell {
    let paint = if state == "Yes" { Paint::Good } else { Paint::Bad };
    painted(state, paint)
}

fn on_off(value: bool) -> &'static str {
    if value { "ON" } else { "OFF" }
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("—").to_owned()
}

struct Style {
    color: bool,
}

impl Style {
    fn sgr(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn paint(&self, text: &str, paint: Paint) -> String {
        match paint {
            Paint::Plain => text.to_owned(),
            Paint::Good => self.sgr(text, "32"),
            Paint::Warn => self.sgr(text, "33"),
            Paint::Bad => self.sgr(text, "31"),
        }
    }

    fn bold(&self, text: &str) -> String {
        self.sgr(text, "1")
    }

    fn verdict(&self, verdict: Verdict) -> String {
        let code = match verdict {
            Verdict::Healthy => "1;32",
            Verdict::Degraded => "1;33",
            Verdict::Broken => "1;31",
        };
        self.sgr(verdict.as_str(), code)
    }

    /// Columns separated by two spaces, padded to the widest cell; the last column is not padded.
    fn table(&self, out: &mut String, header: &[&str], rows: Vec<Vec<Cell>>) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.text.chars().count());
            }
        }
        let header_cells = header.iter().map(|h| plain(*h)).collect();
        for row in std::iter::once(header_cells).chain(rows) {
            let mut line = String::from("  ");
            let last = row.len().saturating_sub(1);
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                line.push_str(&self.paint(&cell.text, cell.paint));
                if i < last {
                    let padding = width - cell.text.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', padding));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }

    fn section(&self, out: &mut String, title: &str) {
        let _ = writeln!(out, "\n{}", self.bold(title));
    }
}

/// The report for people. `color` adds ANSI colours (only when the output is a terminal and NO_COLOR is unset).
pub fn render_table(report: &HealthReport, color: bool) -> String {
    let style = Style { color };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Verdict: {}  (namespace {}, {})",
        style.verdict(report.verdict),
        report.namespace,
        report.generated_at
    );
    for reason in reasons(report) {
        let _ = writeln!(out, "  - {}", reason.text);
    }

    style.section(&mut out, "Pods");
    if report.pods.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows = report
            .pods
            .iter()
            .map(|pod| {
                let restarts = if pod.restarts > 0 { Paint::Warn } else { Paint::Plain };
                let ready = if pod.ready { Paint::Plain } else { Paint::Bad };
                vec![
                    plain(&pod.name),
                    plain(&pod.phase),
                    painted(if pod.ready { "yes" } else { "no" }, ready),
                    painted(pod.restarts.to_string(), restarts),
                    plain(or_dash(pod.node.as_deref())),
                    plain(or_dash(pod.ip.as_deref())),
                    plain(or_dash(pod.role.map(|r| r.as_str()))),
                ]
            })
            .collect();
        style.table(
            &mut out,
            &["NAME", "PHASE", "READY", "RESTARTS", "NODE", "IP", "ROLE"],
            rows,
        );
    }

    style.section(&mut out, "Storage");
    if report.pvcs.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows = report
            .pvcs
            .iter()
            .map(|pvc| {
                let status = if pvc.status == "Bound" {
                    Paint::Plain
                } else {
                    Paint::Bad
                };
                vec![
                    plain(&pvc.name),
                    painted(&pvc.status, status),
                    plain(or_dash(pvc.capacity.as_deref())),
                    plain(or_dash(pvc.storage_class.as_deref())),
                ]
            })
            .collect();
        style.table(&mut out, &["PVC", "STATUS", "CAPACITY", "CLASS"], rows);
    }

    style.section(&mut out, "Servers");
    if report.servers.is_empty() {
        out.push_str("  none reached\n");
    } else {
        let rows = report
            .servers
            .iter()
            .map(|server| {
                vec![
                    plain(&server.pod),
                    plain(server.role.as_str()),
                    plain(format!("{} {}", server.flavor.as_str(), server.version)),
                    plain(server.server_id.to_string()),
                    plain(or_dash(server.server_uuid.as_deref())),
                    plain(on_off(server.read_only)),
                    plain(server.super_read_only.map_or("n/a", on_off)),
                ]
            })
            .collect();
        style.table(
            &mut out,
            &[
                "POD",
                "ROLE",
                "VERSION",
                "SERVER_ID",
                "SERVER_UUID",
                "READ_ONLY",
                "SUPER_READ_ONLY",
            ],
            rows,
        );
    }

    style.section(&mut out, "Replication");
    if report.replicas.is_empty() {
        out.push_str("  no replicas\n");
    } else {
        let position = |p: Option<&LogPosition>| p.map_or_else(|| "—".to_owned(), LogPosition::to_string);
        let rows = report
            .replicas
            .iter()
            .map(|replica| {
                let behind = match replica.seconds_behind {
                    Some(seconds) => {
                        let paint = if seconds > super::LAG_TOLERANCE_SECONDS {
                            Paint::Warn
                        } else {
                            Paint::Plain
                        };
                        painted(format!("{seconds}s"), paint)
                    }
                    None => painted("— (not replicating)", Paint::Bad),
                };
                vec![
                    plain(&replica.pod),
                    thread_cell(&replica.io_thread),
                    thread_cell(&replica.sql_thread),
                    behind,
                    plain(position(Some(&replica.read_position))),
                    plain(position(Some(&replica.exec_position))),
                    plain(position(replica.primary_position.as_ref())),
                    plain(&replica.source_host),
                ]
            })
            .collect();
        style.table(
            &mut out,
            &[
                "REPLICA",
                "IO",
                "SQL",
                "BEHIND",
                "READ",
                "EXECUTED",
                "PRIMARY AT",
                "SOURCE",
            ],
            rows,
        );
        for replica in &report.replicas {
            for (thread, error) in [("IO", &replica.last_io_error), ("SQL", &replica.last_sql_error)] {
                if let Some(error) = error {
                    let _ = writeln!(
                        out,
                        "  {} {thread} error {}: {}\n    cause: {}\n    fix:   {}",
                        replica.pod,
                        error.errno,
                        style.paint(&error.message, Paint::Bad),
                        error.cause,
                        error.fix
                    );
                }
            }
        }
    }

    style.section(&mut out, "Services");
    if report.services.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows = report
            .services
            .iter()
            .map(|service| {
                let endpoints = if service.endpoints.is_empty() {
                    "—".to_owned()
                } else {
                    service.endpoints.join(", ")
                };
                vec![
                    plain(&service.name),
                    plain(endpoints),
                    ok_cell(service.ok),
                    plain(&service.expectation),
                ]
            })
            .collect();
        style.table(&mut out, &["SERVICE", "ROUTES TO", "OK", "EXPECTED"], rows);
    }

    style.section(&mut out, "Validation");
    match &report.validation {
        None => out.push_str("  not run\n"),
        Some(validation) => {
            let read_on = if validation.read_on.is_empty() {
                "no replica".to_owned()
            } else {
                validation.read_on.join(", ")
            };
            let _ = writeln!(
                out,
                "  {}  marker {} written on {}, read back on {read_on}",
                style.paint(if validation.ok { "ok" } else { "FAIL" }, ok_cell(validation.ok).paint),
                validation.marker,
                validation.written_on
            );
            for missing in &validation.missing_on {
                let _ = writeln!(out, "  missing on {}: {}", missing.pod, missing.reason);
            }
        }
    }

    style.section(&mut out, "Read-only test");
    if report.read_only.is_empty() {
        out.push_str("  not run\n");
    } else {
        let rows = report
            .read_only
            .iter()
            .map(|test| {
                let outcome = match (test.outcome, test.ok) {
                    (super::WriteOutcome::Rejected, _) => Paint::Good,
                    (super::WriteOutcome::Accepted, true) => Paint::Warn,
                    (super::WriteOutcome::Accepted, false) => Paint::Bad,
                };
                vec![
                    plain(&test.pod),
                    plain(&test.account),
                    painted(test.outcome.as_str(), outcome),
                    ok_cell(test.ok),
                    plain(&test.explanation),
                ]
            })
            .collect();
        style.table(&mut out, &["POD", "ACCOUNT", "WRITE", "OK", "EXPLANATION"], rows);
    }

    style.section(&mut out, "Problems");
    if report.problems.is_empty() {
        out.push_str("  none\n");
    } else {
        for (i, problem) in report.problems.iter().enumerate() {
            let severity = match problem.severity {
                super::Severity::Warning => style.paint("warning", Paint::Warn),
                super::Severity::Error => style.paint("error", Paint::Bad),
            };
            let _ = writeln!(
                out,
                "  {}. {} ({severity})\n     cause: {}\n     fix:   {}",
                i + 1,
                problem.subject,
                problem.cause,
                problem.fix
            );
        }
    }

    if !report.checklist.is_empty() {
        style.section(
            &mut out,
            "Production checklist (tutorial section 7; never changes the verdict)",
        );
        let rows = report
            .checklist
            .iter()
            .map(|item| {
                let paint = match item.status {
                    super::CheckStatus::Ok => Paint::Good,
                    super::CheckStatus::Warning => Paint::Warn,
                    super::CheckStatus::NotChecked => Paint::Plain,
                };
                vec![
                    painted(item.status.as_str(), paint),
                    plain(&item.item),
                    plain(&item.detail),
                ]
            })
            .collect();
        style.table(&mut out, &["STATUS", "ITEM", "WHY"], rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn healthy_report_table() {
        let expected = "\
Verdict: HEALTHY  (namespace database, 2025-06-01T12:00:00Z)

Pods
  NAME          PHASE    READY  RESTARTS  NODE                IP          ROLE
  mysql-0       Running  yes    0         kind-control-plane  10.244.0.5  primary
  mysql-1       Running  yes    0         kind-control-plane  10.244.0.6  replica
  mysql-client  Running  yes    0         kind-control-plane  10.244.0.7  —

Storage
  PVC           STATUS  CAPACITY  CLASS
  data-mysql-0  Bound   5Gi       standard
  data-mysql-1  Bound   5Gi       standard

Servers
  POD      ROLE     VERSION      SERVER_ID  SERVER_UUID                           READ_ONLY  SUPER_READ_ONLY
  mysql-0  primary  MySQL 8.4.5  1          3e11fa47-71ca-11e1-9e33-c80aa9429562  OFF        OFF
  mysql-1  replica  MySQL 8.4.5  2          4f22ab58-71ca-11e1-9e33-c80aa9429563  ON         ON

Replication
  REPLICA  IO   SQL  BEHIND  READ                   EXECUTED               PRIMARY AT             SOURCE
  mysql-1  Yes  Yes  0s      mysql-bin.000001:1536  mysql-bin.000001:1536  mysql-bin.000001:1536  mysql-0.mysql-headless.database.svc.cluster.local

Services
  SERVICE         ROUTES TO         OK  EXPECTED
  mysql-headless  mysql-0, mysql-1  ok  every mysql pod
  mysql-primary   mysql-0           ok  mysql-0 only
  mysql-replicas  mysql-1           ok  the replicas, not mysql-0

Validation
  ok  marker lab-1748779200000-4242 written on mysql-0, read back on mysql-1

Read-only test
  POD      ACCOUNT    WRITE     OK  EXPLANATION
  mysql-1  root       rejected  ok  error 1290: the server runs with read-only protection
  mysql-1  lab_probe  rejected  ok  error 1290: the server runs with read-only protection

Problems
  none
";
        assert_eq!(render_table(&healthy(), false), expected);
    }

    #[test]
    fn degraded_report_table() {
        let expected = "\
Verdict: DEGRADED  (namespace database, 2025-06-01T12:00:00Z)
  - mysql-1 is 12s behind the primary
  - root can write on the replica (MariaDB has no super_read_only)

Pods
  NAME          PHASE    READY  RESTARTS  NODE                IP          ROLE
  mysql-0       Running  yes    0         kind-control-plane  10.244.0.5  primary
  mysql-1       Running  yes    0         kind-control-plane  10.244.0.6  replica
  mysql-client  Running  yes    0         kind-control-plane  10.244.0.7  —

Storage
  PVC           STATUS  CAPACITY  CLASS
  data-mysql-0  Bound   5Gi       standard
  data-mysql-1  Bound   5Gi       standard

Servers
  POD      ROLE     VERSION                         SERVER_ID  SERVER_UUID  READ_ONLY  SUPER_READ_ONLY
  mysql-0  primary  MariaDB 11.4.7-MariaDB-ubu2404  1          —            OFF        n/a
  mysql-1  replica  MariaDB 11.4.7-MariaDB-ubu2404  2          —            ON         n/a

Replication
  REPLICA  IO   SQL  BEHIND  READ                   EXECUTED               PRIMARY AT             SOURCE
  mysql-1  Yes  Yes  12s     mysql-bin.000001:1536  mysql-bin.000001:1536  mysql-bin.000001:1536  mysql-0.mysql-headless.database.svc.cluster.local

Services
  SERVICE         ROUTES TO         OK  EXPECTED
  mysql-headless  mysql-0, mysql-1  ok  every mysql pod
  mysql-primary   mysql-0           ok  mysql-0 only
  mysql-replicas  mysql-1           ok  the replicas, not mysql-0

Validation
  ok  marker lab-1748779200000-4242 written on mysql-0, read back on mysql-1

Read-only test
  POD      ACCOUNT    WRITE     OK  EXPLANATION
  mysql-1  root       accepted  ok  MariaDB root holds READ_ONLY ADMIN: protect it with REVOKE READ_ONLY ADMIN
  mysql-1  lab_probe  rejected  ok  error 1290: the server runs with read-only protection

Problems
  1. mysql-1 (warning)
     cause: root can write on the replica (MariaDB has no super_read_only)
     fix:   write only through mysql-primary, or revoke READ_ONLY ADMIN from root on the replica
  2. mysql-1 (warning)
     cause: mysql-1 is 12s behind the primary
     fix:   a burst of writes catches up by itself; if the lag keeps growing, look at the replica's SQL thread (`lab status`)
";
        assert_eq!(render_table(&degraded_mariadb(), false), expected);
    }

    #[test]
    fn broken_report_table() {
        let expected = "\
Verdict: BROKEN  (namespace database, 2025-06-01T12:00:00Z)
  - mysql-0 and mysql-1 both have server_id 1: replication stops with error 1593 (a replica ignores or refuses a source with its own server_id)
  - mysql-1: IO thread is No (error 13117: mysql-0 and mysql-1 have the same server_id)
  - Service mysql-replicas routes to mysql-0, mysql-1, expected the replicas, not mysql-0
  - marker lab-1748779200000-4242 not read back on mysql-1
  - mysql-1 restarted 2 times

Pods
  NAME          PHASE    READY  RESTARTS  NODE                IP          ROLE
  mysql-0       Running  yes    0         kind-control-plane  10.244.0.5  primary
  mysql-1       Running  yes    2         kind-control-plane  10.244.0.6  replica
  mysql-client  Running  yes    0         kind-control-plane  10.244.0.7  —

Storage
  PVC           STATUS  CAPACITY  CLASS
  data-mysql-0  Bound   5Gi       standard
  data-mysql-1  Bound   5Gi       standard

Servers
  POD      ROLE     VERSION      SERVER_ID  SERVER_UUID                           READ_ONLY  SUPER_READ_ONLY
  mysql-0  primary  MySQL 8.4.5  1          3e11fa47-71ca-11e1-9e33-c80aa9429562  OFF        OFF
  mysql-1  replica  MySQL 8.4.5  1          4f22ab58-71ca-11e1-9e33-c80aa9429563  ON         ON

Replication
  REPLICA  IO  SQL  BEHIND               READ                  EXECUTED              PRIMARY AT             SOURCE
  mysql-1  No  Yes  — (not replicating)  mysql-bin.000001:328  mysql-bin.000001:328  mysql-bin.000001:1536  mysql-0.mysql-headless.database.svc.cluster.local
  mysql-1 IO error 13117: Fatal error: The replica I/O thread stops because source and replica have equal MySQL server ids
    cause: mysql-0 and mysql-1 have the same server_id
    fix:   give each pod server-id = ordinal + 1

Services
  SERVICE         ROUTES TO         OK    EXPECTED
  mysql-headless  mysql-0, mysql-1  ok    every mysql pod
  mysql-primary   mysql-0           ok    mysql-0 only
  mysql-replicas  mysql-0, mysql-1  FAIL  the replicas, not mysql-0

Validation
  FAIL  marker lab-1748779200000-4242 written on mysql-0, read back on no replica
  missing on mysql-1: timed out after 30s waiting for mysql-bin.000001:1536

Read-only test
  POD      ACCOUNT    WRITE     OK  EXPLANATION
  mysql-1  root       rejected  ok  error 1290: the server runs with read-only protection
  mysql-1  lab_probe  rejected  ok  error 1290: the server runs with read-only protection

Problems
  1. mysql-0, mysql-1 (error)
     cause: mysql-0 and mysql-1 both have server_id 1: replication stops with error 1593 (a replica ignores or refuses a source with its own server_id)
     fix:   fix the init container so that each pod gets server-id = ordinal + 1, then delete the pods so they restart with it
  2. mysql-1 (error)
     cause: mysql-1: IO thread is No (error 13117: mysql-0 and mysql-1 have the same server_id)
     fix:   give each pod server-id = ordinal + 1
  3. Service mysql-replicas (error)
     cause: Service mysql-replicas routes to mysql-0, mysql-1, expected the replicas, not mysql-0
     fix:   run `lab up`: it re-applies the Service's selector and puts the role labels back
  4. validation (error)
     cause: marker lab-1748779200000-4242 not read back on mysql-1
     fix:   the replica's replication errors above say why; `lab verify` repeats the round trip
  5. mysql-1 (warning)
     cause: mysql-1 restarted 2 times
     fix:   `kubectl logs -n database mysql-1 --previous` shows why the last run ended
";
        assert_eq!(render_table(&broken(), false), expected);
    }

    #[test]
    fn the_checklist_is_a_table_of_its_own_after_the_problems() {
        let mut report = healthy();
        report.checklist = vec![
            crate::report::ChecklistItem {
                item: "NetworkPolicy".into(),
                status: crate::report::CheckStatus::Warning,
                detail: "no NetworkPolicy in namespace database".into(),
            },
            crate::report::ChecklistItem {
                item: "backups and restore test".into(),
                status: crate::report::CheckStatus::NotChecked,
                detail: "lab does not check backups".into(),
            },
        ];
        let table = render_table(&report, false);
        assert!(
            table.ends_with(
                "\nProduction checklist (tutorial section 7; never changes the verdict)\n  STATUS       ITEM                      \
                 WHY\n  warning      NetworkPolicy             no NetworkPolicy in namespace database\n  not checked  \
                 backups and restore test  lab does not check backups\n"
            ),
            "{table}"
        );
        assert!(
            table.starts_with("Verdict: HEALTHY"),
            "checklist warnings leave the verdict alone"
        );
    }

    fn strip_ansi(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("\x1b[") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('m').expect("an SGR sequence ends with m");
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn colour_adds_only_escape_codes_and_keeps_the_alignment() {
        for report in [healthy(), broken(), degraded_mariadb()] {
            let coloured = render_table(&report, true);
            assert_eq!(strip_ansi(&coloured), render_table(&report, false));
        }
        let broken = render_table(&broken(), true);
        assert!(
            broken.starts_with("Verdict: \x1b[1;31mBROKEN\x1b[0m  (namespace database"),
            "{broken}"
        );
        assert!(broken.contains("\n\x1b[1mReplication\x1b[0m\n"), "{broken}");
        assert!(
            broken.contains("  mysql-1  \x1b[31mNo\x1b[0m  \x1b[32mYes\x1b[0m  \x1b[31m— (not replicating)"),
            "{broken}"
        );
        assert!(!render_table(&healthy(), false).contains('\x1b'));
    }
}
