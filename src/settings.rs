//! Resolves command-line arguments and the environment into plain settings. Nothing below this module reads
//! the environment or knows about clap.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{GlobalArgs, ManifestArgs, OutputFormat};

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    /// JUnit XML, for the commands that check (`verify`, `status`).
    Junit,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Spinners: stderr is a terminal, not in CI, not writing JSON.
    Spinners,
    /// Plain timestamped lines, one per event.
    Lines,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: String,
    pub format: Format,
    pub verbosity: u8,
    pub timeout: Duration,
    pub progress: ProgressStyle,
    /// ANSI colour on stdout (the table) and stderr (progress).
    pub color: bool,
}

/// What the environment says, gathered in one place so that resolution stays a pure function.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment {
    pub stdout_is_terminal: bool,
    pub stderr_is_terminal: bool,
    pub no_color: bool,
    pub ci: bool,
}

impl Environment {
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        Environment {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            no_color: set("NO_COLOR"),
            ci: set("CI"),
        }
    }
}

impl Settings {
    pub fn resolve(args: &GlobalArgs, env: Environment) -> Settings {
        let GlobalArgs {
            context,
            kubeconfig,
            namespace,
            output,
            verbose,
            timeout,
            // Read where the commands are dispatched: it picks the namespaces, not how one is checked.
            all_namespaces: _,
        } = args;
        let format = match output {
            OutputFormat::Human => Format::Table,
            OutputFormat::Json => Format::Json,
            OutputFormat::Junit => Format::Junit,
        };
        let progress = if env.stderr_is_terminal && !env.ci && format == Format::Table {
            ProgressStyle::Spinners
        } else {
            ProgressStyle::Lines
        };
        Settings {
            kubeconfig: kubeconfig.clone(),
            context: context.clone(),
            namespace: namespace
                .clone()
                .unwrap_or_else(|| crate::cli::DEFAULT_NAMESPACE.to_string()),
            format,
            verbosity: *verbose,
            timeout: Duration::from_secs(*timeout),
            progress,
            color: env.stdout_is_terminal && env.stderr_is_terminal && !env.no_color,
        }
    }
}

/// The manifests to apply and the edits to make to them.
#[derive(Debug, Clone)]
pub struct ManifestSettings {
    pub image: String,
    /// `--replicas`; `None` keeps the running lab's size, or the manifests' for a new lab.
    pub replicas: Option<u32>,
    pub dir: Option<PathBuf>,
    /// Start every pod at once (podManagementPolicy Parallel).
    pub parallel: bool,
}

impl From<&ManifestArgs> for ManifestSettings {
    fn from(args: &ManifestArgs) -> Self {
        let ManifestArgs {
            image,
            replicas,
            manifests,
            parallel,
        } = args;
        ManifestSettings {
            image: image.clone(),
            replicas: *replicas,
            dir: manifests.clone(),
            parallel: *parallel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn resolve(argv: &[&str], env: Environment) -> Settings {
        Settings::resolve(&Cli::try_parse_from(argv).expect("valid arguments").global, env)
    }

    #[test]
    fn spinners_only_on_a_terminal_outside_ci_and_without_json() {
        let tty = Environment {
            stdout_is_terminal: true,
            stderr_is_terminal: true,
            ..Default::default()
        };
        assert_eq!(resolve(&["lab", "status"], tty).progress, ProgressStyle::Spinners);
        assert_eq!(
            resolve(&["lab", "status", "-o", "json"], tty).progress,
            ProgressStyle::Lines
        );
        let ci = Environment { ci: true, ..tty };
        assert_eq!(resolve(&["lab", "status"], ci).progress, ProgressStyle::Lines);
        assert_eq!(
            resolve(&["lab", "status"], Environment::default()).progress,
            ProgressStyle::Lines
        );
    }

    #[test]
    fn no_color_and_pipes_turn_colour_off() {
        let tty = Environment {
            stdout_is_terminal: true,
            stderr_is_terminal: true,
            ..Default::default()
        };
        assert!(resolve(&["lab", "status"], tty).color);
        assert!(!resolve(&["lab", "status"], Environment { no_color: true, ..tty }).color);
        assert!(
            !resolve(
                &["lab", "status"],
                Environment {
                    stdout_is_terminal: false,
                    ..tty
                }
            )
            .color
        );
    }

    #[test]
    fn timeout_and_namespace_are_carried() {
        let s = resolve(&["lab", "--timeout", "30", "verify", "-n", "x"], Environment::default());
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.namespace, "x");
        assert_eq!(s.format, Format::Table);
        assert_eq!(
            resolve(&["lab", "status"], Environment::default()).namespace,
            "database"
        );
    }
}
