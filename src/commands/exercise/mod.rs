//! `lab exercise`: break a working lab the way the fault happens in the field, let a student find and fix it, and
//! grade the result (`list`, `start`, `check`, `hint`, `solve`, `reset`).
//!
//! # Adding an exercise
//!
//! An exercise is one file in this directory holding a unit struct that implements [`Exercise`]:
//!
//! - `name` (what `lab exercise start NAME` takes: a story, not the answer), a one-line `title` and the tutorial
//!   `section` it teaches, the `symptom` a user would report (never the cause), and at least three `hints`, each
//!   more specific than the one before (the last one all but gives the fix).
//! - `start`: break the lab as a careless person would, through the same objects and servers a person touches
//!   (edit a StatefulSet, a Service selector, run SQL), never by faking a report. Return once the fault shows. A
//!   refusal (a [`UsageError`]: the lab lacks what the exercise needs) must come before any change.
//! - `goal`: what the user's problem still looks like, as symptoms (empty when it is gone). `check` adds the checks
//!   of `lab verify`, so the goal only states what those do not.
//! - `solve`: the fix, idempotent and safe from any state (a `start` interrupted half-way, a student's own partial
//!   fix): `reset` runs it too. Each change goes through [`Lab::ran`] with the command a student would type
//!   (kubectl, or SQL with the password as `******`).
//!
//! Then add the struct to [`EXERCISES`] and its story to the README's "Exercises" section, and give it an e2e test
//! in `tests/e2e/exercise.rs` (start, check fails, solve, check passes; start, reset). Where a fault behaves
//! differently on MySQL and MariaDB, say so in the file and handle both (`lab.flavor`).
//!
//! # The record
//!
//! The active exercise is a ConfigMap [`RECORD`] in the lab's namespace, carrying lab's label. Not an annotation on
//! the Namespace: a student with the usual namespace-scoped role can read and is bound to a ConfigMap in their own
//! namespace, but not the cluster-scoped Namespace object; and `lab teardown` removes labelled ConfigMaps with the
//! lab. It holds the exercise's name, when it started, the verdict then, the hints given and whether it is solved.
//! `start` creates it (a create, not an apply: a second `start` sees the first) *before* breaking anything, so a
//! `start` interrupted at any point leaves a record that `reset` reads; `reset` deletes it last, after the lab is
//! proven healthy, so a `reset` interrupted at any point can be run again.

mod after_restart;
mod missing_rows;
mod missing_tables;
mod never_connects;
mod refused_writes;
mod replica_errors;
mod replica_reads;
mod stale_reads;
mod stuck_replica;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::time::Instant;

use super::demo::{self, left_as_found};
use super::list::{find_labs, lab_settings};
use super::{connect_cluster, find_lab, inspect, pod_name};
use crate::cluster::Cluster;
use crate::database::Flavor;
use crate::exit::{self, ExitStatus, UsageError};
use crate::plan::Runner;
use crate::report::{self, HealthReport, ServerFlavor, TestSuite, Testcase, Verdict};
use crate::settings::{Format, ManifestSettings, Settings};

/// The ConfigMap that records the active exercise (see the module documentation).
pub const RECORD: &str = "lab-exercise";
/// Version of the `-o json` shapes of `start` and `check`.
pub const EXERCISE_SCHEMA_VERSION: u32 = 1;

/// One exercise. See the module documentation for what each part must do.
pub trait Exercise: Sync {
    fn name(&self) -> &'static str;
    /// One line, for `lab exercise list`.
    fn title(&self) -> &'static str;
    /// The tutorial section it teaches.
    fn section(&self) -> &'static str;
    /// What a user reports once the lab is broken: a symptom, never the cause.
    fn symptom(&self) -> &'static str;
    /// At least three, from vague to nearly the answer.
    fn hints(&self) -> &'static [&'static str];
    /// Breaks the lab as the fault happens in the field.
    fn start<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The user's problem as it still shows, as symptoms; empty when it is gone.
    fn goal<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<Vec<String>>>;
    /// Applies the fix from any state, recording each command with [`Lab::ran`].
    fn solve<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Every exercise, in the order `lab exercise list` shows them.
pub const EXERCISES: &[&dyn Exercise] = &[
    &missing_rows::MissingRows,
    &replica_reads::ReplicaReads,
    &refused_writes::RefusedWrites,
    &stale_reads::StaleReads,
    &missing_tables::MissingTables,
    &never_connects::NeverConnects,
    &after_restart::AfterRestart,
    &stuck_replica::StuckReplica,
];

/// The exercise called `name`, or a usage error listing the ones there are.
pub fn find(name: &str) -> Result<&'static dyn Exercise, UsageError> {
    EXERCISES.iter().copied().find(|e| e.name() == name).ok_or_else(|| {
        UsageError::new(format!(
            "no exercise called {name:?}; exercises: {} (`lab exercise list` describes them)",
            EXERCISES.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// `lab exercise list`: one line per exercise.
pub fn list() -> String {
    let section = |e: &&dyn Exercise| format!("(section {})", e.section());
    let width = EXERCISES.iter().map(|e| e.name().len()).max().unwrap_or(0);
    let sections = EXERCISES.iter().map(|e| section(e).len()).max().unwrap_or(0);
    EXERCISES
        .iter()
        .map(|e| format!("{:width$}  {:sections$}  {}\n", e.name(), section(e), e.title()))
        .collect()
}

/// `lab exercise list -o json`.
pub fn list_json() -> serde_json::Value {
    EXERCISES
        .iter()
        .map(|e| serde_json::json!({"name": e.name(), "title": e.title(), "section": e.section()}))
        .collect()
}

/// What every exercise works with: the demos' view of the lab, and the commands a fix ran.
pub struct Lab<'a> {
    base: demo::Lab<'a>,
    commands: Mutex<Vec<String>>,
}

impl<'a> Deref for Lab<'a> {
    type Target = demo::Lab<'a>;
    fn deref(&self) -> &demo::Lab<'a> {
        &self.base
    }
}

impl Lab<'_> {
    /// Records (and shows on stderr) a command a student would type for what the fix is about to do.
    pub fn ran(&self, command: impl Into<String>) {
        let command = command.into();
        crate::output::narrate(&format!("$ {command}"));
        if let Ok(mut commands) = self.commands.lock() {
            commands.push(command);
        }
    }

    fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Puts back the role labels lab sets, recording the `kubectl label` for each one changed.
    pub async fn restore_role_labels(&self) -> anyhow::Result<()> {
        for label in self.base.restore_role_labels().await? {
            let (pod, role) = label.split_once('=').unwrap_or((label.as_str(), ""));
            self.ran(self.kubectl(&format!("label pod {pod} {}={role} --overwrite", super::ROLE_LABEL)));
        }
        Ok(())
    }

    /// Starts replication where it stopped on every replica that is not running it, recording each `START`.
    pub async fn start_stopped_replicas(&self) -> anyhow::Result<()> {
        for ordinal in 1..self.pods {
            let pod = pod_name(ordinal);
            let mut session = self.session(&pod).await?;
            if let Some(status) = session.db.replica_status().await?
                && !status.is_running()
            {
                self.ran(self.sql(&pod, &session.db.dialect().start_replica()));
                session.db.start_replication().await?;
            }
            session.close().await;
        }
        Ok(())
    }
}

/// How long a fresh row may take to reach a replica before it counts as missing.
const ROW_WAIT: Duration = Duration::from_secs(5);
/// How long a Service's endpoints may take to follow a selector change (a controller writes them).
const ROUTE_WAIT: Duration = Duration::from_secs(30);

impl Lab<'_> {
    /// Writes a fresh row on the primary and returns the replicas it does not reach within [`ROW_WAIT`], each with
    /// what was seen there.
    pub async fn replicas_missing_a_fresh_row(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut primary = self.session(super::PRIMARY_POD).await?;
        let marker = format!("exercise-{}", jiff::Timestamp::now().as_millisecond());
        let target = primary.db.write_marker(&marker).await?;
        primary.close().await;
        let mut missing = Vec::new();
        for ordinal in 1..self.pods {
            let pod = pod_name(ordinal);
            let mut replica = match self.session(&pod).await {
                Ok(replica) => replica,
                Err(error) => {
                    missing.push((pod, format!("{error:#}")));
                    continue;
                }
            };
            if let Err(error) = replica.db.wait_for_coordinates(&target, ROW_WAIT).await {
                missing.push((pod, error.to_string()));
            }
            replica.close().await;
        }
        Ok(missing)
    }

    /// The pods a Service routes to now (ready endpoints), sorted; `None` when the Service does not exist.
    pub async fn endpoints(&self, service: &str) -> anyhow::Result<Option<Vec<String>>> {
        let snapshot = self.cluster.snapshot(self.namespace).await?;
        Ok(snapshot
            .services
            .into_iter()
            .find(|s| s.name == service)
            .map(|s| s.endpoints))
    }

    /// Waits until the pods a Service routes to satisfy `done`, at most [`ROUTE_WAIT`]; returns the pods last
    /// seen.
    pub async fn wait_endpoints(&self, service: &str, done: impl Fn(&[String]) -> bool) -> anyhow::Result<Vec<String>> {
        let until = self.deadline.min(Instant::now() + ROUTE_WAIT);
        Ok(self
            .cluster
            .wait_endpoints(self.namespace, service, until, done)
            .await?)
    }
}

/// Whether the exercise is solved: by the student (`check` passed), or shown by `lab exercise solve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Solved {
    No,
    Yes,
    /// `lab exercise solve` applied the answer: solved, but not by the student.
    Shown,
}

impl Solved {
    pub fn as_str(self) -> &'static str {
        match self {
            Solved::No => "no",
            Solved::Yes => "yes",
            Solved::Shown => "shown",
        }
    }
}

/// The active exercise, as [`RECORD`] holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub exercise: String,
    pub started_at: String,
    /// The lab's verdict when the exercise started: `check` accepts it back (a DEGRADED lab, say with restarted
    /// pods, cannot be made HEALTHY by a fix).
    pub verdict_at_start: Verdict,
    pub hints: u32,
    pub solved: Solved,
}

impl Record {
    fn new(exercise: &str, verdict_at_start: Verdict) -> Record {
        Record {
            exercise: exercise.to_string(),
            started_at: jiff::Timestamp::now().to_string(),
            verdict_at_start,
            hints: 0,
            solved: Solved::No,
        }
    }

    /// Pure: the ConfigMap data.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("exercise".to_string(), self.exercise.clone()),
            ("started-at".to_string(), self.started_at.clone()),
            ("verdict-at-start".to_string(), self.verdict_at_start.to_string()),
            ("hints".to_string(), self.hints.to_string()),
            ("solved".to_string(), self.solved.as_str().to_string()),
        ])
    }

    /// Pure: the record from ConfigMap data; missing or unreadable values fall back to the strictest reading (no
    /// hints, not solved, HEALTHY at start), so a hand-edited record never grades more leniently.
    pub fn from_data(data: &BTreeMap<String, String>) -> Option<Record> {
        let get = |key: &str| data.get(key).map(String::as_str).unwrap_or_default();
        let exercise = get("exercise");
        if exercise.is_empty() {
            return None;
        }
        Some(Record {
            exercise: exercise.to_string(),
            started_at: get("started-at").to_string(),
            verdict_at_start: match get("verdict-at-start") {
                "DEGRADED" => Verdict::Degraded,
                _ => Verdict::Healthy,
            },
            hints: get("hints").parse().unwrap_or(0),
            solved: match get("solved") {
                "yes" => Solved::Yes,
                "shown" => Solved::Shown,
                _ => Solved::No,
            },
        })
    }
}

async fn read_record(cluster: &Cluster, namespace: &str) -> anyhow::Result<Option<Record>> {
    Ok(cluster
        .config_map(namespace, RECORD)
        .await?
        .as_ref()
        .and_then(Record::from_data))
}

/// The active exercise's record, or the usage error that says how to start one.
async fn active(cluster: &Cluster, namespace: &str) -> anyhow::Result<Record> {
    read_record(cluster, namespace).await?.ok_or_else(|| {
        UsageError::new(format!(
            "no exercise is active in namespace {namespace}: start one with `lab exercise start NAME` \
             (`lab exercise list` shows them)"
        ))
        .into()
    })
}

/// Pure: a lab may take an exercise only when the verify checks find it working.
pub fn check_lab_ready(namespace: &str, report: &HealthReport) -> Result<(), UsageError> {
    if report.verdict != Verdict::Broken {
        return Ok(());
    }
    let why: Vec<String> = report::reasons(report).into_iter().map(|r| r.text).take(3).collect();
    Err(UsageError::new(format!(
        "the lab in namespace {namespace} is BROKEN ({}): an exercise needs a working lab; run `lab up` first",
        why.join("; ")
    )))
}

/// Pure: the refusal when an exercise is active already.
pub fn already_active(namespace: &str, record: &Record) -> UsageError {
    UsageError::new(format!(
        "exercise {} is already active in namespace {namespace} (started {}): finish it, or run `lab exercise reset` \
         first",
        record.exercise, record.started_at
    ))
}

async fn open_lab<'a>(settings: &'a Settings, report: &HealthReport) -> anyhow::Result<Lab<'a>> {
    let cluster = connect_cluster(settings).await?;
    let namespace = settings.namespace.as_str();
    let (pods, accounts) = find_lab(&cluster, namespace).await?;
    let flavor = report.servers.first().map_or(Flavor::MariaDb, |s| match s.flavor {
        ServerFlavor::Mysql => Flavor::MySql,
        ServerFlavor::Mariadb => Flavor::MariaDb,
    });
    Ok(Lab {
        base: demo::Lab {
            cluster,
            namespace,
            pods,
            accounts,
            flavor,
            deadline: Instant::now() + settings.timeout,
        },
        commands: Mutex::new(Vec::new()),
    })
}

/// What `start` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub schema_version: u32,
    pub namespace: String,
    pub exercise: String,
    pub title: String,
    pub section: String,
    pub symptom: String,
}

/// `lab exercise start NAME`.
pub async fn start(settings: &Settings, name: &str, runner: &mut Runner<'_>) -> anyhow::Result<String> {
    let exercise = find(name)?;
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let (pods, _) = find_lab(&cluster, namespace).await?;
    if let Some(record) = read_record(&cluster, namespace).await? {
        return Err(already_active(namespace, &record).into());
    }
    let before = super::verify::run(settings, runner).await?;
    check_lab_ready(namespace, &before)?;
    // Every exercise breaks replication or routing between the primary and a replica.
    if pods < 2 {
        return Err(UsageError::new(format!(
            "exercise {} needs a replica: run `lab up --replicas 2` first",
            exercise.name()
        ))
        .into());
    }
    let record = Record::new(exercise.name(), before.verdict);
    if !cluster.create_config_map(namespace, RECORD, &record.to_data()).await? {
        let record = active(&cluster, namespace).await?;
        return Err(already_active(namespace, &record).into());
    }
    crate::interrupt::checkpoint("exercise start: recorded").await;
    let lab = open_lab(settings, &before).await?;
    runner
        .reporter()
        .note(&format!("starting exercise {}", exercise.name()));
    if let Err(error) = exercise.start(&lab).await {
        // A refusal (an init script lab did not write, say) comes before any change: no exercise is active then. Any other
        // error may come half-way: the record stays for `reset`.
        if exit::classify(&error) == ExitStatus::Usage {
            cluster.delete_config_map(namespace, RECORD).await?;
        }
        return Err(error);
    }
    let started = Started {
        schema_version: EXERCISE_SCHEMA_VERSION,
        namespace: namespace.to_string(),
        exercise: exercise.name().to_string(),
        title: exercise.title().to_string(),
        section: exercise.section().to_string(),
        symptom: exercise.symptom().to_string(),
    };
    Ok(match settings.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&started)?),
        Format::Table | Format::Junit => format!(
            "exercise {} started in namespace {namespace} (tutorial section {}).\n\nA user reports: {}\n\nFind the \
             cause and fix it. `lab exercise check` tells whether it is fixed, `lab exercise hint` gives a hint \
             (each call a more specific one), `lab exercise reset` gives up and puts the lab back.\n",
            started.exercise, started.section, started.symptom
        ),
    })
}

/// One graded check: a verify check or the exercise's goal, with the symptom when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graded {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symptom: Option<String>,
}

/// What `check` found in one namespace.
#[derive(Debug, Clone, Serialize)]
pub struct Grade {
    pub schema_version: u32,
    pub namespace: String,
    /// `None`: no exercise is active there.
    pub exercise: Option<String>,
    pub solved: Option<Solved>,
    pub hints: Option<u32>,
    /// Every check passed and the exercise's goal is met.
    pub passed: bool,
    pub verdict: Verdict,
    pub checks: Vec<Graded>,
    #[serde(skip)]
    pub generated_at: String,
}

impl Grade {
    /// The symptoms that still show.
    pub fn failing(&self) -> Vec<&str> {
        self.checks.iter().filter_map(|c| c.symptom.as_deref()).collect()
    }
}

/// Pure: a verify check's failure as a symptom a user sees: what was observed, without the cause or the fix the
/// report adds (those are for `lab status` and `lab verify`, which a student may run to diagnose).
pub fn symptom_of(check: &str, failure: &str) -> String {
    let first = failure.lines().next().unwrap_or_default();
    let observed = first.split(" (error ").next().unwrap_or(first).trim();
    if let Some(step) = check.strip_prefix("step: ") {
        format!("`lab verify` fails at its step \"{step}\"")
    } else if let Some(pod) = check.strip_suffix(" replicates from the primary") {
        let state = observed.strip_prefix(&format!("{pod}: ")).unwrap_or(observed);
        format!("rows written on the primary do not reach {pod} ({state})")
    } else if check.starts_with("every server has its own") {
        "two servers present themselves to replication as the same server".to_string()
    } else if check == "a row written on the primary reaches every replica" {
        "a row written on the primary is not read back on every replica".to_string()
    } else if check.contains(" refuses writes from ") {
        observed.split(": ").next().unwrap_or(observed).to_string()
    } else if let Some(subject) = check
        .strip_suffix(" (error)")
        .or_else(|| check.strip_suffix(" (warning)"))
    {
        format!("`lab status` reports a problem with {subject}")
    } else {
        observed.to_string()
    }
}

/// Pure: the graded checks: each verify testcase (as a symptom) and the exercise's goal.
pub fn grade_checks(report: &HealthReport, exercise: Option<&str>, goal: &[String]) -> Vec<Graded> {
    let mut checks: Vec<Graded> = report::testcases(report)
        .into_iter()
        .map(|Testcase { name, failure }| Graded {
            ok: failure.is_none(),
            symptom: failure.map(|f| symptom_of(&name, &f)),
            name,
        })
        .collect();
    let (name, symptom) = match exercise {
        Some(exercise) => (
            format!("exercise {exercise}: the user's problem is gone"),
            (!goal.is_empty()).then(|| goal.join("\n")),
        ),
        None => (
            "an exercise is active".to_string(),
            Some("no exercise is active in this namespace (none was started, or it was reset)".to_string()),
        ),
    };
    checks.push(Graded {
        name,
        ok: symptom.is_none(),
        symptom,
    });
    checks
}

/// Pure: passed when the goal and every check pass, the verdict allowing the one the lab had at the start.
pub fn passed(checks: &[Graded], verdict: Verdict, at_start: Verdict) -> bool {
    let goal_met = checks.last().is_some_and(|c| c.ok);
    let others_ok = checks[..checks.len().saturating_sub(1)].iter().all(|c| c.ok);
    goal_met && (others_ok || (verdict != Verdict::Broken && left_as_found(at_start, verdict)))
}

/// Grades one namespace: the verify checks, then the goal of its exercise. An error in the checks becomes a BROKEN
/// report (as `lab verify -A` shows it); the record is marked solved when everything passes.
async fn grade(settings: &Settings, runner: &mut Runner<'_>, require_exercise: bool) -> anyhow::Result<Grade> {
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let record = if require_exercise {
        Some(active(&cluster, namespace).await?)
    } else {
        read_record(&cluster, namespace).await.unwrap_or(None)
    };
    let exercise = match &record {
        Some(record) => Some(find(&record.exercise)?),
        None => None,
    };
    let result = super::verify::run(settings, runner).await;
    let report = inspect::report_or_failure(namespace, runner, result);
    let goal = match exercise {
        Some(exercise) => match open_lab(settings, &report).await {
            Ok(lab) => exercise
                .goal(&lab)
                .await
                .unwrap_or_else(|error| vec![format!("could not be checked: {error:#}")]),
            Err(error) => vec![format!("could not be checked: {error:#}")],
        },
        None => Vec::new(),
    };
    let checks = grade_checks(&report, exercise.map(|e| e.name()), &goal);
    let at_start = record.as_ref().map_or(Verdict::Healthy, |r| r.verdict_at_start);
    let passed = exercise.is_some() && passed(&checks, report.verdict, at_start);
    let mut solved = record.as_ref().map(|r| r.solved);
    if passed && solved == Some(Solved::No) {
        let data = BTreeMap::from([("solved".to_string(), Solved::Yes.as_str().to_string())]);
        cluster.update_config_map(namespace, RECORD, &data).await?;
        solved = Some(Solved::Yes);
    }
    Ok(Grade {
        schema_version: EXERCISE_SCHEMA_VERSION,
        namespace: namespace.to_string(),
        exercise: record.as_ref().map(|r| r.exercise.clone()),
        solved,
        hints: record.as_ref().map(|r| r.hints),
        passed,
        verdict: report.verdict,
        checks,
        generated_at: report.generated_at,
    })
}

/// `lab exercise check`: the rendered grade and its exit status (0 solved, 1 not yet).
pub async fn check(settings: &Settings, runner: &mut Runner<'_>) -> anyhow::Result<(String, ExitStatus)> {
    let grade = grade(settings, runner, true).await?;
    let text = match settings.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&grade)?),
        Format::Junit => render_junit(
            std::slice::from_ref(&grade),
            &format!("lab exercise check {}", grade.namespace),
        ),
        Format::Table => render_grade(&grade),
    };
    Ok((text, exit_for(&[&grade])))
}

/// `lab exercise check -A`: every lab graded, one after the other within the one deadline.
pub async fn check_all(settings: &Settings, runner: &mut Runner<'_>) -> anyhow::Result<(String, ExitStatus)> {
    let (_, namespaces) = find_labs(settings, runner.reporter()).await?;
    let started = Instant::now();
    let mut grades = Vec::new();
    for (done, namespace) in namespaces.iter().enumerate() {
        runner.reporter().note(&format!("lab exercise check -n {namespace}"));
        let one = lab_settings(settings, namespace, started, namespaces.len() - done);
        let mut own = Runner::new(runner.reporter());
        grades.push(match grade(&one, &mut own, false).await {
            Ok(grade) => grade,
            Err(error) => unchecked(namespace, &error),
        });
    }
    let text = match settings.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&grades)?),
        Format::Junit => render_junit(&grades, "lab exercise check --all-namespaces"),
        Format::Table => render_class(&grades),
    };
    let all: Vec<&Grade> = grades.iter().collect();
    Ok((text, exit_for(&all)))
}

/// A lab that could not be graded at all (its record unreadable, say): a failed row carrying the error.
fn unchecked(namespace: &str, error: &anyhow::Error) -> Grade {
    Grade {
        schema_version: EXERCISE_SCHEMA_VERSION,
        namespace: namespace.to_string(),
        exercise: None,
        solved: None,
        hints: None,
        passed: false,
        verdict: Verdict::Broken,
        checks: vec![Graded {
            name: "the lab can be graded".to_string(),
            ok: false,
            symptom: Some(format!("{error:#}")),
        }],
        generated_at: jiff::Timestamp::now().to_string(),
    }
}

/// Pure: 0 only when every graded lab passed; a class without labs passes nothing (1), as `verify -A`.
pub fn exit_for(grades: &[&Grade]) -> ExitStatus {
    if !grades.is_empty() && grades.iter().all(|g| g.passed) {
        ExitStatus::Success
    } else {
        ExitStatus::Unhealthy
    }
}

/// Pure: the grade for people.
pub fn render_grade(grade: &Grade) -> String {
    let exercise = grade.exercise.as_deref().unwrap_or("-");
    let hints = grade.hints.unwrap_or(0);
    let mut out = if grade.passed {
        format!(
            "exercise {exercise} in namespace {}: solved{} (hints used: {hints})\n",
            grade.namespace,
            if grade.solved == Some(Solved::Shown) {
                ", with `lab exercise solve`"
            } else {
                ""
            }
        )
    } else {
        format!(
            "exercise {exercise} in namespace {}: not solved yet (hints used: {hints}); still failing:\n",
            grade.namespace
        )
    };
    if !grade.passed {
        // The steps of `lab verify` fail because of what the other checks show: they add nothing here.
        let shown = grade.checks.iter().filter(|c| !c.name.starts_with("step: "));
        for symptom in shown.filter_map(|c| c.symptom.as_deref()) {
            for (i, line) in symptom.lines().enumerate() {
                out.push_str(if i == 0 { "  ✗ " } else { "    " });
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Pure: `check -A` as a table, one row per student.
pub fn render_class(grades: &[Grade]) -> String {
    let rows: Vec<Vec<String>> = grades
        .iter()
        .map(|g| {
            vec![
                g.namespace.clone(),
                g.exercise.clone().unwrap_or_else(|| "-".into()),
                match (g.passed, g.solved) {
                    (_, None) => "-".to_string(),
                    (true, Some(solved)) => solved.as_str().to_string(),
                    (false, Some(_)) => "no".to_string(),
                },
                g.hints.map_or_else(|| "-".into(), |h| h.to_string()),
                {
                    let failing = g.failing();
                    if failing.is_empty() {
                        "-".to_string()
                    } else {
                        failing
                            .iter()
                            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("; ")
                    }
                },
            ]
        })
        .collect();
    super::list::render_rows(&["NAMESPACE", "EXERCISE", "SOLVED", "HINTS", "STILL FAILING"], &rows)
}

/// Pure: the grades as JUnit, one testsuite per namespace.
pub fn render_junit(grades: &[Grade], document: &str) -> String {
    let suites: Vec<TestSuite> = grades
        .iter()
        .map(|g| TestSuite {
            name: format!("lab exercise check {}", g.namespace),
            namespace: g.namespace.clone(),
            generated_at: g.generated_at.clone(),
            properties: vec![
                ("verdict".to_string(), g.verdict.to_string()),
                ("exercise".to_string(), g.exercise.clone().unwrap_or_default()),
                (
                    "solved".to_string(),
                    g.solved
                        .map_or("", |s| if g.passed { s.as_str() } else { "no" })
                        .to_string(),
                ),
                ("hints".to_string(), g.hints.map(|h| h.to_string()).unwrap_or_default()),
            ],
            cases: g
                .checks
                .iter()
                .map(|c| Testcase {
                    name: c.name.clone(),
                    failure: c.symptom.clone(),
                })
                .collect(),
        })
        .collect();
    report::render_suites(document, &suites)
}

/// `lab exercise hint`: the next hint, recorded.
pub async fn hint(settings: &Settings) -> anyhow::Result<String> {
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let record = active(&cluster, namespace).await?;
    let exercise = find(&record.exercise)?;
    let (level, text) = next_hint(exercise.hints(), record.hints);
    if level > record.hints {
        let data = BTreeMap::from([("hints".to_string(), level.to_string())]);
        cluster.update_config_map(namespace, RECORD, &data).await?;
    }
    let total = exercise.hints().len();
    Ok(match settings.format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "exercise": exercise.name(), "level": level, "of": total, "hint": text
            }))?
        ),
        Format::Table | Format::Junit => format!("hint {level} of {total}: {text}\n"),
    })
}

/// Pure: the hint after `given` hints (1-based level), the last one again once all were given.
pub fn next_hint(hints: &'static [&'static str], given: u32) -> (u32, &'static str) {
    let total = u32::try_from(hints.len()).unwrap_or(u32::MAX);
    let level = (given + 1).min(total).max(1);
    (level, hints.get(level as usize - 1).copied().unwrap_or_default())
}

/// `lab exercise solve`: the fix, the commands it ran, then the grade.
pub async fn solve(settings: &Settings, runner: &mut Runner<'_>) -> anyhow::Result<(String, ExitStatus)> {
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    let record = active(&cluster, namespace).await?;
    let exercise = find(&record.exercise)?;
    let report = super::status::run(settings, runner).await?;
    let lab = open_lab(settings, &report).await?;
    crate::output::narrate(&format!("solving exercise {}:", exercise.name()));
    exercise.solve(&lab).await?;
    if record.solved == Solved::No {
        let data = BTreeMap::from([("solved".to_string(), Solved::Shown.as_str().to_string())]);
        cluster.update_config_map(namespace, RECORD, &data).await?;
    }
    let commands = lab.commands();
    let grade = grade(settings, runner, true).await?;
    let text = match settings.format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({"commands": commands, "check": grade}))?
        ),
        Format::Table | Format::Junit => {
            let mut out = String::from("the fix, as a student would type it:\n");
            for command in &commands {
                out.push_str(&format!("  $ {command}\n"));
            }
            out.push('\n');
            out.push_str(&render_grade(&grade));
            out
        }
    };
    Ok((text, exit_for(&[&grade])))
}

/// `lab exercise reset`: back to a healthy lab from any state, then the record is removed.
pub async fn reset(settings: &Settings, runner: &mut Runner<'_>) -> anyhow::Result<String> {
    let namespace = settings.namespace.as_str();
    let cluster = connect_cluster(settings).await?;
    find_lab(&cluster, namespace).await?;
    let record = read_record(&cluster, namespace).await?;
    let known = record.as_ref().and_then(|r| find(&r.exercise).ok());
    if let Some(exercise) = known {
        // The exercise's own undo first: `lab up` alone does not restart pods an edited template left behind.
        let report = super::status::run(settings, runner).await?;
        let lab = open_lab(settings, &report).await?;
        crate::output::narrate(&format!("undoing exercise {}:", exercise.name()));
        exercise.solve(&lab).await?;
    }
    // Then what `lab up` does, with the built-in manifests and the running image (as `lab demo scale`).
    let image = cluster
        .statefulset_image(namespace, super::STATEFULSET, crate::manifests::DATABASE_CONTAINER)
        .await?
        .unwrap_or_else(|| "mysql:8.4".to_string());
    let manifests = ManifestSettings {
        image,
        replicas: None,
        dir: None,
        parallel: false,
    };
    let report = super::up::run(settings, &manifests, runner).await?;
    if report.verdict == Verdict::Broken {
        return Err(anyhow::anyhow!(
            "`lab up` could not repair the lab in namespace {namespace} ({}): the exercise record is kept; see \
             `lab status`, then run `lab exercise reset` again",
            super::list::reasons_line(&report)
        ));
    }
    cluster.delete_config_map(namespace, RECORD).await?;
    Ok(match &record {
        Some(record) => format!(
            "exercise {} reset in namespace {namespace}: the lab is {}\n",
            record.exercise, report.verdict
        ),
        None => format!(
            "no exercise was active in namespace {namespace}; the lab is {}\n",
            report.verdict
        ),
    })
}

/// What Ctrl-C during an exercise command says: `lab exercise reset` repairs whatever was left half-done.
pub const INTERRUPTED: &str =
    "interrupted: the lab may be left part-way through a change; run `lab exercise reset` (or `lab up`) to repair it";

/// The active exercise's record in `namespace`, for `lab list`; `None` when there is none.
pub async fn record(cluster: &Cluster, namespace: &str) -> anyhow::Result<Option<Record>> {
    read_record(cluster, namespace).await
}

#[cfg(test)]
mod tests;
