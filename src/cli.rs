//! Command-line arguments (clap only). `settings` turns them into plain data for the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs the MySQL primary/replica StatefulSet tutorial end to end on Kubernetes and proves it works.
#[derive(Debug, Parser)]
#[command(name = "lab", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The namespace when `-n` is not given.
pub const DEFAULT_NAMESPACE: &str = "database";

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Kubeconfig context to use (default: the kubeconfig's current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace the lab lives in [default: database].
    // No clap default: `-A` must know whether a namespace was given, in whatever position.
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,

    /// Run `status`, `verify` or `exercise check` on every lab on the cluster (every namespace labelled
    /// app.kubernetes.io/managed-by=lab): one row, report or JUnit testsuite per namespace.
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Output format for results on stdout.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Deadline for the whole command, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Human,
    /// The health report as JSON, for scripts and grading.
    Json,
    /// The checks as JUnit XML, one testcase per check, for CI pipelines (`verify`, `status`, `exercise check`).
    Junit,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the lab: apply the manifests, wait for the pods, set up replication, prove it, report.
    Up(UpArgs),
    /// Re-check a running lab, including a fresh write/read round trip and the read-only test.
    Verify,
    /// Show the health report of a running lab (read-only, changes nothing).
    Status,
    /// List every lab on the cluster: namespace, verdict (as `lab status` gives it), image, pods, exercise.
    List,
    /// Re-seed a broken or diverged replica from a consistent copy of the primary, without stopping the primary.
    Repair(RepairArgs),
    /// Delete what `lab` created and wait until it is gone.
    Teardown(TeardownArgs),
    /// Print the manifests exactly as `lab up` would apply them (Secrets without their values).
    Render(RenderArgs),
    /// Run the whole lab without a cluster: start a simulated one here, build the lab on it, serve until Ctrl-C.
    Sim(SimArgs),
    /// Show one of the tutorial's behaviours live on a running lab, narrated for a class (`lab demo list`).
    Demo(DemoArgs),
    /// Break the lab on purpose, let a student find and fix it, and grade it (`lab exercise list`).
    Exercise(ExerciseArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The subcommand as typed, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Verify => "verify",
            Command::Status => "status",
            Command::List => "list",
            Command::Repair(_) => "repair",
            Command::Teardown(_) => "teardown",
            Command::Render(_) => "render",
            Command::Sim(_) => "sim",
            Command::Demo(_) => "demo",
            Command::Exercise(_) => "exercise",
            Command::Completions { .. } => "completions",
        }
    }
}

/// Which manifests to use and how to edit them.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Database image for the StatefulSet (mysql:8.0, mysql:8.4, mysql:9.x, mariadb:10.11, mariadb:11.4 …).
    #[arg(long, value_name = "IMAGE", default_value = "mysql:8.4")]
    pub image: String,

    /// Pods in the StatefulSet, 1 to 9: mysql-0 is the primary, the others are replicas [default: the running
    /// lab's size (kept when someone scaled it with kubectl), else the manifests' 2].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_replicas)]
    pub replicas: Option<u32>,

    /// Use the manifests in DIR (*.yaml, applied in file-name order) instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Start every pod at once (StatefulSet podManagementPolicy Parallel) instead of one after the other.
    #[arg(long)]
    pub parallel: bool,
}

/// The most pods a lab runs. Every pod is a whole database server (a MySQL server needs about 400 MiB) with a 5 GiB
/// claim, on a cluster that usually is one laptop: more than a primary and 8 replicas teaches nothing more and
/// starves the machine.
pub const MAX_REPLICAS: u32 = 9;

/// `--replicas`: a whole number from 1 to [`MAX_REPLICAS`]; clap prefixes the flag's name to the message.
fn parse_replicas(value: &str) -> Result<u32, String> {
    let range = format!(
        "1 (mysql-0, the primary, alone) to {MAX_REPLICAS} (a primary and {} replicas)",
        MAX_REPLICAS - 1
    );
    match value.trim().parse::<i64>() {
        Ok(n) if (1..=i64::from(MAX_REPLICAS)).contains(&n) => Ok(n as u32),
        Ok(_) => Err(format!("the number of pods must be from {range}")),
        Err(_) => Err(format!("not a whole number; the number of pods must be from {range}")),
    }
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,

    /// Print the Secret's values instead of `<redacted>`, for a copy that can be applied.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,

    /// Before each step, say what it does and why, and print the commands and SQL a student would type to do it
    /// by hand (the tutorial's, corrected where it is wrong; passwords as ******), on stderr.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo to run, or `list` to list them: identity, storage, scale, lag, mistakes, dns, routing.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Wait for Enter between steps (on a terminal; ignored elsewhere).
    #[arg(long)]
    pub pause: bool,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The replica to re-seed (mysql-1, mysql-2 …) [default: every replica whose replication is broken or
    /// diverged].
    #[arg(value_name = "POD")]
    pub pod: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExerciseArgs {
    #[command(subcommand)]
    pub action: ExerciseAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ExerciseAction {
    /// List the exercises: name, one-line title, tutorial section.
    List,
    /// Break a working lab as the fault happens in the field and print what a user would report.
    Start {
        /// The exercise (`lab exercise list`).
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Run the checks of `lab verify` and the exercise's goal; exit 0 once it is fixed (-A: every lab).
    Check,
    /// Give the next, more specific hint.
    Hint,
    /// Apply the fix, print the commands it ran, and check.
    Solve,
    /// Put the lab back to healthy from any state and end the exercise.
    Reset,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Keep the PersistentVolumeClaims (the databases' data): a later `lab up` finds the old rows.
    #[arg(long)]
    pub keep_data: bool,

    /// Delete even if the namespace does not carry lab's label.
    #[arg(long)]
    pub force: bool,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn replicas_out_of_range_names_the_flag_and_the_range() {
        for (value, tail) in [
            ("-1", "the number of pods must be from 1"),
            ("0", "the number of pods must be from 1"),
            ("10", "the number of pods must be from 1"),
            ("two", "not a whole number"),
        ] {
            let error = Cli::try_parse_from(["lab", "up", "--replicas", value])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("invalid value '{value}' for '--replicas <N>': {tail}")),
                "{value}: {error}"
            );
            assert!(error.contains("to 9 (a primary and 8 replicas)"), "{error}");
        }
        let Command::Up(up) = Cli::try_parse_from(["lab", "up", "--replicas", "9"]).unwrap().command else {
            panic!("expected up")
        };
        assert_eq!(up.manifests.replicas, Some(9));
        let Command::Up(up) = Cli::try_parse_from(["lab", "up"]).unwrap().command else {
            panic!("expected up")
        };
        assert_eq!(up.manifests.replicas, None, "no flag: the running lab's size is kept");
    }

    #[test]
    fn the_demo_help_names_every_demo() {
        let command = Cli::command();
        let demo = command.find_subcommand("demo").expect("demo");
        let help = demo
            .get_arguments()
            .find(|a| a.get_id() == "name")
            .and_then(|a| a.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        for info in crate::commands::demo::DEMOS {
            assert!(help.contains(info.name), "{help}");
        }
    }

    #[test]
    fn all_namespaces_is_a_global_flag_that_conflicts_with_an_explicit_namespace() {
        let cli = Cli::try_parse_from(["lab", "verify", "-A"]).expect("valid");
        assert!(cli.global.all_namespaces);
        let cli = Cli::try_parse_from(["lab", "--all-namespaces", "status", "-o", "junit"]).expect("valid");
        assert!(cli.global.all_namespaces);
        assert!(
            !Cli::try_parse_from(["lab", "status"])
                .expect("valid")
                .global
                .all_namespaces
        );
        let error = Cli::try_parse_from(["lab", "verify", "-A", "-n", "student-1"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(error.exit_code(), 2, "a usage error");
        // Clap does not see the conflict across levels; `lab::run` refuses it (the e2e tests run it).
        let cli = Cli::try_parse_from(["lab", "-n", "database", "status", "--all-namespaces"]).expect("parsed");
        assert!(cli.global.all_namespaces && cli.global.namespace.is_some());
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["lab", "up", "-n", "db2", "-o", "json", "--replicas", "3"]).expect("valid arguments");
        assert_eq!(cli.global.namespace.as_deref(), Some("db2"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Up(up) = cli.command else {
            panic!("expected up")
        };
        assert_eq!(up.manifests.replicas, Some(3));
        assert_eq!(up.manifests.image, "mysql:8.4");
        assert!(!up.manifests.parallel, "ordered start by default");
        let Command::Up(up) = Cli::try_parse_from(["lab", "up", "--parallel"]).expect("valid").command else {
            panic!("expected up")
        };
        assert!(up.manifests.parallel);
        assert!(!up.explain, "no explanations unless asked");
        let Command::Up(up) = Cli::try_parse_from(["lab", "up", "--explain", "-o", "json"])
            .expect("valid")
            .command
        else {
            panic!("expected up")
        };
        assert!(up.explain);
    }
}
