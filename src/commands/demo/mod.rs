//! `lab demo`: the tutorial's behaviours shown live on a running lab, for a class.
//!
//! A demo checks the lab first (the report `lab status` builds: the checks of `lab verify` without its write/read
//! round trip), then runs narrated steps. Each step says what it does, why, the commands a student would type
//! (passwords as `******`), and what was observed, with times. It ends by putting back what it changed and proving
//! the lab with the checks of `lab verify`.
//!
//! Where the narration goes: it is progress (it runs alongside the waits and tells what is happening now), so it
//! goes to stderr like every other command's progress; stdout carries only the result (a summary for people, or
//! one JSON object with `-o json`), so `lab demo lag -o json | jq` works while the class reads the terminal.
//!
//! The decisions (did an observation match, the JSON shape, the timeline) are pure and unit-tested here and in
//! each demo's module; the adapters do the rest.

pub(crate) mod dns;
mod identity;
mod lag;
mod mistakes;
mod routing;
mod scale;
mod storage;

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Accounts, ROLE_LABEL, STATEFULSET, Session, connect_cluster, find_lab, pod_name};
use crate::cluster::Cluster;
use crate::database::Flavor;
use crate::exit::{ExitStatus, UsageError};
use crate::plan::Runner;
use crate::report::{HealthReport, Problem, Verdict, reasons};
use crate::settings::Settings;

/// Version of the demo JSON shape; bumped when it changes incompatibly.
pub const DEMO_SCHEMA_VERSION: u32 = 1;

/// One demo: its name on the command line, the tutorial section it shows, and what a student learns.
pub struct DemoInfo {
    pub name: &'static str,
    pub section: &'static str,
    pub purpose: &'static str,
}

pub const DEMOS: &[DemoInfo] = &[
    DemoInfo {
        name: "identity",
        section: "6A",
        purpose: "delete a pod: it comes back with the same name and claim, a new uid, and its data; replication \
                  resumes by itself",
    },
    DemoInfo {
        name: "storage",
        section: "6B",
        purpose: "scale down: the pod goes, its claim stays Bound; scale back: the old data returns and catches up",
    },
    DemoInfo {
        name: "scale",
        section: "8",
        purpose: "add a replica (configured from the recorded binlog origin, joins mysql-replicas), then remove it",
    },
    DemoInfo {
        name: "lag",
        section: "7",
        purpose: "replication lag: a write burst, a stopped SQL thread, the verdict it earns, and the catch-up",
    },
    DemoInfo {
        name: "mistakes",
        section: "6D",
        purpose: "common mistakes made on purpose and undone: the socket instead of TCP (2002), the replication \
                  auth mistake (MySQL 2061), a duplicate server id (1593 / 13117)",
    },
    DemoInfo {
        name: "dns",
        section: "6C",
        purpose: "DNS identity: per-pod names answer each pod's address, the headless Service every pod, \
                  mysql-primary one virtual address; a re-created pod's name follows its new address",
    },
    DemoInfo {
        name: "routing",
        section: "3, 7",
        purpose: "Services: mysql-primary reaches only the primary, mysql-replicas only replicas; the tutorial's \
                  app: mysql selector lets the primary answer \"replica\" reads",
    },
];

/// `lab demo list`: one line per demo.
pub fn list() -> String {
    let width = DEMOS.iter().map(|d| d.name.len()).max().unwrap_or(0);
    DEMOS
        .iter()
        .map(|d| format!("{:width$}  (section {:>2})  {}\n", d.name, d.section, d.purpose))
        .collect()
}

/// `lab demo list -o json`: `[{"name", "section", "purpose"}]`.
pub fn list_json() -> serde_json::Value {
    DEMOS
        .iter()
        .map(|d| serde_json::json!({"name": d.name, "section": d.section, "purpose": d.purpose}))
        .collect()
}

/// The demo called `name`, or a usage error listing the ones there are.
pub fn find(name: &str) -> Result<&'static DemoInfo, UsageError> {
    DEMOS.iter().find(|d| d.name == name).ok_or_else(|| {
        UsageError::new(format!(
            "no demo called {name:?}; demos: {} (`lab demo list` describes them)",
            DEMOS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Something the demo measured, what the tutorial says it should be, and whether it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub what: String,
    pub expected: String,
    pub observed: String,
    /// The number measured, when there is one (seconds, bytes, a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub matched: bool,
    /// Milliseconds since the demo started.
    pub at_ms: u64,
}

/// One narrated step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoStep {
    pub title: String,
    pub why: String,
    /// What a student would type to do the same by hand (passwords as `******`).
    pub commands: Vec<String>,
    pub observations: Vec<Observation>,
    pub notes: Vec<String>,
    pub started_ms: u64,
    pub duration_ms: u64,
}

/// One sample of a timeline (the lag demo).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    pub phase: String,
    /// Seconds_Behind_Master; `None` while the SQL thread is stopped.
    pub seconds_behind: Option<u64>,
    /// Bytes of the primary's binlog the replica has not applied yet.
    pub gap_bytes: u64,
}

/// The whole demo, as `-o json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoReport {
    pub schema_version: u32,
    pub demo: String,
    pub namespace: String,
    /// Every observation matched what the demo teaches.
    pub ok: bool,
    pub duration_ms: u64,
    /// The lab's verdict before the demo (HEALTHY or DEGRADED) and after it (from the checks of `lab verify`).
    pub verdict_before: Verdict,
    pub verdict: Verdict,
    pub steps: Vec<DemoStep>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Sample>,
    /// What the final checks found wrong, with fixes.
    pub problems: Vec<Problem>,
}

impl DemoReport {
    /// Exit 0 only when every observation matched and the lab was proven as well as the demo found it.
    pub fn exit_status(&self) -> ExitStatus {
        if self.ok && left_as_found(self.verdict_before, self.verdict) {
            ExitStatus::Success
        } else {
            ExitStatus::Unhealthy
        }
    }
}

/// What a demo has done so far, kept outside the demo's future: Ctrl-C drops that future where it stands, and
/// `-o json` must still print the steps run until then (see [`failure_report`]).
#[derive(Debug, Clone, Default)]
struct Partial {
    verdict_before: Option<Verdict>,
    steps: Vec<DemoStep>,
    started: Option<std::time::Instant>,
}

static PARTIAL: std::sync::Mutex<Option<Partial>> = std::sync::Mutex::new(None);

fn record(update: impl FnOnce(&mut Partial)) {
    if let Ok(mut partial) = PARTIAL.lock() {
        update(partial.get_or_insert_with(Partial::default));
    }
}

/// The report of a demo that stopped with an error (a lab it refused, a failure, Ctrl-C): the steps run so far,
/// verdict BROKEN (nothing was proven), and the error as a problem whose subject is the step it stopped in. With
/// `-o json` it is printed like a finished demo's, so that scripts always get one JSON object. `verdict_before` is
/// the lab's verdict when the demo checked it, BROKEN when it could not.
pub fn failure_report(namespace: &str, demo: &str, error: &anyhow::Error, status: ExitStatus) -> DemoReport {
    let partial = PARTIAL
        .lock()
        .map(|p| p.clone().unwrap_or_default())
        .unwrap_or_default();
    report_of_failure(partial, namespace, demo, error, status)
}

/// Pure: [`failure_report`] from what the demo did so far.
fn report_of_failure(
    partial: Partial,
    namespace: &str,
    demo: &str,
    error: &anyhow::Error,
    status: ExitStatus,
) -> DemoReport {
    let subject = partial
        .steps
        .last()
        .map_or_else(|| format!("demo {demo}"), |step| step.title.clone());
    let fix = match status {
        ExitStatus::Usage => "correct what the message names (a lab that is not working: run `lab up`), then run the                               demo again"
            .to_string(),
        ExitStatus::Interrupted => format!(
            "run `{}` to repair what the demo left, then `lab verify`",
            repair_command()
        ),
        _ => "run `lab up` (it repairs what the demo left), then `lab verify`".to_string(),
    };
    let duration_ms = partial.started.map_or(0, |started| millis(started.elapsed()));
    DemoReport {
        schema_version: DEMO_SCHEMA_VERSION,
        demo: demo.to_string(),
        namespace: namespace.to_string(),
        ok: false,
        duration_ms,
        verdict_before: partial.verdict_before.unwrap_or(Verdict::Broken),
        verdict: Verdict::Broken,
        steps: partial.steps,
        timeline: Vec::new(),
        problems: vec![Problem {
            subject,
            severity: crate::report::Severity::Error,
            cause: format!("{error:#}"),
            fix,
        }],
    }
}

/// Pure: the lab ends HEALTHY, or no worse than the demo found it (a DEGRADED lab, say with restarted pods, is
/// accepted and cannot be made HEALTHY by a demo).
pub fn left_as_found(before: Verdict, after: Verdict) -> bool {
    after == Verdict::Healthy || (after != Verdict::Broken && after <= before)
}

/// Pure: whether every observation of every step matched.
pub fn all_matched(steps: &[DemoStep]) -> bool {
    steps.iter().flat_map(|s| &s.observations).all(|o| o.matched)
}

/// Collects the steps and narrates them on stderr as they happen.
pub struct Narrator {
    demo: &'static str,
    started: Instant,
    pause: bool,
    steps: Vec<DemoStep>,
    step_started: Instant,
    pub timeline: Vec<Sample>,
}

impl Narrator {
    pub fn new(demo: &'static str, pause: bool) -> Self {
        Narrator {
            demo,
            started: Instant::now(),
            pause,
            steps: Vec::new(),
            step_started: Instant::now(),
            timeline: Vec::new(),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }

    /// Starts a step: prints its title, why, and the commands; waits for Enter with `--pause` on a terminal. A
    /// named interruption point (`LAB_INTERRUPT_AT=demo <name>: <title>`) for the tests.
    pub async fn step(&mut self, title: &str, why: &str, commands: &[String]) {
        self.close_step();
        if self.pause && !self.steps.is_empty() {
            crate::output::pause_for_enter("press Enter for the next step");
        }
        crate::interrupt::checkpoint(&format!("demo {}: {title}", self.demo)).await;
        let number = self.steps.len() + 1;
        let mut text = format!("\n── {number}. {title}\n   why: {why}\n");
        for command in commands {
            text.push_str(&format!("   $ {command}\n"));
        }
        crate::output::narrate(text.trim_end());
        self.step_started = Instant::now();
        self.steps.push(DemoStep {
            title: title.to_string(),
            why: why.to_string(),
            commands: commands.to_vec(),
            observations: Vec::new(),
            notes: Vec::new(),
            started_ms: self.elapsed_ms(),
            duration_ms: 0,
        });
        self.mirror();
    }

    /// Copies the steps so far where a failed or interrupted demo's report finds them.
    fn mirror(&self) {
        let mut steps = self.steps.clone();
        if let Some(step) = steps.last_mut() {
            step.duration_ms = millis(self.step_started.elapsed());
        }
        record(|partial| partial.steps = steps);
    }

    /// Records and prints what was seen. `value`: the number behind it, with its unit.
    pub fn observe(
        &mut self,
        what: &str,
        expected: &str,
        observed: String,
        value: Option<(f64, &str)>,
        matched: bool,
    ) -> bool {
        let at_ms = self.elapsed_ms();
        let mark = if matched { "✓" } else { "✗" };
        let mut line = format!("   {mark} {what}: {observed}");
        if !matched {
            line.push_str(&format!(" (expected: {expected})"));
        }
        line.push_str(&format!(
            "  [t+{}]",
            crate::output::format_duration(Duration::from_millis(at_ms))
        ));
        crate::output::narrate(&line);
        let observation = Observation {
            what: what.to_string(),
            expected: expected.to_string(),
            observed,
            value: value.map(|(v, _)| v),
            unit: value.map(|(_, u)| u.to_string()),
            matched,
            at_ms,
        };
        match self.steps.last_mut() {
            Some(step) => step.observations.push(observation),
            None => unreachable!("observations are made inside steps"),
        }
        self.mirror();
        matched
    }

    /// A timed phase: prints and records how long it took (always matches: it is a measurement).
    pub fn timed(&mut self, what: &str, took: Duration) {
        self.observe(
            what,
            "measured",
            crate::output::format_duration(took),
            Some((took.as_secs_f64(), "s")),
            true,
        );
    }

    pub fn note(&mut self, text: &str) {
        crate::output::narrate(&format!("   · {text}"));
        if let Some(step) = self.steps.last_mut() {
            step.notes.push(text.to_string());
        }
        self.mirror();
    }

    fn close_step(&mut self) {
        let took = millis(self.step_started.elapsed());
        if let Some(step) = self.steps.last_mut() {
            step.duration_ms = took;
        }
    }

    pub fn finish(mut self) -> (Vec<DemoStep>, Vec<Sample>, u64) {
        self.close_step();
        let duration = self.elapsed_ms();
        (self.steps, self.timeline, duration)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What every demo works with: the cluster, the lab's size and accounts, the client a student would use.
pub struct Lab<'a> {
    pub cluster: Cluster,
    pub namespace: &'a str,
    pub pods: u32,
    pub accounts: Accounts,
    pub flavor: Flavor,
    pub deadline: Instant,
}

impl Lab<'_> {
    pub async fn session(&self, pod: &str) -> anyhow::Result<Session> {
        Session::open(&self.cluster, self.namespace, pod, &self.accounts.root, self.deadline).await
    }

    /// The command-line client of the servers' flavour (MariaDB 11 images no longer ship `mysql`).
    pub fn client(&self) -> &'static str {
        match self.flavor {
            Flavor::MySql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }

    /// `kubectl -n NS ARGS`.
    pub fn kubectl(&self, args: &str) -> String {
        format!("kubectl -n {} {args}", self.namespace)
    }

    /// SQL as a student runs it in the pod, over TCP, with the password hidden.
    pub fn sql(&self, pod: &str, sql: &str) -> String {
        self.kubectl(&format!(
            "exec {pod} -- {} -h127.0.0.1 -uroot -p****** -e \"{sql}\"",
            self.client()
        ))
    }

    /// Puts back the role labels lab sets (the StatefulSet re-creates pods without them), as `lab up` does.
    pub async fn restore_role_labels(&self) -> anyhow::Result<Vec<String>> {
        let mut restored = Vec::new();
        for ordinal in 0..self.pods {
            let pod = pod_name(ordinal);
            let role = if ordinal == 0 { "primary" } else { "replica" };
            if self
                .cluster
                .set_pod_label(self.namespace, &pod, ROLE_LABEL, role)
                .await?
            {
                restored.push(format!("{pod}={role}"));
            }
        }
        Ok(restored)
    }
}

/// The command that repairs what an interrupted demo left: `lab up`, or `lab up --replicas N` once the demo has
/// scaled the StatefulSet (a plain `lab up` keeps the size it finds).
static REPAIR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub fn repair_command() -> String {
    REPAIR
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default()
        .unwrap_or_else(|| "lab up".to_string())
}

/// Called before a demo makes a change a plain `lab up` does not undo: an interruption then names `command`.
pub fn repair_on_interrupt(command: String) {
    if let Ok(mut repair) = REPAIR.lock() {
        *repair = Some(command);
    }
}

/// The change is undone: an interruption names `lab up` again.
pub fn clear_repair_on_interrupt() {
    if let Ok(mut repair) = REPAIR.lock() {
        *repair = None;
    }
}

/// Called before a demo scales the lab away from `pods`: an interruption then names `lab up --replicas <pods>`.
pub fn restore_size_on_interrupt(pods: u32) {
    repair_on_interrupt(format!("lab up --replicas {pods}"));
}

/// A unique row marker for a demo (fits the validation table's 64 characters).
pub fn demo_marker(demo: &str, what: &str) -> String {
    format!("demo-{demo}-{what}-{}", jiff::Timestamp::now().as_millisecond())
}

/// Pure: whether a lab may run a demo. Returns the refusal for one that is BROKEN.
pub fn check_lab_ready(namespace: &str, report: &HealthReport) -> Result<(), UsageError> {
    if report.verdict != Verdict::Broken {
        return Ok(());
    }
    let why: Vec<String> = reasons(report).into_iter().map(|r| r.text).take(3).collect();
    Err(UsageError::new(format!(
        "the lab in namespace {namespace} is BROKEN ({}): a demo needs a working lab; run `lab up` first",
        why.join("; ")
    )))
}

/// Runs one demo and returns its report. The lab is checked first, proven at the end.
pub async fn run(settings: &Settings, name: &str, pause: bool, runner: &mut Runner<'_>) -> anyhow::Result<DemoReport> {
    let info = find(name)?;
    record(|partial| partial.started = Some(std::time::Instant::now()));
    let namespace = settings.namespace.as_str();
    let before = super::status::run(settings, runner).await?;
    record(|partial| partial.verdict_before = Some(before.verdict));
    check_lab_ready(namespace, &before)?;
    let cluster = connect_cluster(settings).await?;
    let (pods, accounts) = find_lab(&cluster, namespace).await?;
    let flavor = before.servers.first().map_or(Flavor::MariaDb, |s| match s.flavor {
        crate::report::ServerFlavor::Mysql => Flavor::MySql,
        crate::report::ServerFlavor::Mariadb => Flavor::MariaDb,
    });
    let lab = Lab {
        cluster,
        namespace,
        pods,
        accounts,
        flavor,
        deadline: Instant::now() + settings.timeout,
    };
    crate::output::narrate(&format!(
        "demo {} (tutorial section {}): {}\nlab in namespace {namespace}: {}, {pods} pods",
        info.name, info.section, info.purpose, before.verdict
    ));
    let mut narrator = Narrator::new(info.name, pause);
    match info.name {
        "identity" => identity::run(&lab, &mut narrator).await?,
        "storage" => storage::run(&lab, &mut narrator).await?,
        "scale" => scale::run(settings, &lab, &mut narrator, runner).await?,
        "lag" => lag::run(&lab, &mut narrator).await?,
        "mistakes" => mistakes::run(&lab, &mut narrator).await?,
        "routing" => routing::run(&lab, &mut narrator).await?,
        "dns" => dns::run(&lab, &mut narrator).await?,
        other => unreachable!("{other} is listed in DEMOS"),
    }
    narrator
        .step(
            "prove the lab healthy again",
            "a demo leaves the lab as it found it: the role labels lab sets are put back, then the checks of \
             `lab verify` run (a fresh write on the primary read back on every replica, the read-only test)",
            &[
                lab.kubectl("label pod mysql-0 lab.dev/role=primary --overwrite"),
                "lab verify".to_string(),
            ],
        )
        .await;
    let restored = lab.restore_role_labels().await?;
    if !restored.is_empty() {
        narrator.note(&format!("role labels put back: {}", restored.join(", ")));
    }
    let after = super::verify::run(settings, runner).await?;
    narrator.observe(
        "lab verify after the demo",
        &format!("HEALTHY (or {} as before the demo)", before.verdict),
        after.verdict.to_string(),
        None,
        left_as_found(before.verdict, after.verdict),
    );
    let (steps, timeline, duration_ms) = narrator.finish();
    Ok(DemoReport {
        schema_version: DEMO_SCHEMA_VERSION,
        demo: info.name.to_string(),
        namespace: namespace.to_string(),
        ok: all_matched(&steps),
        duration_ms,
        verdict_before: before.verdict,
        verdict: after.verdict,
        steps,
        timeline,
        problems: after.problems,
    })
}

/// The summary on stdout for people: every observation with its mark, then the outcome.
pub fn render_summary(report: &DemoReport) -> String {
    let mut out = format!("demo {} in namespace {}\n", report.demo, report.namespace);
    for (n, step) in report.steps.iter().enumerate() {
        out.push_str(&format!(
            "{}. {} ({})\n",
            n + 1,
            step.title,
            crate::output::format_duration(Duration::from_millis(step.duration_ms))
        ));
        for o in &step.observations {
            let mark = if o.matched { "✓" } else { "✗" };
            out.push_str(&format!("   {mark} {}: {}\n", o.what, o.observed));
        }
    }
    if !report.timeline.is_empty() {
        out.push_str(&lag::render_timeline(&report.timeline));
    }
    let matched = report
        .steps
        .iter()
        .flat_map(|s| &s.observations)
        .filter(|o| o.matched)
        .count();
    let total = report.steps.iter().flat_map(|s| &s.observations).count();
    out.push_str(&format!(
        "{matched}/{total} observations as the tutorial teaches; lab {} after the demo ({})\n",
        report.verdict,
        crate::output::format_duration(Duration::from_millis(report.duration_ms))
    ));
    for problem in &report.problems {
        out.push_str(&format!(
            "problem: {}: {} (fix: {})\n",
            problem.subject, problem.cause, problem.fix
        ));
    }
    out
}

/// The StatefulSet's name, for the commands shown.
pub fn statefulset() -> &'static str {
    STATEFULSET
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(matched: bool) -> Observation {
        Observation {
            what: "w".into(),
            expected: "e".into(),
            observed: "o".into(),
            value: Some(1.5),
            unit: Some("s".into()),
            matched,
            at_ms: 10,
        }
    }

    fn step(observations: Vec<Observation>) -> DemoStep {
        DemoStep {
            title: "t".into(),
            why: "y".into(),
            commands: vec!["kubectl -n database delete pod mysql-0".into()],
            observations,
            notes: vec![],
            started_ms: 0,
            duration_ms: 5,
        }
    }

    fn report(ok: bool, verdict: Verdict) -> DemoReport {
        DemoReport {
            schema_version: DEMO_SCHEMA_VERSION,
            demo: "identity".into(),
            namespace: "database".into(),
            ok,
            duration_ms: 1234,
            verdict_before: Verdict::Healthy,
            verdict,
            steps: vec![step(vec![observation(ok)])],
            timeline: vec![],
            problems: vec![],
        }
    }

    #[test]
    fn the_list_has_one_line_per_demo_and_unknown_names_list_the_demos() {
        assert_eq!(list().lines().count(), DEMOS.len());
        assert!(list().lines().next().unwrap().starts_with("identity  (section 6A)"));
        let error = find("dns-nope").err().unwrap().to_string();
        assert!(
            error.starts_with("no demo called \"dns-nope\"; demos: identity, storage"),
            "{error}"
        );
        assert_eq!(find("lag").unwrap().section, "7");
        assert_eq!(list_json()[4]["name"], "mistakes");
        assert_eq!(list_json().as_array().unwrap().len(), DEMOS.len());
    }

    #[test]
    fn exit_0_only_when_every_observation_matched_and_the_lab_ends_healthy() {
        assert!(all_matched(&[step(vec![observation(true), observation(true)])]));
        assert!(!all_matched(&[
            step(vec![observation(true)]),
            step(vec![observation(false)])
        ]));
        assert_eq!(report(true, Verdict::Healthy).exit_status(), ExitStatus::Success);
        assert_eq!(report(false, Verdict::Healthy).exit_status(), ExitStatus::Unhealthy);
        assert_eq!(report(true, Verdict::Degraded).exit_status(), ExitStatus::Unhealthy);
        // A lab DEGRADED before the demo (restarted pods, say) may stay so, never get worse.
        assert!(left_as_found(Verdict::Degraded, Verdict::Degraded));
        assert!(left_as_found(Verdict::Degraded, Verdict::Healthy));
        assert!(!left_as_found(Verdict::Healthy, Verdict::Degraded));
        assert!(!left_as_found(Verdict::Broken, Verdict::Broken));
    }

    #[test]
    fn the_json_shape_has_steps_observations_numbers_duration_and_verdict() {
        let json = serde_json::to_value(report(true, Verdict::Healthy)).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["demo"], "identity");
        assert_eq!(json["verdict"], "HEALTHY");
        assert_eq!(json["verdict_before"], "HEALTHY");
        assert_eq!(json["duration_ms"], 1234);
        let o = &json["steps"][0]["observations"][0];
        assert_eq!(
            (o["value"].as_f64(), o["unit"].as_str(), o["matched"].as_bool()),
            (Some(1.5), Some("s"), Some(true))
        );
        assert!(
            json.get("timeline").is_none(),
            "no timeline unless the demo samples one"
        );
    }

    #[test]
    fn the_summary_lists_observations_the_timeline_and_the_outcome() {
        let mut r = report(true, Verdict::Healthy);
        r.timeline.push(Sample {
            at_ms: 100,
            phase: "stopped".into(),
            seconds_behind: None,
            gap_bytes: 10,
        });
        let text = render_summary(&r);
        assert!(text.contains("1. t (5ms)\n   ✓ w: o\n"), "{text}");
        assert!(
            text.contains("timeline (gap = primary position - applied position)"),
            "{text}"
        );
        assert!(
            text.ends_with("1/1 observations as the tutorial teaches; lab HEALTHY after the demo (1.2s)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_demo_that_stops_with_an_error_reports_its_steps_so_far_verdict_broken_and_the_error() {
        let error = anyhow::anyhow!("the lab in namespace database is BROKEN (mysql-1: IO thread No)");
        let refused = report_of_failure(
            Partial {
                verdict_before: Some(Verdict::Broken),
                ..Partial::default()
            },
            "database",
            "storage",
            &error,
            ExitStatus::Usage,
        );
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(
            (json["ok"].as_bool(), json["verdict"].as_str()),
            (Some(false), Some("BROKEN"))
        );
        assert_eq!(json["verdict_before"], "BROKEN");
        assert_eq!(json["steps"], serde_json::json!([]));
        assert_eq!(json["problems"][0]["subject"], "demo storage");
        assert_eq!(json["problems"][0]["severity"], "error");
        assert!(json["problems"][0]["cause"].as_str().unwrap().contains("is BROKEN"));
        assert_eq!(refused.exit_status(), ExitStatus::Unhealthy);
        // Interrupted in a step: the steps so far, the step as the subject, the repair command as the fix.
        let interrupted = report_of_failure(
            Partial {
                verdict_before: Some(Verdict::Healthy),
                steps: vec![step(vec![observation(true)])],
                started: Some(std::time::Instant::now()),
            },
            "database",
            "identity",
            &anyhow::anyhow!("interrupted"),
            ExitStatus::Interrupted,
        );
        assert_eq!(interrupted.verdict_before, Verdict::Healthy);
        assert_eq!(interrupted.steps.len(), 1);
        assert_eq!(interrupted.problems[0].subject, "t");
        assert!(
            interrupted.problems[0].fix.starts_with("run `lab up"),
            "{:?}",
            interrupted.problems
        );
        // Never checked (the cluster did not answer): nothing was proven.
        let unchecked = report_of_failure(
            Partial::default(),
            "database",
            "dns",
            &anyhow::anyhow!("cannot reach the cluster"),
            ExitStatus::Unreachable,
        );
        assert_eq!(unchecked.verdict_before, Verdict::Broken);
    }

    #[test]
    fn a_broken_lab_is_refused_with_the_reason_and_run_lab_up() {
        let mut broken = HealthReport::new("database", jiff::Timestamp::now());
        broken.finalize();
        let error = check_lab_ready("database", &broken).unwrap_err().to_string();
        assert!(
            error.starts_with("the lab in namespace database is BROKEN (no pods in namespace database)"),
            "{error}"
        );
        assert!(error.ends_with("run `lab up` first"), "{error}");
    }
}
