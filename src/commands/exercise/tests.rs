use super::*;
use crate::report::fixtures::{broken, healthy};

#[test]
fn every_exercise_has_a_unique_name_a_section_a_symptom_and_at_least_three_hints() {
    let mut names: Vec<&str> = EXERCISES.iter().map(|e| e.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), EXERCISES.len(), "names are unique");
    for e in EXERCISES {
        assert!(e.hints().len() >= 3, "{}", e.name());
        assert!(
            !e.section().is_empty() && !e.symptom().is_empty() && !e.title().contains('\n'),
            "{}",
            e.name()
        );
        assert!(find(e.name()).is_ok());
    }
    let error = find("nope").err().map(|e| e.to_string()).expect("unknown").to_string();
    assert!(
        error.contains("no exercise called \"nope\"; exercises: missing-rows"),
        "{error}"
    );
}

#[test]
fn the_list_has_one_line_per_exercise_with_its_section_and_title() {
    let text = list();
    assert_eq!(text.lines().count(), EXERCISES.len());
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("missing-rows    (section 4, 6D)  after a change"),
        "{text}"
    );
    // The titles start in one column, whatever the sections' widths.
    let titles: Vec<usize> = text
        .lines()
        .map(|l| l.len() - l[l.find(')').expect("a section") + 1..].trim_start().len())
        .collect();
    assert!(titles.iter().all(|t| *t == titles[0]), "{text}");
    assert_eq!(list_json()[0]["name"], "missing-rows");
}

#[test]
fn the_record_round_trips_and_a_damaged_one_grades_strictly() {
    let mut record = Record::new("stale-reads", Verdict::Degraded);
    record.hints = 2;
    record.solved = Solved::Shown;
    assert_eq!(Record::from_data(&record.to_data()), Some(record.clone()));
    let mut damaged = record.to_data();
    damaged.insert("hints".into(), "many".into());
    damaged.insert("solved".into(), "maybe".into());
    damaged.insert("verdict-at-start".into(), "BROKEN".into());
    let read = Record::from_data(&damaged).expect("still a record");
    assert_eq!(
        (read.hints, read.solved, read.verdict_at_start),
        (0, Solved::No, Verdict::Healthy)
    );
    assert_eq!(
        Record::from_data(&BTreeMap::new()),
        None,
        "no exercise named: no record"
    );
}

#[test]
fn hints_come_one_level_at_a_time_and_the_last_one_repeats() {
    const HINTS: &[&str] = &["vague", "closer", "nearly the answer"];
    assert_eq!(next_hint(HINTS, 0), (1, "vague"));
    assert_eq!(next_hint(HINTS, 1), (2, "closer"));
    assert_eq!(next_hint(HINTS, 2), (3, "nearly the answer"));
    assert_eq!(next_hint(HINTS, 3), (3, "nearly the answer"));
    assert_eq!(next_hint(HINTS, 40), (3, "nearly the answer"));
}

#[test]
fn failures_become_symptoms_without_their_cause_or_fix() {
    assert_eq!(
        symptom_of(
            "mysql-1 replicates from the primary",
            "mysql-1: IO thread is No (error 1593: mysql-0 and mysql-1 have the same server_id; fix: give each pod \
             its own)"
        ),
        "rows written on the primary do not reach mysql-1 (IO thread is No)"
    );
    assert_eq!(
        symptom_of(
            "every server has its own server_id and server_uuid",
            "mysql-0 and mysql-1 both have server_id 1"
        ),
        "two servers present themselves to replication as the same server"
    );
    assert_eq!(
        symptom_of("mysql-0 (error)", "mysql-0 has lost the role label\nfix: run lab up"),
        "`lab status` reports a problem with mysql-0"
    );
    assert_eq!(
        symptom_of(
            "step: replication threads",
            "mysql-1: IO thread error 1593 (...); cause: ...; fix: ..."
        ),
        "`lab verify` fails at its step \"replication threads\""
    );
    assert_eq!(
        symptom_of(
            "a row written on the primary reaches every replica",
            "a row written on mysql-0 was not read back on mysql-1: replication stopped: IO thread error 1593"
        ),
        "a row written on the primary is not read back on every replica"
    );
    assert_eq!(
        symptom_of(
            "mysql-1 refuses writes from root",
            "mysql-1 accepted a write from root: read_only is OFF"
        ),
        "mysql-1 accepted a write from root"
    );
    assert_eq!(
        symptom_of("pod mysql-1 is Ready", "mysql-1 is not ready"),
        "mysql-1 is not ready"
    );
}

#[test]
fn grading_adds_the_goal_to_the_verify_checks() {
    let checks = grade_checks(&healthy(), Some("stale-reads"), &[]);
    let goal = checks.last().unwrap();
    assert_eq!(goal.name, "exercise stale-reads: the user's problem is gone");
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    assert!(passed(&checks, Verdict::Healthy, Verdict::Healthy));

    let checks = grade_checks(
        &healthy(),
        Some("stale-reads"),
        &["reads on mysql-1 are stale".to_string()],
    );
    assert_eq!(
        checks.last().unwrap().symptom.as_deref(),
        Some("reads on mysql-1 are stale")
    );
    assert!(
        !passed(&checks, Verdict::Healthy, Verdict::Healthy),
        "the goal is not met"
    );

    let checks = grade_checks(&broken(), Some("missing-rows"), &[]);
    assert!(checks.iter().filter(|c| !c.ok).count() >= 3, "{checks:?}");
    assert!(
        !passed(&checks, Verdict::Broken, Verdict::Healthy),
        "a broken lab is not fixed"
    );
    for check in &checks {
        if let Some(symptom) = &check.symptom {
            assert!(!symptom.contains("fix:"), "a symptom, not a fix: {symptom}");
        }
    }

    let none = grade_checks(&healthy(), None, &[]);
    assert!(
        !none.last().unwrap().ok,
        "a lab without an exercise has nothing to pass"
    );
}

#[test]
fn a_lab_degraded_at_the_start_may_stay_so_but_not_get_worse() {
    let mut failing_lag = grade_checks(&healthy(), Some("x"), &[]);
    failing_lag[0].ok = false;
    assert!(passed(&failing_lag, Verdict::Degraded, Verdict::Degraded));
    assert!(!passed(&failing_lag, Verdict::Degraded, Verdict::Healthy));
    assert!(!passed(&failing_lag, Verdict::Broken, Verdict::Degraded));
}

fn grade(namespace: &str, exercise: Option<&str>, goal: &[&str], solved: Option<Solved>) -> Grade {
    let goal: Vec<String> = goal.iter().map(ToString::to_string).collect();
    let checks = grade_checks(&healthy(), exercise, &goal);
    Grade {
        schema_version: EXERCISE_SCHEMA_VERSION,
        namespace: namespace.into(),
        exercise: exercise.map(Into::into),
        solved,
        hints: exercise.map(|_| 1),
        passed: exercise.is_some() && goal.is_empty(),
        verdict: Verdict::Healthy,
        checks,
        generated_at: "2026-12-06T22:00:00Z".into(),
    }
}

#[test]
fn the_class_table_has_one_row_per_student_and_passes_only_when_all_passed() {
    let grades = [
        grade("student-1", Some("stale-reads"), &[], Some(Solved::Yes)),
        grade(
            "student-2",
            Some("missing-rows"),
            &["rows written on the primary no longer appear on mysql-1"],
            Some(Solved::No),
        ),
        grade("student-3", None, &[], None),
    ];
    assert_eq!(
        render_class(&grades),
        "NAMESPACE  EXERCISE      SOLVED  HINTS  STILL FAILING\n\
         student-1  stale-reads   yes     1      -\n\
         student-2  missing-rows  no      1      rows written on the primary no longer appear on mysql-1\n\
         student-3  -             -       -      no exercise is active in this namespace (none was started, or it \
         was reset)\n"
    );
    assert_eq!(exit_for(&[&grades[0]]), ExitStatus::Success);
    assert_eq!(exit_for(&grades.iter().collect::<Vec<_>>()), ExitStatus::Unhealthy);
    assert_eq!(exit_for(&[]), ExitStatus::Unhealthy, "no lab graded: nothing passed");

    let text = render_grade(&grades[1]);
    assert_eq!(
        text,
        "exercise missing-rows in namespace student-2: not solved yet (hints used: 1); still failing:\n  \
         ✗ rows written on the primary no longer appear on mysql-1\n"
    );
    let shown = grade("student-4", Some("stale-reads"), &[], Some(Solved::Shown));
    assert_eq!(
        render_grade(&shown),
        "exercise stale-reads in namespace student-4: solved, with `lab exercise solve` (hints used: 1)\n"
    );
}

#[test]
fn junit_has_a_suite_per_namespace_a_case_per_check_and_the_goal() {
    let grades = [
        grade("student-1", Some("stale-reads"), &[], Some(Solved::Yes)),
        grade("student-2", Some("missing-rows"), &["rows stop"], Some(Solved::No)),
    ];
    let xml = render_junit(&grades, "lab exercise check --all-namespaces");
    assert_eq!(xml.matches("<testsuite ").count(), 2, "{xml}");
    assert!(
        xml.contains("<testsuite name=\"lab exercise check student-2\""),
        "{xml}"
    );
    let cases = grades[0].checks.len() + grades[1].checks.len();
    assert!(xml.contains(&format!("tests=\"{cases}\" failures=\"1\"")), "{xml}");
    assert!(
        xml.contains(
            "name=\"exercise missing-rows: the user&apos;s problem is gone\" time=\"0.000\">\n      <failure \
             message=\"rows stop\""
        ),
        "{xml}"
    );
    assert!(
        xml.contains("<property name=\"exercise\" value=\"missing-rows\"/>"),
        "{xml}"
    );
    assert!(xml.contains("<property name=\"hints\" value=\"1\"/>"), "{xml}");
}

#[test]
fn a_second_start_and_a_broken_lab_are_refused_with_the_way_out() {
    let record = Record::new("stale-reads", Verdict::Healthy);
    let text = already_active("student-1", &record).to_string();
    assert!(
        text.starts_with("exercise stale-reads is already active in namespace student-1"),
        "{text}"
    );
    assert!(text.contains("`lab exercise reset`"), "{text}");
    let error = check_lab_ready("student-1", &broken())
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("is BROKEN") && error.contains("run `lab up` first"),
        "{error}"
    );
    assert!(check_lab_ready("student-1", &healthy()).is_ok());
}
