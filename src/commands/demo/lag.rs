//! Demo `lag` (tutorial section 7, "replication lag alerts"): a burst of writes while the replica's delay and
//! position gap are sampled; the SQL thread stopped (the gap grows, the report's verdict turns and says why); the
//! SQL thread started again (the catch-up). The samples are printed as a timeline with a sparkline.

use std::time::Duration;

use tokio::time::Instant;

use super::{Lab, Narrator, Sample, demo_marker};
use crate::commands::inspect::{Checks, build_report};
use crate::commands::{PRIMARY_POD, Session, pod_name};
use crate::database::{Coordinates, ReplicaStatus, ThreadState};
use crate::exit::UsageError;
use crate::report::Verdict;

/// Rows written in each burst, and how many writes between two samples.
const BURST: usize = 120;
const SAMPLE_EVERY_WRITES: usize = 12;
/// The replica has no event for "applied up to here": the catch-up is polled at this pace.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);
const APPLY_WAIT: Duration = Duration::from_secs(60);

pub async fn run(lab: &Lab<'_>, n: &mut Narrator) -> anyhow::Result<()> {
    if lab.pods < 2 {
        return Err(UsageError::new("demo lag needs a replica: run `lab up --replicas 2` first").into());
    }
    let replica_pod = pod_name(1);
    let mut primary = lab.session(PRIMARY_POD).await?;
    let mut replica = lab.session(&replica_pod).await?;
    let status_sql = "SHOW REPLICA STATUS\\G  (Seconds_Behind_Master, Exec_Master_Log_Pos)";

    n.step(
        &format!("a burst of {BURST} writes on the primary, sampling {replica_pod}"),
        "Seconds_Behind_Master says how old the event being applied is; the position gap (the primary's binlog \
         position minus what the replica has applied) says how much is left to apply. A healthy replica keeps both \
         near zero under load",
        &[
            lab.sql(
                PRIMARY_POD,
                "INSERT INTO appdb.lab_validation (marker) VALUES (...)  -- repeated",
            ),
            lab.sql(&replica_pod, status_sql),
        ],
    )
    .await;
    let last = burst(n, &mut primary, &mut replica, "burst").await?;
    replica.db.wait_for_coordinates(&last, APPLY_WAIT).await?;
    let caught_up = sample(n, &mut replica, &last, "burst").await?;
    let peak = peak_gap(&n.timeline, "burst");
    n.observe(
        "largest gap during the burst",
        "measured",
        format!("{peak} bytes"),
        Some((peak as f64, "bytes")),
        true,
    );
    n.observe(
        &format!("{replica_pod} after the burst"),
        "caught up (gap 0)",
        format!("gap {} bytes", caught_up.gap_bytes),
        Some((caught_up.gap_bytes as f64, "bytes")),
        caught_up.gap_bytes == 0,
    );

    n.step(
        &format!("stop {replica_pod}'s SQL thread"),
        "the IO thread keeps copying the primary's events into the relay log, but nothing applies them: the lag an \
         overloaded or blocked replica shows",
        &[lab.sql(&replica_pod, replica.db.dialect().stop_sql_thread_statement().text())],
    )
    .await;
    replica.db.stop_sql_thread().await?;
    let status = replica.db.replica_status().await?;
    let (io, sql) = status.as_ref().map_or(("none".into(), "none".into()), |s| {
        (s.io_running.to_string(), s.sql_running.to_string())
    });
    n.observe(
        "replication threads",
        "IO Yes, SQL No",
        format!("IO {io}, SQL {sql}"),
        None,
        io == "Yes" && sql == "No",
    );

    n.step(
        "writes while the SQL thread is stopped",
        "every write now widens the gap; Seconds_Behind_Master is NULL (unknown), not 0: an alert must treat \
         NULL as a problem",
        &[lab.sql(&replica_pod, status_sql)],
    )
    .await;
    let last = burst(n, &mut primary, &mut replica, "stopped").await?;
    let gaps: Vec<u64> = n
        .timeline
        .iter()
        .filter(|s| s.phase == "stopped")
        .map(|s| s.gap_bytes)
        .collect();
    let grew = gap_grew(&gaps);
    n.observe(
        "position gap while stopped",
        "growing with every sample",
        format!(
            "{} bytes",
            gaps.iter().map(u64::to_string).collect::<Vec<_>>().join(" → ")
        ),
        gaps.last().map(|g| (*g as f64, "bytes")),
        grew,
    );
    let unknown = n
        .timeline
        .iter()
        .filter(|s| s.phase == "stopped")
        .all(|s| s.seconds_behind.is_none());
    n.observe(
        "Seconds_Behind_Master while stopped",
        "NULL",
        if unknown { "NULL".into() } else { "a number".into() },
        None,
        unknown,
    );

    n.step(
        "what the health report says",
        "`lab status` turns the lab's verdict and names the replica and the thread, with the fix",
        &["lab status".to_string()],
    )
    .await;
    let report = build_report(
        &lab.cluster,
        lab.namespace,
        vec![&mut primary, &mut replica],
        &[],
        Checks::default(),
    )
    .await?;
    let reason = report
        .problems
        .iter()
        .find(|p| p.subject == replica_pod)
        .map(|p| format!("{} (fix: {})", p.cause, p.fix));
    n.observe(
        "verdict",
        "DEGRADED or BROKEN, naming the replica",
        format!("{}: {}", report.verdict, reason.as_deref().unwrap_or("no reason given")),
        None,
        report.verdict != Verdict::Healthy && reason.is_some(),
    );

    n.step(
        &format!("start {replica_pod}'s SQL thread and watch it catch up"),
        "the relay log already holds every event: applying them is all that is left",
        &[lab.sql(&replica_pod, replica.db.dialect().start_sql_thread_statement().text())],
    )
    .await;
    replica.db.start_sql_thread().await?;
    let started = Instant::now();
    let caught_up = loop {
        let now = sample(n, &mut replica, &last, "catch-up").await?;
        if now.gap_bytes == 0 || Instant::now() + CATCH_UP_POLL >= lab.deadline {
            break now;
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    };
    n.timed("catch-up", started.elapsed());
    n.observe(
        &format!("{replica_pod} after START"),
        "caught up (gap 0)",
        format!("gap {} bytes", caught_up.gap_bytes),
        Some((caught_up.gap_bytes as f64, "bytes")),
        caught_up.gap_bytes == 0,
    );
    for line in render_timeline(&n.timeline).lines() {
        crate::output::narrate(&format!("   {line}"));
    }
    primary.close().await;
    replica.close().await;
    Ok(())
}

/// Writes [`BURST`] rows on the primary, sampling the replica every [`SAMPLE_EVERY_WRITES`]; returns the primary's
/// position after the last row.
async fn burst(
    n: &mut Narrator,
    primary: &mut Session,
    replica: &mut Session,
    phase: &str,
) -> anyhow::Result<Coordinates> {
    let mut last = None;
    for i in 0..BURST {
        let position = primary
            .db
            .write_marker(&demo_marker("lag", &format!("{phase}-{i}")))
            .await?;
        if (i + 1) % SAMPLE_EVERY_WRITES == 0 {
            sample(n, replica, &position, phase).await?;
        }
        last = Some(position);
    }
    Ok(last.expect("a burst writes at least one row"))
}

async fn sample(n: &mut Narrator, replica: &mut Session, primary: &Coordinates, phase: &str) -> anyhow::Result<Sample> {
    let status = replica
        .db
        .replica_status()
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} is not a replica", replica.pod))?;
    let sample = Sample {
        at_ms: n.elapsed_ms(),
        phase: phase.to_string(),
        seconds_behind: if status.sql_running == ThreadState::Yes {
            status.seconds_behind
        } else {
            None
        },
        gap_bytes: gap_bytes(primary, &status),
    };
    n.timeline.push(sample.clone());
    Ok(sample)
}

/// Pure: bytes of the primary's binlog the replica has not applied. In another file than the primary's (the primary
/// rotated its binlog), the whole position counts as left to apply.
pub fn gap_bytes(primary: &Coordinates, replica: &ReplicaStatus) -> u64 {
    if replica.relay_source_log_file == primary.file {
        primary.position.saturating_sub(replica.exec_source_log_pos)
    } else {
        primary.position
    }
}

/// Pure: the gap grew from the first sample to the last and never shrank.
pub fn gap_grew(gaps: &[u64]) -> bool {
    gaps.len() >= 2 && gaps.windows(2).all(|w| w[1] >= w[0]) && gaps[gaps.len() - 1] > gaps[0]
}

fn peak_gap(samples: &[Sample], phase: &str) -> u64 {
    samples
        .iter()
        .filter(|s| s.phase == phase)
        .map(|s| s.gap_bytes)
        .max()
        .unwrap_or(0)
}

/// Pure: one block character per value, scaled to the largest.
pub fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| {
            if max == 0 {
                BARS[0]
            } else {
                BARS[((v * 7).div_ceil(max)) as usize]
            }
        })
        .collect()
}

/// Pure: the samples as a table, then the gap as a sparkline.
pub fn render_timeline(samples: &[Sample]) -> String {
    let mut out = String::from("timeline (gap = primary position - applied position)\n");
    out.push_str(&format!(
        "{:>8}  {:<9} {:>14} {:>10}\n",
        "t", "phase", "behind (s)", "gap (B)"
    ));
    for s in samples {
        out.push_str(&format!(
            "{:>8}  {:<9} {:>14} {:>10}\n",
            crate::output::format_duration(Duration::from_millis(s.at_ms)),
            s.phase,
            s.seconds_behind.map_or("NULL".to_string(), |v| v.to_string()),
            s.gap_bytes
        ));
    }
    let gaps: Vec<u64> = samples.iter().map(|s| s.gap_bytes).collect();
    out.push_str(&format!("gap {}\n", sparkline(&gaps)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_replica_status;

    fn status(file: &str, exec: u64) -> ReplicaStatus {
        let column = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        parse_replica_status(&[
            column("Relay_Master_Log_File", file),
            column("Exec_Master_Log_Pos", &exec.to_string()),
        ])
    }

    #[test]
    fn the_gap_is_what_the_replica_has_not_applied_of_the_primarys_binlog() {
        let primary = Coordinates {
            file: "mysql-bin.000002".into(),
            position: 5000,
        };
        assert_eq!(gap_bytes(&primary, &status("mysql-bin.000002", 4200)), 800);
        assert_eq!(gap_bytes(&primary, &status("mysql-bin.000002", 5000)), 0);
        assert_eq!(
            gap_bytes(&primary, &status("mysql-bin.000001", 9000)),
            5000,
            "another file: all of it"
        );
    }

    #[test]
    fn a_growing_gap_must_grow_from_first_to_last_and_never_shrink() {
        assert!(gap_grew(&[10, 20, 20, 35]));
        assert!(!gap_grew(&[10, 20, 15, 35]));
        assert!(!gap_grew(&[10, 10]));
        assert!(!gap_grew(&[10]));
    }

    #[test]
    fn the_sparkline_scales_to_the_largest_value() {
        assert_eq!(sparkline(&[0, 1, 4, 8]), "▁▂▅█");
        assert_eq!(sparkline(&[0, 0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn the_timeline_is_a_table_and_a_sparkline() {
        let samples = [
            Sample {
                at_ms: 1500,
                phase: "stopped".into(),
                seconds_behind: None,
                gap_bytes: 400,
            },
            Sample {
                at_ms: 2000,
                phase: "catch-up".into(),
                seconds_behind: Some(0),
                gap_bytes: 0,
            },
        ];
        let text = render_timeline(&samples);
        assert!(
            text.contains("    1.5s  stopped             NULL        400\n"),
            "{text}"
        );
        assert!(
            text.contains("   2.0s  catch-up               0          0\n"),
            "{text}"
        );
        assert!(text.ends_with("gap █▁\n"), "{text}");
    }
}
