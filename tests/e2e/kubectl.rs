//! The real `kubectl` against kubesim, for what a student types in the tutorial: `kubectl exec` with and without
//! a terminal (in tmux, as a person at a terminal sees it) and `kubectl port-forward` to pods and Services, with
//! the real MariaDB client on the other end. They need kubectl 1.30 or later, tmux and the MariaDB client.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{kubeconfig, lab, start_sim};

const NS: &str = "database";
const WAIT: Duration = Duration::from_secs(30);

/// What a user sees from one kubectl run.
struct Seen {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kubectl_run(kc: &Path, args: &[&str], stdin: Stdio) -> Seen {
    let output = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kc)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("kubectl does not run ({e}): install kubectl 1.30 or later"));
    Seen {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A lab brought up on a fresh simulator.
fn lab_up() -> (kubesim::Kubesim, PathBuf) {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    (sim, kc)
}

// -- exec without a terminal --------------------------------------------------------------------------------------

#[test]
fn kubectl_exec_keeps_streams_apart_and_exits_with_the_command() {
    let (_sim, kc) = lab_up();

    let seen = kubectl_run(
        &kc,
        &[
            "exec",
            "mysql-0",
            "-n",
            NS,
            "-c",
            "mysql",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        Stdio::null(),
    );
    assert_eq!(seen.code, 3, "kubectl exits with the command's status: {}", seen.stderr);
    assert_eq!(seen.stdout, "out\n");
    assert!(seen.stderr.starts_with("err\n"), "stderr: {:?}", seen.stderr);
    assert!(
        seen.stderr.contains("command terminated with exit code 3"),
        "{}",
        seen.stderr
    );

    // A command the container does not have: the runtime's words, as kubectl prints them.
    let seen = kubectl_run(
        &kc,
        &["exec", "mysql-0", "-n", NS, "-c", "mysql", "--", "no-such-command"],
        Stdio::null(),
    );
    assert_eq!(seen.code, 1, "{}", seen.stderr);
    assert!(
        seen.stderr.contains(
            "error executing command in container: OCI runtime exec failed: exec failed: unable to start container \
             process: exec: \"no-such-command\": executable file not found in $PATH: unknown"
        ),
        "{}",
        seen.stderr
    );

    // -i: stdin reaches the command and its end ends the command.
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "first\nsecond\n").expect("write input");
    let file = || Stdio::from(std::fs::File::open(&input).expect("open input"));
    let seen = kubectl_run(
        &kc,
        &["exec", "-i", "mysql-0", "-n", NS, "-c", "mysql", "--", "wc", "-l"],
        file(),
    );
    assert_eq!((seen.code, seen.stdout.trim()), (0, "2"), "{}", seen.stderr);

    // The tutorial's form: -it with a file on stdin. kubectl cannot use a terminal, says so, and runs the file.
    let script = dir.path().join("check.sql");
    std::fs::write(
        &script,
        "CREATE DATABASE IF NOT EXISTS kubectl_check;\n\
         CREATE TABLE kubectl_check.numbers (n INT);\n\
         INSERT INTO kubectl_check.numbers VALUES (1), (2), (39);\n\
         SELECT SUM(n) AS total, @@server_id AS server FROM kubectl_check.numbers;\n",
    )
    .expect("write script");
    let seen = kubectl_run(
        &kc,
        &[
            "exec",
            "-it",
            "mysql-0",
            "-n",
            NS,
            "--",
            "mysql",
            "-h",
            "127.0.0.1",
            "-uroot",
            "-proot",
        ],
        Stdio::from(std::fs::File::open(&script).expect("open script")),
    );
    assert_eq!(seen.code, 0, "stderr: {}", seen.stderr);
    assert_eq!(seen.stdout, "total\tserver\n42\t1\n");
    assert!(seen.stderr.contains("Unable to use a TTY"), "{}", seen.stderr);

    // A failing statement: the client's error on stderr, its exit status from kubectl.
    std::fs::write(&script, "SELECT * FROM kubectl_check.missing;\n").expect("write script");
    let seen = kubectl_run(
        &kc,
        &[
            "exec",
            "-i",
            "mysql-0",
            "-n",
            NS,
            "-c",
            "mysql",
            "--",
            "mysql",
            "-h",
            "127.0.0.1",
            "-uroot",
            "-proot",
        ],
        Stdio::from(std::fs::File::open(&script).expect("open script")),
    );
    assert_eq!(seen.code, 1, "stderr: {}", seen.stderr);
    assert_eq!(seen.stdout, "");
    assert!(seen.stderr.contains("ERROR 1146"), "{}", seen.stderr);
}

// -- exec on a terminal, in tmux -----------------------------------------------------------------------------------

/// A tmux server of our own (its socket in a temporary directory), killed at the end.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn start() -> Tmux {
        let dir = tempfile::tempdir().expect("temp dir");
        Tmux {
            socket: dir.path().join("tmux"),
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux does not run ({e}): apt-get install tmux"));
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A window of `width` x `height` running `command` under sh; the pane stays after it ends.
    fn open(&self, name: &str, kc: &Path, width: u16, height: u16, command: &str) {
        let kubeconfig = format!("KUBECONFIG={}", kc.display());
        let (width, height) = (width.to_string(), height.to_string());
        // The exit status goes on the screen: the pane is the user's view.
        let shell = format!("{command}; echo \"kubectl exited $?\"; sleep 600");
        self.command(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width,
            "-y",
            &height,
            "-e",
            &kubeconfig,
            "sh",
            "-c",
            &shell,
        ]);
    }

    /// Types `text` literally (tmux reads a trailing `;` as a command separator, so it is escaped), then Enter.
    fn type_line(&self, name: &str, text: &str) {
        let escaped = text.replace(';', "\\;");
        self.command(&["send-keys", "-t", name, "-l", &escaped]);
        self.command(&["send-keys", "-t", name, "Enter"]);
    }

    fn screen(&self, name: &str) -> String {
        self.command(&["capture-pane", "-p", "-J", "-S", "-", "-t", name])
    }

    /// Waits until the screen shows `needle` (tmux offers no notification for pane content, so we poll it).
    #[track_caller]
    fn wait_for(&self, name: &str, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen(name);
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                started.elapsed() < WAIT,
                "the screen never showed {needle:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn kubectl_exec_it_gives_a_terminal_that_follows_the_window() {
    let (_sim, kc) = lab_up();
    let tmux = Tmux::start();

    // A shell script on the terminal: all three streams are the terminal; it reads the typed line, reports the
    // window size on each Enter until it sees the new size, and exits with its own status.
    let script = "test -t 0 && test -t 1 && test -t 2 && echo all-on-a-terminal; echo via-stderr >&2; \
                  read line; echo \"typed $line\"; stty size; \
                  while read line; do s=$(stty size); echo \"size $s\"; [ \"$s\" = \"25 90\" ] && break; done; exit 7";
    tmux.open(
        "shell",
        &kc,
        100,
        30,
        &format!("kubectl exec -it mysql-0 -n {NS} -c mysql -- sh -c '{script}'"),
    );
    tmux.wait_for("shell", "via-stderr");
    let screen = tmux.screen("shell");
    assert!(screen.contains("all-on-a-terminal"), "{screen}");
    tmux.type_line("shell", "hello");
    // The terminal echoes what is typed, then the script answers; the window is 100 x 30.
    // Wait for the whole answer: on a loaded machine `stty size` prints a moment after the echo.
    let screen = tmux.wait_for("shell", "typed hello\n30 100");
    assert!(screen.contains("hello\ntyped hello\n30 100"), "{screen}");
    // Resizing the window resizes the terminal in the pod (kubectl sends the new size on the resize channel).
    tmux.command(&["resize-window", "-t", "shell", "-x", "90", "-y", "25"]);
    let started = Instant::now();
    while !tmux.screen("shell").contains("size 25 90") {
        assert!(
            started.elapsed() < WAIT,
            "the terminal never got the new size:\n{}",
            tmux.screen("shell")
        );
        tmux.type_line("shell", "");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.wait_for("shell", "kubectl exited 7");

    // The tutorial's interactive client.
    tmux.open(
        "mysql",
        &kc,
        120,
        30,
        &format!("kubectl exec -it mysql-0 -n {NS} -- mariadb -h127.0.0.1 -uroot -proot"),
    );
    tmux.wait_for("mysql", "MariaDB [(none)]>");
    tmux.type_line("mysql", "SELECT @@server_id;");
    let screen = tmux.wait_for("mysql", "1 row in set");
    assert!(
        screen.contains("| @@server_id |\n+-------------+\n|           1 |\n+-------------+"),
        "{screen}"
    );
    tmux.type_line("mysql", "exit");
    let screen = tmux.wait_for("mysql", "kubectl exited 0");
    assert!(screen.contains("Bye"), "{screen}");
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
