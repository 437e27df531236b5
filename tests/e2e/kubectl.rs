//! The real `kubectl` against kubesim, for what a student types in the tutorial: `kubectl port-forward` to pods
//! and Services, with the real MariaDB client on the other end. They need kubectl 1.30 or later and the MariaDB
//! client.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{kubeconfig, lab, start_sim};

const NS: &str = "database";
const WAIT: Duration = Duration::from_secs(30);

/// A lab brought up on a fresh simulator.
fn lab_up() -> (kubesim::Kubesim, PathBuf) {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    (sim, kc)
}

// -- port-forward --------------------------------------------------------------------------------------------------

/// A running `kubectl port-forward` with its local ports; killed on drop.
struct Forward {
    child: Child,
    ports: Vec<u16>,
    log: tempfile::NamedTempFile,
}

impl Forward {
    /// Starts kubectl with `-v=6` (its log names the upgrade request) and waits for its "Forwarding from" lines,
    /// one per remote port.
    fn start(kc: &Path, target: &str, remote_ports: &[u16], env: &[(&str, &str)]) -> Forward {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut args = vec![
            "port-forward".to_string(),
            "-v=6".into(),
            "-n".into(),
            NS.into(),
            target.into(),
        ];
        args.extend(remote_ports.iter().map(|port| format!(":{port}")));
        let mut child = Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", kc)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log handle"))
            .spawn()
            .unwrap_or_else(|e| panic!("kubectl does not run ({e}): install kubectl 1.30 or later"));
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading to the end: kubectl goes on printing "Handling connection", and a Go program writing
            // to a closed stdout dies of SIGPIPE.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut forward = Forward {
            child,
            ports: Vec::new(),
            log,
        };
        while forward.ports.len() < remote_ports.len() {
            let line = received.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!(
                    "kubectl port-forward {target} did not start listening:\n{}",
                    forward.log()
                )
            });
            // "Forwarding from 127.0.0.1:41403 -> 3306"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let (local, _) = rest.split_once(" -> ").expect("a port mapping");
                forward.ports.push(local.parse().expect("a local port"));
            }
        }
        forward
    }

    fn log(&self) -> String {
        let mut text = String::new();
        let _ = self.log.reopen().and_then(|mut file| file.read_to_string(&mut text));
        text
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `query` with the host's MariaDB client through a local port (TCP, never the socket). The query goes on
/// stdin: megabyte statements exceed what one command-line argument may hold.
fn query_through(port: u16, query: &str) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "-proot",
            "-N",
            "-B",
        ])
        .arg("--max-allowed-packet=64M")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mariadb client runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let statement = format!("{query};\n");
    let writer = std::thread::spawn(move || {
        // The client may give up early (a refused forward); its error is on stderr.
        let _ = stdin.write_all(statement.as_bytes());
    });
    let output = child.wait_with_output().expect("the mariadb client runs");
    let _ = writer.join();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Runs `query` through every port of `forward`, `per_port` times at once; returns the answers in port order.
fn concurrently(forward: &Forward, per_port: usize, query: &str) -> Vec<String> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = forward
            .ports
            .iter()
            .flat_map(|&port| std::iter::repeat_n(port, per_port))
            .map(|port| scope.spawn(move || query_through(port, query)))
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .expect("client thread")
                    .unwrap_or_else(|err| panic!("query failed: {err}\nkubectl:\n{}", forward.log()))
            })
            .collect()
    })
}

#[test]
fn kubectl_port_forward_reaches_pods_and_services_over_both_protocols() {
    let (_sim, kc) = lab_up();
    let upgraded = |forward: &Forward, method: &str, pod: &str| {
        let request = format!("{method} http://");
        let path = format!("/pods/{pod}/portforward 101 Switching Protocols");
        forward
            .log()
            .lines()
            .any(|line| line.contains(&request) && line.contains(&path))
    };

    // A pod, two ports in one command, several connections at once through each. kubectl 1.30+ tunnels SPDY
    // through a WebSocket (a GET upgrade); it falls back to a POST only when that upgrade is refused.
    let pod = Forward::start(&kc, "pod/mysql-0", &[3306, 3306], &[]);
    let answers = concurrently(&pod, 3, "SELECT @@server_id, SLEEP(0.5)");
    assert_eq!(answers, vec!["1\t0\n"; 6]);
    assert!(
        upgraded(&pod, "GET", "mysql-0"),
        "not a WebSocket upgrade:\n{}",
        pod.log()
    );
    assert!(
        !upgraded(&pod, "POST", "mysql-0"),
        "kubectl fell back to SPDY:\n{}",
        pod.log()
    );
    // Megabytes both ways (SPDY frames are 24-bit sized; nothing may stall or be cut).
    let big = query_through(
        pod.ports[0],
        "SELECT LENGTH(REPEAT('x', 4000000)), MD5(REPEAT('x', 4000000))",
    )
    .expect("server-side result");
    let downloaded = query_through(pod.ports[1], "SELECT REPEAT('x', 4000000)").expect("download");
    assert_eq!(downloaded.trim_end().len(), 4_000_000);
    let uploaded = query_through(pod.ports[0], &format!("SELECT LENGTH('{}')", "y".repeat(3_000_000))).expect("upload");
    assert_eq!(uploaded, "3000000\n");
    assert!(big.starts_with("4000000\t"), "{big}");

    // A Service: kubectl picks a pod by the selector and maps the Service port to the container port.
    let primary = Forward::start(&kc, "svc/mysql-primary", &[3306], &[]);
    assert_eq!(concurrently(&primary, 2, "SELECT @@server_id"), vec!["1\n"; 2]);
    assert!(upgraded(&primary, "GET", "mysql-0"), "{}", primary.log());

    // The protocol kubectl falls back to (and older kubectl speaks): SPDY on a plain HTTP upgrade.
    let spdy = Forward::start(
        &kc,
        "pod/mysql-1",
        &[3306],
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
    );
    assert_eq!(concurrently(&spdy, 3, "SELECT @@server_id"), vec!["2\n"; 3]);
    assert!(
        upgraded(&spdy, "POST", "mysql-1"),
        "not a SPDY upgrade:\n{}",
        spdy.log()
    );
    let uploaded =
        query_through(spdy.ports[0], &format!("SELECT LENGTH('{}')", "z".repeat(2_000_000))).expect("upload");
    assert_eq!(uploaded, "2000000\n");

    // Nothing listens on 3307: the kubelet's error reaches kubectl, which reports it and gives up.
    let mut refused = Forward::start(&kc, "pod/mysql-0", &[3307], &[]);
    let err = query_through(refused.ports[0], "SELECT 1").expect_err("nothing listens on 3307");
    assert!(err.contains("Lost connection"), "{err}");
    let status = wait_exit(&mut refused.child);
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("error forwarding port 3307 to pod mysql-0, uid ")
            && log.contains("dial tcp4 127.0.0.1:3307: connect: connection refused"),
        "{log}"
    );
    assert!(log.contains("lost connection to pod"), "{log}");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for kubectl") {
            return status;
        }
        assert!(started.elapsed() < WAIT, "kubectl port-forward did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
