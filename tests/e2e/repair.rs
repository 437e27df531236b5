//! `lab repair`: a diverged replica re-seeded while the primary keeps taking writes, the primary refused, a replica
//! added after the primary purged the origin's binlog, and an interrupted repair finished by the next one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{kubeconfig, kubectl, lab, lab_with_env, run_as_user, sql, sql_result, start_sim};

/// The replicas' break-glass client: the server's OS user on the Unix socket (unix_socket authentication).
const SOCKET_ADMIN: [&str; 7] = [
    "setpriv",
    "--reuid=mysql",
    "--regid=mysql",
    "--clear-groups",
    "--",
    "mariadb",
    "-umysql",
];

/// `query` in `pod` through its Unix socket with `client` (root: `mariadb -uroot -proot`), as a person types it
/// with kubectl exec: the exit code and stderr.
fn socket_sql(kc: &std::path::Path, ns: &str, pod: &str, client: &[&str], query: &str) -> (i32, String) {
    let mut args = vec!["-n", ns, "exec", pod, "--"];
    args.extend_from_slice(client);
    args.extend_from_slice(&["-N", "-B", "-e", query]);
    let (code, _, stderr) = run_as_user(kc, "kubectl", &args, "");
    (code, stderr)
}

/// Row counts and a checksum of every value of the test's tables, as the values are what must match.
fn checksums(sim: &kubesim::Kubesim, ns: &str, pod: &str) -> String {
    sql(
        sim,
        ns,
        pod,
        "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, note, twice))) FROM appdb.big; \
         SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, n))) FROM appdb.writes; \
         SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, msg))) FROM appdb.replication_test",
    )
}

#[test]
fn a_diverged_replica_is_reseeded_while_the_primary_keeps_taking_writes() {
    const NS: &str = "repair";
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up", "-n", NS]).assert_code(0);

    // Data worth copying: a table of 20000 rows and the tutorial's table.
    sql(
        &sim,
        NS,
        "mysql-0",
        "USE appdb; CREATE TABLE big (id INT PRIMARY KEY, note VARCHAR(40), twice INT AS (id * 2) VIRTUAL); \
         INSERT INTO big (id, note) SELECT seq, CONCAT('row ', seq, ' it''s ünïcode') FROM seq_1_to_20000; \
         CREATE TABLE writes (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL); \
         CREATE TABLE replication_test (id INT PRIMARY KEY, msg VARCHAR(40)); \
         INSERT INTO replication_test VALUES (1, 'from the primary')",
    );

    // The root accounts of a replica lab up protected cannot write, not even through the socket: the port-forward's
    // login matched root@localhost, which lost READ_ONLY ADMIN with root@'%'.
    let (code, stderr) = socket_sql(
        &kc,
        NS,
        "mysql-1",
        &["mariadb", "-uroot", "-proot"],
        "INSERT INTO appdb.replication_test VALUES (2, 'on the replica')",
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("ERROR 1290"), "{stderr}");
    // The socket account can (it is what lab repair loads with): a careless write diverges the replica, and the
    // primary's next write of that key stops replication with 1062.
    let (code, stderr) = socket_sql(
        &kc,
        NS,
        "mysql-1",
        &SOCKET_ADMIN,
        "INSERT INTO appdb.replication_test VALUES (2, 'on the replica')",
    );
    assert_eq!(code, 0, "{stderr}");
    sql(
        &sim,
        NS,
        "mysql-0",
        "INSERT INTO appdb.replication_test VALUES (2, 'from the primary')",
    );
    let verify = lab(&kc, &["verify", "-n", NS, "-o", "json"]);
    verify.assert_code(1);
    assert!(verify.stdout.contains("1062"), "{}", verify.stdout);

    // A writer keeps inserting on the primary all through the repair.
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let (repair, during) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let n = written.load(Ordering::SeqCst) + 1;
                match sql_result(
                    &sim,
                    NS,
                    "mysql-0",
                    &format!("INSERT INTO appdb.writes (n) VALUES ({n})"),
                ) {
                    Ok(_) => written.store(n, Ordering::SeqCst),
                    Err(error) => panic!("a write on the primary failed during the repair: {error}"),
                }
            }
        });
        while written.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = written.load(Ordering::SeqCst);
        let repair = lab(&kc, &["repair", "mysql-1", "-n", NS, "-o", "json"]);
        let during = written.load(Ordering::SeqCst) - before;
        // A few more writes after the repair, which replication must bring.
        let after = written.load(Ordering::SeqCst);
        while written.load(Ordering::SeqCst) < after + 3 {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer ran");
        (repair, during)
    });
    repair.assert_code(0);
    assert!(during > 0, "no write reached the primary while the repair ran");
    let report = repair.json();
    let repaired = &report["repaired"][0];
    assert_eq!(repaired["pod"], "mysql-1", "{report:#}");
    assert_eq!(repaired["verified"], true, "{report:#}");
    assert!(
        repaired["reason"].as_str().unwrap().contains("error 1062"),
        "{report:#}"
    );
    let appdb = repaired["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "appdb")
        .expect("appdb copied");
    assert!(appdb["rows"].as_u64().unwrap() >= 20_000 + 2, "{appdb}");
    let commands = repaired["commands"].as_array().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.as_str().unwrap().contains("MASTER_PASSWORD = '******'")),
        "{commands:?}"
    );
    assert!(!repair.stdout.contains("replpass") && !repair.stderr.contains("replpass"));

    // Verify passes (its round trip comes after every write), and the replica has exactly the primary's rows.
    lab(&kc, &["verify", "-n", NS]).assert_code(0);
    assert_eq!(checksums(&sim, NS, "mysql-1"), checksums(&sim, NS, "mysql-0"));
    let count = sql(&sim, NS, "mysql-1", "SELECT COUNT(*), MAX(n) FROM appdb.writes");
    assert_eq!(
        count.split_whitespace().collect::<Vec<_>>(),
        [
            written.load(Ordering::SeqCst).to_string(),
            written.load(Ordering::SeqCst).to_string()
        ]
    );
    assert_eq!(
        sql(
            &sim,
            NS,
            "mysql-1",
            "SELECT msg FROM appdb.replication_test WHERE id = 2"
        )
        .trim(),
        "from the primary"
    );
    assert_eq!(
        sql(&sim, NS, "mysql-1", "SELECT note, twice FROM appdb.big WHERE id = 7").trim(),
        "row 7 it's ünïcode\t14"
    );
    // Still read-only for root after the repair.
    let (code, stderr) = socket_sql(
        &kc,
        NS,
        "mysql-1",
        &["mariadb", "-uroot", "-proot"],
        "INSERT INTO appdb.writes (n) VALUES (0)",
    );
    assert!(code != 0 && stderr.contains("ERROR 1290"), "{stderr}");

    // Nothing left to repair.
    let again = lab(&kc, &["repair", "-n", NS]);
    again.assert_code(0);
    assert!(again.stdout.contains("Nothing needs repair."), "{}", again.stdout);
    assert!(
        again.stdout.contains("mysql-1 left alone: replicates from mysql-0"),
        "{}",
        again.stdout
    );

    // The primary is never a repair's target.
    lab(&kc, &["repair", "mysql-0", "-n", NS])
        .assert_code(2)
        .assert_stderr_contains("mysql-0 is the primary: lab repair re-seeds replicas FROM it and never changes it");
    lab(&kc, &["repair", "mysql-4", "-n", NS])
        .assert_code(2)
        .assert_stderr_contains("has no replica mysql-4: its pods are mysql-0, mysql-1");
    lab(&kc, &["repair", "-n", "no-lab-here"])
        .assert_code(2)
        .assert_stderr_contains("no lab in namespace no-lab-here");
}

/// The origin `lab up` recorded on the primary's claim.
fn recorded_origin_file(kc: &std::path::Path, ns: &str) -> String {
    let text = kubectl(
        kc,
        &[
            "-n",
            ns,
            "get",
            "pvc",
            "data-mysql-0",
            "-o",
            "jsonpath={.metadata.annotations.lab\\.dev/binlog-origin}",
        ],
        "",
    );
    let origin: serde_json::Value = serde_json::from_str(&text).expect("the origin is JSON");
    origin["file"].as_str().expect("file").to_string()
}

#[test]
fn a_replica_added_after_the_origin_s_binlog_was_purged_is_seeded_by_repair() {
    const NS: &str = "repair-purged";
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up", "-n", NS]).assert_code(0);
    sql(
        &sim,
        NS,
        "mysql-0",
        "USE appdb; CREATE TABLE kept (id INT PRIMARY KEY); INSERT INTO kept SELECT seq FROM seq_1_to_100",
    );
    let origin = recorded_origin_file(&kc, NS);

    // MariaDB purges a file only once its binlog checkpoint has moved on, in the background: flush and purge until
    // the origin's file is gone.
    let started = Instant::now();
    loop {
        sql(&sim, NS, "mysql-0", "FLUSH BINARY LOGS");
        let current = sql(&sim, NS, "mysql-0", "SHOW MASTER STATUS");
        let current = current.split_whitespace().next().expect("a binlog file").to_string();
        sql(&sim, NS, "mysql-0", &format!("PURGE BINARY LOGS TO '{current}'"));
        let logs = sql(&sim, NS, "mysql-0", "SHOW BINARY LOGS");
        if !logs.contains(&origin) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{origin} is still there: {logs}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let grown = lab(&kc, &["up", "-n", NS, "--replicas", "3"]);
    grown.assert_code(1);
    grown
        .assert_stderr_contains("mysql-2: run `lab repair mysql-2`")
        .assert_stderr_contains(&format!("the primary no longer has {origin}"));

    let repair = lab(&kc, &["repair", "mysql-2", "-n", NS, "-o", "json"]);
    repair.assert_code(0);
    let report = repair.json();
    assert_eq!(report["repaired"][0]["verified"], true, "{report:#}");
    assert!(
        report["repaired"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{report:#}"
    );
    let verify = lab(&kc, &["verify", "-n", NS, "-o", "json"]);
    verify.assert_code(0);
    assert_eq!(verify.json()["verdict"], "HEALTHY");
    assert_eq!(
        sql(&sim, NS, "mysql-2", "SELECT COUNT(*) FROM appdb.kept").trim(),
        "100"
    );
    // The recorded origin still describes an empty replica's start: repair does not move it.
    assert_eq!(recorded_origin_file(&kc, NS), origin);
    // A later `lab up` keeps the re-seeded replica as it is.
    lab(&kc, &["up", "-n", NS]).assert_code(0);
}

#[test]
fn an_interrupted_repair_leaves_the_replica_stopped_and_marked_and_the_next_repair_finishes() {
    const NS: &str = "repair-interrupted";
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up", "-n", NS]).assert_code(0);
    sql(
        &sim,
        NS,
        "mysql-0",
        "USE appdb; CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t SELECT seq FROM seq_1_to_500; \
         CREATE DATABASE other",
    );
    sql(
        &sim,
        NS,
        "mysql-0",
        "CREATE TABLE other.o (id INT PRIMARY KEY); INSERT INTO other.o VALUES (1)",
    );

    let interrupted = lab_with_env(
        &kc,
        &["repair", "mysql-1", "-n", NS],
        &[("LAB_INTERRUPT_AT", "repair: database copied")],
    );
    interrupted
        .assert_code(130)
        .assert_stderr_contains("run `lab repair` again to re-seed it from the start");
    // Replication was reset before the copy: nothing runs on the partial copy, and the replica is still read-only.
    assert_eq!(sql(&sim, NS, "mysql-1", "SHOW SLAVE STATUS").trim(), "");
    assert_eq!(sql(&sim, NS, "mysql-1", "SELECT @@read_only").trim(), "1");
    // lab up does not configure a half-seeded replica from the origin; it names the way out.
    lab(&kc, &["up", "-n", NS])
        .assert_code(2)
        .assert_stderr_contains("mysql-1 was being re-seeded by `lab repair` when it was interrupted")
        .assert_stderr_contains("Run `lab repair mysql-1` to finish");

    // Without a pod, repair finds the interrupted one.
    let finished = lab(&kc, &["repair", "-n", NS, "-o", "json"]);
    finished.assert_code(0);
    let report = finished.json();
    assert_eq!(report["repaired"][0]["pod"], "mysql-1", "{report:#}");
    assert!(
        report["repaired"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{report:#}"
    );
    lab(&kc, &["verify", "-n", NS]).assert_code(0);
    assert_eq!(sql(&sim, NS, "mysql-1", "SELECT COUNT(*) FROM appdb.t").trim(), "500");
    assert_eq!(sql(&sim, NS, "mysql-1", "SELECT id FROM other.o").trim(), "1");
    lab(&kc, &["up", "-n", NS]).assert_code(0);
}

#[test]
fn a_replica_of_a_lab_built_before_the_socket_account_gets_it_through_replication_and_is_reseeded() {
    const NS: &str = "repair-old-lab";
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up", "-n", NS]).assert_code(0);
    // A lab built before `lab up` created the socket account: dropped on the primary after USE appdb, so that the
    // replica loses it too (verify's round trip comes after the drop).
    sql(&sim, NS, "mysql-0", "USE appdb; DROP USER 'mysql'@'localhost'");
    lab(&kc, &["verify", "-n", NS]).assert_code(0);
    let accounts = "SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'mysql'";
    assert_eq!(sql(&sim, NS, "mysql-1", accounts).trim(), "0");
    // A table created without USE appdb is not binlogged, its rows are: the replica stops with 1146.
    sql(&sim, NS, "mysql-0", "CREATE TABLE appdb.hidden (id INT PRIMARY KEY)");
    sql(&sim, NS, "mysql-0", "INSERT INTO appdb.hidden VALUES (1), (2)");
    lab(&kc, &["verify", "-n", NS]).assert_code(1);

    let repair = lab(&kc, &["repair", "-n", NS, "-o", "json"]);
    repair.assert_code(0);
    repair.assert_stderr_contains("brought the socket account 'mysql'@'localhost' to the replica through replication");
    let report = repair.json();
    assert_eq!(report["repaired"][0]["pod"], "mysql-1", "{report:#}");
    assert!(
        report["repaired"][0]["reason"].as_str().unwrap().contains("error 1146"),
        "{report:#}"
    );
    lab(&kc, &["verify", "-n", NS]).assert_code(0);
    assert_eq!(
        sql(&sim, NS, "mysql-1", "SELECT COUNT(*) FROM appdb.hidden").trim(),
        "2"
    );
    assert_eq!(sql(&sim, NS, "mysql-1", accounts).trim(), "1");
}
