//! `lab up --explain`: the transcript it prints is the lab, runnable by hand. The SQL it printed is replayed, in the
//! printed order, on two fresh MariaDB servers configured as the lab's pods are, and builds a replicating pair that
//! passes the same checks; a second run explains every step again and says which were already done.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::harness::{LocalMariaDb, kubeconfig, lab, start_sim};

/// One statement of the transcript: who types it where, and its trailing `-- comment`.
#[derive(Debug, Clone)]
struct Typed {
    user: String,
    pod: String,
    sql: String,
    comment: String,
}

/// The database sessions of the transcript in order: each `$ kubectl ... exec -it POD -- CLIENT ... -uUSER -p******`
/// line and the `USER@POD> ` lines below it.
fn sessions(transcript: &str) -> Vec<Vec<Typed>> {
    let mut sessions: Vec<Vec<Typed>> = Vec::new();
    let mut opened: Option<(String, String)> = None;
    for line in transcript.lines() {
        if let Some(command) = line.strip_prefix("   $ ") {
            opened = command.contains(" exec -it ").then(|| {
                let pod = command.split(" exec -it ").nth(1).unwrap().split(' ').next().unwrap();
                let user = command.split(" -u").nth(1).unwrap().split(' ').next().unwrap();
                assert!(command.ends_with(" -p******"), "the password is hidden: {command}");
                (user.to_string(), pod.to_string())
            });
            if opened.is_some() {
                sessions.push(Vec::new());
            }
            continue;
        }
        let Some((user, rest)) = line.strip_prefix("   ").and_then(|l| l.split_once('@')) else {
            continue;
        };
        let Some((pod, typed)) = rest.split_once("> ") else {
            continue;
        };
        if !pod.starts_with("mysql-") || user.contains(' ') {
            continue;
        }
        let (user_opened, pod_opened) = opened
            .clone()
            .unwrap_or_else(|| panic!("{line:?} has no exec line above it"));
        assert_eq!((user, pod), (user_opened.as_str(), pod_opened.as_str()), "{line}");
        let (sql, comment) = typed.split_once("  -- ").unwrap_or((typed, ""));
        let sql = sql
            .strip_suffix(';')
            .or_else(|| sql.strip_suffix("\\G"))
            .expect("a terminated statement");
        sessions.last_mut().unwrap().push(Typed {
            user: user.to_string(),
            pod: pod.to_string(),
            sql: sql.to_string(),
            comment: comment.to_string(),
        });
    }
    sessions.retain(|s| !s.is_empty());
    sessions
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// `NAME = <value>` in a statement, replaced.
fn set_option(sql: &str, name: &str, value: &str) -> String {
    let start = sql
        .find(&format!("{name} = "))
        .unwrap_or_else(|| panic!("{name} in {sql}"))
        + name.len()
        + 3;
    let end = sql[start..].find(", ").map_or(sql.len(), |i| start + i);
    format!("{}{value}{}", &sql[..start], &sql[end..])
}

fn option<'a>(sql: &'a str, name: &str) -> &'a str {
    let start = sql.find(&format!("{name} = ")).unwrap() + name.len() + 3;
    let end = sql[start..].find(", ").map_or(sql.len(), |i| start + i);
    &sql[start..end]
}

fn column(row: &mysql_async::Row, name: &str) -> Option<String> {
    let index = row.columns_ref().iter().position(|c| c.name_str() == name)?;
    row.get::<Option<String>, _>(index).flatten()
}

fn first(rows: &[mysql_async::Row]) -> Option<String> {
    rows.first().and_then(|r| r.get::<Option<String>, _>(0).flatten())
}

#[test]
fn the_explained_sql_replayed_on_fresh_servers_builds_a_replicating_pair() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let run = lab(&kc, &["up", "--explain", "-o", "json"]);
    run.assert_code(0);
    assert_eq!(run.json()["verdict"], "HEALTHY", "stdout stays one JSON report");
    let transcript = run.stderr.as_str();
    // The tutorial's Secret: root / replpass. Neither is ever printed.
    assert!(
        !transcript.contains("replpass") && !transcript.contains("-proot"),
        "{transcript}"
    );
    for step in [
        "preflight",
        "apply manifests",
        "wait for mysql-0",
        "primary setup",
        "wait for mysql-1",
        "configure replicas",
        "role labels",
        "validation",
        "read-only test",
        "report",
    ] {
        assert!(
            transcript.contains(&format!("\n── explain: {step}")),
            "{step}:\n{transcript}"
        );
    }
    let sessions = sessions(transcript);
    let all: Vec<&Typed> = sessions.iter().flatten().collect();

    // The CHANGE MASTER printed is the one lab ran: the origin recorded on the primary's claim.
    let change = all
        .iter()
        .find(|t| t.sql.starts_with("CHANGE MASTER TO"))
        .expect("a CHANGE MASTER TO in the transcript");
    let pvc = sim
        .objects("persistentvolumeclaims", Some("database"))
        .into_iter()
        .find(|p| p["metadata"]["name"] == "data-mysql-0")
        .expect("data-mysql-0");
    let recorded: serde_json::Value = serde_json::from_str(
        pvc["metadata"]["annotations"]["lab.dev/binlog-origin"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        option(&change.sql, "MASTER_LOG_FILE"),
        quoted(recorded["file"].as_str().unwrap())
    );
    assert_eq!(option(&change.sql, "MASTER_LOG_POS"), recorded["position"].to_string());
    assert_eq!(
        option(&change.sql, "MASTER_HOST"),
        "'mysql-0.mysql-headless.database.svc.cluster.local'"
    );

    // The replay: mysql-0's SQL on one fresh server, mysql-1's on another, in the printed order. Passwords: the
    // test's own, for the ****** placeholders.
    let root_password = "r00t;pass";
    let password = "Repl-pa55";
    let (primary, replica) = std::thread::scope(|s| {
        let primary = s.spawn(|| LocalMariaDb::start(1, true, root_password));
        let replica = LocalMariaDb::start(2, false, root_password);
        (primary.join().unwrap(), replica)
    });
    let port_of = |pod: &str| match pod {
        "mysql-0" => primary.port,
        "mysql-1" => replica.port,
        other => panic!("no server for {other}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut checked = Vec::new();
    runtime.block_on(async {
        // The first SHOW MASTER STATUS gives the origin; the latest one, what <File> and <Position> stand for.
        let mut origin: Option<(String, String)> = None;
        let mut latest: Option<(String, String)> = None;
        for session in &sessions {
            let (user, pod) = (&session[0].user, &session[0].pod);
            let pass = if user == "root" { root_password } else { password };
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(port_of(pod))
                .user(Some(user.as_str()))
                .pass(Some(pass))
                // Over TCP, as `kubectl exec ... -h127.0.0.1` logs in (root@'%'), never through the local socket.
                .prefer_socket(false);
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .unwrap_or_else(|e| panic!("{user}@{pod} logs in: {e}"));
            for typed in session {
                let mut sql = typed.sql.replace("'******'", &quoted(password));
                if sql.starts_with("CHANGE MASTER TO") {
                    let (file, position) = origin.clone().expect("SHOW MASTER STATUS came first");
                    sql = set_option(&sql, "MASTER_HOST", "'127.0.0.1'");
                    sql = set_option(&sql, "MASTER_PORT", &primary.port.to_string());
                    sql = set_option(&sql, "MASTER_LOG_FILE", &quoted(&file));
                    sql = set_option(&sql, "MASTER_LOG_POS", &position);
                }
                if sql.contains("<File>") {
                    let (file, position) = latest.clone().expect("SHOW MASTER STATUS just above");
                    sql = sql.replace("<File>", &quoted(&file)).replace("<Position>", &position);
                }
                let expected_error = typed
                    .comment
                    .strip_prefix("expected: ERROR ")
                    .map(|rest| rest.split(' ').next().unwrap().parse::<u16>().unwrap());
                let polls_until_running = typed.comment.starts_with("expected: Slave_IO_Running: Yes");
                let started = Instant::now();
                let rows: Vec<mysql_async::Row> = loop {
                    let result = conn.query::<mysql_async::Row, _>(sql.as_str()).await;
                    match (result, expected_error) {
                        (Err(mysql_async::Error::Server(e)), Some(code)) if e.code == code => {
                            checked.push(format!("{user}@{pod}: {} refused with {code}", typed.sql));
                            break Vec::new();
                        }
                        (Ok(_), Some(code)) => panic!("{user}@{pod}> {sql} succeeded; expected error {code}"),
                        (Err(e), _) => panic!("{user}@{pod}> {sql}: {e}"),
                        (Ok(rows), None) if polls_until_running => {
                            let running = |c: &str| column(&rows[0], c).as_deref() == Some("Yes");
                            if running("Slave_IO_Running") && running("Slave_SQL_Running") {
                                checked.push(format!("{pod}: replication running"));
                                break rows;
                            }
                            assert!(
                                started.elapsed() < Duration::from_secs(30),
                                "replication does not run on the replayed replica: {:?}",
                                column(&rows[0], "Last_IO_Error")
                            );
                            // Re-read, as the student does (lab waits the same way, with a poll).
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        (Ok(rows), None) => break rows,
                    }
                };
                if sql.starts_with("SHOW MASTER STATUS") {
                    let at = (column(&rows[0], "File").unwrap(), column(&rows[0], "Position").unwrap());
                    origin.get_or_insert_with(|| at.clone());
                    latest = Some(at);
                }
                if sql.starts_with("SELECT MASTER_POS_WAIT") {
                    let reached = first(&rows).and_then(|v| v.parse::<i64>().ok());
                    assert!(reached.is_some_and(|n| n >= 0), "{sql}: {reached:?}");
                }
                if typed.comment == "expected: 1" {
                    assert_eq!(first(&rows).as_deref(), Some("1"), "{sql}");
                    checked.push(format!("{pod}: the validation row arrived"));
                }
            }
            conn.disconnect().await.unwrap();
        }
        // The replayed pair replicates what is written now, appdb included.
        let connect = |port: u16| {
            mysql_async::Conn::new(
                mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port)
                    .user(Some("root"))
                    .pass(Some(root_password))
                    .prefer_socket(false),
            )
        };
        let mut on_primary = connect(primary.port).await.unwrap();
        on_primary
            .query_drop("USE appdb; CREATE TABLE replayed (id INT PRIMARY KEY); INSERT INTO replayed VALUES (7)")
            .await
            .unwrap();
        let rows: Vec<mysql_async::Row> = on_primary.query("SHOW MASTER STATUS").await.unwrap();
        let (file, position) = (column(&rows[0], "File").unwrap(), column(&rows[0], "Position").unwrap());
        let mut on_replica = connect(replica.port).await.unwrap();
        let wait: Vec<mysql_async::Row> = on_replica
            .query(format!("SELECT MASTER_POS_WAIT({}, {position}, 30)", quoted(&file)))
            .await
            .unwrap();
        assert!(first(&wait).is_some_and(|v| v.parse::<i64>().unwrap() >= 0));
        let count: Vec<mysql_async::Row> = on_replica.query("SELECT COUNT(*) FROM appdb.replayed").await.unwrap();
        assert_eq!(first(&count).as_deref(), Some("1"));
    });
    let refused = "INSERT INTO appdb.lab_validation (marker, msg) VALUES ('lab-read-only-check', 'should_fail') \
                   refused with 1290";
    assert_eq!(
        checked,
        vec![
            "mysql-1: replication running".to_string(),
            "mysql-1: the validation row arrived".to_string(),
            format!("root@mysql-1: {refused}"),
            format!("lab_probe@mysql-1: {refused}"),
        ],
        "every expectation of the transcript was met, in order"
    );
}

#[test]
fn a_second_run_explains_every_step_again_and_says_which_were_already_done() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    let again = lab(&kc, &["up", "--explain"]);
    again.assert_code(0);
    for step in ["apply manifests", "primary setup", "configure replicas", "role labels"] {
        again
            .assert_stderr_contains(&format!("\n── explain: {step}"))
            .assert_stderr_contains(&format!("nothing to type for \"{step}\" this time"));
    }
    // Without --explain, nothing of it.
    let plain = lab(&kc, &["up"]);
    plain.assert_code(0);
    assert!(!plain.stderr.contains("── explain"), "{}", plain.stderr);
}
