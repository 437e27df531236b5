//! `lab`: runs the MySQL primary/replica StatefulSet tutorial end to end on Kubernetes and proves it.
//!
//! Flow: `cli` → `settings` → `commands` → `plan` → adapters (`cluster`, `database`) → `report` → `output`.
//! Only `cluster` imports kube, only `database` imports mysql_async, only `output` prints.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod database;
pub mod exit;
pub mod image;
pub mod interrupt;
pub mod manifests;
pub mod output;
pub mod plan;
pub mod report;
pub mod secret;
pub mod settings;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;
use crate::manifests::SecretValues;
use crate::output::{Progress, print_error, print_result};
use crate::plan::Runner;
use crate::report::{HealthReport, Verdict};
use crate::settings::{Environment, Format, ManifestSettings, Settings};

/// Runs one command to its exit status. Errors are printed here, once; Ctrl-C stops cleanly with 130. With
/// `-o json`, a command that reports (`up`, `verify`, `status`) prints a report even when it fails, so that
/// scripts always get one JSON object.
pub async fn run(cli: Cli) -> ExitStatus {
    let settings = Settings::resolve(&cli.global, Environment::detect());
    init_logging(settings.verbosity, settings.color);
    let progress = Progress::new(settings.progress, settings.color);
    let all_namespaces = cli.global.all_namespaces;
    // With --all-namespaces the labs' errors are rows of the result; what is left is a cluster-wide error.
    let reports = !all_namespaces
        && matches!(
            cli.command,
            Command::Up(_) | Command::Sim(_) | Command::Verify | Command::Status
        );
    let command_name = cli.command.name();
    if all_namespaces && cli.global.namespace.is_some() {
        print_error(
            "--all-namespaces and -n/--namespace exclude each other: pass one (-A checks every lab, -n one)",
            settings.color,
        );
        return ExitStatus::Usage;
    }
    let exercise_check = matches!(
        &cli.command,
        Command::Exercise(args) if args.action == cli::ExerciseAction::Check
    );
    if all_namespaces && !exercise_check && !matches!(cli.command, Command::Verify | Command::Status | Command::List) {
        print_error(
            &format!(
                "--all-namespaces is for verify, status and list (which always lists every lab), and for `exercise \
                 check`; not {command_name}"
            ),
            settings.color,
        );
        return ExitStatus::Usage;
    }
    if settings.format == Format::Junit && !exercise_check && !matches!(cli.command, Command::Verify | Command::Status)
    {
        print_error(
            &format!(
                "-o junit is for the commands that check a lab (verify, status), not {command_name}: use -o json \
                 (`lab exercise check` takes -o junit too)"
            ),
            settings.color,
        );
        return ExitStatus::Usage;
    }
    let on_interrupt = interruption(&cli.command);
    // A demo that stops with an error still prints its report with `-o json` (`lab demo list` has none).
    let demo_name = match &cli.command {
        Command::Demo(args) if args.name != "list" => Some(args.name.clone()),
        _ => None,
    };
    let mut runner = Runner::new(&progress);
    if let Some(checkpoint) = std::env::var_os("LAB_INTERRUPT_AT") {
        interrupt::interrupt_at(&checkpoint.to_string_lossy());
    }
    let result = match cli.command {
        // `lab sim` serves on after its `up` until Ctrl-C, which then ends it cleanly: it owns its signals and
        // stops its simulator on every way out.
        Command::Sim(args) => {
            commands::sim::run(&settings, &ManifestSettings::from(&args.manifests), &mut runner).await
        }
        command => tokio::select! {
            biased;
            _ = interrupt::interrupted() => Err(on_interrupt()),
            result = dispatch(command, all_namespaces, &settings, &mut runner) => result,
        },
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            let status = exit::classify(&error);
            print_error(&format!("{error:#}"), settings.color);
            if reports && settings.format != Format::Table {
                let report = commands::inspect::failure_report(&settings.namespace, runner.records(), &error, status);
                match settings.format {
                    Format::Junit => print_result(&report::render_junit(&report, command_name)),
                    _ => print_result(&report::render_json(&report)),
                }
            }
            if let Some(name) = demo_name.filter(|_| settings.format == Format::Json) {
                let report = commands::demo::failure_report(&settings.namespace, &name, &error, status);
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => print_result(&json),
                    Err(error) => print_error(&format!("cannot render the demo report: {error}"), settings.color),
                }
            }
            status
        }
    }
}

/// What Ctrl-C says for `command`: each names the command that repairs what it may have left. A function, not an
/// error: a demo's repair command depends on how far the demo got.
fn interruption(command: &Command) -> fn() -> anyhow::Error {
    match command {
        // The demo may have left a change in place (a stopped SQL thread, a missing role label, a StatefulSet
        // scaled to another size); its repair is the `lab up` that undoes it (with `--replicas` once it scaled).
        Command::Demo(_) => || {
            Interrupted(format!(
                "interrupted: the demo stopped part-way and may have left the lab changed; run `{}` to repair it, \
                 then `lab verify`",
                commands::demo::repair_command()
            ))
            .into()
        },
        Command::Repair(_) => || Interrupted(commands::repair::interrupted()).into(),
        Command::Exercise(_) => || Interrupted(commands::exercise::INTERRUPTED.into()).into(),
        _ => || Interrupted(RESUME.into()).into(),
    }
}

/// What Ctrl-C says after `lab up` and the commands that only read: nothing is half-applied, because every step
/// checks before it acts.
const RESUME: &str = "interrupted. Every step of `lab up` checks before it acts: run it again to resume, or `lab \
                      teardown` to remove the lab";

/// Ctrl-C (or SIGTERM for `lab sim`): exit 130, with what the interrupted command says about resuming or repairing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

impl exit::Classify for Interrupted {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Interrupted
    }
}

async fn dispatch(
    command: Command,
    all_namespaces: bool,
    settings: &Settings,
    runner: &mut Runner<'_>,
) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Verify | Command::Status if all_namespaces => {
            let check = match command {
                Command::Verify => commands::list::Check::Verify,
                _ => commands::list::Check::Status,
            };
            let (text, status) = commands::list::check_all(settings, runner.reporter(), check).await?;
            print_result(&text);
            Ok(status)
        }
        Command::List => {
            print_result(&commands::list::list(settings, runner.reporter()).await?);
            Ok(ExitStatus::Success)
        }
        Command::Up(args) => {
            let manifests = ManifestSettings::from(&args.manifests);
            let explainer = commands::up::explain::Explainer::new(args.explain);
            let report = commands::up::run_explained(settings, &manifests, runner, &explainer).await?;
            Ok(finish(&report, settings, Strictness::FailOnlyWhenBroken, "up"))
        }
        Command::Verify => {
            let report = commands::verify::run(settings, runner).await?;
            Ok(finish(&report, settings, Strictness::FailUnlessHealthy, "verify"))
        }
        Command::Status => {
            let report = commands::status::run(settings, runner).await?;
            Ok(finish(&report, settings, Strictness::FailOnlyWhenBroken, "status"))
        }
        Command::Repair(args) => {
            let report = commands::repair::run(settings, args.pod.as_deref(), runner).await?;
            match settings.format {
                Format::Json => print_result(&serde_json::to_string_pretty(&report)?),
                Format::Table | Format::Junit => print_result(&report.render()),
            }
            Ok(report.exit_status())
        }
        Command::Teardown(args) => {
            if !args.yes {
                confirm_teardown(&settings.namespace, args.keep_data)?;
            }
            let request = commands::teardown::TeardownRequest {
                keep_data: args.keep_data,
                force: args.force,
            };
            let outcome = commands::teardown::run(settings, &request, runner).await?;
            match settings.format {
                Format::Json => print_result(&serde_json::to_string_pretty(&outcome)?),
                Format::Table | Format::Junit => print_result(&outcome.to_string()),
            }
            Ok(ExitStatus::Success)
        }
        Command::Render(args) => {
            let manifests = ManifestSettings::from(&args.manifests);
            let secrets = if args.show_secrets {
                SecretValues::Shown
            } else {
                SecretValues::Redacted
            };
            print_result(&commands::render::run(&manifests, &settings.namespace, secrets)?);
            Ok(ExitStatus::Success)
        }
        Command::Demo(args) => {
            if args.name == "list" {
                match settings.format {
                    Format::Json => print_result(&serde_json::to_string_pretty(&commands::demo::list_json())?),
                    Format::Table | Format::Junit => print_result(&commands::demo::list()),
                }
                return Ok(ExitStatus::Success);
            }
            let report = commands::demo::run(settings, &args.name, args.pause, runner).await?;
            match settings.format {
                Format::Json => print_result(&serde_json::to_string_pretty(&report)?),
                Format::Table | Format::Junit => print_result(&commands::demo::render_summary(&report)),
            }
            Ok(report.exit_status())
        }
        Command::Exercise(args) => exercise(args.action, all_namespaces, settings, runner).await,
        Command::Sim(_) => unreachable!("`lab sim` is run by `run`, outside the Ctrl-C select"),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lab", &mut out);
            print_result(&String::from_utf8_lossy(&out));
            Ok(ExitStatus::Success)
        }
    }
}

/// `lab exercise ...`: results on stdout, the exit status each action documents.
async fn exercise(
    action: cli::ExerciseAction,
    all_namespaces: bool,
    settings: &Settings,
    runner: &mut Runner<'_>,
) -> anyhow::Result<ExitStatus> {
    use cli::ExerciseAction;
    use commands::exercise;
    let (text, status) = match action {
        ExerciseAction::List => (
            match settings.format {
                Format::Json => format!("{}\n", serde_json::to_string_pretty(&exercise::list_json())?),
                Format::Table | Format::Junit => exercise::list(),
            },
            ExitStatus::Success,
        ),
        ExerciseAction::Start { name } => (exercise::start(settings, &name, runner).await?, ExitStatus::Success),
        ExerciseAction::Check if all_namespaces => exercise::check_all(settings, runner).await?,
        ExerciseAction::Check => exercise::check(settings, runner).await?,
        ExerciseAction::Hint => (exercise::hint(settings).await?, ExitStatus::Success),
        ExerciseAction::Solve => exercise::solve(settings, runner).await?,
        ExerciseAction::Reset => (exercise::reset(settings, runner).await?, ExitStatus::Success),
    };
    print_result(&text);
    Ok(status)
}

/// Which verdicts make a command fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// `verify`: exit 0 only if every check passed.
    FailUnlessHealthy,
    /// `up`, `status`: a DEGRADED lab works (its caveats are reported); only BROKEN fails.
    FailOnlyWhenBroken,
}

pub fn exit_for(verdict: Verdict, strictness: Strictness) -> ExitStatus {
    match (verdict, strictness) {
        (Verdict::Healthy, _) => ExitStatus::Success,
        (Verdict::Degraded, Strictness::FailOnlyWhenBroken) => ExitStatus::Success,
        (Verdict::Degraded, Strictness::FailUnlessHealthy) | (Verdict::Broken, _) => ExitStatus::Unhealthy,
    }
}

pub(crate) fn finish(report: &HealthReport, settings: &Settings, strictness: Strictness, command: &str) -> ExitStatus {
    match settings.format {
        Format::Json => print_result(&report::render_json(report)),
        Format::Junit => print_result(&report::render_junit(report, command)),
        Format::Table => print_result(&report::render_table(report, settings.color)),
    }
    exit_for(report.verdict, strictness)
}

/// Teardown deletes data: ask on a terminal, refuse elsewhere unless `--yes`.
fn confirm_teardown(namespace: &str, keep_data: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(exit::UsageError::new(
            "refusing to tear down without confirmation: stdin is not a terminal; pass --yes to confirm",
        )
        .into());
    }
    let what = if keep_data {
        format!("Delete the lab in namespace {namespace}, keeping its PVCs (the data)?")
    } else {
        format!("Delete namespace {namespace} and everything in it, PVCs (the data) included?")
    };
    let answer = output::ask(&format!("{what} [y/N]"))?;
    if matches!(answer.as_str(), "y" | "Y" | "yes" | "YES") {
        Ok(())
    } else {
        Err(exit::UsageError::new("teardown cancelled: nothing was deleted").into())
    }
}

fn init_logging(verbosity: u8, color: bool) {
    use tracing_subscriber::EnvFilter;
    // mysql_async stays at info even with -vv: its trace output could carry statements with passwords.
    let default = match verbosity {
        0 => "lab=warn",
        1 => "lab=debug,kube=info,mysql_async=info",
        _ => "lab=trace,kube=debug,mysql_async=info",
    };
    let filter = EnvFilter::try_from_env("LAB_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(verbosity > 0)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_fails_unless_healthy_and_up_fails_only_when_broken() {
        use Strictness::*;
        assert_eq!(exit_for(Verdict::Healthy, FailUnlessHealthy), ExitStatus::Success);
        assert_eq!(exit_for(Verdict::Degraded, FailUnlessHealthy), ExitStatus::Unhealthy);
        assert_eq!(exit_for(Verdict::Broken, FailUnlessHealthy), ExitStatus::Unhealthy);
        assert_eq!(exit_for(Verdict::Degraded, FailOnlyWhenBroken), ExitStatus::Success);
        assert_eq!(exit_for(Verdict::Broken, FailOnlyWhenBroken), ExitStatus::Unhealthy);
    }
}
