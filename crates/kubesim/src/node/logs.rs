//! Container logs: one file per container instance (stdout and stderr interleaved by line, as `kubectl logs`
//! shows them), the current and the previous instance kept; every line is also broadcast so the node can react
//! to what a process prints (the temporary database server's "ready for connections", probe wake-ups).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::broadcast;

/// Where one container instance writes.
#[derive(Clone)]
pub struct LogSink {
    file: Arc<Mutex<File>>,
    lines: broadcast::Sender<String>,
}

impl LogSink {
    pub fn create(path: &Path) -> std::io::Result<LogSink> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (lines, _) = broadcast::channel(256);
        Ok(LogSink {
            file: Arc::new(Mutex::new(file)),
            lines,
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.lines.subscribe()
    }

    /// Appends one line (a newline is added when missing).
    pub fn line(&self, line: &str) {
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = file.write_all(line.as_bytes());
            if !line.ends_with('\n') {
                let _ = file.write_all(b"\n");
            }
        }
        let _ = self.lines.send(line.trim_end_matches('\n').to_string());
    }

    /// Copies a process's output into the log, line by line, until it closes.
    pub fn pump(&self, output: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<()> {
        let sink = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(output);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => sink.line(&String::from_utf8_lossy(&buffer)),
                }
            }
        })
    }
}

/// The log file of instance `restart` of a container.
pub fn instance_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir.join("logs").join(container).join(format!("{restart}.log"))
}

/// The last `tail` lines of a log (all with None).
pub fn tail(text: &str, tail: Option<usize>) -> String {
    match tail {
        None => text.to_string(),
        Some(0) => String::new(),
        Some(n) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            lines[lines.len().saturating_sub(n)..].concat()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", Some(2)), "b\nc\n");
        assert_eq!(tail("a\nb\nc", Some(1)), "c");
        assert_eq!(tail("a\n", Some(5)), "a\n");
        assert_eq!(tail("a\nb\n", None), "a\nb\n");
        assert_eq!(tail("a\nb\n", Some(0)), "");
    }
}
