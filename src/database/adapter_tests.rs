//! Adapter tests against real local MariaDB servers (see `test_support`): the lab's whole flow through `Db`,
//! and the failures it must explain. Two tests, one primary/replica pair each, run in parallel.

use std::time::Duration;

use tokio::time::Instant;

use crate::exit::{Classify, ExitStatus};
use crate::secret::SecretString;

use super::test_support::{MariaDb, ROOT_PASSWORD, start_pair};
use super::*;

const REPL_PASSWORD: &str = "repl'pa;ss";
const PROBE_PASSWORD: &str = "pr0be-pass";

fn repl() -> Credentials {
    Credentials {
        user: "repl".into(),
        password: SecretString::new(REPL_PASSWORD),
    }
}

fn probe() -> Credentials {
    Credentials {
        user: PROBE_USER.into(),
        password: SecretString::new(PROBE_PASSWORD),
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn source(primary: &MariaDb, origin: &Coordinates) -> SourceConfig {
    SourceConfig {
        host: "127.0.0.1".into(),
        port: primary.port(),
        credentials: repl(),
        origin: origin.clone(),
    }
}

async fn connect(server: &MariaDb, credentials: &Credentials) -> Db {
    Db::connect(server.addr(), credentials, soon())
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err}\n{}", server.addr(), server.error_log_tail()))
}

async fn count(db: &mut Db, sql: &str) -> u64 {
    let rows = db.query_for_test(sql).await;
    rows[0][0].1.as_deref().and_then(|n| n.parse().ok()).expect("a count")
}

fn unique_marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("lab-{tag}-{nanos}")
}

#[tokio::test]
async fn the_corrected_tutorial_replicates_and_the_replica_rejects_ordinary_writes() {
    let (primary_server, replica_server) = start_pair();
    let mut primary = connect(&primary_server, &MariaDb::root()).await;
    let mut replica = connect(&replica_server, &MariaDb::root()).await;

    // Facts: flavour, distinct ids, the replica is read-only, MariaDB has no super_read_only. A MariaDB replica
    // has binary logging off by default; a MySQL 8 replica has it on (log_bin=1, log_replica_updates=1).
    assert_eq!(primary.version().flavor, Flavor::MariaDb);
    let primary_facts = primary.facts().await.expect("primary facts");
    let replica_facts = replica.facts().await.expect("replica facts");
    assert_eq!(
        (primary_facts.server_id, primary_facts.log_bin, primary_facts.read_only),
        (1, true, false)
    );
    assert_eq!(
        (replica_facts.server_id, replica_facts.log_bin, replica_facts.read_only),
        (2, false, true)
    );
    assert_eq!(replica_facts.super_read_only, None);
    assert!(!primary_facts.server_uuid.is_empty());
    assert_ne!(primary_facts.server_uuid, replica_facts.server_uuid);
    assert_eq!(primary_facts.version, *primary.version());

    // Primary setup in the corrected order, twice: the second run must succeed and change nothing that matters.
    let origin = primary
        .capture_coordinates()
        .await
        .expect("coordinates before any setup");
    for _ in 0..2 {
        primary
            .ensure_replication_user(&repl())
            .await
            .expect("replication user");
        primary.ensure_appdb().await.expect("appdb");
        primary.ensure_probe_user(&probe()).await.expect("probe user");
    }
    // The replication account's statements are not binlogged (sql_log_bin = 0, and on MariaDB no default database
    // either; MySQL would log them despite binlog-do-db), even on the second run, which followed `USE appdb`; the
    // session logs again afterwards. The probe account was created inside appdb (binlogged on both flavours).
    assert_eq!(
        primary.query_for_test("SELECT @@session.sql_log_bin").await[0][0]
            .1
            .as_deref(),
        Some("1")
    );
    let binlog = primary.query_for_test("SHOW BINLOG EVENTS").await;
    let infos: Vec<String> = binlog.iter().filter_map(|row| row[5].1.clone()).collect();
    assert!(
        !infos.iter().any(|info| info.contains("'repl'")),
        "repl account must not replicate: {infos:#?}"
    );
    assert!(
        infos
            .iter()
            .any(|info| info.contains("CREATE USER IF NOT EXISTS 'lab_probe'")),
        "{infos:#?}"
    );

    // Replica: not configured, then configured from the origin and running.
    assert_eq!(replica.replica_status().await.expect("status"), None);
    replica
        .configure_replica(&source(&primary_server, &origin))
        .await
        .expect("configure replica");
    let status = replica
        .wait_replication_running(soon())
        .await
        .expect("replication runs");
    assert!(status.is_running());
    assert_eq!(
        (status.source_host.as_str(), status.source_port),
        ("127.0.0.1", Some(primary_server.port()))
    );
    assert_eq!((status.last_io_errno, status.last_sql_errno), (0, 0));

    // Validation: one connection writes, the replica waits for the position and holds the row.
    let marker = unique_marker("flow");
    let after_write = primary.write_marker(&marker).await.expect("write marker");
    assert!(after_write.position > origin.position);
    replica
        .wait_for_coordinates(&after_write, Duration::from_secs(10))
        .await
        .expect("replica catches up");
    assert!(replica.has_marker(&marker).await.expect("has_marker"));
    assert!(!replica.has_marker("lab-never-written").await.expect("has_marker"));

    // The tutorial's own scripts/03-validate.sql works on the lab: lab's markers live in appdb.lab_validation, so
    // the student's replication_test is created with the tutorial's columns and its INSERT fits (it failed with
    // 1136 when lab had created replication_test with its own columns).
    for statement in [
        "USE appdb",
        "CREATE TABLE IF NOT EXISTS replication_test (id INT PRIMARY KEY, msg VARCHAR(50))",
        "INSERT INTO replication_test VALUES (1, 'written_on_primary')",
    ] {
        primary.query_for_test(statement).await;
    }
    let rows = primary.query_for_test("SELECT * FROM replication_test").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1].1.as_deref(), Some("written_on_primary"));
    let after_tutorial = primary.capture_coordinates().await.expect("coordinates");
    replica
        .wait_for_coordinates(&after_tutorial, Duration::from_secs(10))
        .await
        .expect("the tutorial's row replicates");
    let on_replica = replica
        .query_for_test("SELECT id, msg FROM appdb.replication_test")
        .await;
    assert_eq!(
        on_replica,
        [vec![
            ("id".to_string(), Some("1".to_string())),
            ("msg".to_string(), Some("written_on_primary".to_string()))
        ]]
    );
    assert_eq!(
        count(&mut replica, "SELECT COUNT(*) FROM mysql.user WHERE user = 'lab_probe'").await,
        1
    );

    // Unprotected, root writes on the read-only replica (it holds READ_ONLY ADMIN through GRANT ALL): the test
    // write is accepted, rolled back, and explained.
    let outcome = replica.read_only_test().await.expect("read-only test as root");
    let ReadOnlyOutcome::AcceptedAndRolledBack { explanation } = outcome else {
        panic!("MariaDB root bypasses read_only until protected; got {outcome:?}");
    };
    assert!(
        explanation.starts_with("MariaDB accepts writes from root on this replica"),
        "{explanation}"
    );
    assert!(explanation.contains("READ_ONLY ADMIN"), "{explanation}");
    assert_eq!(
        count(
            &mut replica,
            "SELECT COUNT(*) FROM appdb.lab_validation WHERE marker LIKE 'lab-read-only-check-%'"
        )
        .await,
        0,
        "the accepted write was rolled back"
    );

    // Protected as `lab up` does after configuring a replica: READ_ONLY ADMIN is revoked from root@'%' (the
    // account TCP logins match here, as on the image: skip-name-resolve, no root@127.0.0.1), and this very session
    // is re-authenticated, so its own test write is refused too.
    assert_eq!(
        replica.protect_replica().await.expect("protect"),
        Protection::ReadOnlyAdminRevoked {
            revoked: vec!["'root'@'%'".to_string()]
        }
    );
    assert_eq!(
        replica.read_only_test().await.expect("read-only test as root"),
        ReadOnlyOutcome::Rejected
    );
    // A second run finds nothing to revoke and does not fail (a revoked root cannot revoke again: 1045).
    assert_eq!(
        replica.protect_replica().await.expect("protect again"),
        Protection::ReadOnlyAdminRevoked { revoked: vec![] }
    );
    // The tutorial's section 5 safety test, as a new root login over TCP: refused with 1290.
    let mut root_again = connect(&replica_server, &MariaDb::root()).await;
    assert_eq!(
        root_again
            .query_for_test_error("INSERT INTO appdb.replication_test VALUES (2, 'should_fail')")
            .await,
        Some(1290)
    );
    // root@'localhost' (socket only here) keeps the privilege: the break-glass account for a promotion.
    let local = root_again.query_for_test("SHOW GRANTS FOR 'root'@'localhost'").await;
    assert!(
        holds_read_only_admin(&local.iter().filter_map(|row| row[0].1.clone()).collect::<Vec<_>>()),
        "{local:?}"
    );
    root_again.close().await;

    // ... and replication goes on: the primary writes the very key the tutorial's safety test tried on the replica
    // (before, the replica's accepted row stopped replication with 1062 here).
    primary
        .query_for_test("INSERT INTO appdb.replication_test VALUES (2, 'written_on_primary')")
        .await;
    let second = unique_marker("after-ro");
    let after_second = primary.write_marker(&second).await.expect("second marker");
    replica
        .wait_for_coordinates(&after_second, Duration::from_secs(10))
        .await
        .expect("still replicating");
    assert!(replica.has_marker(&second).await.expect("has_marker"));
    assert_eq!(
        count(&mut replica, "SELECT COUNT(*) FROM appdb.replication_test").await,
        2
    );
    assert!(
        replica
            .replica_status()
            .await
            .expect("status")
            .expect("configured")
            .is_running()
    );

    // Read-only as the non-admin probe account (replicated from the primary): rejected with 1290.
    let mut probe_on_replica = connect(&replica_server, &probe()).await;
    assert_eq!(
        probe_on_replica
            .read_only_test()
            .await
            .expect("read-only test as probe"),
        ReadOnlyOutcome::Rejected
    );
    // On the writable primary the same account is accepted, and the explanation says read_only is off.
    let mut probe_on_primary = connect(&primary_server, &probe()).await;
    let ReadOnlyOutcome::AcceptedAndRolledBack { explanation } = probe_on_primary
        .read_only_test()
        .await
        .expect("read-only test on the primary")
    else {
        panic!("the primary is writable");
    };
    assert!(
        explanation.starts_with("read_only is OFF on this replica"),
        "{explanation}"
    );

    // A position the primary never reaches: -1 from MASTER_POS_WAIT, reported as a timeout.
    let unreachable = Coordinates {
        file: after_second.file.clone(),
        position: after_second.position + 1_000_000,
    };
    let started = Instant::now();
    let err = replica
        .wait_for_coordinates(&unreachable, Duration::from_secs(1))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, DbError::PositionWaitTimedOut { timeout_secs: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.exit_status(), ExitStatus::Unreachable);
    assert!(
        err.to_string()
            .contains(&format!("did not apply the primary's position {unreachable} within 1s")),
        "{err}"
    );

    // The recorded origin is still on the primary. An origin in a file the primary does not have (purged, or from
    // before a re-initialisation), or past the end of its file, cannot start a new replica: the error says to
    // re-seed. (A real PURGE is left out: MariaDB keeps a file until its binlog checkpoint has moved on, which
    // happens in the background.)
    let logs = primary.binary_logs().await.expect("SHOW BINARY LOGS");
    let first = logs.first().expect("the primary has binary logs").clone();
    assert_eq!(first.name, origin.file, "{logs:?}");
    check_origin_available("mysql-0", &origin, &logs).expect("available");
    let purged = Coordinates {
        file: "mysql-bin.000000".into(),
        position: 4,
    };
    let err = check_origin_available("mysql-0", &purged, &logs).expect_err("not on the primary");
    assert!(
        err.to_string().contains("the primary no longer has mysql-bin.000000"),
        "{err}"
    );
    assert!(err.to_string().contains("`lab repair` does that"), "{err}");
    let past_the_end = Coordinates {
        file: first.name.clone(),
        position: first.size + 1,
    };
    let err = check_origin_available("mysql-0", &past_the_end, &logs).expect_err("past the end");
    assert!(err.to_string().contains("shorter than position"), "{err}");
    // A server without binary logging lists none.
    assert_eq!(replica.binary_logs().await.expect("no binlog"), []);

    for db in [primary, replica, probe_on_replica, probe_on_primary] {
        db.close().await;
    }
}

#[tokio::test]
async fn late_capture_stops_the_replica_with_1049_and_failures_are_explained_without_passwords() {
    let (primary_server, replica_server) = start_pair();
    let mut primary = connect(&primary_server, &MariaDb::root()).await;
    let mut replica = connect(&replica_server, &MariaDb::root()).await;

    // The tutorial's order: appdb first, coordinates after it.
    primary
        .ensure_replication_user(&repl())
        .await
        .expect("replication user");
    primary.ensure_appdb().await.expect("appdb");
    let late = primary.capture_coordinates().await.expect("late coordinates");
    replica
        .configure_replica(&source(&primary_server, &late))
        .await
        .expect("configure");
    replica
        .wait_replication_running(soon())
        .await
        .expect("runs until the first table");
    let after_table = primary
        .write_marker(&unique_marker("late"))
        .await
        .expect("write marker");

    let deadline = Instant::now() + Duration::from_secs(20);
    let err = replica.wait_replication_running(deadline).await;
    let err = match err {
        Err(err) => err,
        // The event may not have been applied yet at the first poll: wait for the position, which fails then.
        Ok(_) => {
            let _ = replica
                .wait_for_coordinates(&after_table, Duration::from_secs(10))
                .await;
            replica
                .wait_replication_running(deadline)
                .await
                .expect_err("the SQL thread stops with 1049")
        }
    };
    let DbError::ReplicationFailed {
        thread,
        errno,
        ref finding,
        ..
    } = err
    else {
        panic!("expected a replication failure, got {err:?}");
    };
    assert_eq!((thread, errno), (ReplicationThread::Sql, 1049));
    assert_eq!(*finding, explain_replication_error(1049, ""));
    let text = err.to_string();
    assert!(
        text.contains("SQL thread error 1049 (Error 'Unknown database 'appdb'' on query."),
        "{text}"
    );
    assert!(text.contains("captured after CREATE DATABASE appdb"), "{text}");
    assert_eq!(err.exit_status(), ExitStatus::Unhealthy);
    // The position wait says the SQL thread is down, with the finding (not a timeout).
    let err = replica
        .wait_for_coordinates(&after_table, Duration::from_secs(5))
        .await
        .expect_err("not running");
    assert!(matches!(err, DbError::SqlThreadNotRunning { .. }), "{err:?}");
    assert!(err.to_string().contains("last SQL error 1049"), "{err}");

    // Re-running the corrected order repairs the missing database: capture first, then CREATE DATABASE IF NOT
    // EXISTS (binlogged although appdb exists), configure from the capture.
    let origin = primary.capture_coordinates().await.expect("coordinates");
    primary.ensure_appdb().await.expect("appdb again");
    replica
        .configure_replica(&source(&primary_server, &origin))
        .await
        .expect("reconfigure");
    replica.wait_replication_running(soon()).await.expect("runs");
    let target = primary.capture_coordinates().await.expect("coordinates");
    replica
        .wait_for_coordinates(&target, Duration::from_secs(10))
        .await
        .expect("caught up");
    let appdb = "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'appdb'";
    assert_eq!(
        count(&mut replica, appdb).await,
        1,
        "CREATE DATABASE reached the replica"
    );
    // But MariaDB does not binlog CREATE TABLE IF NOT EXISTS for an existing table (MySQL does), so the table the
    // replica missed does not come back by itself: the next insert stops it with 1146, explained.
    let target = primary
        .write_marker(&unique_marker("after-repair"))
        .await
        .expect("write marker");
    let err = replica
        .wait_for_coordinates(&target, Duration::from_secs(10))
        .await
        .expect_err("the table is missing on the replica");
    assert!(err.to_string().contains("last SQL error 1146"), "{err}");

    // A wrong replication password: the IO thread keeps Connecting with 1045; fail fast with the finding.
    let wrong = Credentials {
        user: "repl".into(),
        password: SecretString::new("wrong-repl-password"),
    };
    let origin = primary.capture_coordinates().await.expect("coordinates");
    let config = SourceConfig {
        credentials: wrong,
        ..source(&primary_server, &origin)
    };
    replica
        .configure_replica(&config)
        .await
        .expect("configure with a wrong password");
    let started = Instant::now();
    let err = replica
        .wait_replication_running(soon())
        .await
        .expect_err("access denied");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast, took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            DbError::ReplicationFailed {
                thread: ReplicationThread::Io,
                errno: 1045,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Secret mysql-secret"), "{err}");
    assert!(!err.to_string().contains("wrong-repl-password"), "{err}");

    // Equal server ids: point the replica at itself.
    let itself = SourceConfig {
        host: "127.0.0.1".into(),
        port: replica_server.port(),
        credentials: MariaDb::root(),
        origin: Coordinates {
            file: "mysql-bin.000001".into(),
            position: 4,
        },
    };
    replica
        .configure_replica(&itself)
        .await
        .expect("configure against itself");
    let err = replica
        .wait_replication_running(soon())
        .await
        .expect_err("equal server ids");
    assert!(matches!(err, DbError::ReplicationFailed { errno: 1593, .. }), "{err:?}");
    assert!(err.to_string().contains("same server_id"), "{err}");
    assert!(!err.to_string().contains(ROOT_PASSWORD), "{err}");

    // A CHANGE MASTER that fails: the server echoes the start of the password (1470); the error must not.
    let long_password = format!("S3cret{}", "x".repeat(120));
    let bad = SourceConfig {
        credentials: Credentials {
            user: "repl".into(),
            password: SecretString::new(long_password.clone()),
        },
        ..source(&primary_server, &origin)
    };
    let err = replica.configure_replica(&bad).await.expect_err("password too long");
    assert!(matches!(err, DbError::Statement { code: 1470, .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("S3cretxxxx"), "{shown}");
    assert!(shown.contains("is too long for MASTER_PASSWORD"), "{shown}");
    assert!(shown.contains("shorten it in Secret mysql-secret"), "{shown}");
    // STOP and RESET ALL ran before the failed CHANGE: the replica is stopped (MariaDB keeps a half-written
    // source), so a position wait reports the stopped SQL thread.
    let status = replica.replica_status().await.expect("status");
    assert!(!status.is_some_and(|s| s.is_running()));
    let err = replica
        .wait_for_coordinates(&origin, Duration::from_secs(1))
        .await
        .expect_err("stopped");
    assert!(
        err.to_string().contains("its SQL thread is not running (IO No, SQL No, lag NULL; start replication with START SLAVE or re-run lab up)"),
        "{err}"
    );
    // Without any source at all: "not a replica", distinct from a stopped one.
    replica.query_for_test("RESET SLAVE ALL").await;
    assert_eq!(replica.replica_status().await.expect("status"), None);
    let err = replica
        .wait_replication_running(soon())
        .await
        .expect_err("not a replica");
    assert!(matches!(err, DbError::NotAReplica { .. }), "{err:?}");
    let err = replica
        .wait_for_coordinates(&origin, Duration::from_secs(1))
        .await
        .expect_err("not configured");
    assert!(
        err.to_string().contains("replication is not configured on this server"),
        "{err}"
    );

    // Logins: a wrong root password fails at once (configuration), a closed port retries until the deadline.
    let wrong_root = Credentials {
        user: "root".into(),
        password: SecretString::new("not-the-root-password"),
    };
    let started = Instant::now();
    let err = match Db::connect(primary_server.addr(), &wrong_root, soon()).await {
        Err(err) => err,
        Ok(_) => panic!("a wrong password must not log in"),
    };
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
    assert!(matches!(err, DbError::LoginRejected { code: 1045, .. }), "{err:?}");
    assert_eq!(err.exit_status(), ExitStatus::Usage);
    assert!(
        err.to_string()
            .contains("check MYSQL_ROOT_PASSWORD in Secret mysql-secret"),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("not-the-root-password"));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let started = Instant::now();
    let err = match Db::connect(closed, &MariaDb::root(), Instant::now() + Duration::from_millis(1500)).await {
        Err(err) => err,
        Ok(_) => panic!("nothing listens there"),
    };
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(matches!(err, DbError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.exit_status(), ExitStatus::Unreachable);
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to the database at {closed} within")),
        "{err}"
    );

    primary.close().await;
    replica.close().await;
}
