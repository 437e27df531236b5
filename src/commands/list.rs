//! `lab list` and `--all-namespaces`: every lab on the cluster (the namespaces carrying lab's label), one row or one
//! report each, so that an instructor with one namespace per student grades the class in one command.
//!
//! Each lab is checked exactly as the single-namespace command checks it (`status::run`, `verify::run`): a row's
//! verdict is what `lab status -n NAMESPACE` says. A lab that cannot be checked is a BROKEN row carrying the error,
//! never an abort; only a cluster that cannot be reached at all stops the command.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{STATEFULSET, connect_cluster, exercise, inspect, status, verify};
use crate::cluster::Cluster;
use crate::exit::ExitStatus;
use crate::manifests::DATABASE_CONTAINER;
use crate::plan::{Reporter, Runner};
use crate::report::{self, HealthReport, Verdict};
use crate::settings::{Format, Settings};
use crate::{Strictness, exit_for};

/// What is said, on stderr, when the cluster holds no lab.
pub const NO_LAB: &str = "no lab on the cluster: no namespace carries the label app.kubernetes.io/managed-by=lab; \
                          `lab up -n NAMESPACE` creates one";

/// Which single-namespace command runs on every lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Status,
    Verify,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Status => "status",
            Check::Verify => "verify",
        }
    }

    fn strictness(self) -> Strictness {
        match self {
            Check::Status => Strictness::FailOnlyWhenBroken,
            Check::Verify => Strictness::FailUnlessHealthy,
        }
    }
}

/// One row of `lab list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabRow {
    pub namespace: String,
    pub verdict: Verdict,
    /// The database image of the StatefulSet's pod template; `None` when it cannot be read.
    pub image: Option<String>,
    /// The StatefulSet's replicas (the primary included); `None` when it cannot be read.
    pub pods: Option<u32>,
    /// The active exercise (`lab exercise start`), `None` when there is none.
    pub exercise: Option<String>,
    /// Hints given for it and whether it is solved (`no`, `yes`, `shown` by `lab exercise solve`); `None` without
    /// an exercise.
    pub hints: Option<u32>,
    pub solved: Option<exercise::Solved>,
}

/// `lab list`: the rendered rows (table or JSON). Exit 0 whatever the verdicts: it is an inventory; `status -A` and
/// `verify -A` are the commands that grade.
pub async fn list(settings: &Settings, reporter: &dyn Reporter) -> anyhow::Result<String> {
    let (cluster, namespaces) = find_labs(settings, reporter).await?;
    let reports = check_each(settings, reporter, Check::Status, &namespaces).await;
    let mut rows = Vec::new();
    for report in reports {
        let namespace = report.namespace.as_str();
        // Read failures leave the cell empty: the verdict already carries what went wrong.
        let image = cluster
            .statefulset_image(namespace, STATEFULSET, DATABASE_CONTAINER)
            .await
            .ok()
            .flatten();
        let pods = cluster
            .statefulset_replicas(namespace, STATEFULSET)
            .await
            .ok()
            .flatten();
        let record = exercise::record(&cluster, namespace).await.ok().flatten();
        rows.push(LabRow {
            namespace: report.namespace.clone(),
            verdict: report.verdict,
            image,
            pods,
            exercise: record.as_ref().map(|r| r.exercise.clone()),
            hints: record.as_ref().map(|r| r.hints),
            solved: record.as_ref().map(|r| r.solved),
        });
    }
    Ok(match settings.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&rows)?),
        Format::Table | Format::Junit => render_list(&rows),
    })
}

/// `status -A` / `verify -A`: `check` on every lab; the rendered result and the exit status over all labs.
pub async fn check_all(
    settings: &Settings,
    reporter: &dyn Reporter,
    check: Check,
) -> anyhow::Result<(String, ExitStatus)> {
    let (_, namespaces) = find_labs(settings, reporter).await?;
    let reports = check_each(settings, reporter, check, &namespaces).await;
    let text = match settings.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&reports)?),
        Format::Junit => report::render_junit_all(&reports, check.name()),
        Format::Table => render_summary(&reports),
    };
    let verdicts: Vec<Verdict> = reports.iter().map(|r| r.verdict).collect();
    Ok((text, exit_for_all(&verdicts, check)))
}

/// Runs `check` on each namespace in turn, within the command's one deadline, each lab with its fair share of the
/// time left (see [`lab_budget`]). An error becomes that lab's BROKEN report, as `lab status -n NAMESPACE -o json`
/// prints it.
async fn check_each(
    settings: &Settings,
    reporter: &dyn Reporter,
    check: Check,
    namespaces: &[String],
) -> Vec<HealthReport> {
    let started = Instant::now();
    let mut reports = Vec::new();
    for (done, namespace) in namespaces.iter().enumerate() {
        reporter.note(&format!("lab {} -n {namespace}", check.name()));
        let one = lab_settings(settings, namespace, started, namespaces.len() - done);
        let mut runner = Runner::new(reporter);
        let result = match check {
            Check::Status => status::run(&one, &mut runner).await,
            Check::Verify => verify::run(&one, &mut runner).await,
        };
        reports.push(inspect::report_or_failure(namespace, &runner, result));
    }
    reports
}

/// The cluster and the namespaces that hold a lab; a cluster without one gets [`NO_LAB`] said on stderr.
pub async fn find_labs(settings: &Settings, reporter: &dyn Reporter) -> anyhow::Result<(Cluster, Vec<String>)> {
    let cluster = connect_cluster(settings).await?;
    let namespaces = cluster.lab_namespaces().await?;
    if namespaces.is_empty() {
        reporter.note(NO_LAB);
    }
    Ok((cluster, namespaces))
}

/// `settings` for one lab of a class checked one after the other since `started`: its namespace, and its share
/// of the time left among the `labs_left` (see [`lab_budget`]).
pub fn lab_settings(settings: &Settings, namespace: &str, started: Instant, labs_left: usize) -> Settings {
    let mut one = settings.clone();
    one.namespace = namespace.to_string();
    one.timeout = lab_budget(settings.timeout.saturating_sub(started.elapsed()), labs_left);
    one
}

/// The time one lab may take: an equal share of the time left among the labs left, so that a lab that hangs (a pod
/// that never gets Ready, which `verify` waits for) cannot leave the labs after it no time; what a quick lab does
/// not use goes to the labs after it.
pub fn lab_budget(left: Duration, labs_left: usize) -> Duration {
    left / u32::try_from(labs_left.max(1)).unwrap_or(u32::MAX)
}

/// The exit status over all labs, by the single-namespace rules: `verify` exits 0 only if every lab is HEALTHY,
/// `status` fails if any lab is BROKEN. No lab at all: `status` has nothing broken to report (0, an empty table);
/// `verify` has verified nothing, and a grading pipeline must not pass a class without labs (1).
pub fn exit_for_all(verdicts: &[Verdict], check: Check) -> ExitStatus {
    if verdicts.is_empty() {
        return match check {
            Check::Status => ExitStatus::Success,
            Check::Verify => ExitStatus::Unhealthy,
        };
    }
    let worst = verdicts.iter().copied().max().unwrap_or(Verdict::Healthy);
    exit_for(worst, check.strictness())
}

/// The reasons for a verdict in one line: each problem's cause, `-` when there is none.
pub fn reasons_line(report: &HealthReport) -> String {
    let causes: Vec<String> = report
        .problems
        .iter()
        .map(|p| p.cause.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if causes.is_empty() {
        "-".to_string()
    } else {
        causes.join("; ")
    }
}

/// `status -A` / `verify -A` as a table: one row per lab.
pub fn render_summary(reports: &[HealthReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| vec![r.namespace.clone(), r.verdict.to_string(), reasons_line(r)])
        .collect();
    render_rows(&["NAMESPACE", "VERDICT", "REASONS"], &rows)
}

/// `lab list` as a table: one row per lab.
pub fn render_list(rows: &[LabRow]) -> String {
    let dash = |cell: Option<String>| cell.unwrap_or_else(|| "-".to_string());
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.namespace.clone(),
                r.verdict.to_string(),
                dash(r.image.clone()),
                dash(r.pods.map(|p| p.to_string())),
                dash(r.exercise.as_ref().map(|name| match (r.solved, r.hints) {
                    (Some(solved), Some(hints)) => format!("{name} (solved: {}, hints: {hints})", solved.as_str()),
                    _ => name.clone(),
                })),
            ]
        })
        .collect();
    render_rows(&["NAMESPACE", "VERDICT", "IMAGE", "PODS", "EXERCISE"], &rows)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(crate) fn render_rows(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(ToString::to_string).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ");
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Problem, Severity};

    fn report(namespace: &str, problems: &[(&str, Severity)]) -> HealthReport {
        let mut report = HealthReport::new(namespace, "2025-06-01T12:00:00Z".parse().expect("timestamp"));
        report.problems = problems
            .iter()
            .map(|(cause, severity)| Problem {
                subject: namespace.to_string(),
                severity: *severity,
                cause: cause.to_string(),
                fix: "fix it".to_string(),
            })
            .collect();
        report
    }

    #[test]
    fn verify_passes_only_when_every_lab_is_healthy_and_status_fails_when_any_is_broken() {
        use Verdict::*;
        assert_eq!(exit_for_all(&[Healthy, Healthy], Check::Verify), ExitStatus::Success);
        assert_eq!(exit_for_all(&[Healthy, Degraded], Check::Verify), ExitStatus::Unhealthy);
        assert_eq!(exit_for_all(&[Healthy, Broken], Check::Verify), ExitStatus::Unhealthy);
        assert_eq!(exit_for_all(&[Healthy, Degraded], Check::Status), ExitStatus::Success);
        assert_eq!(
            exit_for_all(&[Degraded, Broken, Healthy], Check::Status),
            ExitStatus::Unhealthy
        );
    }

    #[test]
    fn each_lab_gets_an_equal_share_of_the_time_left() {
        assert_eq!(lab_budget(Duration::from_secs(600), 3), Duration::from_secs(200));
        // The first lab took 20 s of its 200: the two left share 580 s.
        assert_eq!(lab_budget(Duration::from_secs(580), 2), Duration::from_secs(290));
        assert_eq!(lab_budget(Duration::from_secs(7), 1), Duration::from_secs(7));
        assert_eq!(lab_budget(Duration::ZERO, 2), Duration::ZERO);
        assert_eq!(
            lab_budget(Duration::from_secs(9), 0),
            Duration::from_secs(9),
            "no division by zero"
        );
    }

    #[test]
    fn a_cluster_without_labs_is_nothing_broken_for_status_and_nothing_verified_for_verify() {
        assert_eq!(exit_for_all(&[], Check::Status), ExitStatus::Success);
        assert_eq!(exit_for_all(&[], Check::Verify), ExitStatus::Unhealthy);
    }

    #[test]
    fn the_summary_has_one_row_per_lab_with_its_reasons_on_one_line() {
        let mut broken = report(
            "student-2",
            &[
                ("mysql-1: IO thread is No\n(error 1045)", Severity::Error),
                ("lag", Severity::Warning),
            ],
        );
        broken.verdict = Verdict::Broken;
        let table = render_summary(&[report("student-1", &[]), broken]);
        assert_eq!(
            table,
            "NAMESPACE  VERDICT  REASONS\n\
             student-1  HEALTHY  -\n\
             student-2  BROKEN   mysql-1: IO thread is No (error 1045); lag\n"
        );
        assert_eq!(render_summary(&[]), "NAMESPACE  VERDICT  REASONS\n");
    }

    #[test]
    fn the_list_shows_image_pods_and_the_exercise_with_its_hints_or_a_dash() {
        let rows = [
            LabRow {
                namespace: "student-1".into(),
                verdict: Verdict::Healthy,
                image: Some("mariadb:11.4".into()),
                pods: Some(2),
                exercise: Some("missing-rows".into()),
                hints: Some(2),
                solved: Some(exercise::Solved::No),
            },
            LabRow {
                namespace: "s2".into(),
                verdict: Verdict::Broken,
                image: None,
                pods: None,
                exercise: None,
                hints: None,
                solved: None,
            },
        ];
        assert_eq!(
            render_list(&rows),
            "NAMESPACE  VERDICT  IMAGE         PODS  EXERCISE\n\
             student-1  HEALTHY  mariadb:11.4  2     missing-rows (solved: no, hints: 2)\n\
             s2         BROKEN   -             -     -\n"
        );
        let json = serde_json::to_value(&rows[0]).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"namespace": "student-1", "verdict": "HEALTHY", "image": "mariadb:11.4", "pods": 2,
                               "exercise": "missing-rows", "hints": 2, "solved": "no"})
        );
    }
}
