//! Running one process of a container: spawn it inside the container, copy its output to the container log, wait
//! for it, and stop it the way a container runtime does (SIGTERM to the whole process group, SIGKILL after the
//! grace period, and every straggler of the group killed once the main process is gone).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::logs::LogSink;
use super::sandbox::Entry;
use super::sys::{self, Spawner};

/// Everything a container's processes share.
pub struct Ctx<'a> {
    pub spawner: &'a Spawner,
    pub entry: &'a Entry,
    pub sink: &'a LogSink,
    /// Cancelled when the container must stop (pod deletion, failed liveness probe).
    pub kill: &'a CancellationToken,
    /// The grace period when the stop happens (a deletion may set its own).
    pub grace: &'a (dyn Fn() -> Duration + Send + Sync),
    /// The pod's live process groups (killed wholesale at teardown).
    pub groups: &'a Mutex<BTreeSet<i32>>,
}

pub struct Running {
    child: tokio::process::Child,
    pgid: i32,
    pumps: Vec<JoinHandle<()>>,
}

impl Ctx<'_> {
    /// Starts `argv` in the container; `stdin` is written to it and closed.
    pub async fn spawn(&self, argv: &[String], stdin: Option<Vec<u8>>) -> std::io::Result<Running> {
        let mut command = tokio::process::Command::from(self.entry.command(argv));
        command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawner.spawn_tokio(command).await?;
        let pgid = child.id().map_or(0, |id| id as i32);
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid);
        let mut pumps = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            pumps.push(self.sink.pump(stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            pumps.push(self.sink.pump(stderr));
        }
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
                let _ = pipe.shutdown().await;
            });
        }
        Ok(Running { child, pgid, pumps })
    }

    /// Waits for the process to exit, or stops it when the container is killed. Returns the exit code.
    pub async fn wait(&self, running: &mut Running) -> i32 {
        let status = tokio::select! {
            status = running.child.wait() => status,
            _ = self.kill.cancelled() => return self.terminate(running).await,
        };
        self.cleanup(running).await;
        status.map_or(128, sys::exit_code)
    }

    /// SIGTERM to the process group, SIGKILL after the grace period.
    pub async fn terminate(&self, running: &mut Running) -> i32 {
        sys::signal_group(running.pgid, libc::SIGTERM);
        let asked = std::time::Instant::now();
        let status = loop {
            // The grace period is read again as it runs: a second deletion may shorten it.
            let remaining = (self.grace)().saturating_sub(asked.elapsed());
            if remaining.is_zero() {
                sys::signal_group(running.pgid, libc::SIGKILL);
                break running.child.wait().await;
            }
            let slice = remaining.min(Duration::from_millis(100));
            if let Ok(status) = tokio::time::timeout(slice, running.child.wait()).await {
                break status;
            }
        };
        self.cleanup(running).await;
        status.map_or(137, sys::exit_code)
    }

    /// Runs `argv` in the container with stdout discarded and stderr captured instead of logged.
    pub async fn errors_of(&self, argv: &[String]) -> std::io::Result<(i32, String)> {
        let mut command = tokio::process::Command::from(self.entry.command(argv));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = self.spawner.spawn_tokio(command).await?;
        let pgid = child.id().map_or(0, |id| id as i32);
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid);
        let output = tokio::select! {
            output = child.wait_with_output() => output,
            _ = self.kill.cancelled() => Err(std::io::Error::other("the container is stopping")),
        };
        sys::signal_group(pgid, libc::SIGKILL);
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).remove(&pgid);
        let output = output?;
        Ok((
            sys::exit_code(output.status),
            String::from_utf8_lossy(&output.stderr).trim_end().to_string(),
        ))
    }

    async fn cleanup(&self, running: &mut Running) {
        // The runtime kills what is left of a container once its main process is gone.
        sys::signal_group(running.pgid, libc::SIGKILL);
        for pump in running.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
        }
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&running.pgid);
    }

    /// Runs `argv` to the end (or until killed); a spawn failure is logged and reported as exit code 127.
    pub async fn run(&self, argv: &[String], stdin: Option<Vec<u8>>) -> i32 {
        match self.spawn(argv, stdin).await {
            Ok(mut running) => self.wait(&mut running).await,
            Err(error) => {
                self.sink
                    .line(&format!("exec {}: {error}", argv.first().map_or("", String::as_str)));
                127
            }
        }
    }
}
