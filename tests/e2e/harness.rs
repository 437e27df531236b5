//! Starting simulators and running the `lab` binary against them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, DeleteParams};
use kubesim::{Kubesim, Options};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// Starts a simulator, failing the test with what to install when the machine cannot run one.
pub fn start_sim() -> Kubesim {
    start_sim_with(Options::default())
}

pub fn start_sim_with(options: Options) -> Kubesim {
    match Kubesim::start(options) {
        Ok(sim) => sim,
        Err(error) => panic!(
            "kubesim cannot start: {error:#}\n(the e2e tests need root and: apt-get install mariadb-server iproute2 util-linux)"
        ),
    }
}

/// The result of one `lab` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON report on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "lab exited {} (expected {expected})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `lab` with `KUBECONFIG` pointing at `kubeconfig`.
pub fn lab(kubeconfig: &Path, args: &[&str]) -> Run {
    lab_with_env(kubeconfig, args, &[])
}

pub fn lab_with_env(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lab"));
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("NO_COLOR")
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let Output { status, stdout, stderr } = command.output().expect("the lab binary runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A temporary directory holding a copy of the built-in manifests, edited by `edit`.
pub fn edited_manifests(kubeconfig: &Path, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let rendered = lab(kubeconfig, &["render", "--show-secrets"]);
    rendered.assert_code(0);
    let dir = tempfile::tempdir().expect("temp dir");
    let edited = edit(&rendered.stdout);
    assert_ne!(edited, rendered.stdout, "the edit changed nothing");
    std::fs::write(dir.path().join("lab.yaml"), edited).expect("write manifests");
    dir
}

/// Runs `work` on a fresh runtime with the simulator's pods API in `namespace`, through the real kube client.
fn with_pods<T>(sim: &Kubesim, namespace: &str, work: impl AsyncFnOnce(kube::Api<Pod>) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(config).expect("client");
        work(kube::Api::namespaced(client, namespace)).await
    })
}

/// Runs a SQL query inside a pod (through pods/exec, with the pod's own client) and returns its output.
pub fn sql(sim: &Kubesim, namespace: &str, pod: &str, query: &str) -> String {
    match sql_result(sim, namespace, pod, query) {
        Ok(out) => out,
        Err(err) => panic!("query {query:?} failed: {err}"),
    }
}

/// Like [`sql`], as the tutorial runs it (`mariadb -h 127.0.0.1 -uroot -p...` inside the pod): the output, or the
/// client's error text when the statement fails.
pub fn sql_result(sim: &Kubesim, namespace: &str, pod: &str, query: &str) -> Result<String, String> {
    with_pods(sim, namespace, async |pods| {
        let argv = vec!["mariadb", "-h127.0.0.1", "-uroot", "-proot", "-N", "-B", "-e", query];
        let mut process = pods
            .exec(pod, argv, &AttachParams::default().container("mysql").stderr(true))
            .await
            .expect("exec");
        let mut out = String::new();
        let mut err = String::new();
        let mut stdout = process.stdout().expect("stdout");
        let mut stderr = process.stderr().expect("stderr");
        let (a, b) = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        a.expect("read stdout");
        b.expect("read stderr");
        let status = process.take_status().expect("status").await.expect("status arrives");
        if status.status.as_deref() == Some("Success") {
            Ok(out)
        } else {
            Err(err)
        }
    })
}

/// Deletes a pod through the API and waits until the StatefulSet has brought it back (new uid, Ready).
pub fn delete_pod_and_wait(sim: &Kubesim, namespace: &str, pod: &str, timeout: Duration) -> (String, String) {
    let uid_of = |sim: &Kubesim| {
        sim.objects("pods", Some(namespace))
            .into_iter()
            .find(|p| p["metadata"]["name"] == pod)
            .map(|p| {
                (
                    p["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                    is_ready(&p),
                )
            })
    };
    let (old_uid, _) = uid_of(sim).expect("the pod exists");
    with_pods(sim, namespace, async |pods| {
        pods.delete(pod, &DeleteParams::default()).await.expect("delete pod");
    });
    let started = std::time::Instant::now();
    loop {
        if let Some((uid, true)) = uid_of(sim)
            && uid != old_uid
        {
            return (old_uid, uid);
        }
        assert!(
            started.elapsed() < timeout,
            "{pod} did not come back Ready within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The PVC a pod mounts as `data`.
pub fn claim_of(pod: &Value) -> String {
    pod["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str()))
        .unwrap_or_default()
        .to_string()
}

pub fn kubeconfig(sim: &Kubesim) -> PathBuf {
    sim.kubeconfig_path().to_path_buf()
}

/// Runs `program args` (kubectl, bash, ...) as a person would on the simulator's cluster: `KUBECONFIG` pointing at
/// it, `stdin` as input. Returns the exit code, stdout and stderr.
pub fn run_as_user(kubeconfig: &Path, program: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not run ({e}): kubectl 1.30 or later and bash must be installed"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let Output { status, stdout, stderr } = child.wait_with_output().expect("the command runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs the real `kubectl` against the simulator with `stdin` as its input; returns stdout, failing the test with
/// stderr when kubectl fails.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    let (code, stdout, stderr) = run_as_user(kubeconfig, "kubectl", args, stdin);
    assert_eq!(code, 0, "kubectl {args:?} failed: {stderr}");
    stdout
}

/// One testcase: its name and, when it failed, its failure message.
pub type JunitCase = (String, Option<String>);

/// A JUnit report as a CI reader sees it, parsed by the `junitparser` library (PyPI): each testcase's name and,
/// when it failed, its failure message. Fails the test with what to install when the library is missing.
pub fn parse_junit(xml: &str) -> Vec<JunitCase> {
    parse_junit_suites(xml)
        .into_iter()
        .flat_map(|(_, cases)| cases)
        .collect()
}

/// Like [`parse_junit`], suite by suite: each testsuite's name and its testcases.
pub fn parse_junit_suites(xml: &str) -> Vec<(String, Vec<JunitCase>)> {
    const READER: &str = r#"
import json, sys
try:
    from junitparser import JUnitXml, Failure
except ImportError:
    sys.exit("junitparser is missing: pip install junitparser")
xml = JUnitXml.fromstring(sys.stdin.read())
suites = [xml] if xml._tag == "testsuite" else list(xml)
result = []
for suite in suites:
    cases = []
    for case in suite:
        failed = [r for r in case.result if isinstance(r, Failure)]
        cases.append([case.name, failed[0].message if failed else None])
    assert suite.tests == len(cases), "the tests attribute counts the testcases"
    assert suite.failures == sum(1 for c in cases if c[1] is not None), "the failures attribute counts the failures"
    result.append([suite.name, cases])
if xml._tag == "testsuites":
    assert xml.tests == sum(len(cases) for _, cases in result), "the document's tests attribute adds up the suites"
    assert xml.failures == sum(1 for _, cases in result for c in cases if c[1] is not None), "and its failures"
print(json.dumps(result))
"#;
    let (code, out, err) = run_as_user(Path::new("/dev/null"), "python3", &["-c", READER], xml);
    assert_eq!(code, 0, "junitparser cannot read the report: {err}\n{xml}");
    serde_json::from_str(&out).expect("the reader prints JSON")
}

/// Reads `reader` line by line until a line contains `needle`: everything read so far, and that line (`None`
/// when the stream ended first).
pub fn read_until(reader: &mut impl std::io::BufRead, needle: &str) -> (String, Option<String>) {
    let mut seen = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("read the child's output") == 0 {
            return (seen, None);
        }
        seen.push_str(&line);
        if line.contains(needle) {
            return (seen, Some(line));
        }
    }
}

/// A MariaDB server on loopback, configured as the lab's init container configures a pod (server-id; on the
/// primary the binary log of appdb, on a replica read-only and a relay log) and with the image's accounts (root@'%'
/// with `root_password`, skip-name-resolve). Killed on drop. For replaying what `lab` prints on real servers.
pub struct LocalMariaDb {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl LocalMariaDb {
    pub fn start(server_id: u32, primary: bool, root_password: &str) -> LocalMariaDb {
        use std::io::BufRead as _;
        let dir = tempfile::Builder::new()
            .prefix("lab-e2e-mariadb-")
            .tempdir()
            .expect("temp dir");
        let (data, tmp) = (dir.path().join("data"), dir.path().join("tmp"));
        std::fs::create_dir(&tmp).expect("tmpdir");
        let install = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("mariadb-install-db runs: apt-get install mariadb-server");
        assert!(install.status.success(), "{}", String::from_utf8_lossy(&install.stderr));
        let quoted = format!("'{}'", root_password.replace('\\', "\\\\").replace('\'', "''"));
        let init = dir.path().join("init.sql");
        std::fs::write(
            &init,
            format!(
                "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';\n\
                 ALTER USER 'root'@'localhost' IDENTIFIED BY {quoted};\n\
                 CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY {quoted};\n\
                 GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
            ),
        )
        .expect("init.sql");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new("mariadbd");
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--init-file={}", init.display()))
            .args(["--user=root", "--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args(["--innodb-buffer-pool-size=32M", &format!("--server-id={server_id}")]);
        if primary {
            command.args(["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-do-db=appdb"]);
        } else {
            command.args(["--read-only=ON", "--relay-log=relay-log"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mariadbd starts: apt-get install mariadb-server");
        // Its own "ready for connections" line, not a TCP probe another test's server could answer.
        let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let (seen, ready) = read_until(&mut log, "ready for connections");
        assert!(ready.is_some(), "mariadbd exited before it was ready:\n{seen}");
        std::thread::spawn(move || for _ in log.lines() {});
        LocalMariaDb { child, port, _dir: dir }
    }
}

impl Drop for LocalMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
