//! Demo `mistakes` (tutorial section 6D): common mistakes, each made on purpose, shown failing with its real error,
//! then undone.
//!
//! - The socket instead of TCP: `mysql -uroot -p` in the client pod, where no server runs, fails with 2002; with
//!   `-h mysql-0.mysql-headless` it works.
//! - The replication auth mistake (MySQL): a replica without GET_SOURCE_PUBLIC_KEY, after the primary restarts,
//!   fails with IO error 2061 (mysql-notes 13-14: caching_sha2_password needs TLS or the source's RSA key once the
//!   source's password cache is empty). On MariaDB the account uses mysql_native_password: the demo shows that
//!   and explains why the mistake does not apply.
//! - A duplicate server id set at runtime on a replica: its IO thread stops with 1593 (MariaDB) or 13117 (MySQL,
//!   mysql-notes 14), then the real id is put back.

use std::time::Duration;

use tokio::time::Instant;

use super::{Lab, Narrator, clear_repair_on_interrupt, repair_on_interrupt};
use crate::cluster::ExecOutput;
use crate::commands::{PRIMARY_POD, pod_name};
use crate::database::{DbError, Flavor};
use crate::exit::UsageError;

use crate::commands::{CLIENT_CONTAINER, CLIENT_POD};
/// How long a replica may take to show the expected error, or to run again once repaired.
const ERROR_WAIT: Duration = Duration::from_secs(90);

pub async fn run(lab: &Lab<'_>, n: &mut Narrator) -> anyhow::Result<()> {
    if lab.pods < 2 {
        return Err(UsageError::new("demo mistakes needs a replica: run `lab up --replicas 2` first").into());
    }
    let replica_pod = pod_name(1);
    let client = lab.client();
    let password = lab.accounts.root.password.expose().to_string();
    let host = format!("{PRIMARY_POD}.mysql-headless");

    n.step(
        "mistake: the socket instead of TCP",
        "without -h the client talks to a server on this pod's Unix socket; the client pod runs no server, so it \
         fails with error 2002",
        &[lab.kubectl(&format!("exec -it {CLIENT_POD} -- {client} -uroot -p -e \"SELECT 1\""))],
    )
    .await;
    let socket = client_sql(lab, &password, None, "SELECT 1").await?;
    let (observed, matched) = judge_socket_error(&socket);
    n.observe("without -h", "ERROR 2002 (no local server)", observed, None, matched);

    n.step(
        "the fix: TCP to the primary's stable name",
        "-h mysql-0.mysql-headless reaches the primary through the headless Service's per-pod name",
        &[lab.kubectl(&format!(
            "exec -it {CLIENT_POD} -- {client} -h {host} -uroot -p -e \"SELECT @@server_id\""
        ))],
    )
    .await;
    let tcp = client_sql(lab, &password, Some(&host), "SELECT @@server_id").await?;
    let answer = tcp.stdout.trim().to_string();
    n.observe(
        &format!("with -h {host}"),
        "server_id 1 (the primary)",
        if tcp.success {
            format!("server_id {answer}")
        } else {
            first_line(&tcp.stderr)
        },
        None,
        tcp.success && answer == "1",
    );

    auth_mistake(lab, n, &replica_pod).await?;
    duplicate_server_id(lab, n, &replica_pod).await?;
    Ok(())
}

/// Runs one statement with the client in the client pod. The password goes in on stdin (into MYSQL_PWD), never on
/// a command line or in the output.
async fn client_sql(lab: &Lab<'_>, password: &str, host: Option<&str>, sql: &str) -> anyhow::Result<ExecOutput> {
    let host = host.map(|h| format!(" -h {h}")).unwrap_or_default();
    let script = format!(
        "MYSQL_PWD=\"$(cat)\" exec {}{host} -uroot -N -B -e '{sql}'",
        lab.client()
    );
    Ok(lab
        .cluster
        .exec(
            lab.namespace,
            CLIENT_POD,
            CLIENT_CONTAINER,
            &["sh", "-c", &script],
            password,
        )
        .await?)
}

/// Pure: the socket attempt failed with 2002. Returns the client's first error line and whether it matched.
pub fn judge_socket_error(output: &ExecOutput) -> (String, bool) {
    let line = first_line(&output.stderr);
    let matched = !output.success && line.contains("ERROR 2002");
    (if line.is_empty() { "it worked".into() } else { line }, matched)
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The IO error a replica stops with when its server_id equals its source's: MariaDB 1593; MySQL 8 13117
/// ("Fatal error: The replica I/O thread stops because source and replica have equal MySQL server ids", mysql-notes
/// 14).
pub fn duplicate_server_id_errno(flavor: Flavor) -> u32 {
    match flavor {
        Flavor::MariaDb => 1593,
        Flavor::MySql => 13117,
    }
}

/// Whether the replication auth mistake (2061) can happen: MySQL with a caching_sha2_password replication account
/// (MySQL 8's default plugin; refman "Caching SHA-2 Pluggable Authentication", mysql-notes 13). MariaDB's accounts
/// use mysql_native_password (or ed25519 by choice), which needs no RSA key exchange.
pub fn auth_mistake_applies(flavor: Flavor, plugin: Option<&str>) -> bool {
    flavor == Flavor::MySql && plugin == Some("caching_sha2_password")
}

/// Pure: the wait for running replication failed with `errno` on the IO thread.
pub fn failed_with(result: &Result<crate::database::ReplicaStatus, DbError>, errno: u32) -> (String, bool) {
    match result {
        Err(DbError::ReplicationFailed {
            errno: got, message, ..
        }) => (format!("IO error {got}: {message}"), *got == errno),
        Err(other) => (other.to_string(), false),
        Ok(status) => (
            format!("still running (IO {}, SQL {})", status.io_running, status.sql_running),
            false,
        ),
    }
}

async fn auth_mistake(lab: &Lab<'_>, n: &mut Narrator, replica_pod: &str) -> anyhow::Result<()> {
    let user = lab.accounts.replication.user.clone();
    let mut primary = lab.session(PRIMARY_POD).await?;
    let plugin = primary.db.account_plugin(&user).await?;
    primary.close().await;
    let applies = auth_mistake_applies(lab.flavor, plugin.as_deref());
    n.step(
        "mistake: a MySQL replica without the source's public key (error 2061)",
        "MySQL 8 accounts use caching_sha2_password: without TLS, a replica must ask for the source's RSA public \
         key (GET_SOURCE_PUBLIC_KEY=1). Without it replication works only while the source's password cache holds \
         the account, so it breaks at the first source restart",
        &[lab.sql(
            PRIMARY_POD,
            &format!("SELECT plugin FROM mysql.user WHERE user = '{user}'"),
        )],
    )
    .await;
    let plugin_text = plugin.clone().unwrap_or_else(|| "no such account".into());
    if !applies {
        let expected = if lab.flavor == Flavor::MariaDb {
            "not caching_sha2_password (MariaDB)"
        } else {
            "caching_sha2_password or another plugin"
        };
        n.observe(
            &format!("{user}'s authentication plugin"),
            expected,
            plugin_text.clone(),
            None,
            plugin.as_deref().is_some_and(|p| p != "caching_sha2_password"),
        );
        n.note(&if lab.flavor == Flavor::MariaDb {
            format!(
                "does not apply here: MariaDB has no caching_sha2_password; {user} authenticates with {plugin_text}, \
                 which sends no RSA key, and CHANGE MASTER TO has no GET_MASTER_PUBLIC_KEY option (1064). On MySQL \
                 this demo turns the option off, restarts the primary and shows IO error 2061"
            )
        } else {
            format!("{user} authenticates with {plugin_text}, which needs no RSA key: the mistake cannot happen")
        });
        return Ok(());
    }
    n.observe(
        &format!("{user}'s authentication plugin"),
        "caching_sha2_password",
        plugin_text,
        None,
        true,
    );
    let mut replica = lab.session(replica_pod).await?;
    let off = replica
        .db
        .dialect()
        .public_key_option(false)
        .map(|s| s.text().to_string())
        .unwrap_or_default();
    let on = replica
        .db
        .dialect()
        .public_key_option(true)
        .map(|s| s.text().to_string())
        .unwrap_or_default();
    let stop_io = replica.db.dialect().stop_io_thread().text().to_string();
    let start_io = replica.db.dialect().start_io_thread().text().to_string();
    n.step(
        &format!("turn the public-key option off on {replica_pod}, restart the primary"),
        "the restart empties the primary's password cache: the next login of the replica needs the key",
        &[
            lab.sql(replica_pod, &format!("{stop_io}; {off}; {start_io}")),
            lab.kubectl(&format!("delete pod {PRIMARY_POD}")),
        ],
    )
    .await;
    repair_on_interrupt(format!(
        "{} && lab up",
        lab.sql(replica_pod, &format!("{stop_io}; {on}; {start_io}"))
    ));
    replica.db.set_get_public_key(false).await?;
    let uid = lab
        .cluster
        .pod_identity(lab.namespace, PRIMARY_POD)
        .await?
        .map(|p| p.uid)
        .unwrap_or_default();
    lab.cluster.delete_pod(lab.namespace, PRIMARY_POD).await?;
    lab.cluster
        .wait_pods_gone(lab.namespace, &[(PRIMARY_POD.to_string(), uid)], lab.deadline)
        .await?;
    lab.cluster
        .wait_pod_ready(lab.namespace, PRIMARY_POD, lab.deadline, &|_| {})
        .await?;
    let result = replica
        .db
        .wait_replication_running(lab.deadline.min(Instant::now() + ERROR_WAIT))
        .await;
    let (observed, matched) = failed_with(&result, 2061);
    n.observe(
        &format!("{replica_pod} after the restart"),
        "IO error 2061",
        observed,
        None,
        matched,
    );

    n.step(
        "undo: the public-key option back on",
        "with GET_SOURCE_PUBLIC_KEY=1 the replica fetches the key and logs in again",
        &[lab.sql(replica_pod, &format!("{stop_io}; {on}; {start_io}"))],
    )
    .await;
    replica.db.set_get_public_key(true).await?;
    let running = replica.db.wait_replication_running(lab.deadline).await;
    clear_repair_on_interrupt();
    observe_running_again(n, replica_pod, "running again", &running);
    replica.close().await;
    Ok(())
}

async fn duplicate_server_id(lab: &Lab<'_>, n: &mut Narrator, replica_pod: &str) -> anyhow::Result<()> {
    let mut primary = lab.session(PRIMARY_POD).await?;
    let primary_id = primary.db.facts().await?.server_id;
    primary.close().await;
    let mut replica = lab.session(replica_pod).await?;
    let own_id = replica.db.facts().await?.server_id;
    let expected = duplicate_server_id_errno(lab.flavor);
    let stop_io = replica.db.dialect().stop_io_thread().text().to_string();
    let start_io = replica.db.dialect().start_io_thread().text().to_string();
    n.step(
        &format!("mistake: {replica_pod} with the primary's server id"),
        "every server in a replication topology needs its own server_id: a source refuses a replica with its own \
         id (the ids tell whose events are whose). The manifests derive it from the pod's ordinal; here it is \
         changed at runtime only",
        &[lab.sql(
            replica_pod,
            &format!("SET GLOBAL server_id = {primary_id}; {stop_io}; {start_io}"),
        )],
    )
    .await;
    // A restart brings back the configured id; `lab up` alone would wait on the stopped IO thread.
    repair_on_interrupt(format!(
        "{} && lab up",
        lab.kubectl(&format!("delete pod {replica_pod}"))
    ));
    replica.db.set_server_id(primary_id).await?;
    crate::interrupt::checkpoint("demo mistakes: duplicate server id set").await;
    replica.db.restart_io_thread().await?;
    let result = replica
        .db
        .wait_replication_running(lab.deadline.min(Instant::now() + ERROR_WAIT))
        .await;
    let (observed, matched) = failed_with(&result, expected);
    n.observe(
        &format!("{replica_pod}'s IO thread"),
        &format!("IO error {expected}"),
        observed,
        Some((f64::from(expected), "errno")),
        matched,
    );

    n.step(
        &format!("undo: {replica_pod}'s own server id back"),
        "the id the manifests gave it (ordinal + 1); the IO thread then connects again",
        &[lab.sql(
            replica_pod,
            &format!("SET GLOBAL server_id = {own_id}; {stop_io}; {start_io}"),
        )],
    )
    .await;
    replica.db.set_server_id(own_id).await?;
    replica.db.restart_io_thread().await?;
    let running = replica.db.wait_replication_running(lab.deadline).await;
    clear_repair_on_interrupt();
    observe_running_again(
        n,
        replica_pod,
        &format!("running again with server_id {own_id}"),
        &running,
    );
    replica.close().await;
    Ok(())
}

/// Records whether the replica's replication runs again after the demo undid its mistake.
fn observe_running_again(
    n: &mut Narrator,
    replica_pod: &str,
    expected: &str,
    running: &Result<crate::database::ReplicaStatus, DbError>,
) {
    n.observe(
        &format!("{replica_pod} replication"),
        expected,
        match running {
            Ok(s) => format!("IO {}, SQL {}", s.io_running, s.sql_running),
            Err(error) => error.to_string(),
        },
        None,
        running.is_ok(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_attempt_must_fail_with_2002() {
        let failed = ExecOutput {
            success: false,
            stdout: String::new(),
            stderr: "ERROR 2002 (HY000): Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)\n"
                .into(),
        };
        let (line, matched) = judge_socket_error(&failed);
        assert!(matched);
        assert!(line.starts_with("ERROR 2002 (HY000)"));
        let worked = ExecOutput {
            success: true,
            stdout: "1\n".into(),
            stderr: String::new(),
        };
        assert_eq!(judge_socket_error(&worked), ("it worked".to_string(), false));
        let other = ExecOutput {
            success: false,
            stdout: String::new(),
            stderr: "ERROR 1045 (28000): Access denied".into(),
        };
        assert!(!judge_socket_error(&other).1);
    }

    #[test]
    fn the_auth_mistake_applies_to_mysql_with_caching_sha2_only() {
        assert!(auth_mistake_applies(Flavor::MySql, Some("caching_sha2_password")));
        assert!(!auth_mistake_applies(Flavor::MySql, Some("mysql_native_password")));
        assert!(!auth_mistake_applies(Flavor::MariaDb, Some("mysql_native_password")));
        assert!(!auth_mistake_applies(Flavor::MySql, None));
    }

    #[test]
    fn a_duplicate_server_id_stops_the_io_thread_with_the_flavours_own_number() {
        assert_eq!(duplicate_server_id_errno(Flavor::MariaDb), 1593);
        assert_eq!(duplicate_server_id_errno(Flavor::MySql), 13117);
        let failure = |errno: u32| -> Result<crate::database::ReplicaStatus, DbError> {
            Err(DbError::ReplicationFailed {
                server: "mysql-1".into(),
                thread: crate::database::ReplicationThread::Io,
                errno,
                message: "equal server ids".into(),
                finding: crate::database::explain_replication_error(errno, "equal server ids"),
            })
        };
        assert_eq!(
            failed_with(&failure(1593), 1593),
            ("IO error 1593: equal server ids".to_string(), true)
        );
        assert!(!failed_with(&failure(2003), 1593).1);
        assert!(failed_with(&failure(2061), 2061).1);
    }
}
