//! `lab up --explain`: before each step, what it does and why, and the commands a student would type to do it by
//! hand: the tutorial's commands where it has them, corrected where it is wrong (each correction says what and why).
//!
//! The SQL is the SQL `lab` runs: rendered by the same [`Dialect`] for the server that answered, with the real
//! namespace, pods and captured binlog coordinates, and every password as `******` (the statements are rendered
//! with `******` in place of the password, so no secret ever reaches this module).
//!
//! Where it goes: the explanation is narration, like `lab demo`'s, so it goes to stderr with the progress; stdout
//! keeps the result (with `-o json` one JSON report). Its shape makes the SQL extractable, so a test can replay the
//! transcript on real servers: a session starts with a `$ kubectl ... exec -it POD -- mysql ...` line, and each
//! statement is one line `   USER@POD> STATEMENT;`, optionally followed by `  -- comment` (`-- expected: ERROR N`
//! when the statement must fail). `<File>` and `<Position>` stand for what the `SHOW MASTER STATUS` just above
//! printed, when the step has not run yet.

use crate::database::{
    APP_DATABASE, Coordinates, Credentials, Dialect, Flavor, PROBE_USER, ReplicaProtection, SourceConfig, Statement,
    VALIDATION_TABLE, revoke_targets,
};
use crate::plan::{StepOutcome, StepRecord};
use crate::secret::SecretString;

use super::super::{HEADLESS_SERVICE, ORIGIN_ANNOTATION, ORIGIN_PVC, PRIMARY_POD, ROLE_LABEL, SECRET, STATEFULSET};

/// How passwords appear in commands and SQL.
pub const HIDDEN: &str = "******";
/// Stand-ins for coordinates a step reads while it runs (after its explanation was printed).
pub const FILE_PLACEHOLDER: &str = "<File>";
pub const POSITION_PLACEHOLDER: &str = "<Position>";

/// One line a student types at a database prompt, with an optional comment (what to look at, or the error to
/// expect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlLine {
    pub sql: String,
    pub comment: Option<String>,
}

/// What a student types for one step: shell commands, or a database session on a pod as an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Shell(String),
    Sql {
        pod: String,
        user: String,
        lines: Vec<SqlLine>,
    },
}

/// One step explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub step: String,
    /// Where the tutorial does this, if it does.
    pub tutorial: Option<String>,
    /// What the step does and why, in a sentence or two.
    pub what: String,
    pub blocks: Vec<Block>,
    /// What the tutorial gets wrong here, each with what was corrected and why.
    pub corrected: Vec<String>,
}

/// What every explanation needs: where the lab is and how a student reaches its databases.
#[derive(Debug, Clone)]
pub struct Context {
    pub namespace: String,
    /// `mysql` or `mariadb`: MariaDB 11 images no longer ship a `mysql` client.
    pub client: &'static str,
}

impl Context {
    pub fn new(namespace: &str, flavor: Flavor) -> Context {
        Context {
            namespace: namespace.to_string(),
            client: match flavor {
                Flavor::MySql => "mysql",
                Flavor::MariaDb => "mariadb",
            },
        }
    }

    fn kubectl(&self, args: &str) -> String {
        format!("kubectl -n {} {args}", self.namespace)
    }
}

impl Explanation {
    fn new(step: &str, tutorial: Option<&str>, what: &str) -> Explanation {
        Explanation {
            step: step.to_string(),
            tutorial: tutorial.map(str::to_string),
            what: what.to_string(),
            blocks: Vec::new(),
            corrected: Vec::new(),
        }
    }

    fn shell(mut self, command: String) -> Self {
        self.blocks.push(Block::Shell(command));
        self
    }

    fn sql(mut self, pod: &str, user: &str, lines: Vec<SqlLine>) -> Self {
        self.blocks.push(Block::Sql {
            pod: pod.to_string(),
            user: user.to_string(),
            lines,
        });
        self
    }

    fn corrected(mut self, text: &str) -> Self {
        self.corrected.push(text.to_string());
        self
    }

    /// The text printed before the step.
    pub fn render(&self, context: &Context) -> String {
        let mut out = format!("\n── explain: {}", self.step);
        if let Some(tutorial) = &self.tutorial {
            out.push_str(&format!("  (tutorial: {tutorial})"));
        }
        out.push_str(&format!("\n   {}\n", self.what));
        for block in &self.blocks {
            match block {
                Block::Shell(command) => out.push_str(&format!("   $ {command}\n")),
                Block::Sql { pod, user, lines } => {
                    out.push_str(&format!(
                        "   $ {}\n",
                        context.kubectl(&format!(
                            "exec -it {pod} -- {} -h127.0.0.1 -u{user} -p{HIDDEN}",
                            context.client
                        ))
                    ));
                    for line in lines {
                        let terminated = if line.sql.ends_with("\\G") {
                            line.sql.clone()
                        } else {
                            format!("{};", line.sql)
                        };
                        match &line.comment {
                            Some(comment) => out.push_str(&format!("   {user}@{pod}> {terminated}  -- {comment}\n")),
                            None => out.push_str(&format!("   {user}@{pod}> {terminated}\n")),
                        }
                    }
                }
            }
        }
        for correction in &self.corrected {
            out.push_str(&format!("   corrected: {correction}\n"));
        }
        out.trim_end().to_string()
    }
}

fn line(sql: impl Into<String>) -> SqlLine {
    SqlLine {
        sql: sql.into(),
        comment: None,
    }
}

fn commented(sql: impl Into<String>, comment: &str) -> SqlLine {
    SqlLine {
        sql: sql.into(),
        comment: Some(comment.to_string()),
    }
}

/// An account as it appears in explanations: its name, and `******` for its password.
pub fn hidden(user: &str) -> Credentials {
    Credentials {
        user: user.to_string(),
        password: SecretString::new(HIDDEN),
    }
}

/// `source` with its password shown as [`HIDDEN`], to render the statements a student types.
pub fn hidden_source(source: &SourceConfig) -> SourceConfig {
    SourceConfig {
        credentials: hidden(&source.credentials.user),
        ..source.clone()
    }
}

/// Statements as a student types them on one line.
pub fn as_typed(statements: &[Statement]) -> String {
    statements.iter().map(Statement::text).collect::<Vec<_>>().join("; ")
}

/// Printed once, before the first step: where the hidden passwords come from.
pub fn intro(context: &Context) -> String {
    format!(
        "── explain: each step below says what it does and why, then the commands to do it by hand (`$` lines in a \
         shell, `USER@POD>` lines at the database prompt that the `$ ... exec -it` line above them opens).\n   \
         {HIDDEN} stands for a password from Secret {SECRET}: root's is MYSQL_ROOT_PASSWORD, the replication \
         account's REPLICATION_PASSWORD, {PROBE_USER}'s PROBE_PASSWORD (REPLICATION_PASSWORD when the Secret has \
         none). To read one: {}",
        context.kubectl(&format!(
            "get secret {SECRET} -o jsonpath='{{.data.REPLICATION_PASSWORD}}' | base64 -d"
        ))
    )
}

pub fn preflight(context: &Context) -> Explanation {
    Explanation::new(
        "preflight",
        None,
        "Checks the cluster before anything is applied: the API server answers, a default StorageClass exists (the \
         claims of the volumeClaimTemplate name no class, so without a default they stay Pending), the namespace is \
         not someone else's, and a running lab keeps its image, its start policy and its root password.",
    )
    .shell("kubectl version".to_string())
    .shell("kubectl get storageclass                # one must say (default)".to_string())
    .shell(format!(
        "kubectl get namespace {} --show-labels   # absent, or labelled app.kubernetes.io/managed-by=lab",
        context.namespace
    ))
    .corrected(
        "the tutorial checks nothing first: on a cluster without a default StorageClass its PVCs stay Pending and \
         the pods never start, with no message pointing there",
    )
}

pub fn apply(context: &Context, render_args: &str) -> Explanation {
    Explanation::new(
        "apply manifests",
        Some("sections 3 and 4, kubectl apply -f k8s/00-namespace.yaml … k8s/06-client-pod.yaml"),
        "Creates the namespace, the headless Service (per-pod DNS names), the Secret, the StatefulSet (mysql-0, \
         mysql-1, … each with its own claim data-mysql-N), the mysql-primary and mysql-replicas Services and the \
         client pod, in the tutorial's order. `lab render` prints the same objects lab applies: the tutorial's \
         files, corrected.",
    )
    .shell(format!("lab render{render_args} --show-secrets > lab.yaml"))
    .shell("kubectl apply -f lab.yaml".to_string())
    .shell(context.kubectl("get pods,pvc"))
    .corrected(
        "03-statefulset.yaml: volumeClaimTemplates is indented under spec: of the claim, so the YAML does not \
         describe a StatefulSet with claim templates; here it is a field of the StatefulSet's spec",
    )
    .corrected(
        "03-statefulset.yaml: super-read-only=ON in the replicas' config makes MariaDB abort (unknown option) and \
         the MySQL image's first-start SQL fail; the config keeps read-only=ON and lab protects the replicas at \
         runtime (see configure replicas)",
    )
    .corrected(
        "03-statefulset.yaml: no readiness probe (pods were Ready before the database accepted TCP), no resource \
         requests (BestEffort pods are evicted first) and the time zone tables loaded on every first start (about \
         16 s on MySQL 8.0): a TCP readiness probe, memory and cpu requests, and MYSQL_INITDB_SKIP_TZINFO are added",
    )
    .corrected(&format!(
        "05-service-replicas.yaml selects app: mysql, which every pod has, so \"replica\" reads reach the primary \
         too (the tutorial says so itself); it selects {ROLE_LABEL}=replica, a label lab sets on the replicas"
    ))
    .corrected(
        "06-client-pod.yaml runs `sleep 3600`: the client exits after an hour and ignores SIGTERM; it sleeps in a \
         loop and exits on TERM",
    )
}

pub fn wait_for(context: &Context, pod: &str) -> Explanation {
    Explanation::new(
        &format!("wait for {pod}"),
        Some("section 4, kubectl get pods -n database"),
        &format!(
            "Waits until {pod} is Ready and its database answers a query over TCP. The StatefulSet starts \
             mysql-0 first and each next pod once the one before it is Ready (all at once with --parallel); the \
             init container writes the pod's server-id (its ordinal + 1) and, on mysql-0 only, the binary log \
             settings."
        ),
    )
    .shell(context.kubectl(&format!("wait --for=condition=Ready pod/{pod} --timeout=600s")))
    .shell(context.kubectl(&format!("logs {pod} -c init-mysql-config   # the generated server.cnf")))
    .sql(pod, "root", vec![line("SELECT VERSION()")])
    .corrected(
        "the tutorial's pods have no readiness probe: Ready came while the image's first start still ran its \
         temporary server with networking off, and a client that went on at Ready got error 2003; the pods now have \
         a TCP readiness probe, and lab also waits until SELECT answers",
    )
}

/// The coordinates statement and what it teaches.
fn show_origin(dialect: &Dialect, comment: &str) -> SqlLine {
    commented(dialect.binlog_coordinates().text(), comment)
}

pub fn primary_setup(context: &Context, dialect: &Dialect, replication_user: &str) -> Explanation {
    let mut lines: Vec<SqlLine> = dialect
        .replication_user(&hidden(replication_user))
        .iter()
        .map(|s| line(s.text()))
        .collect();
    lines.push(show_origin(
        dialect,
        "File and Position: the binlog origin every replica starts from",
    ));
    lines.push(commented(
        dialect.binary_logs().text(),
        "the origin's File must be listed (still on disk)",
    ));
    lines.push(line(dialect.create_appdb().text()));
    lines.extend(dialect.probe_user(&hidden(PROBE_USER)).iter().map(|s| line(s.text())));
    // MariaDB before 12: the socket-only account replicates to every replica, the way `lab repair` writes there.
    for statement in dialect.socket_admin().unwrap_or_default() {
        lines.push(if statement.text().starts_with("CREATE USER") {
            commented(
                statement.text(),
                "replicated: only the server's OS user on a replica's socket can log in (lab repair)",
            )
        } else {
            line(statement.text())
        });
    }
    let mut explanation = Explanation::new(
        "primary setup",
        Some("section 5, scripts/01-primary-setup.sql"),
        &format!(
            "On {PRIMARY_POD}: creates the replication account, reads the binary log position the replicas will \
             start from (recorded on claim {ORIGIN_PVC}, so that a re-run or a replica added later starts from the \
             same place), then creates {APP_DATABASE} and an ordinary account for the read-only test. Skipped \
             parts: an origin already recorded is kept."
        ),
    )
    .sql(PRIMARY_POD, "root", lines)
    .shell(context.kubectl(&format!(
        "annotate pvc {ORIGIN_PVC} {ORIGIN_ANNOTATION}='{{\"file\":\"{FILE_PLACEHOLDER}\",\"position\":{POSITION_PLACEHOLDER}}}'"
    )))
    .corrected(&format!(
        "order: the tutorial creates {APP_DATABASE} first and runs SHOW MASTER STATUS last. With \
         binlog-do-db={APP_DATABASE} the CREATE DATABASE event is then before the copied position: the replica never \
         creates {APP_DATABASE} and stops with error 1049 at the first table. The position is read first here"
    ))
    .corrected(
        "IDENTIFIED WITH mysql_native_password is a syntax error on MariaDB, disabled by default in MySQL 8.4 and \
         removed in 9.0: plain IDENTIFIED BY (on MySQL the replica then asks for the primary's public key, see \
         configure replicas); no FLUSH PRIVILEGES, account statements take effect at once",
    )
    .corrected(
        "sql_log_bin = 0 around the replication account: the replicas do not need it, and MySQL would binlog the \
         account statements despite binlog-do-db; a re-run then replicates an ALTER USER for an account a replica \
         lacks (error 1396). ALTER USER makes a re-run after a Secret change set the new password",
    );
    if dialect.binlog_coordinates().text() != "SHOW MASTER STATUS" {
        explanation = explanation.corrected(
            "SHOW MASTER STATUS was removed in MySQL 8.4 (deprecated from 8.2): SHOW BINARY LOG STATUS, same \
             columns",
        );
    }
    explanation
}

pub fn configure_replicas(dialect: &Dialect, replicas: &[String], source: &SourceConfig) -> Explanation {
    let hidden_source = hidden_source(source);
    let status = dialect.replica_status().text().to_string() + "\\G";
    let mysql = dialect.flavor() == Flavor::MySql;
    let (columns, host_column) = status_columns(&status);
    let mut explanation = Explanation::new(
        "configure replicas",
        Some("section 5, scripts/02-replica-setup.sql"),
        &format!(
            "On each replica: points it at the primary's stable name {} from the origin read in primary setup \
             ({}:{}), starts replication and waits until both threads run; then keeps root's writes off it. A \
             replica that already replicates from {PRIMARY_POD} is left alone (configuring it again would replay \
             rows it has); one pointed at it but stopped only gets {}.",
            source.host,
            source.origin.file,
            source.origin.position,
            dialect.start_replica()
        ),
    );
    for pod in replicas {
        let mut lines = vec![commented(
            status.clone(),
            &format!(
                "configured already? {host_column} {} with both threads running: stop here",
                source.host
            ),
        )];
        for statement in dialect.configure_replica(&hidden_source) {
            lines.push(if statement.text().starts_with("CHANGE ") {
                commented(
                    statement.text(),
                    &format!(
                        "file and position from {} in primary setup",
                        dialect.binlog_coordinates().text()
                    ),
                )
            } else {
                line(statement.text())
            });
        }
        lines.push(commented(status.clone(), &format!("expected: {columns}")));
        lines.extend(protection(dialect));
        explanation = explanation.sql(pod, "root", lines);
    }
    explanation = explanation
        .corrected(&format!(
            "the tutorial's file and position are typed by hand from SHOW MASTER STATUS (and taken after CREATE \
             DATABASE, see primary setup); here they are the recorded origin, {}:{}",
            source.origin.file, source.origin.position
        ))
        .corrected(
            "an explicit port, and a connect retry of 5 s instead of 60 s: after a primary restart the replica is \
             back within seconds",
        )
        .corrected(
            "the tutorial's `SHOW SLAVE STATUS\\G;` runs the statement, then fails on the empty one after \\G \
             (ERROR: No query specified): \\G ends the statement on its own",
        );
    if dialect.start_replica() == "START REPLICA" {
        explanation = explanation.corrected(
            "STOP/START SLAVE, RESET SLAVE ALL and SHOW SLAVE STATUS became STOP/START REPLICA, RESET REPLICA ALL and \
             SHOW REPLICA STATUS in MySQL 8.0.22, and MySQL 8.4 removed the old forms",
        );
    }
    let change_source = dialect
        .configure_replica(&hidden_source)
        .iter()
        .any(|s| s.text().starts_with("CHANGE REPLICATION SOURCE"));
    if change_source {
        explanation = explanation.corrected(
            "CHANGE MASTER TO MASTER_* became CHANGE REPLICATION SOURCE TO SOURCE_* in MySQL 8.0.23; 8.4 removed the \
             old form",
        );
    }
    if mysql {
        explanation = explanation
            .corrected(
                "the replication account uses caching_sha2_password (not mysql_native_password, see primary \
                 setup): GET_SOURCE_PUBLIC_KEY = 1 lets the replica fetch the primary's RSA key without TLS; without \
                 it the IO thread fails with error 2061 once the password is no longer cached (after a primary \
                 restart)",
            )
            .corrected(
                "retry count 0 (no limit): MySQL 8.4 lowered the default to 10, so a replica stopped for good after \
                 about a minute of primary downtime",
            )
            .corrected(
                "super-read-only is not in the config (it broke the image's first start): SET PERSIST \
                 super_read_only = ON once the replica is configured keeps root's writes off it and survives \
                 restarts",
            );
    } else {
        explanation = explanation
            .corrected(
                "MariaDB 10.10+ switches a file/position replica to GTID on its own: MASTER_USE_GTID = no keeps the \
                 position given",
            )
            .corrected(
                "MariaDB has no super_read_only (the tutorial's super-read-only=ON makes it abort), and read_only \
                 alone lets root write (root holds READ_ONLY ADMIN): before MariaDB 12 that privilege is revoked \
                 from root@'%' on the replica, not binlogged (and from root@localhost where a TCP login matches it; \
                 the socket-only 'mysql'@'localhost' keeps it, for lab repair and to promote the replica one day); \
                 from 12.0 read_only = NO_LOCK_NO_ADMIN does it",
            );
    }
    explanation
}

/// What to read in the replica status: SHOW REPLICA STATUS (MySQL 8.0.22+) names its columns Replica_* and
/// Source_*; SHOW SLAVE STATUS Slave_* and Master_*.
fn status_columns(status: &str) -> (&'static str, &'static str) {
    if status.starts_with("SHOW REPLICA") {
        ("Replica_IO_Running: Yes, Replica_SQL_Running: Yes", "Source_Host")
    } else {
        ("Slave_IO_Running: Yes, Slave_SQL_Running: Yes", "Master_Host")
    }
}

/// How a replica is kept from root's writes, as typed by hand.
fn protection(dialect: &Dialect) -> Vec<SqlLine> {
    match dialect.replica_protection() {
        ReplicaProtection::SuperReadOnly(statement) | ReplicaProtection::NoLockNoAdmin(statement) => {
            vec![line(statement.text())]
        }
        ReplicaProtection::RevokeReadOnlyAdmin => {
            let root = crate::database::Account::new("root", "%");
            let mut lines = vec![commented(
                dialect.current_account().text(),
                "root@% over TCP; revoke from that account too if it is another",
            )];
            for account in revoke_targets(&root) {
                lines.push(commented(
                    dialect.account_grants(&account).text(),
                    "revoke below only while it lists READ_ONLY ADMIN or ALL PRIVILEGES",
                ));
                lines.extend(dialect.revoke_read_only_admin(&account).iter().map(|s| line(s.text())));
            }
            lines
        }
    }
}

pub fn role_labels(context: &Context, replicas: &[String]) -> Explanation {
    let mut explanation = Explanation::new(
        "role labels",
        Some("section 3, 05-service-replicas.yaml (\"you'd add labels like role=primary/replica\")"),
        &format!(
            "Labels each pod with its role: mysql-replicas selects {ROLE_LABEL}=replica, so read traffic reaches the \
             replicas only, and a pod the StatefulSet re-creates comes back without the label until the next \
             `lab up`."
        ),
    )
    .shell(context.kubectl(&format!("label pod {PRIMARY_POD} {ROLE_LABEL}=primary --overwrite")));
    for pod in replicas {
        explanation = explanation.shell(context.kubectl(&format!("label pod {pod} {ROLE_LABEL}=replica --overwrite")));
    }
    explanation
        .shell(context.kubectl("get endpoints mysql-primary mysql-replicas   # mysql-0 alone; the replicas alone"))
        .corrected(
            "the tutorial's mysql-replicas selects app: mysql and so routes reads to the primary too (it says so, \
             and leaves the fix for production): a Service selector cannot exclude one pod, a role label can",
        )
}

pub fn scale_down(context: &Context, leaving: &[String], pods: u32) -> Explanation {
    let mut explanation = Explanation::new(
        "scale down",
        Some("section 8"),
        &format!(
            "The StatefulSet now runs {pods} pods: it deletes the pods above, highest ordinal first. Their claims \
             stay (a later scale-up finds the data)."
        ),
    )
    .shell(context.kubectl(&format!("scale statefulset {STATEFULSET} --replicas={pods}")));
    for pod in leaving {
        explanation = explanation.shell(context.kubectl(&format!("wait --for=delete pod/{pod} --timeout=600s")));
    }
    explanation.shell(context.kubectl("get pvc   # the claims of the pods that left are still Bound"))
}

/// A statement rendered with coordinates the step reads while it runs, shown as `<File>` and `<Position>`.
fn with_placeholder_coordinates(render: impl Fn(&Coordinates) -> String) -> String {
    let marker = u64::MAX;
    render(&Coordinates {
        file: FILE_PLACEHOLDER.to_string(),
        position: marker,
    })
    .replace(&format!("'{FILE_PLACEHOLDER}'"), FILE_PLACEHOLDER)
    .replace(&marker.to_string(), POSITION_PLACEHOLDER)
}

pub fn validation(dialect: &Dialect, replicas: &[String], marker: &str, wait_seconds: u64) -> Explanation {
    let mut primary_lines: Vec<SqlLine> = dialect.write_marker(marker).iter().map(|s| line(s.text())).collect();
    primary_lines.push(show_origin(
        dialect,
        "File and Position just after the row: what each replica must reach",
    ));
    let mut explanation = Explanation::new(
        "validation",
        Some("section 5, scripts/03-validate.sql"),
        &format!(
            "Writes a row on {PRIMARY_POD}, then on each replica waits until it has applied the primary's position \
             (at most {wait_seconds} s) and reads the row back: proof that replication carries {APP_DATABASE}'s \
             writes."
        ),
    )
    .sql(PRIMARY_POD, "root", primary_lines);
    let wait = with_placeholder_coordinates(|at| dialect.wait_for_position(at, wait_seconds).text().to_string());
    for pod in replicas {
        explanation = explanation.sql(
            pod,
            "root",
            vec![
                commented(
                    wait.clone(),
                    "File and Position from just above; 0 or more: reached, -1: timed out, NULL: not replicating",
                ),
                commented(dialect.has_marker(marker).text(), "expected: 1"),
            ],
        );
    }
    explanation
        .corrected(&format!(
            "lab writes to its own table {APP_DATABASE}.{VALIDATION_TABLE}, one new marker per run: the tutorial's \
             INSERT of id 1 fails with 1062 the second time, and its replication_test stays the student's"
        ))
        .corrected(&format!(
            "USE {APP_DATABASE} on the same connection as CREATE TABLE: binlog-do-db filters by the default \
             database, so a CREATE TABLE {APP_DATABASE}.t from elsewhere is not replicated and the replica later stops \
             with 1146"
        ))
        .corrected(
            "the tutorial reads the replica at once; a read right after the write can miss a row still on its way, \
             so the replica first waits for the primary's position",
        )
}

pub fn read_only_test(dialect: &Dialect, replicas: &[String]) -> Explanation {
    let [begin, insert, rollback] = dialect.read_only_check("lab-read-only-check");
    let attempt = || {
        vec![
            line(begin.text()),
            commented(insert.text(), "expected: ERROR 1290 (read-only)"),
            line(rollback.text()),
        ]
    };
    let mut explanation = Explanation::new(
        "read-only test",
        Some("section 5, \"Replica write should fail\""),
        "Tries a write on each replica, as root and as an ordinary account, inside a transaction that is always \
         rolled back: both must be refused with error 1290 (lab adds its connection id to the marker).",
    );
    for pod in replicas {
        explanation = explanation.sql(pod, "root", attempt()).sql(pod, PROBE_USER, attempt());
    }
    explanation
        .corrected(
            "the tutorial's INSERT of (2, 'should_fail') is not rolled back: where the replica wrongly accepts it, \
             the row stays and the primary's own row 2 later stops replication with 1062",
        )
        .corrected(
            "on MariaDB the tutorial's root write succeeds (root holds READ_ONLY ADMIN, which read_only does not \
             stop); lab takes that privilege from root on the replicas, and tests an ordinary account as well",
        )
}

pub fn report(context: &Context, dialect: &Dialect, replicas: &[String]) -> Explanation {
    let status = dialect.replica_status().text().to_string() + "\\G";
    let delay = if status.starts_with("SHOW REPLICA") {
        "Seconds_Behind_Source"
    } else {
        "Seconds_Behind_Master"
    };
    let mut explanation = Explanation::new(
        "report",
        Some("section 5, scripts/04-health-check.sh"),
        "Builds the health report: pods, claims, every server's id and read-only settings, each replica's threads, \
         delay and position against the primary's, the Services' endpoints, the checks above and the section 7 \
         checklist.",
    )
    .shell(context.kubectl("get pods,pvc -o wide"))
    .shell(context.kubectl(&format!(
        "get endpoints {HEADLESS_SERVICE} mysql-primary mysql-replicas"
    )))
    .sql(
        PRIMARY_POD,
        "root",
        vec![
            line("SELECT @@server_id, @@read_only"),
            show_origin(dialect, "the primary's position, to compare"),
        ],
    );
    for pod in replicas {
        explanation = explanation.sql(
            pod,
            "root",
            vec![
                commented("SELECT @@server_id, @@read_only", "a server_id of its own; read_only 1"),
                commented(
                    status.clone(),
                    &format!("both threads Yes; {delay} NULL means not replicating, not 0"),
                ),
            ],
        );
    }
    if status.starts_with("SHOW REPLICA") {
        explanation = explanation.corrected(
            "the health check's SHOW SLAVE STATUS and `egrep Slave_IO_Running|…` find nothing on MySQL 8.4, whose \
             SHOW REPLICA STATUS names the columns Replica_IO_Running, Replica_SQL_Running, \
             Seconds_Behind_Source",
        );
    }
    explanation.corrected(
        "the health check only prints: Connecting is not running, and a NULL delay is not 0; the report judges \
         them (HEALTHY, DEGRADED or BROKEN) and names the fix",
    )
}

/// Prints explanations when `--explain` is on (stderr, with the progress); does nothing otherwise.
pub struct Explainer {
    on: bool,
}

impl Explainer {
    pub fn new(on: bool) -> Explainer {
        Explainer { on }
    }

    pub fn off() -> Explainer {
        Explainer { on: false }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    pub fn intro(&self, context: &Context) {
        if self.on {
            crate::output::narrate(&intro(context));
        }
    }

    /// Before a step: its explanation (built only when it is printed).
    pub fn before(&self, context: &Context, explanation: impl FnOnce() -> Explanation) {
        if self.on {
            crate::output::narrate(&explanation().render(context));
        }
    }

    /// After a step: says so when the step found its work already done.
    pub fn after(&self, records: &[StepRecord]) {
        if self.on
            && let Some(note) = records.last().and_then(already_done)
        {
            crate::output::narrate(&note);
        }
    }
}

/// Pure: the note for a step that changed nothing.
pub fn already_done(record: &StepRecord) -> Option<String> {
    (record.outcome == StepOutcome::Unchanged).then(|| {
        format!(
            "   already done ({}): nothing to type for \"{}\" this time",
            record.detail, record.name
        )
    })
}

#[cfg(test)]
mod tests;
