//! Container logs: one file per container instance (stdout and stderr interleaved by line, as `kubectl logs`
//! shows them, each line stored with the time it was written: see [`crate::pod_logs`]), the current and the
//! previous instance kept; every line is also broadcast so the node can react to what a process prints (the
//! temporary database server's "ready for connections", probe wake-ups) and `kubectl logs -f` can follow.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
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

    /// A handle that does not keep the log open: followers see the instance end when every writer is gone.
    pub fn feed(&self) -> broadcast::WeakSender<String> {
        self.lines.downgrade()
    }

    /// Appends one line with the time it is written (a newline is added when missing).
    pub fn line(&self, line: &str) {
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = file.write_all(crate::pod_logs::stored_line(jiff::Timestamp::now(), line).as_bytes());
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

/// Reads a growing log file by whole lines.
pub struct LogReader {
    path: PathBuf,
    offset: u64,
}

impl LogReader {
    pub fn new(path: PathBuf) -> LogReader {
        LogReader { path, offset: 0 }
    }

    /// The whole lines written since the last read.
    pub fn read_new(&mut self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = File::open(&self.path)
            && file.seek(SeekFrom::Start(self.offset)).is_ok()
        {
            let _ = file.read_to_end(&mut bytes);
        }
        let whole = bytes.iter().rposition(|byte| *byte == b'\n').map_or(0, |last| last + 1);
        bytes.truncate(whole);
        self.offset += whole as u64;
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_stored_with_their_time_and_read_as_they_come() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = instance_path(dir.path(), "mysql", 0);
        let sink = LogSink::create(&path).expect("sink");
        let mut reader = LogReader::new(path.clone());
        sink.line("first");
        sink.line("second\n");
        let text = reader.read_new();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("Z first") && lines[1].ends_with("Z second"),
            "{text}"
        );
        assert!(
            lines[0].split(' ').next().unwrap().parse::<jiff::Timestamp>().is_ok(),
            "{text}"
        );
        assert_eq!(reader.read_new(), "");
        // A half-written line waits for its end.
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"2025-01-01T00:00:00Z par").unwrap();
        assert_eq!(reader.read_new(), "");
        file.write_all(b"t\n").unwrap();
        assert_eq!(reader.read_new(), "2025-01-01T00:00:00Z part\n");
        // Followers hold a weak handle: the feed closes with the last writer.
        let feed = sink.feed();
        assert!(feed.upgrade().is_some());
        drop(sink);
        assert!(feed.upgrade().is_none());
    }
}
