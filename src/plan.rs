//! Runs the tutorial as an ordered plan of steps. Every step checks before it acts and says whether it changed
//! anything, so a second `lab up` on a healthy lab changes nothing and a run after a failure resumes.

use std::future::Future;
use std::time::{Duration, Instant};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step changed something.
    Done,
    /// The step found its work already done and changed nothing.
    Unchanged,
    /// A check that passed (validation, read-only test).
    Passed,
    /// The step failed; the run stops here.
    Failed,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Unchanged => "unchanged",
            StepOutcome::Passed => "passed",
            StepOutcome::Failed => "failed",
        }
    }
}

/// Receives progress events. The runner never knows how they are shown.
pub trait Reporter: Send + Sync {
    fn step_started(&self, title: &str);
    fn step_progress(&self, title: &str, detail: &str);
    fn step_finished(&self, title: &str, outcome: StepOutcome, detail: &str, elapsed: Duration);
    fn note(&self, text: &str);
}

/// What a step returns: its outcome, a one-line detail for people, and a value for later steps.
pub struct Step<T> {
    pub outcome: StepOutcome,
    pub detail: String,
    pub value: T,
}

impl<T> Step<T> {
    pub fn done(detail: impl Into<String>, value: T) -> Self {
        Step {
            outcome: StepOutcome::Done,
            detail: detail.into(),
            value,
        }
    }
    pub fn unchanged(detail: impl Into<String>, value: T) -> Self {
        Step {
            outcome: StepOutcome::Unchanged,
            detail: detail.into(),
            value,
        }
    }
    pub fn passed(detail: impl Into<String>, value: T) -> Self {
        Step {
            outcome: StepOutcome::Passed,
            detail: detail.into(),
            value,
        }
    }
    /// A check that failed but produced a result worth reporting; the run goes on to the report.
    pub fn failed(detail: impl Into<String>, value: T) -> Self {
        Step {
            outcome: StepOutcome::Failed,
            detail: detail.into(),
            value,
        }
    }
    /// `Done` if anything changed, else `Unchanged`.
    pub fn changed_if(changed: bool, detail: impl Into<String>, value: T) -> Self {
        if changed {
            Self::done(detail, value)
        } else {
            Self::unchanged(detail, value)
        }
    }
}

/// A finished step, kept for the report.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub name: String,
    pub outcome: StepOutcome,
    pub detail: String,
    pub duration: Duration,
}

/// Runs steps in order, reports them and records them.
pub struct Runner<'a> {
    reporter: &'a dyn Reporter,
    records: Vec<StepRecord>,
}

impl<'a> Runner<'a> {
    pub fn new(reporter: &'a dyn Reporter) -> Self {
        Runner {
            reporter,
            records: Vec::new(),
        }
    }

    pub fn reporter(&self) -> &'a dyn Reporter {
        self.reporter
    }

    /// Runs one step. A failed step is recorded and reported before its error is returned.
    pub async fn run<T, F>(&mut self, name: &str, step: F) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<Step<T>>>,
    {
        crate::interrupt::checkpoint(&format!("before {name}")).await;
        self.reporter.step_started(name);
        let started = Instant::now();
        let result = step.await;
        let duration = started.elapsed();
        let (outcome, detail) = match &result {
            Ok(step) => (step.outcome, step.detail.clone()),
            Err(error) => (StepOutcome::Failed, first_line(&format!("{error:#}"))),
        };
        self.reporter.step_finished(name, outcome, &detail, duration);
        self.records.push(StepRecord {
            name: name.to_string(),
            outcome,
            detail,
            duration,
        });
        let value = result?.value;
        crate::interrupt::checkpoint(&format!("after {name}")).await;
        Ok(value)
    }

    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    pub fn into_records(self) -> Vec<StepRecord> {
        self.records
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every event, for tests.
    #[derive(Default)]
    pub(crate) struct RecordingReporter {
        pub events: Mutex<Vec<String>>,
    }

    impl Reporter for RecordingReporter {
        fn step_started(&self, title: &str) {
            self.events.lock().unwrap().push(format!("start {title}"));
        }
        fn step_progress(&self, title: &str, detail: &str) {
            self.events.lock().unwrap().push(format!("progress {title}: {detail}"));
        }
        fn step_finished(&self, title: &str, outcome: StepOutcome, detail: &str, _: Duration) {
            self.events
                .lock()
                .unwrap()
                .push(format!("finish {title} {} {detail}", outcome.as_str()));
        }
        fn note(&self, text: &str) {
            self.events.lock().unwrap().push(format!("note {text}"));
        }
    }

    #[tokio::test]
    async fn steps_are_reported_and_recorded_in_order_and_a_failure_stops_with_its_message() {
        let reporter = RecordingReporter::default();
        let mut runner = Runner::new(&reporter);
        let n = runner
            .run("first", async { Ok(Step::done("made it", 7)) })
            .await
            .unwrap();
        assert_eq!(n, 7);
        runner
            .run("second", async { Ok(Step::unchanged("already there", ())) })
            .await
            .unwrap();
        let err = runner
            .run("third", async { Err::<Step<()>, _>(anyhow::anyhow!("boom\nmore")) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "boom\nmore");
        assert_eq!(
            *reporter.events.lock().unwrap(),
            vec![
                "start first",
                "finish first done made it",
                "start second",
                "finish second unchanged already there",
                "start third",
                "finish third failed boom",
            ]
        );
        let outcomes: Vec<_> = runner.records().iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![StepOutcome::Done, StepOutcome::Unchanged, StepOutcome::Failed]
        );
    }
}
