//! The report as JUnit XML (`-o junit`), for CI pipelines and grading: one testsuite per lab, one testcase per
//! check, a failure message that states the symptom. Pure.
//!
//! The mapping, in report order: each step `lab` ran; each pod Ready; each claim Bound; unique server identities;
//! each replica's replication and its lag; each Service's routing; the validation round trip; each read-only test;
//! and one testcase per remaining problem. A DEGRADED reason fails its testcase too: `lab verify` passes only a
//! HEALTHY lab. The checklist teaches and never fails a grade: it is left out.

use std::fmt::Write as _;

use super::verdict::{LAG_TOLERANCE_SECONDS, identity_problems};
use super::{HealthReport, Severity, StepStatus, WriteOutcome};

/// One check: its name, and the symptom when it failed.
struct Case {
    name: String,
    failure: Option<String>,
    seconds: f64,
}

impl Case {
    fn new(name: impl Into<String>, failure: Option<String>) -> Case {
        Case {
            name: name.into(),
            failure,
            seconds: 0.0,
        }
    }
}

/// `report` as a JUnit document: one `<testsuite>` named after the command and the namespace, in `<testsuites>`.
pub fn render_junit(report: &HealthReport, command: &str) -> String {
    let suite = Suite::of(report, command);
    document(&format!("lab {command} {}", report.namespace), &[suite])
}

/// Several reports (`--all-namespaces`) as one JUnit document: one `<testsuite>` per report, in `<testsuites>`.
pub fn render_junit_all(reports: &[HealthReport], command: &str) -> String {
    let suites: Vec<Suite> = reports.iter().map(|r| Suite::of(r, command)).collect();
    document(&format!("lab {command} --all-namespaces"), &suites)
}

/// One rendered `<testsuite>` and the counts its `<testsuites>` adds up.
struct Suite {
    xml: String,
    tests: usize,
    failures: usize,
    seconds: f64,
}

impl Suite {
    fn of(report: &HealthReport, command: &str) -> Suite {
        Suite::from_cases(
            &format!("lab {command} {}", report.namespace),
            &report.namespace,
            &report.generated_at,
            &[("verdict".to_string(), report.verdict.to_string())],
            &cases(report),
        )
    }

    fn from_cases(
        suite: &str,
        namespace: &str,
        generated_at: &str,
        properties: &[(String, String)],
        cases: &[Case],
    ) -> Suite {
        let failures = cases.iter().filter(|c| c.failure.is_some()).count();
        let total: f64 = cases.iter().map(|c| c.seconds).sum();
        let classname = format!("lab.{namespace}");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\" \
             timestamp=\"{}\">",
            escape(suite),
            cases.len(),
            escape(generated_at.trim_end_matches('Z').split('.').next().unwrap_or_default())
        );
        out.push_str("    <properties>\n");
        for (name, value) in properties {
            let _ = writeln!(
                out,
                "      <property name=\"{}\" value=\"{}\"/>",
                escape(name),
                escape(value)
            );
        }
        out.push_str("    </properties>\n");
        for case in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&classname),
                escape(&case.name),
                case.seconds
            );
            match &case.failure {
                None => out.push_str("/>\n"),
                Some(symptom) => {
                    let first = symptom.lines().next().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"failure\">{}</failure>\n    </testcase>",
                        escape(first),
                        escape(symptom)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
        Suite {
            xml: out,
            tests: cases.len(),
            failures,
            seconds: total,
        }
    }
}

/// One check of a report as a testcase: its name, and its failure message when it failed (for commands that grade
/// more than the report: `lab exercise check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Testcase {
    pub name: String,
    pub failure: Option<String>,
}

/// The testcases `-o junit` renders for `report`, in order.
pub fn testcases(report: &HealthReport) -> Vec<Testcase> {
    cases(report)
        .into_iter()
        .map(|c| Testcase {
            name: c.name,
            failure: c.failure,
        })
        .collect()
}

/// One `<testsuite>` built by the caller: its name, the namespace (the testcases' class), when, its properties.
pub struct TestSuite {
    pub name: String,
    pub namespace: String,
    pub generated_at: String,
    pub properties: Vec<(String, String)>,
    pub cases: Vec<Testcase>,
}

/// `suites` as one JUnit document named `name`, rendered as the report's suites are.
pub fn render_suites(name: &str, suites: &[TestSuite]) -> String {
    let rendered: Vec<Suite> = suites
        .iter()
        .map(|s| {
            let cases: Vec<Case> = s
                .cases
                .iter()
                .map(|c| Case::new(c.name.clone(), c.failure.clone()))
                .collect();
            Suite::from_cases(&s.name, &s.namespace, &s.generated_at, &s.properties, &cases)
        })
        .collect();
    document(name, &rendered)
}

/// The `<testsuites>` document around `suites`, with their totals.
fn document(name: &str, suites: &[Suite]) -> String {
    let tests: usize = suites.iter().map(|s| s.tests).sum();
    let failures: usize = suites.iter().map(|s| s.failures).sum();
    let total: f64 = suites.iter().map(|s| s.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">",
        escape(name)
    );
    for suite in suites {
        out.push_str(&suite.xml);
    }
    out.push_str("</testsuites>\n");
    out
}

fn cases(report: &HealthReport) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut covered = Vec::new();
    for step in &report.steps {
        let failure = (step.status == StepStatus::Failed).then(|| step.detail.clone());
        let mut case = Case::new(format!("step: {}", step.name), failure);
        case.seconds = step.duration_ms as f64 / 1000.0;
        cases.push(case);
    }
    for pod in report.pods.iter().filter(|p| !p.leaving) {
        let failure = if pod.phase != "Running" {
            Some(format!("{} is {}", pod.name, pod.phase))
        } else if !pod.ready {
            Some(format!("{} is not ready", pod.name))
        } else {
            None
        };
        cases.push(Case::new(format!("pod {} is Ready", pod.name), failure));
    }
    for pvc in &report.pvcs {
        let failure = (pvc.status != "Bound").then(|| format!("PVC {} is {}", pvc.name, pvc.status));
        cases.push(Case::new(format!("PVC {} is Bound", pvc.name), failure));
    }
    if !report.servers.is_empty() {
        let duplicates: Vec<String> = identity_problems(&report.servers)
            .into_iter()
            .map(|p| p.cause)
            .collect();
        covered.extend(duplicates.iter().cloned());
        let failure = (!duplicates.is_empty()).then(|| duplicates.join("\n"));
        cases.push(Case::new("every server has its own server_id and server_uuid", failure));
    }
    for replica in &report.replicas {
        let mut symptoms = Vec::new();
        for (thread, state, error) in [
            ("IO", &replica.io_thread, &replica.last_io_error),
            ("SQL", &replica.sql_thread, &replica.last_sql_error),
        ] {
            if state != "Yes" {
                let why = error
                    .as_ref()
                    .map(|e| format!(" (error {}: {}; fix: {})", e.errno, e.cause, e.fix))
                    .unwrap_or_default();
                symptoms.push(format!("{}: {thread} thread is {state}{why}", replica.pod));
            }
        }
        let failure = (!symptoms.is_empty()).then(|| symptoms.join("\n"));
        cases.push(Case::new(
            format!("{} replicates from the primary", replica.pod),
            failure,
        ));
        let lag = replica
            .seconds_behind
            .filter(|s| *s > LAG_TOLERANCE_SECONDS)
            .map(|s| format!("{} is {s}s behind the primary", replica.pod));
        cases.push(Case::new(
            format!("{} is at most {LAG_TOLERANCE_SECONDS}s behind", replica.pod),
            lag,
        ));
    }
    for service in &report.services {
        let failure = (!service.ok).then(|| {
            format!(
                "Service {} routes to {}, expected {}",
                service.name,
                if service.endpoints.is_empty() {
                    "nothing".to_string()
                } else {
                    service.endpoints.join(", ")
                },
                service.expectation
            )
        });
        cases.push(Case::new(format!("Service {} routes correctly", service.name), failure));
    }
    if let Some(validation) = &report.validation {
        let failure = (!validation.ok).then(|| {
            let missing: Vec<String> = validation
                .missing_on
                .iter()
                .map(|m| format!("{}: {}", m.pod, m.reason))
                .collect();
            format!(
                "a row written on {} was not read back on {}",
                validation.written_on,
                missing.join("; ")
            )
        });
        cases.push(Case::new("a row written on the primary reaches every replica", failure));
    }
    for test in &report.read_only {
        let failure = (!test.ok).then(|| match test.outcome {
            WriteOutcome::Accepted => format!(
                "{} accepted a write from {}: {}",
                test.pod, test.account, test.explanation
            ),
            WriteOutcome::Rejected => format!("{} as {}: {}", test.pod, test.account, test.explanation),
        });
        cases.push(Case::new(
            format!("{} refuses writes from {}", test.pod, test.account),
            failure,
        ));
    }
    // Problems the checks above do not already show (a lost role label, an unreachable database, an error that
    // stopped the command).
    for problem in &report.problems {
        let shown = covered.contains(&problem.cause)
            || cases
                .iter()
                .any(|c| c.failure.as_deref().is_some_and(|f| f.contains(&problem.cause)));
        if shown {
            continue;
        }
        let verdict = match problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        cases.push(Case::new(
            format!("{} ({verdict})", problem.subject),
            Some(format!("{}\nfix: {}", problem.cause, problem.fix)),
        ));
    }
    cases
}

/// XML text and attribute escaping; control characters XML 1.0 cannot hold become spaces.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn a_healthy_lab_is_a_suite_of_passing_cases() {
        let xml = render_junit(&healthy(), "verify");
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"lab verify database\"")
        );
        assert!(xml.contains("failures=\"0\""), "{xml}");
        assert!(!xml.contains("<failure"), "{xml}");
        assert!(
            xml.contains("<testcase classname=\"lab.database\" name=\"step: preflight\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"mysql-1 refuses writes from lab_probe\""), "{xml}");
        assert!(xml.contains("<property name=\"verdict\" value=\"HEALTHY\"/>"), "{xml}");
    }

    #[test]
    fn a_broken_lab_fails_the_cases_with_the_symptoms() {
        let xml = render_junit(&broken(), "verify");
        let failures = xml.matches("<failure ").count();
        assert!(xml.contains(&format!("failures=\"{failures}\"")), "{xml}");
        assert!(failures >= 4, "{xml}");
        assert!(
            xml.contains(
                "<failure message=\"mysql-1: IO thread is No (error 13117: mysql-0 and mysql-1 have the same server_id; \
                 fix: give each pod server-id = ordinal + 1)\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"every server has its own server_id and server_uuid\""),
            "{xml}"
        );
        // Each symptom is stated once: the duplicate server_id problem is the identity testcase's failure.
        assert_eq!(
            xml.matches("both have server_id 1").count(),
            2,
            "message and text of one failure: {xml}"
        );
    }

    #[test]
    fn several_reports_are_one_suite_each_in_one_document_with_the_totals() {
        let mut second = broken();
        second.namespace = "student-2".into();
        let reports = [healthy(), second];
        let xml = render_junit_all(&reports, "verify");
        assert!(
            xml.starts_with(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"lab verify --all-namespaces\""
            ),
            "{xml}"
        );
        assert_eq!(xml.matches("<testsuites ").count(), 1, "{xml}");
        assert_eq!(xml.matches("<testsuite ").count(), 2, "{xml}");
        assert!(xml.contains("<testsuite name=\"lab verify database\""), "{xml}");
        assert!(xml.contains("<testsuite name=\"lab verify student-2\""), "{xml}");
        let tests = xml.matches("<testcase ").count();
        let failures = xml.matches("<failure ").count();
        assert!(
            xml.contains(&format!("tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=")),
            "the document adds up its suites: {xml}"
        );
        // Each suite is exactly what the report alone renders.
        for report in &reports {
            let alone = render_junit(report, "verify");
            let suite = &alone[alone.find("  <testsuite ").unwrap()..alone.rfind("</testsuites>").unwrap()];
            assert!(xml.contains(suite), "{xml}");
        }
        let empty = render_junit_all(&[], "verify");
        assert!(empty.contains("tests=\"0\" failures=\"0\""), "{empty}");
        assert!(!empty.contains("<testsuite "), "{empty}");
    }

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt; "
        );
    }
}
