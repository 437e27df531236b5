//! `lab sim`: the whole lab without a cluster. Starts kubesim (a simulated cluster whose pods run real MariaDB
//! servers in their own network namespaces) in this process, runs `lab up` on it, tells the user how to reach it,
//! and serves until Ctrl-C or SIGTERM; then the simulator removes everything it made (processes, network
//! namespaces, files), on every way out: a stop, a failed `up`, an interruption, an error or a panic.

use std::path::Path;

use anyhow::Context as _;
use kubesim::{Kubesim, Options};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::commands::{PRIMARY_POD, pod_name, up};
use crate::exit::{ExitStatus, UsageError};
use crate::plan::{Reporter, Runner};
use crate::settings::{Format, ManifestSettings, Settings};
use crate::{Strictness, interrupt, output};

/// What Ctrl-C or SIGTERM before the lab was up says: the simulator is gone, there is nothing to resume.
const INTERRUPTED: &str =
    "interrupted before the lab was up: the simulated cluster was stopped and what it made was removed";

pub async fn run(
    settings: &Settings,
    manifests: &ManifestSettings,
    runner: &mut Runner<'_>,
) -> anyhow::Result<ExitStatus> {
    refuse_cluster_flags(settings)?;
    if let Some(missing) = kubesim::missing_requirements() {
        return Err(UsageError::new(format!("cannot run `lab sim` here, nothing was started: {missing}")).into());
    }
    // Listening before the simulator starts: a signal that arrives while it starts is kept, not lost.
    let mut signals = Signals::listen()?;
    let reporter = runner.reporter();
    reporter.note("starting a simulated cluster on this machine (kubesim)");
    let sim = Kubesim::start(Options::default()).context("cannot start the simulated cluster")?;
    let kubeconfig = sim.kubeconfig_path().to_path_buf();
    let mut simulator = Simulator(Some(sim));
    let on_sim = Settings {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
        ..settings.clone()
    };

    let built = tokio::select! {
        biased;
        _ = signals.recv() => None,
        // Ctrl-C, or the checkpoint named by LAB_INTERRUPT_AT.
        _ = interrupt::interrupted() => None,
        result = up::run(&on_sim, manifests, runner) => Some(result),
    };
    let report = match built {
        None => {
            simulator.stop(reporter);
            return Err(crate::Interrupted(INTERRUPTED.into()).into());
        }
        Some(Err(error)) => {
            simulator.stop(reporter);
            return Err(error);
        }
        Some(Ok(report)) => report,
    };
    let status = crate::finish(&report, &on_sim, Strictness::FailOnlyWhenBroken, "up");
    if status != ExitStatus::Success {
        simulator.stop(reporter);
        return Ok(status);
    }

    let hints = next_steps(&kubeconfig, &settings.namespace, manifests);
    match settings.format {
        // stdout carries the one JSON report; the way in goes with the progress.
        Format::Json | Format::Junit => output::narrate(&hints),
        Format::Table => output::print_result(&hints),
    }
    signals.recv().await;
    let leftovers = simulator.stop(reporter);
    if !leftovers.is_empty() {
        anyhow::bail!(
            "the simulated cluster stopped, but these remain on the machine: {}",
            leftovers.join(", ")
        );
    }
    reporter.note("the simulated cluster stopped; nothing of it is left on the machine");
    Ok(ExitStatus::Success)
}

/// The simulator runs its own cluster: a kubeconfig or context to use instead is a mistake worth naming.
fn refuse_cluster_flags(settings: &Settings) -> Result<(), UsageError> {
    let given: Vec<&str> = [
        settings.kubeconfig.as_ref().map(|_| "--kubeconfig"),
        settings.context.as_ref().map(|_| "--context"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (verb, pronoun) = match given.len() {
        0 => return Ok(()),
        1 => ("does", "it"),
        _ => ("do", "them"),
    };
    Err(UsageError::new(format!(
        "`lab sim` runs its own simulated cluster, so {} {verb} not apply: drop {pronoun}, or run `lab up` to use \
         that cluster",
        given.join(" and ")
    )))
}

/// The `export KUBECONFIG=…` line and what to try on the running lab. The mysql command is the tutorial's, with
/// the tutorial's published root password; with `--manifests` the password is whatever that Secret says, and it
/// is not read or printed here.
pub fn next_steps(kubeconfig: &Path, namespace: &str, manifests: &ManifestSettings) -> String {
    let lab_ns = if namespace == crate::cli::DEFAULT_NAMESPACE {
        String::new()
    } else {
        format!(" -n {namespace}")
    };
    let password = if manifests.dir.is_none() {
        "-proot"
    } else {
        "-p<root password>"
    };
    // A replica's view of replication when there is one, the primary's binlog position when it runs alone.
    let (pod, statement) = if manifests.replicas == Some(1) {
        (PRIMARY_POD.to_string(), "SHOW MASTER STATUS")
    } else {
        (pod_name(1), "SHOW SLAVE STATUS\\G")
    };
    format!(
        "\nThe lab runs on a simulated cluster on this machine. In another shell:\n\n  \
         export KUBECONFIG={kubeconfig}\n\n\
         Then try:\n  \
         kubectl get pods -n {namespace}\n  \
         kubectl exec {pod} -n {namespace} -- mysql -h 127.0.0.1 -uroot {password} -e '{statement}'\n  \
         lab verify{lab_ns}\n  \
         lab status{lab_ns}\n  \
         lab demo list\n\n\
         Press Ctrl-C to stop: the simulated cluster and everything it made are removed.",
        kubeconfig = kubeconfig.display(),
    )
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to from the start.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// The running simulator, stopped on every path out of `run`: by `stop`, or by drop (an error, a panic).
struct Simulator(Option<Kubesim>);

impl Simulator {
    /// Stops the simulator and returns what of it is still on the machine (empty = clean), each noted.
    fn stop(&mut self, reporter: &dyn Reporter) -> Vec<String> {
        let Some(sim) = self.0.take() else {
            return Vec::new();
        };
        reporter.note("stopping the simulated cluster");
        let leftovers = stop_on_own_thread(sim);
        for leftover in &leftovers {
            reporter.note(&format!("left on the machine: {leftover}"));
        }
        leftovers
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(sim) = self.0.take() {
            let _ = stop_on_own_thread(sim);
        }
    }
}

/// On a plain thread: kubesim waits there for its runtime and its processes to stop, which it cannot do from
/// inside our runtime.
fn stop_on_own_thread(mut sim: Kubesim) -> Vec<String> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                sim.shutdown();
                sim.leftovers()
            })
            .join()
            .unwrap_or_else(|_| vec!["(kubesim panicked while stopping)".to_string()])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn manifests(replicas: Option<u32>, dir: Option<&str>) -> ManifestSettings {
        ManifestSettings {
            image: "mysql:8.4".into(),
            replicas,
            dir: dir.map(PathBuf::from),
            parallel: false,
        }
    }

    #[test]
    fn the_next_steps_name_the_kubeconfig_and_the_tutorials_commands() {
        let hints = next_steps(
            Path::new("/tmp/kubesim-x/kubeconfig"),
            "database",
            &manifests(None, None),
        );
        assert!(
            hints.contains("\n  export KUBECONFIG=/tmp/kubesim-x/kubeconfig\n"),
            "{hints}"
        );
        assert!(hints.contains("kubectl get pods -n database\n"), "{hints}");
        assert!(
            hints.contains(
                "kubectl exec mysql-1 -n database -- mysql -h 127.0.0.1 -uroot -proot -e 'SHOW SLAVE STATUS\\G'"
            ),
            "{hints}"
        );
        assert!(
            hints.contains("\n  lab verify\n  lab status\n  lab demo list\n"),
            "{hints}"
        );
        assert!(hints.contains("Ctrl-C"), "{hints}");
    }

    #[test]
    fn the_next_steps_follow_the_namespace_the_size_and_custom_manifests() {
        let hints = next_steps(Path::new("/k"), "db2", &manifests(Some(1), Some("/my/manifests")));
        assert!(hints.contains("kubectl get pods -n db2\n"), "{hints}");
        assert!(
            hints.contains(
                "kubectl exec mysql-0 -n db2 -- mysql -h 127.0.0.1 -uroot -p<root password> -e 'SHOW MASTER STATUS'"
            ),
            "{hints}"
        );
        assert!(hints.contains("lab verify -n db2\n  lab status -n db2\n"), "{hints}");
        assert!(!hints.contains("-proot"), "{hints}");
    }

    #[test]
    fn a_kubeconfig_or_context_is_refused_by_name() {
        let mut settings = Settings::resolve(
            &crate::cli::GlobalArgs {
                context: None,
                kubeconfig: None,
                namespace: None,
                all_namespaces: false,
                output: crate::cli::OutputFormat::Human,
                verbose: 0,
                timeout: 600,
            },
            crate::settings::Environment::default(),
        );
        assert!(refuse_cluster_flags(&settings).is_ok());
        settings.context = Some("kind-kind".into());
        let error = refuse_cluster_flags(&settings).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "`lab sim` runs its own simulated cluster, so --context does not apply: drop it, or run `lab up` to use \
             that cluster"
        );
        settings.kubeconfig = Some(PathBuf::from("/k"));
        let error = refuse_cluster_flags(&settings).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("so --kubeconfig and --context do not apply: drop them,"),
            "{error}"
        );
    }
}
