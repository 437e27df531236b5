//! `lab up`: the tutorial as an ordered plan, from nothing (or from wherever an earlier run stopped) to a
//! proven primary/replica pair and a health report. With `--explain`, each step is explained before it runs
//! (see [`explain`]).

pub mod explain;

use std::collections::BTreeMap;

use anyhow::Context as _;
use futures::future::try_join_all;
use tokio::time::Instant;

use super::check_replication_password;
use super::inspect;
use super::{
    Accounts, ORIGIN_ANNOTATION, ORIGIN_PVC, PRIMARY_POD, ROLE_LABEL, ROOT_PASSWORD_KEY, SECRET, STATEFULSET, Session,
    connect_cluster, join_names, pod_name, primary_source,
};
use crate::cluster::{Cluster, Preflight};
use crate::database::{
    BinaryLog, Coordinates, Credentials, Flavor, ReplicaStatus, SourceConfig, ThreadState, check_origin_available,
    is_transient_replication_error,
};
use crate::exit::UsageError;
use crate::image::{check_database_image, substitution_note};
use crate::interrupt::checkpoint;
use crate::manifests::ManifestSet;
use crate::manifests::{DATABASE_CONTAINER, PARALLEL};
use crate::plan::{Reporter, Runner, Step};
use crate::report::HealthReport;
use crate::secret::SecretString;
use crate::settings::{ManifestSettings, Settings};
use explain::Explainer;

/// Loads the manifests and applies the `--image`, `--replicas`, `--parallel` and `--namespace` edits to the parsed
/// objects.
pub fn load_manifests(manifests: &ManifestSettings, namespace: &str) -> anyhow::Result<ManifestSet> {
    check_database_image(&manifests.image).map_err(|refused| UsageError::new(refused.to_string()))?;
    let set = match &manifests.dir {
        Some(dir) => ManifestSet::from_dir(dir)?,
        None => ManifestSet::embedded(),
    };
    let set = set
        .with_namespace(namespace)?
        .with_image(&manifests.image)?
        .with_replicas_if(manifests.replicas)?;
    Ok(if manifests.parallel {
        set.with_parallel_start()
    } else {
        set
    })
}

pub async fn run(
    settings: &Settings,
    manifests: &ManifestSettings,
    runner: &mut Runner<'_>,
) -> anyhow::Result<HealthReport> {
    run_explained(settings, manifests, runner, &Explainer::off()).await
}

/// `lab up`, each step explained before it runs when `explainer` is on (`--explain`).
pub async fn run_explained(
    settings: &Settings,
    manifests: &ManifestSettings,
    runner: &mut Runner<'_>,
    explainer: &Explainer,
) -> anyhow::Result<HealthReport> {
    let reporter = runner.reporter();
    let deadline = Instant::now() + settings.timeout;
    let namespace = settings.namespace.as_str();
    let set = load_manifests(manifests, namespace)?;
    let cluster = connect_cluster(settings).await?;
    reporter.note(&format!(
        "cluster {} (context {}), namespace {namespace}",
        cluster.server_url(),
        cluster.context().unwrap_or("-")
    ));
    let image_flavor = check_database_image(&manifests.image).map(|image| image.flavor).ok();
    // Until a server answers, the image says which client a student would use.
    let mut context = explain::Context::new(namespace, image_flavor.unwrap_or(Flavor::MySql));
    explainer.intro(&context);

    explainer.before(&context, || explain::preflight(&context));
    let (kept_secrets, keep_parallel) = runner
        .run("preflight", async {
            let preflight = cluster.preflight(namespace).await?;
            let running = cluster
                .statefulset_image(namespace, STATEFULSET, DATABASE_CONTAINER)
                .await?;
            check_image_change(namespace, running.as_deref(), set.database_image())?;
            let policy = cluster
                .statefulset_pod_management_policy(namespace, STATEFULSET)
                .await?;
            let keep_parallel = check_pod_management_change(
                namespace,
                policy.as_deref(),
                set.pod_management_policy(),
                manifests.parallel,
            )?;
            let mut live_secrets = BTreeMap::new();
            for name in set.withheld_secrets().into_iter().chain([SECRET.to_string()]) {
                if let Some(values) = cluster.secret_values_if_present(namespace, &name).await? {
                    live_secrets.insert(name, values);
                }
            }
            let has_data = cluster.pvc_exists(namespace, ORIGIN_PVC).await?;
            let kept = check_secrets(namespace, &set, &live_secrets, has_data)?;
            Ok(Step::passed(describe_preflight(&preflight), (kept, keep_parallel)))
        })
        .await?;
    explainer.after(runner.records());
    let set = if keep_parallel {
        reporter.note("the lab starts its pods in parallel (it was built with --parallel): kept");
        set.with_parallel_start()
    } else {
        set
    };

    let running = cluster.statefulset_replicas(namespace, STATEFULSET).await?;
    let set = match (manifests.replicas, running) {
        // Someone scaled the lab (`kubectl scale`, the tutorial's section 8): keep its size, configure the pods.
        (None, Some(pods)) if pods != set.replicas() && pods > 0 => {
            reporter.note(&format!(
                "keeping the {pods} pods StatefulSet {STATEFULSET} runs now; pass --replicas N to change that"
            ));
            set.with_replicas(pods)?
        }
        _ => set,
    };
    let pods = set.replicas();
    let objects: Vec<_> = set.objects_except_secrets(&kept_secrets).cloned().collect();
    for name in &kept_secrets {
        reporter.note(&format!(
            "Secret {name}: the manifests withhold its values (rendered without --show-secrets), so the cluster's \
             Secret is kept as it is"
        ));
    }

    explainer.before(&context, || {
        explain::apply(
            &context,
            &render_args(namespace, manifests, pods, keep_parallel || manifests.parallel),
        )
    });
    runner
        .run("apply manifests", async {
            let applied = cluster.apply(namespace, &objects).await?;
            // A changed pod template replaces the pods one by one: the steps below must meet the new pods, not
            // ones about to be replaced (after a `kubectl edit` of the init script, say).
            if applied
                .iter()
                .any(|a| a.kind == "StatefulSet" && a.changed && !a.created)
            {
                cluster
                    .wait_template_rolled_out(namespace, STATEFULSET, deadline)
                    .await?;
            }
            let changed: Vec<String> = applied
                .iter()
                .filter(|a| a.changed)
                .map(|a| format!("{}/{}", a.kind, a.name))
                .collect();
            let detail = if changed.is_empty() {
                format!("all {} objects already as declared", applied.len())
            } else {
                format!("applied {}", changed.join(", "))
            };
            Ok(Step::changed_if(!changed.is_empty(), detail, ()))
        })
        .await?;
    explainer.after(runner.records());

    let accounts = Accounts::from_secret(&cluster.secret_values(namespace, SECRET).await?)?;

    explainer.before(&context, || explain::wait_for(&context, PRIMARY_POD));
    let mut primary = runner
        .run("wait for mysql-0", async {
            let mut step =
                wait_for_database(&cluster, namespace, PRIMARY_POD, &accounts.root, deadline, reporter).await?;
            let version = step.value.db.version();
            let note = image_flavor
                .and_then(|expected| substitution_note(&manifests.image, expected, version.flavor, &version.raw));
            if let Some(note) = note {
                reporter.note(&note);
                step.detail = format!("{}; {note}", step.detail);
            }
            Ok(step)
        })
        .await?;
    explainer.after(runner.records());
    // From here on, the statements of the server that answered.
    context = explain::Context::new(namespace, primary.db.version().flavor);
    let dialect = primary.db.dialect().clone();

    explainer.before(&context, || {
        explain::primary_setup(&context, &dialect, &accounts.replication.user)
    });
    let (origin, primary_logs) = runner
        .run(
            "primary setup",
            primary_setup(&cluster, namespace, &mut primary, &accounts),
        )
        .await?;
    explainer.after(runner.records());

    let mut replicas = Vec::new();
    for ordinal in 1..pods {
        let pod = pod_name(ordinal);
        explainer.before(&context, || explain::wait_for(&context, &pod));
        let session = runner
            .run(
                &format!("wait for {pod}"),
                wait_for_database(&cluster, namespace, &pod, &accounts.root, deadline, reporter),
            )
            .await?;
        explainer.after(runner.records());
        replicas.push(session);
    }

    // After a scale-down, the StatefulSet deletes the pods above the new size (highest first); the lab is done
    // when they are gone. Their claims stay: a later scale-up finds the data.
    if let Some(before) = running.filter(|before| *before > pods) {
        let leaving: Vec<String> = (pods..before).map(pod_name).collect();
        explainer.before(&context, || explain::scale_down(&context, &leaving, pods));
        runner
            .run("scale down", async {
                let leaving = cluster.pods_beyond(namespace, STATEFULSET, pods).await?;
                cluster.wait_pods_gone(namespace, &leaving, deadline).await?;
                let names: Vec<String> = (pods..before).map(pod_name).collect();
                Ok(Step::done(
                    format!(
                        "{} left the lab; {} kept (a later scale-up starts from that data)",
                        join_names(&names),
                        if names.len() == 1 {
                            "its claim is"
                        } else {
                            "their claims are"
                        }
                    ),
                    (),
                ))
            })
            .await?;
        explainer.after(runner.records());
    }

    let source = primary_source(namespace, &accounts.replication, origin.clone());
    let replica_pods: Vec<String> = replicas.iter().map(|r| r.pod.clone()).collect();
    explainer.before(&context, || {
        explain::configure_replicas(&dialect, &replica_pods, &source)
    });
    runner
        .run("configure replicas", async {
            super::repair::refuse_interrupted_repairs(&cluster, namespace, &replica_pods).await?;
            configure_replicas(&mut replicas, &source, &primary_logs, deadline).await
        })
        .await?;
    explainer.after(runner.records());

    explainer.before(&context, || explain::role_labels(&context, &replica_pods));
    runner
        .run("role labels", label_roles(&cluster, namespace, &primary, &replicas))
        .await?;
    explainer.after(runner.records());

    let explained = inspect::Explained {
        explainer,
        context: &context,
    };
    inspect::prove_and_report_explained(
        runner, &cluster, namespace, primary, replicas, &accounts, deadline, explained,
    )
    .await
}

/// The `lab render` flags that print the manifests this run applies.
fn render_args(namespace: &str, manifests: &ManifestSettings, pods: u32, parallel: bool) -> String {
    let mut args = format!(" -n {namespace} --image {} --replicas {pods}", manifests.image);
    if let Some(dir) = &manifests.dir {
        args.push_str(&format!(" --manifests {}", dir.display()));
    }
    if parallel {
        args.push_str(" --parallel");
    }
    args
}

/// Refuses to swap the database image of an existing lab: the StatefulSet would restart every server on data
/// another server version (or flavour) wrote, and the client pod, whose spec cannot change, would fail to apply
/// half-way through.
pub fn check_image_change(namespace: &str, running: Option<&str>, requested: Option<&str>) -> Result<(), UsageError> {
    match (running, requested) {
        (Some(running), Some(requested)) if running != requested => Err(UsageError::new(format!(
            "the lab in namespace {namespace} runs {running}; --image {requested} would restart its databases on \
             data written by {running}: run `lab teardown` first (its data goes with it), or pass --image {running}"
        ))),
        _ => Ok(()),
    }
}

/// Checks the Secrets before anything is applied; returns the withheld Secrets to keep as the cluster has them.
///
/// - A Secret rendered without its values (`lab render`) keeps the cluster's values; with no Secret of that name
///   in the cluster there is nothing to keep, and applying it would leave the servers without passwords.
/// - The images set root's password only on a first start, from the Secret. Once the primary's data exists, a
///   different `MYSQL_ROOT_PASSWORD` changes nothing on the servers, and `lab` (which logs in with the Secret's
///   value) could no longer log in: refused, with the ways out that keep the data.
pub fn check_secrets(
    namespace: &str,
    set: &ManifestSet,
    live: &BTreeMap<String, BTreeMap<String, SecretString>>,
    data_exists: bool,
) -> Result<Vec<String>, UsageError> {
    if let Some(password) = set.secret_value(SECRET, "REPLICATION_PASSWORD") {
        check_replication_password(&password)?;
    }
    let withheld = set.withheld_secrets();
    if let Some(missing) = withheld.iter().find(|name| !live.contains_key(*name)) {
        return Err(UsageError::new(format!(
            "Secret {missing} in the manifests has its values withheld (rendered without --show-secrets) and namespace \
             {namespace} has no such Secret to keep: render the manifests with `lab render --show-secrets`, or put \
             the values back into its stringData"
        )));
    }
    let declared = set.secret_value(SECRET, ROOT_PASSWORD_KEY);
    let running = live.get(SECRET).and_then(|values| values.get(ROOT_PASSWORD_KEY));
    if let (true, Some(declared), Some(running)) = (data_exists, declared, running)
        && declared.expose() != running.expose()
    {
        return Err(UsageError::new(format!(
            "Secret {SECRET} in the manifests sets another {ROOT_PASSWORD_KEY} than the lab in namespace {namespace} \
             was initialised with: the images set root's password only on a first start, so its servers keep the \
             old one and lab could no longer log in. Nothing was applied. Keep the old value in the Secret manifest \
             (`kubectl get secret {SECRET} -n {namespace} -o jsonpath='{{.data.{ROOT_PASSWORD_KEY}}}' | base64 -d` \
             prints it); or change root's password on every server first (ALTER USER 'root'@'%' IDENTIFIED BY …), \
             then in the Secret; `lab teardown` starts over, but its data goes with it"
        )));
    }
    Ok(withheld.into_iter().filter(|name| live.contains_key(name)).collect())
}

/// How an existing lab starts its pods cannot change: a StatefulSet's podManagementPolicy is immutable (the API
/// server answers 422, after the objects before the StatefulSet were applied). Without `--parallel`, a lab built
/// with it keeps it, as a lab keeps its size without `--replicas` (returns true: start in parallel); asking for
/// another policy than the running one is refused before anything is applied.
pub fn check_pod_management_change(
    namespace: &str,
    running: Option<&str>,
    requested: &str,
    asked_parallel: bool,
) -> Result<bool, UsageError> {
    match running {
        Some(PARALLEL) if requested != PARALLEL && !asked_parallel => Ok(true),
        Some(running) if running != requested => Err(UsageError::new(format!(
            "the lab in namespace {namespace} starts its pods {running} but the manifests ask for {requested}, and a \
             StatefulSet's podManagementPolicy cannot change: leave out --parallel to keep it, or run `lab teardown \
             --keep-data` first (the databases' data stays for the next `lab up`)"
        ))),
        _ => Ok(false),
    }
}

fn describe_preflight(preflight: &Preflight) -> String {
    format!(
        "Kubernetes {}, default StorageClass {}, namespace {}",
        preflight.server_version, preflight.default_storage_class, preflight.namespace
    )
}

/// Waits until the pod is Ready and its database answers `SELECT 1` through a port-forward.
pub async fn wait_for_database(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    root: &Credentials,
    deadline: Instant,
    reporter: &dyn Reporter,
) -> anyhow::Result<Step<Session>> {
    let title = format!("wait for {pod}");
    let progress = |detail: &str| reporter.step_progress(&title, detail);
    cluster.wait_pod_ready(namespace, pod, deadline, &progress).await?;
    checkpoint(&format!("{title}: pod Ready")).await;
    progress("Ready; connecting to the database through a port-forward");
    let session = Session::open(cluster, namespace, pod, root, deadline).await?;
    let version = session.db.version().raw.clone();
    Ok(Step::passed(format!("Ready, {version} accepts queries"), session))
}

/// Replication account, then the binlog origin, then `appdb`: in this order, unlike the tutorial.
///
/// The tutorial creates `appdb` first and takes `SHOW MASTER STATUS` afterwards, so the replica starts past the
/// `CREATE DATABASE` event, never learns of `appdb`, and stops with error 1049 at the first table. The origin is
/// recorded on the primary's PVC, so that a re-run or a replica added later starts from the same place.
async fn primary_setup(
    cluster: &Cluster,
    namespace: &str,
    primary: &mut Session,
    accounts: &Accounts,
) -> anyhow::Result<Step<(Coordinates, Vec<BinaryLog>)>> {
    primary.db.ensure_replication_user(&accounts.replication).await?;
    checkpoint("primary setup: replication user created").await;
    let recorded = cluster.pvc_annotation(namespace, ORIGIN_PVC, ORIGIN_ANNOTATION).await?;
    let (origin, captured) = match recorded.as_deref().map(parse_origin) {
        Some(Ok(origin)) => (origin, false),
        Some(Err(error)) => return Err(error),
        None => {
            let origin = primary.db.capture_coordinates().await?;
            checkpoint("primary setup: origin captured").await;
            let value = serde_json::to_string(&RecordedOrigin::now(&origin))?;
            cluster
                .set_pvc_annotation(namespace, ORIGIN_PVC, ORIGIN_ANNOTATION, &value)
                .await?;
            (origin, true)
        }
    };
    checkpoint("primary setup: origin recorded").await;
    primary.db.ensure_appdb().await?;
    checkpoint("primary setup: appdb created").await;
    primary.db.ensure_probe_user(&accounts.probe).await?;
    // MariaDB before 12.0: the replicas' socket-only account for `lab repair` (it replicates).
    primary.db.ensure_socket_admin().await?;
    // A replica configured now starts reading at the origin: the primary must still have that binlog (MySQL purges
    // binlogs after 30 days; a primary whose data was re-initialised starts new ones).
    let logs = primary.db.binary_logs().await?;
    let detail = if captured {
        format!(
            "captured binlog origin {}:{} before creating appdb",
            origin.file, origin.position
        )
    } else {
        format!("binlog origin {}:{} already recorded", origin.file, origin.position)
    };
    Ok(Step::changed_if(captured, detail, (origin, logs)))
}

/// The origin as recorded in the PVC annotation.
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordedOrigin {
    file: String,
    position: u64,
    captured_at: String,
}

impl RecordedOrigin {
    fn now(origin: &Coordinates) -> Self {
        RecordedOrigin {
            file: origin.file.clone(),
            position: origin.position,
            captured_at: jiff::Timestamp::now().to_string(),
        }
    }
}

pub fn parse_origin(text: &str) -> anyhow::Result<Coordinates> {
    let recorded: RecordedOrigin = serde_json::from_str(text).with_context(|| {
        format!(
            "the annotation {ORIGIN_ANNOTATION} on PVC {ORIGIN_PVC} is not valid: remove it \
             (kubectl annotate pvc {ORIGIN_PVC} {ORIGIN_ANNOTATION}-) only if no replica was configured from it"
        )
    })?;
    Ok(Coordinates {
        file: recorded.file,
        position: recorded.position,
    })
}

/// The IO error of a replica whose source refuses its login (ER_ACCESS_DENIED_ERROR, MySQL and MariaDB alike).
const ACCESS_DENIED: u32 = 1045;

/// What to do with a replica, given its current replication status.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplicaAction {
    /// Never configured, or pointed elsewhere: point it at the primary from the recorded origin.
    Configure,
    /// Points at the primary, but a thread is stopped without an error that starting cannot fix: an interrupted
    /// run (between `CHANGE ... SOURCE` and `START`), a person's `STOP REPLICA`, or MySQL 8.4's IO thread giving up
    /// after `SOURCE_RETRY_COUNT` failed reconnects (a transient 2003/2005). Start it where it stopped; waiting
    /// would only run into the deadline.
    Start,
    /// Points at the primary, whose login refuses the replica (IO error 1045 on MySQL and MariaDB, mysql-notes 14):
    /// the password the replica was configured with is not the account's. "primary setup" has just set the
    /// account's password from the Secret, so give the replica the Secret's credentials too, in place (its position
    /// kept). Waiting would not do: the replica retries only every few seconds, and the wait takes its last 1045 as
    /// final.
    Reauthenticate,
    /// Replicating from the primary (or reconnecting to it, or stopped by an error that the wait reports with its
    /// cause and fix): leave it alone. Re-configuring from the origin would replay rows it already has.
    Keep,
}

pub fn replica_action(status: Option<&ReplicaStatus>, primary_host: &str) -> ReplicaAction {
    let Some(status) = status.filter(|status| status.source_host == primary_host) else {
        return ReplicaAction::Configure;
    };
    if status.io_running != ThreadState::Yes && status.last_io_errno == ACCESS_DENIED {
        return ReplicaAction::Reauthenticate;
    }
    let threads = [
        (&status.io_running, status.last_io_errno),
        (&status.sql_running, status.last_sql_errno),
    ];
    let startable = |(state, errno): &(&ThreadState, u32)| {
        **state == ThreadState::No && (*errno == 0 || is_transient_replication_error(*errno))
    };
    let blocked = |(state, errno): &(&ThreadState, u32)| {
        **state == ThreadState::No && *errno != 0 && !is_transient_replication_error(*errno)
    };
    if threads.iter().any(startable) && !threads.iter().any(blocked) {
        ReplicaAction::Start
    } else {
        ReplicaAction::Keep
    }
}

/// Configures every replica concurrently and waits until both replication threads run on each.
async fn configure_replicas(
    replicas: &mut [Session],
    source: &SourceConfig,
    primary_logs: &[BinaryLog],
    deadline: Instant,
) -> anyhow::Result<Step<()>> {
    let configured = try_join_all(replicas.iter_mut().map(|replica| async move {
        let status = replica.db.replica_status().await?;
        let action = replica_action(status.as_ref(), &source.host);
        match action {
            ReplicaAction::Configure => {
                check_origin_available(PRIMARY_POD, &source.origin, primary_logs)
                    .with_context(|| format!("{0}: run `lab repair {0}`", replica.pod))?;
                replica.db.configure_replica(source).await?
            }
            ReplicaAction::Start => replica.db.start_replication().await?,
            ReplicaAction::Reauthenticate => replica.db.set_source_credentials(&source.credentials).await?,
            ReplicaAction::Keep => {}
        }
        replica
            .db
            .wait_replication_running(deadline)
            .await
            .with_context(|| format!("{}: replication does not run", replica.pod))?;
        checkpoint("configure replicas: replication running").await;
        replica.db.protect_replica().await?;
        anyhow::Ok((replica.pod.clone(), action))
    }))
    .await?;
    let with = |wanted: ReplicaAction| -> Vec<&str> {
        configured
            .iter()
            .filter(|(_, action)| *action == wanted)
            .map(|(pod, _)| pod.as_str())
            .collect()
    };
    let (newly, started) = (with(ReplicaAction::Configure), with(ReplicaAction::Start));
    let refused = with(ReplicaAction::Reauthenticate);
    let mut changes = Vec::new();
    if !newly.is_empty() {
        changes.push(format!(
            "{} now replicate{} from {}:{}",
            newly.join(", "),
            if newly.len() == 1 { "s" } else { "" },
            source.origin.file,
            source.origin.position
        ));
    }
    if !started.is_empty() {
        changes.push(format!(
            "{} pointed at mysql-0 but stopped: started where {} left off",
            started.join(", "),
            if started.len() == 1 { "it" } else { "they" }
        ));
    }
    if !refused.is_empty() {
        changes.push(format!(
            "{} refused by mysql-0 (error {ACCESS_DENIED}): replication credentials set again from Secret {SECRET}, \
             position kept",
            refused.join(", ")
        ));
    }
    let detail = match (configured.len(), changes.is_empty()) {
        (0, _) => "no replicas (--replicas 1)".to_string(),
        (_, true) => "every replica already replicates from mysql-0; IO and SQL threads running".to_string(),
        (_, false) => format!("{}; IO and SQL threads running", changes.join("; ")),
    };
    Ok(Step::changed_if(!changes.is_empty(), detail, ()))
}

/// Role labels make the Services route correctly: `mysql-replicas` selects `lab.dev/role=replica`.
async fn label_roles(
    cluster: &Cluster,
    namespace: &str,
    primary: &Session,
    replicas: &[Session],
) -> anyhow::Result<Step<()>> {
    let mut changed = cluster
        .set_pod_label(namespace, &primary.pod, ROLE_LABEL, "primary")
        .await?;
    checkpoint("role labels: primary labelled").await;
    for replica in replicas {
        changed |= cluster
            .set_pod_label(namespace, &replica.pod, ROLE_LABEL, "replica")
            .await?;
    }
    Ok(Step::changed_if(
        changed,
        format!("{} = primary, others = replica", primary.pod),
        (),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_replica_status;

    fn status(host: &str, io: &str, sql: &str, io_errno: u32, sql_errno: u32) -> ReplicaStatus {
        let column = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        parse_replica_status(&[
            column("Master_Host", host),
            column("Slave_IO_Running", io),
            column("Slave_SQL_Running", sql),
            column("Last_IO_Errno", &io_errno.to_string()),
            column("Last_SQL_Errno", &sql_errno.to_string()),
        ])
    }

    #[test]
    fn a_replica_is_configured_only_when_it_does_not_already_replicate_from_the_primary() {
        let host = "mysql-0.mysql-headless.database.svc.cluster.local";
        let action = |s: ReplicaStatus| replica_action(Some(&s), host);
        assert_eq!(replica_action(None, host), ReplicaAction::Configure);
        assert_eq!(action(status(host, "Yes", "Yes", 0, 0)), ReplicaAction::Keep);
        // Reconnecting after a primary restart: keep it, replication resumes by itself.
        assert_eq!(action(status(host, "Connecting", "Yes", 2003, 0)), ReplicaAction::Keep);
        assert_eq!(
            action(status("elsewhere", "Yes", "Yes", 0, 0)),
            ReplicaAction::Configure
        );
    }

    #[test]
    fn a_replica_pointed_at_the_primary_but_stopped_is_started_not_waited_on() {
        let host = "mysql-0.mysql-headless.database.svc.cluster.local";
        let action = |s: ReplicaStatus| replica_action(Some(&s), host);
        // Interrupted between CHANGE ... SOURCE and START, or stopped by a person.
        assert_eq!(action(status(host, "No", "No", 0, 0)), ReplicaAction::Start);
        assert_eq!(action(status(host, "Yes", "No", 0, 0)), ReplicaAction::Start);
        // MySQL 8.4 stops the IO thread after SOURCE_RETRY_COUNT failed reconnects, with the last 2003 kept.
        assert_eq!(action(status(host, "No", "Yes", 2003, 0)), ReplicaAction::Start);
        // An error that starting cannot fix is left to the wait, which reports its cause and fix.
        assert_eq!(action(status(host, "Yes", "No", 0, 1062)), ReplicaAction::Keep);
        assert_eq!(action(status(host, "No", "No", 1236, 0)), ReplicaAction::Keep);
    }

    #[test]
    fn a_replica_the_primary_refuses_gets_the_secrets_credentials_again() {
        let host = "mysql-0.mysql-headless.database.svc.cluster.local";
        let action = |s: ReplicaStatus| replica_action(Some(&s), host);
        // Both flavours keep the IO thread Connecting with 1045 and retry every CONNECT_RETRY seconds (MariaDB
        // measured on the simulator; MySQL 8.0.40 measured, mysql-notes 14 "wrong replication password").
        assert_eq!(
            action(status(host, "Connecting", "Yes", 1045, 0)),
            ReplicaAction::Reauthenticate
        );
        assert_eq!(
            action(status(host, "No", "Yes", 1045, 0)),
            ReplicaAction::Reauthenticate
        );
        // An old 1045 on a thread that connected since is history, not a problem.
        assert_eq!(action(status(host, "Yes", "Yes", 1045, 0)), ReplicaAction::Keep);
        assert_eq!(
            action(status("elsewhere", "Connecting", "Yes", 1045, 0)),
            ReplicaAction::Configure
        );
    }

    #[test]
    fn swapping_the_image_of_an_existing_lab_is_refused_with_the_way_out() {
        assert!(
            check_image_change("database", None, Some("mysql:8.4")).is_ok(),
            "a new lab"
        );
        assert!(
            check_image_change("database", Some("mysql:8.4"), Some("mysql:8.4")).is_ok(),
            "a re-run"
        );
        let error = check_image_change("database", Some("mysql:8.4"), Some("mariadb:11.4")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the lab in namespace database runs mysql:8.4; --image mariadb:11.4 would restart its databases on data \
             written by mysql:8.4: run `lab teardown` first (its data goes with it), or pass --image mysql:8.4"
        );
    }

    #[test]
    fn secrets_are_checked_before_anything_is_applied() {
        let values = |root: &str| {
            BTreeMap::from([(
                SECRET.to_string(),
                BTreeMap::from([(ROOT_PASSWORD_KEY.to_string(), SecretString::new(root))]),
            )])
        };
        let set = ManifestSet::embedded();
        // A new lab, or a lab whose data does not exist yet: any password goes.
        assert_eq!(
            check_secrets("database", &set, &BTreeMap::new(), false).ok(),
            Some(vec![])
        );
        assert_eq!(
            check_secrets("database", &set, &values("other"), false).ok(),
            Some(vec![])
        );
        // The same password on existing data: fine.
        assert_eq!(
            check_secrets("database", &set, &values("root"), true).ok(),
            Some(vec![])
        );
        // Another one: refused, without printing either password.
        let error = check_secrets("database", &set, &values("old-pass"), true).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("Secret mysql-secret in the manifests sets another MYSQL_ROOT_PASSWORD"),
            "{text}"
        );
        assert!(!text.contains("old-pass") && !text.contains(": root"), "{text}");
        // A Secret rendered without values keeps the cluster's, and is refused when there is none to keep.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lab.yaml"),
            set.render_yaml(crate::manifests::SecretValues::Redacted),
        )
        .unwrap();
        let withheld = ManifestSet::from_dir(dir.path()).unwrap();
        assert_eq!(
            check_secrets("database", &withheld, &values("root"), true).ok(),
            Some(vec![SECRET.to_string()])
        );
        let error = check_secrets("database", &withheld, &BTreeMap::new(), false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("has its values withheld (rendered without --show-secrets) and namespace"),
            "{error}"
        );
    }

    #[test]
    fn changing_how_an_existing_lab_starts_its_pods_is_refused_with_the_way_out() {
        assert!(
            check_pod_management_change("database", None, "Parallel", true).ok() == Some(false),
            "a new lab"
        );
        assert_eq!(
            check_pod_management_change("database", Some("Parallel"), "Parallel", true).ok(),
            Some(false)
        );
        assert_eq!(
            check_pod_management_change("database", Some("OrderedReady"), "OrderedReady", false).ok(),
            Some(false)
        );
        // A plain `lab up` on a lab built with --parallel keeps it.
        assert_eq!(
            check_pod_management_change("database", Some("Parallel"), "OrderedReady", false).ok(),
            Some(true)
        );
        let error = check_pod_management_change("database", Some("OrderedReady"), "Parallel", true).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the lab in namespace database starts its pods OrderedReady but the manifests ask for Parallel, and a \
             StatefulSet's podManagementPolicy cannot change: leave out --parallel to keep it, or run `lab teardown \
             --keep-data` first (the databases' data stays for the next `lab up`)"
        );
    }

    #[test]
    fn load_manifests_applies_parallel_only_when_asked() {
        let settings = |parallel| ManifestSettings {
            image: "mysql:8.4".into(),
            replicas: Some(2),
            dir: None,
            parallel,
        };
        let ordered = load_manifests(&settings(false), "database").expect("loads");
        assert_eq!(ordered.pod_management_policy(), "OrderedReady");
        let parallel = load_manifests(&settings(true), "database").expect("loads");
        assert_eq!(parallel.pod_management_policy(), "Parallel");
    }

    #[test]
    fn the_recorded_origin_round_trips_and_a_broken_one_names_the_fix() {
        let origin = Coordinates {
            file: "mysql-bin.000001".into(),
            position: 328,
        };
        let text = serde_json::to_string(&RecordedOrigin::now(&origin)).unwrap();
        assert!(text.starts_with(r#"{"file":"mysql-bin.000001","position":328,"captured_at":""#));
        assert_eq!(parse_origin(&text).unwrap(), origin);
        let err = parse_origin("nonsense").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the annotation lab.dev/binlog-origin on PVC data-mysql-0 is not valid")
        );
    }
}
