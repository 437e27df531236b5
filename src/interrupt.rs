//! Ctrl-C, and named checkpoints where a run can be interrupted on purpose.
//!
//! Every step of `lab up` must survive an interruption at any point: the next run resumes. A Ctrl-C at an exact
//! point (between `CHANGE REPLICATION SOURCE` and `START REPLICA`, say) cannot be timed from outside, so the code
//! marks such points with [`checkpoint`], and `LAB_INTERRUPT_AT=<checkpoint>` interrupts the run there exactly as
//! Ctrl-C would: the command future is dropped where it stands and `lab` exits 130. The runner adds
//! `before <step>` and `after <step>` for every step; the others are named where they are called. With the
//! variable unset, a checkpoint costs one comparison.

use std::sync::OnceLock;

use tokio::sync::Notify;

static INTERRUPT_AT: OnceLock<String> = OnceLock::new();

fn requested() -> &'static Notify {
    static REQUESTED: OnceLock<Notify> = OnceLock::new();
    REQUESTED.get_or_init(Notify::new)
}

/// Arms the checkpoint named `name` (from `LAB_INTERRUPT_AT`). Only the first call counts.
pub fn interrupt_at(name: &str) {
    let _ = INTERRUPT_AT.set(name.to_string());
}

/// Resolves when the user pressed Ctrl-C or the run reached the armed checkpoint.
pub async fn interrupted() {
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {}
        _ = requested().notified() => {}
    }
}

/// A point where an interruption must leave a lab that the next run completes. When this is the armed
/// checkpoint, the run stops here as if Ctrl-C had been pressed: the caller never resumes.
pub async fn checkpoint(name: &str) {
    if INTERRUPT_AT.get().is_some_and(|armed| armed == name) {
        tracing::debug!(
            checkpoint = name,
            "interrupting at the checkpoint named by LAB_INTERRUPT_AT"
        );
        requested().notify_one();
        std::future::pending::<()>().await;
    }
}
