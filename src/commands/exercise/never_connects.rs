//! `never-connects` (tutorial sections 3 and 5): the replication account's password was changed on the primary
//! alone (`ALTER USER` with `sql_log_bin = 0`, so nothing reached the replicas, and the Secret kept the old value).
//! A replica keeps its open connection; at its next reconnect (a network blip, its IO thread or pod restarted) the
//! primary refuses the login and the IO thread stays `Connecting` with error 1045, retrying for ever.
//!
//! The Secret `mysql-secret` is the source of truth in `lab`: `lab up` sets the account's password from it on the
//! primary (sql/01-primary-setup.sql) and configures replicas with it. So the fix makes both sides agree with the
//! Secret: the account's password on the primary (not binlogged), then each replica's source credentials, changed in
//! place so that it keeps its position. The same fix covers the other way the sides part: the Secret changed and
//! `lab up` set the new password on the primary, but the replicas, already configured, kept the old one.
//!
//! MySQL and MariaDB: both refuse the login with 1045 and keep the IO thread `Connecting` (mysql-notes 14, measured
//! on MySQL 8.0.40: "Connecting, 1045 … attempt 1/86400"; lab sets SOURCE_RETRY_COUNT=0 on MySQL, so 8.4 does not
//! give up after 10 attempts either). MySQL binlogs account statements run without a default database despite
//! `binlog-do-db=appdb` (mysql-notes 14), so a careless `ALTER USER` without `sql_log_bin = 0` would also reach the
//! replicas, which lack the account, and stop their SQL thread with 1396; MariaDB does not log it. Both the fault
//! and the fix run it with `sql_log_bin = 0`. Changing the replica's credentials needs both threads stopped on
//! MariaDB (1198) and only the IO thread on MySQL 8.0.23+: the fix stops both (sql/05-exercises.sql).

use std::hash::{BuildHasher, Hasher};

use futures::future::BoxFuture;

use super::replica_errors::wait_for_error;
use super::{Exercise, Lab};
use crate::commands::up::explain::{as_typed, hidden};
use crate::commands::{MAX_REPLICATION_PASSWORD_CHARS, PRIMARY_POD, SECRET, Session, pod_name};
use crate::database::{Credentials, DbError, Dialect, ReplicationThread};
use crate::secret::SecretString;

/// The IO error of a replica whose source refuses its login: ER_ACCESS_DENIED_ERROR on both flavours (MariaDB
/// measured on the simulator; MySQL 8.0.40 measured, mysql-notes 14).
pub const ACCESS_DENIED: u32 = 1045;

pub struct NeverConnects;

impl Exercise for NeverConnects {
    fn name(&self) -> &'static str {
        "never-connects"
    }

    fn title(&self) -> &'static str {
        "a replica shows Connecting and never catches up"
    }

    fn section(&self) -> &'static str {
        "3, 5"
    }

    fn symptom(&self) -> &'static str {
        "\"mysql-1 shows Connecting and never catches up: rows written on the primary since this morning are not \
         there\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Look at mysql-1's replication status (`SHOW SLAVE STATUS\\G` or `SHOW REPLICA STATUS\\G`): what is the IO \
             thread doing, and what is its last IO error?",
            "Error 1045 is mysql-0 refusing the replication account's login. Three places hold that password: the \
             account on mysql-0, what each replica was configured with, and the Secret mysql-secret. Which of them \
             still agree? (`lab up` takes the Secret as the truth.)",
            "The account's password was changed on mysql-0 alone. The Secret is the truth: set the password back \
             from it on the primary, not binlogged: `SET sql_log_bin = 0; ALTER USER 'repl'@'%' IDENTIFIED BY \
             '<REPLICATION_PASSWORD from mysql-secret>'; SET sql_log_bin = 1`; the replica reconnects within \
             seconds. Had you changed the Secret instead, each replica needs it too: `STOP SLAVE; CHANGE MASTER TO \
             MASTER_USER='repl', MASTER_PASSWORD='…'; START SLAVE` keeps its position. Re-running `lab up` does \
             both.",
        ]
    }

    fn start<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(start(lab))
    }

    fn goal<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(goal(lab))
    }

    fn solve<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(solve(lab))
    }
}

/// A password nobody knows, of the longest length a replica accepts: what the careless change sets. 128 random bits
/// as hex (std's `RandomState` keys are random per process and instance); never printed.
pub fn unknown_password() -> SecretString {
    let mut text = String::new();
    while text.len() < MAX_REPLICATION_PASSWORD_CHARS {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(text.len());
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text.truncate(MAX_REPLICATION_PASSWORD_CHARS);
    SecretString::new(text)
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let careless = Credentials {
        user: lab.accounts.replication.user.clone(),
        password: unknown_password(),
    };
    let mut primary = lab.session(PRIMARY_POD).await?;
    // CREATE USER IF NOT EXISTS, ALTER USER, GRANT, with sql_log_bin = 0: only the ALTER USER changes anything.
    primary.db.ensure_replication_user(&careless).await?;
    primary.close().await;
    // The replicas notice at their next reconnect: a restart of the IO thread, as after a network blip.
    for ordinal in 1..lab.pods {
        let mut replica = lab.session(&pod_name(ordinal)).await?;
        replica.db.restart_io_thread().await?;
        wait_for_error(&mut replica, (ReplicationThread::Io, ACCESS_DENIED), lab.deadline).await?;
        replica.close().await;
    }
    Ok(())
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    // The replicas' own state is in the verify checks. What they do not show: whether a replica set up from the
    // Secret, as `lab up` sets up a new one, would be let in. A real login with the Secret's account says so.
    let refused = match Session::open(
        &lab.cluster,
        lab.namespace,
        PRIMARY_POD,
        &lab.accounts.replication,
        lab.deadline,
    )
    .await
    {
        Ok(session) => {
            session.close().await;
            false
        }
        Err(error) => match error.downcast_ref::<DbError>() {
            Some(DbError::LoginRejected { .. }) => true,
            _ => return Err(error),
        },
    };
    Ok(symptoms(refused))
}

/// Pure: what a user sees when the primary refuses the Secret's replication account.
pub fn symptoms(secret_account_refused: bool) -> Vec<String> {
    if secret_account_refused {
        vec![format!(
            "a replica added now (`lab up --replicas 3`) would show Connecting and never catch up either: mysql-0 \
             refuses the replication account of Secret {SECRET}"
        )]
    } else {
        Vec::new()
    }
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    let account = &lab.accounts.replication;
    let mut primary = lab.session(PRIMARY_POD).await?;
    let dialect: Dialect = primary.db.dialect().clone();
    lab.ran(lab.sql(
        PRIMARY_POD,
        &as_typed(&dialect.replication_user(&hidden(&account.user))),
    ));
    primary.db.ensure_replication_user(account).await?;
    primary.close().await;
    for ordinal in 1..lab.pods {
        let pod = pod_name(ordinal);
        let mut replica = lab.session(&pod).await?;
        let typed = as_typed(&replica.db.dialect().source_credentials(&hidden(&account.user)));
        lab.ran(lab.sql(&pod, &typed));
        replica.db.set_source_credentials(account).await?;
        replica.db.wait_replication_running(lab.deadline).await?;
        replica.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_version;

    #[test]
    fn the_careless_password_is_unknown_and_fits_a_replica() {
        let one = unknown_password();
        let two = unknown_password();
        assert_eq!(one.expose().chars().count(), MAX_REPLICATION_PASSWORD_CHARS);
        assert!(one.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(one.expose(), two.expose(), "random each time");
        assert!(crate::commands::check_replication_password(&one).is_ok());
        assert_eq!(format!("{one}"), "[redacted]");
    }

    #[test]
    fn the_fix_is_shown_with_the_password_masked_and_without_binlogging_the_account_change() {
        let account = Credentials {
            user: "repl".into(),
            password: SecretString::new("s3cret"),
        };
        for version in ["8.4.10", "8.0.21", "10.11.19-MariaDB-0+deb12u1-log"] {
            let dialect = Dialect::for_version(&parse_version(version).unwrap());
            let primary = as_typed(&dialect.replication_user(&hidden(&account.user)));
            // MySQL logs account statements without a default database (mysql-notes 14): they must run with
            // sql_log_bin = 0 on every flavour, or the replicas (which lack the account) stop with 1396.
            assert!(primary.starts_with("SET SESSION sql_log_bin = 0; "), "{primary}");
            assert!(
                primary.contains("ALTER USER 'repl'@'%' IDENTIFIED BY '******'"),
                "{primary}"
            );
            assert!(primary.ends_with("SET SESSION sql_log_bin = 1"), "{primary}");
            let replica = as_typed(&dialect.source_credentials(&hidden(&account.user)));
            assert!(
                replica.contains("_PASSWORD = '******'") && !replica.contains("s3cret"),
                "{replica}"
            );
        }
    }

    #[test]
    fn a_refused_secret_account_is_the_one_symptom_the_verify_checks_do_not_show() {
        assert!(symptoms(false).is_empty());
        let shown = symptoms(true);
        assert_eq!(shown.len(), 1);
        assert!(shown[0].contains("Connecting and never catch up"), "{}", shown[0]);
        // Both flavours refuse the login with the same number (mysql-notes 14).
        assert_eq!(ACCESS_DENIED, 1045);
    }
}
