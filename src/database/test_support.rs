//! Throwaway local MariaDB servers for the adapter tests: a temp data directory, a free loopback port, a
//! password for root, killed and removed on drop. A missing MariaDB fails the test with what to install.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use crate::secret::SecretString;

use super::{Credentials, quote_literal};

/// Root's password on test servers; quotes, a backslash and a `;` exercise the escaping.
pub const ROOT_PASSWORD: &str = r"r00t;'pa\ss";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Binary log on, only appdb (as the lab's mysql-0).
    Primary,
    /// read_only, relay log (as the lab's mysql-1..N).
    Replica,
}

pub struct MariaDb {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn find_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} not found: install MariaDB: apt-get install mariadb-server"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

impl MariaDb {
    /// Initialises a data directory and starts `mariadbd` on it; returns once TCP accepts connections.
    pub fn start(server_id: u32, role: Role) -> MariaDb {
        let mariadbd = find_binary("mariadbd");
        let install_db = find_binary("mariadb-install-db");
        let dir = tempfile::Builder::new()
            .prefix("lab-mariadb-")
            .tempdir()
            .expect("create a temp dir");
        let datadir = dir.path().join("data");
        // A private tmpdir: in the shared /tmp, concurrent servers' temp table names (derived from the pid, which
        // repeats across pid namespaces) can collide and make the install fail.
        let tmpdir = dir.path().join("tmp");
        fs::create_dir(&tmpdir).expect("create the server's tmpdir");
        // --skip-test-db: no anonymous ''@'localhost' accounts, which would shadow repl@'%' on loopback (1045).
        let install = Command::new(&install_db)
            .arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--tmpdir={}", tmpdir.display()))
            .arg("--user=root")
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(
            install.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&install.stdout),
            String::from_utf8_lossy(&install.stderr)
        );
        // As the official image does: root@'%' with a password, no root@127.0.0.1/::1 (with --skip-name-resolve a
        // TCP login from 127.0.0.1 then is root@'%').
        let password = quote_literal(ROOT_PASSWORD);
        let init = format!(
            "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';\n\
             ALTER USER 'root'@'localhost' IDENTIFIED BY {password};\n\
             CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY {password};\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
        );
        let init_file = dir.path().join("init.sql");
        fs::write(&init_file, init).expect("write init.sql");
        let port = free_port();
        let mut command = Command::new(&mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--tmpdir={}", tmpdir.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("mysqld.pid").display()))
            .arg(format!("--init-file={}", init_file.display()))
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=32M")
            .arg(format!("--server-id={server_id}"));
        match role {
            Role::Primary => command.args(["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-do-db=appdb"]),
            Role::Replica => command.args(["--read-only=ON", "--relay-log=relay-log"]),
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mariadbd");
        // The server's log goes to stderr: copied to error.log, and its "ready for connections" line is the event
        // to wait for. It comes only once THIS server listens on the port: a TCP probe could be answered by another
        // test's server that took the same free port first (ours then fails to bind and exits).
        let stderr = child.stderr.take().expect("stderr is piped");
        let log_path = dir.path().join("error.log");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = fs::File::create(&log_path).expect("create error.log");
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if line.contains("ready for connections") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let server = MariaDb { child, port, dir };
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => server,
            Err(RecvTimeoutError::Timeout) => panic!(
                "mariadbd did not become ready on port {} in 30s:\n{}",
                server.port,
                server.error_log_tail()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "mariadbd exited before accepting connections on port {}:\n{}",
                server.port,
                server.error_log_tail()
            ),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn root() -> Credentials {
        Credentials {
            user: "root".into(),
            password: SecretString::new(ROOT_PASSWORD),
        }
    }

    pub fn error_log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGKILL: the data directory is thrown away anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary (server-id 1) and a replica (server-id 2), started in parallel.
pub fn start_pair() -> (MariaDb, MariaDb) {
    std::thread::scope(|scope| {
        let primary = scope.spawn(|| MariaDb::start(1, Role::Primary));
        let replica = MariaDb::start(2, Role::Replica);
        (primary.join().expect("primary starts"), replica)
    })
}
