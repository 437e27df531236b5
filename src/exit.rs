//! Exit codes, part of the user-facing contract (README "Exit codes").

use std::process::ExitCode;

/// How a command ended. Every error type that can reach the top implements [`Classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done and every check passed.
    Success,
    /// The lab is unhealthy: a check failed.
    Unhealthy,
    /// Bad usage or configuration (flags, manifests, kubeconfig context, a namespace `lab` does not own).
    Usage,
    /// The cluster or a database could not be reached, or did not become ready in time.
    Unreachable,
    /// Interrupted by Ctrl-C.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Unhealthy => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Unreachable => 3,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// Implemented by the adapters' error types so that one place can map any error to an exit code.
pub trait Classify {
    fn exit_status(&self) -> ExitStatus;
}

/// A usage or configuration problem found by `lab` itself (not by an adapter).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

impl Classify for UsageError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
}

/// Maps an error to its exit status: the first error in the chain that knows its class decides.
/// Anything unclassified is a failed check (1).
pub fn classify(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<UsageError>() {
            return e.exit_status();
        }
        if let Some(e) = cause.downcast_ref::<crate::Interrupted>() {
            return e.exit_status();
        }
        if let Some(e) = cause.downcast_ref::<crate::cluster::ClusterError>() {
            return e.exit_status();
        }
        if let Some(e) = cause.downcast_ref::<crate::database::DbError>() {
            return e.exit_status();
        }
        if let Some(e) = cause.downcast_ref::<crate::manifests::ManifestError>() {
            return e.exit_status();
        }
    }
    ExitStatus::Unhealthy
}
