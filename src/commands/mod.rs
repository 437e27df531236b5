//! One module per subcommand, plus what they share: the lab's names, credentials and database sessions.

pub mod checklist;
pub mod demo;
pub mod exercise;
pub mod inspect;
pub mod list;
pub mod render;
pub mod repair;
pub mod sim;
pub mod status;
pub mod teardown;
pub mod up;
pub mod verify;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::time::Instant;

use crate::cluster::{Cluster, ClusterTarget, Forward};
use crate::database::{Credentials, Db};
use crate::exit::UsageError;
use crate::secret::SecretString;
use crate::settings::Settings;

/// The names the manifests give things (see `manifests/`).
pub const STATEFULSET: &str = "mysql";
pub const HEADLESS_SERVICE: &str = "mysql-headless";
pub const SECRET: &str = "mysql-secret";
/// The Secret key the images read root's password from on their first start.
pub const ROOT_PASSWORD_KEY: &str = "MYSQL_ROOT_PASSWORD";
pub const PRIMARY_POD: &str = "mysql-0";
/// The tutorial's client pod (`06-client-pod.yaml`) and its container, where students run their queries and lookups.
pub const CLIENT_POD: &str = "mysql-client";
pub const CLIENT_CONTAINER: &str = "client";
pub const DATABASE_PORT: u16 = 3306;
pub const ROLE_LABEL: &str = "lab.dev/role";
/// Where the captured binlog coordinates are kept: on the primary's data volume, because they describe that
/// data. They outlive the StatefulSet (`teardown --keep-data`) and die with the data they point into.
pub const ORIGIN_PVC: &str = "data-mysql-0";
pub const ORIGIN_ANNOTATION: &str = "lab.dev/binlog-origin";
/// The non-admin account used to prove that replicas refuse writes from ordinary users.
pub const PROBE_USER: &str = "lab_probe";

pub fn pod_name(ordinal: u32) -> String {
    format!("{STATEFULSET}-{ordinal}")
}

/// The primary's stable DNS name, through the headless Service.
pub fn primary_host(namespace: &str) -> String {
    format!("{PRIMARY_POD}.{HEADLESS_SERVICE}.{namespace}.svc.cluster.local")
}

/// Where a replica of the lab in `namespace` replicates from: the primary's stable name, from `origin`.
pub fn primary_source(
    namespace: &str,
    replication: &Credentials,
    origin: crate::database::Coordinates,
) -> crate::database::SourceConfig {
    crate::database::SourceConfig {
        host: primary_host(namespace),
        port: DATABASE_PORT,
        credentials: replication.clone(),
        origin,
    }
}

pub async fn connect_cluster(settings: &Settings) -> anyhow::Result<Cluster> {
    let target = ClusterTarget {
        kubeconfig: settings.kubeconfig.clone(),
        context: settings.context.clone(),
    };
    Ok(Cluster::connect(&target).await?)
}

/// A lab that `lab up` built: how many pods its StatefulSet runs, and the accounts from its Secret.
pub async fn find_lab(cluster: &Cluster, namespace: &str) -> anyhow::Result<(u32, Accounts)> {
    let Some(pods) = cluster.statefulset_replicas(namespace, STATEFULSET).await? else {
        return Err(UsageError::new(format!(
            "no lab in namespace {namespace} (no StatefulSet {STATEFULSET}): run `lab up` first, or pass -n NAMESPACE"
        ))
        .into());
    };
    let accounts = Accounts::from_secret(&cluster.secret_values(namespace, SECRET).await?)?;
    Ok((pods, accounts))
}

/// The passwords the tutorial publishes in its Secret (section 3, `02-secret.yaml`).
const TUTORIAL_PASSWORDS: [&str; 2] = ["root", "replpass"];

/// The accounts `lab` uses, read from the cluster Secret so that nothing is hard-coded or printed.
pub struct Accounts {
    pub root: Credentials,
    pub replication: Credentials,
    pub probe: Credentials,
}

impl Accounts {
    /// Whether root's or the replication account's password is still one the tutorial publishes.
    pub fn uses_tutorial_passwords(&self) -> bool {
        [&self.root.password, &self.replication.password]
            .iter()
            .any(|password| TUTORIAL_PASSWORDS.contains(&password.expose()))
    }

    pub fn from_secret(values: &BTreeMap<String, SecretString>) -> anyhow::Result<Accounts> {
        let get = |key: &str| {
            values.get(key).cloned().ok_or_else(|| {
                UsageError::new(format!(
                    "Secret {SECRET} has no key {key}: add it to the Secret manifest (02-secret.yaml) and run `lab up` again"
                ))
            })
        };
        let root = Credentials {
            user: "root".into(),
            password: get(ROOT_PASSWORD_KEY)?,
        };
        let replication = Credentials {
            user: get("REPLICATION_USER")?.expose().to_string(),
            password: get("REPLICATION_PASSWORD")?,
        };
        check_replication_password(&replication.password)?;
        // The tutorial's Secret has no probe password; fall back to the replication password then.
        let probe_password = values
            .get("PROBE_PASSWORD")
            .cloned()
            .unwrap_or_else(|| replication.password.clone());
        let probe = Credentials {
            user: PROBE_USER.into(),
            password: probe_password,
        };
        Ok(Accounts {
            root,
            replication,
            probe,
        })
    }
}

/// The longest replication password a replica accepts: CHANGE REPLICATION SOURCE TO rejects a longer
/// SOURCE_PASSWORD (MySQL error 3056, refman change-replication-source-to: "SOURCE_PASSWORD ... maximum length
/// 32 characters"; measured on MySQL 8.0.40, mysql-notes 14), MariaDB with 1470, echoing part of the password.
pub const MAX_REPLICATION_PASSWORD_CHARS: usize = 32;

/// Refuses a replication password the replicas cannot take, before anything is applied. Names the key, the limit
/// and the length, never the value.
pub fn check_replication_password(password: &SecretString) -> Result<(), UsageError> {
    let length = password.expose().chars().count();
    if length > MAX_REPLICATION_PASSWORD_CHARS {
        return Err(UsageError::new(format!(
            "Secret {SECRET} key REPLICATION_PASSWORD is {length} characters long; replicas accept at most \
             {MAX_REPLICATION_PASSWORD_CHARS} (CHANGE REPLICATION SOURCE TO fails with a longer one): set a \
             shorter password in the Secret manifest (02-secret.yaml) and run `lab up` again"
        )));
    }
    Ok(())
}

/// A database session on one pod: its port-forward and its connection, reused within a run.
pub struct Session {
    pub pod: String,
    /// Kept alive as long as the session: dropping it closes the local listener.
    forward: Forward,
    pub db: Db,
}

impl Session {
    /// Opens a port-forward to the pod and logs in, retrying transient errors until `deadline`.
    pub async fn open(
        cluster: &Cluster,
        namespace: &str,
        pod: &str,
        credentials: &Credentials,
        deadline: Instant,
    ) -> anyhow::Result<Session> {
        let forward = cluster.forward(namespace, pod, DATABASE_PORT).await?;
        let db = Db::connect(forward.addr(), credentials, deadline)
            .await
            .with_context(|| format!("{pod}: the database does not accept connections"))?;
        Ok(Session {
            pod: pod.to_string(),
            forward,
            db,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.forward.addr()
    }

    pub async fn close(self) {
        self.db.close().await;
    }
}

/// Joins a list of names for messages: `mysql-1, mysql-2`.
pub fn join_names<S: AsRef<str>>(names: &[S]) -> String {
    names.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::new(*v)))
            .collect()
    }

    #[test]
    fn accounts_come_from_the_secret_and_the_probe_falls_back_to_the_replication_password() {
        let values = secret(&[
            ("MYSQL_ROOT_PASSWORD", "r"),
            ("REPLICATION_USER", "repl"),
            ("REPLICATION_PASSWORD", "p"),
        ]);
        let accounts = Accounts::from_secret(&values).unwrap();
        assert_eq!(accounts.root.user, "root");
        assert_eq!(accounts.root.password.expose(), "r");
        assert_eq!(accounts.replication.user, "repl");
        assert_eq!(accounts.probe.user, PROBE_USER);
        assert_eq!(accounts.probe.password.expose(), "p");
    }

    #[test]
    fn a_missing_key_names_the_key_and_the_fix() {
        let err = Accounts::from_secret(&secret(&[("MYSQL_ROOT_PASSWORD", "r")]))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "Secret mysql-secret has no key REPLICATION_USER: add it to the Secret manifest (02-secret.yaml) and run `lab up` again"
        );
    }

    #[test]
    fn a_replication_password_over_32_characters_is_refused_without_showing_it() {
        let long = "p".repeat(33);
        let values = secret(&[
            ("MYSQL_ROOT_PASSWORD", "r"),
            ("REPLICATION_USER", "repl"),
            ("REPLICATION_PASSWORD", &long),
        ]);
        let err = Accounts::from_secret(&values).err().expect("refused");
        assert_eq!(crate::exit::classify(&err), crate::exit::ExitStatus::Usage);
        let text = err.to_string();
        assert_eq!(
            text,
            "Secret mysql-secret key REPLICATION_PASSWORD is 33 characters long; replicas accept at most 32 \
             (CHANGE REPLICATION SOURCE TO fails with a longer one): set a shorter password in the Secret manifest \
             (02-secret.yaml) and run `lab up` again"
        );
        assert!(!text.contains(&long));
        // Characters, not bytes: 32 two-byte characters are accepted.
        let exactly = "é".repeat(32);
        let values = secret(&[
            ("MYSQL_ROOT_PASSWORD", "r"),
            ("REPLICATION_USER", "repl"),
            ("REPLICATION_PASSWORD", &exactly),
        ]);
        assert!(Accounts::from_secret(&values).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(pod_name(2), "mysql-2");
        assert_eq!(
            primary_host("database"),
            "mysql-0.mysql-headless.database.svc.cluster.local"
        );
        assert_eq!(join_names(&["a", "b"]), "a, b");
    }
}
