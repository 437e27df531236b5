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

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Kubeconfig context to use (default: the kubeconfig's current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace the lab lives in.
    #[arg(short = 'n', long, global = true, default_value = "database", value_name = "NAME")]
    pub namespace: String,

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the lab: apply the manifests, wait for the pods, set up replication, prove it, report.
    Up(UpArgs),
    /// Re-check a running lab, including a fresh write/read round trip and the read-only test.
    Verify,
    /// Show the health report of a running lab (read-only, changes nothing).
    Status,
    /// Delete what `lab` created and wait until it is gone.
    Teardown(TeardownArgs),
    /// Print the manifests exactly as `lab up` would apply them (Secret values redacted).
    Render(RenderArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Which manifests to use and how to edit them.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Database image for the StatefulSet (mysql:8.0, mysql:8.4, mysql:9.x, mariadb:10.11, mariadb:11.4 …).
    #[arg(long, value_name = "IMAGE", default_value = "mysql:8.4")]
    pub image: String,

    /// Pods in the StatefulSet: mysql-0 is the primary, the others are replicas.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub replicas: u32,

    /// Use the manifests in DIR (*.yaml, applied in file-name order) instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Start every pod at once (StatefulSet podManagementPolicy Parallel) instead of one after the other.
    #[arg(long)]
    pub parallel: bool,
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
    fn global_flags_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["lab", "up", "-n", "db2", "-o", "json", "--replicas", "3"]).expect("valid arguments");
        assert_eq!(cli.global.namespace, "db2");
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Up(up) = cli.command else {
            panic!("expected up")
        };
        assert_eq!(up.manifests.replicas, 3);
        assert_eq!(up.manifests.image, "mysql:8.4");
        assert!(!up.manifests.parallel, "ordered start by default");
        let Command::Up(up) = Cli::try_parse_from(["lab", "up", "--parallel"]).expect("valid").command else {
            panic!("expected up")
        };
        assert!(up.manifests.parallel);
    }
}
