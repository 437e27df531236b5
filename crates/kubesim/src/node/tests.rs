//! Node tests against real namespaces, real processes and a real MariaDB (they need root, iproute2 and
//! mariadb-server, and fail saying so when these are missing).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Harness {
    store: Store,
    faults: Faults,
    node: Node,
    dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let store = Store::new();
    let faults = Faults::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!(
        "kt{}n{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let node = Node::start(store.clone(), faults.clone(), dir.path().join("node"), prefix).expect("the node starts");
    Harness {
        store,
        faults,
        node,
        dir,
    }
}

impl Harness {
    fn create(&self, resource: &str, namespace: &str, object: Value) -> Value {
        self.store.create(resource, namespace, object).expect("created")
    }

    /// A bound claim `name` whose volume is a fresh directory.
    fn claim(&self, namespace: &str, name: &str) -> std::path::PathBuf {
        let path = self.dir.path().join("pv").join(name);
        std::fs::create_dir_all(&path).expect("pv dir");
        self.create(
            "persistentvolumes",
            "",
            json!({ "metadata": { "name": format!("pv-{name}") }, "spec": { "hostPath": { "path": path } } }),
        );
        self.create(
            "persistentvolumeclaims",
            namespace,
            json!({ "metadata": { "name": name }, "spec": { "volumeName": format!("pv-{name}") }, "status": { "phase": "Bound" } }),
        );
        path
    }

    async fn wait_pod(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut changes = self.store.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pod) = self.store.get("pods", namespace, name)
                && ready(&pod)
            {
                return pod;
            }
            if tokio::time::timeout_at(deadline, changes.recv()).await.is_err() {
                let pod = self.store.get("pods", namespace, name);
                let logs = self.node.logs(namespace, name, None, false, Some(30));
                panic!(
                    "timed out waiting for {what}: {pod:#?}\nlogs: {logs:?}\nevents: {:#?}",
                    self.events(namespace)
                );
            }
        }
    }

    async fn wait_ready(&self, namespace: &str, name: &str, timeout: Duration) -> Value {
        self.wait_pod(namespace, name, "Ready", timeout, |pod| {
            condition(pod, "Ready") == "True"
        })
        .await
    }

    async fn wait_gone(&self, namespace: &str, name: &str, timeout: Duration) {
        let mut changes = self.store.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        while self.store.get("pods", namespace, name).is_some() {
            if tokio::time::timeout_at(deadline, changes.recv()).await.is_err() {
                panic!("pod {name} was not removed");
            }
        }
    }

    fn delete(&self, namespace: &str, name: &str) {
        self.store.update("pods", namespace, name, |pod| {
            pod["metadata"]["deletionTimestamp"] = json!(status::now());
            pod["metadata"]["deletionGracePeriodSeconds"] = json!(10);
        });
    }

    fn events(&self, namespace: &str) -> Vec<String> {
        self.store
            .list("events", Some(namespace))
            .iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e["type"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    async fn exec(&self, namespace: &str, pod: &str, argv: &[&str]) -> (i32, String, String) {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let child = self
            .node
            .spawn_exec(namespace, pod, None, &argv, false)
            .await
            .expect("exec spawns");
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("exec ends")
            .expect("exec output");
        (
            sys::exit_code(output.status),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }

    async fn sql(&self, namespace: &str, pod: &str, sql: &str) -> String {
        let (code, out, err) = self
            .exec(
                namespace,
                pod,
                &["mariadb", "-h", "127.0.0.1", "-uroot", "-proot", "-N", "-B", "-e", sql],
            )
            .await;
        assert_eq!(code, 0, "SQL on {pod} failed: {sql}\n{err}");
        out
    }

    /// Waits until mysql-1 has replicated exactly `rows` into appdb.replication_test.
    async fn wait_replicated(&self, rows: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let query = "SELECT msg FROM appdb.replication_test ORDER BY id";
        loop {
            let (code, found, _) = self
                .exec(
                    "database",
                    "mysql-1",
                    &["mariadb", "-h127.0.0.1", "-uroot", "-proot", "-N", "-e", query],
                )
                .await;
            if code == 0 && found == rows {
                return;
            }
            let replica = self.sql("database", "mysql-1", "SHOW SLAVE STATUS\\G").await;
            assert!(
                std::time::Instant::now() < deadline,
                "replication did not deliver {rows:?}: {replica}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs the controllers on this store, for tests that need what they publish (the Endpoints cluster DNS
    /// answers from). They stop when the returned guard drops.
    fn controllers(&self) -> Controllers {
        let control =
            crate::control::ControlPlane::new(self.store.clone(), self.faults.clone(), self.dir.path().join("volumes"));
        Controllers(crate::controllers::spawn(control))
    }

    fn finish(self) {
        self.node.shutdown();
        assert_eq!(
            self.node.leftovers(),
            Vec::<String>::new(),
            "the node left things behind"
        );
    }
}

struct Controllers(tokio::task::JoinHandle<()>);

impl Drop for Controllers {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn shell_pod(name: &str, script: &str) -> Value {
    json!({
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "nodeName": crate::NODE_NAME,
            "terminationGracePeriodSeconds": 2,
            "containers": [{ "name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script] }],
        },
    })
}

const SECRET: &str = "cm9vdA=="; // "root"

/// The tutorial's StatefulSet pod `mysql-<ordinal>`, with a TCP readiness probe; replicas get read-only
/// settings (plus `super-read-only=ON`, unknown to MariaDB, when `unknown_option`).
fn mysql_pod(ordinal: u32, unknown_option: bool) -> Value {
    let replica_extra = if unknown_option {
        "echo \"super-read-only=ON\" >> /work/server.cnf\n"
    } else {
        ""
    };
    let script = format!(
        "set -e\nORDINAL=\"${{HOSTNAME##*-}}\"\nSERVER_ID=$((ORDINAL + 1))\necho \"[mysqld]\" > /work/server.cnf\n\
         echo \"server-id=${{SERVER_ID}}\" >> /work/server.cnf\nif [ \"$ORDINAL\" = \"0\" ]; then\n\
         echo \"log-bin=mysql-bin\" >> /work/server.cnf\necho \"binlog_format=ROW\" >> /work/server.cnf\n\
         echo \"binlog-do-db=appdb\" >> /work/server.cnf\nelse\necho \"read-only=ON\" >> /work/server.cnf\n{replica_extra}\
         echo \"relay-log=relay-log\" >> /work/server.cnf\nfi\necho \"Generated config for ${{HOSTNAME}}:\"\ncat /work/server.cnf\n"
    );
    let name = format!("mysql-{ordinal}");
    json!({
        "metadata": { "name": name, "labels": { "app": "mysql", "statefulset.kubernetes.io/pod-name": name } },
        "spec": {
            "nodeName": crate::NODE_NAME,
            "hostname": name,
            "subdomain": "mysql-headless",
            "terminationGracePeriodSeconds": 10,
            "initContainers": [{
                "name": "init-mysql-config",
                "image": "busybox:1.36",
                "command": ["sh", "-c", script],
                "volumeMounts": [{ "name": "mysql-config", "mountPath": "/work" }],
            }],
            "containers": [{
                "name": "mysql",
                "image": "mysql:8.0",
                "ports": [{ "containerPort": 3306, "name": "mysql" }],
                "env": [{ "name": "MYSQL_ROOT_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "mysql-secret", "key": "MYSQL_ROOT_PASSWORD" } } }],
                "startupProbe": { "tcpSocket": { "port": 3306 }, "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 150 },
                "readinessProbe": { "tcpSocket": { "port": 3306 }, "periodSeconds": 2, "timeoutSeconds": 2 },
                "livenessProbe": { "tcpSocket": { "port": "mysql" }, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6 },
                "volumeMounts": [
                    { "name": "data", "mountPath": "/var/lib/mysql" },
                    { "name": "mysql-config", "mountPath": "/etc/mysql/conf.d" },
                ],
            }],
            "volumes": [
                { "name": "data", "persistentVolumeClaim": { "claimName": format!("data-mysql-{ordinal}") } },
                { "name": "mysql-config", "emptyDir": {} },
            ],
        },
    })
}

fn database_namespace(h: &Harness) {
    h.create(
        "secrets",
        "database",
        json!({ "metadata": { "name": "mysql-secret" }, "data": { "MYSQL_ROOT_PASSWORD": SECRET } }),
    );
    h.create(
        "services",
        "database",
        json!({ "metadata": { "name": "mysql-headless" }, "spec": { "clusterIP": "None", "selector": { "app": "mysql" } } }),
    );
    h.create(
        "services",
        "database",
        json!({ "metadata": { "name": "mysql-primary" }, "spec": { "clusterIP": "10.96.0.10", "selector": { "statefulset.kubernetes.io/pod-name": "mysql-0" } } }),
    );
}

#[test]
fn missing_programs_and_root_are_named_with_the_fix() {
    let none = |_: &str| false;
    let message = missing_requirements(false, &none).expect("problems");
    assert!(message.contains("must run as root"), "{message}");
    assert!(message.contains("`ip`"), "{message}");
    assert!(message.contains("`mariadbd`, `mariadb-install-db`"), "{message}");
    assert!(
        message.contains("apt-get install coreutils dash iproute2 mariadb-client mariadb-server"),
        "{message}"
    );
    let only_mariadb_missing = |name: &str| !name.starts_with("mariadb");
    let message = missing_requirements(true, &only_mariadb_missing).expect("problems");
    assert_eq!(
        message,
        "kubesim cannot run pods on this machine: missing `mariadbd`, `mariadb-install-db`, `mariadb` (install with `apt-get install mariadb-client mariadb-server`)"
    );
    assert_eq!(missing_requirements(true, &|_: &str| true), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_their_own_network_hostname_and_mounts_and_reach_each_other_by_name() {
    let h = harness();
    let _controllers = h.controllers();
    h.create(
        "services",
        "default",
        json!({ "metadata": { "name": "web" }, "spec": { "clusterIP": "None", "selector": { "app": "web" } } }),
    );
    let server = "echo web-started; exec perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8080,Listen=>5,ReuseAddr=>1) or die $!; while($c=$s->accept){ print $c \"hello from \".`hostname`; close $c }'";
    let mut web = shell_pod("web-0", server);
    web["metadata"]["labels"]["app"] = json!("web");
    // As a StatefulSet sets them: only a pod with an explicit hostname gets a DNS name under the subdomain.
    web["spec"]["hostname"] = json!("web-0");
    web["spec"]["subdomain"] = json!("web");
    web["spec"]["containers"][0]["readinessProbe"] = json!({ "tcpSocket": { "port": 8080 }, "periodSeconds": 1 });
    h.create("pods", "default", web);
    h.create(
        "pods",
        "default",
        shell_pod("client", "echo hi > /tmp/mine; sleep 3600"),
    );
    let web = h.wait_ready("default", "web-0", Duration::from_secs(20)).await;
    let client = h.wait_ready("default", "client", Duration::from_secs(20)).await;
    let web_ip = web["status"]["podIP"].as_str().expect("web ip").to_string();
    assert!(web_ip.starts_with("10.244.0."), "{web_ip}");
    assert_eq!(client["status"]["phase"], "Running");
    assert_eq!(client["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(
        client["status"]["containerStatuses"][0]["image"],
        "docker.io/library/busybox:1.36"
    );

    let (_, hostname, _) = h.exec("default", "client", &["hostname"]).await;
    assert_eq!(hostname.trim(), "client");
    let (_, addresses, _) = h
        .exec("default", "client", &["ip", "-o", "-4", "addr", "show", "eth0"])
        .await;
    assert!(
        addresses.contains(client["status"]["podIP"].as_str().expect("ip")),
        "{addresses}"
    );
    let (_, tmp, _) = h.exec("default", "client", &["cat", "/tmp/mine"]).await;
    assert_eq!(tmp, "hi\n");
    assert!(!Path::new("/tmp/mine").exists(), "the pod's /tmp is private");

    // The client resolves the web pod by its cluster DNS name and reaches it through the bridge.
    let fqdn = "web-0.web.default.svc.cluster.local";
    let (_, hosts, _) = h.exec("default", "client", &["cat", "/etc/hosts"]).await;
    assert!(hosts.ends_with("\tclient\n"), "{hosts}");
    assert!(
        !hosts.contains("web-0"),
        "other pods are not in the hosts file: {hosts}"
    );
    let (code, resolved, err) = h.exec("default", "client", &["getent", "hosts", "web-0.web"]).await;
    assert_eq!((code, resolved), (0, format!("{web_ip:<15} {fqdn}\n")), "{err}");
    let (code, reply, err) = h
        .exec(
            "default",
            "client",
            &["bash", "-c", &format!("exec 3<>/dev/tcp/{fqdn}/8080 && cat <&3")],
        )
        .await;
    assert_eq!((code, reply.as_str()), (0, "hello from web-0\n"), "{err}");

    // Port-forward style: a connection opened inside the pod's namespace to its loopback.
    let mut stream = h.node.connect("default", "web-0", 8080).await.expect("connect");
    let mut greeting = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut greeting)
        .await
        .expect("read");
    assert_eq!(greeting, "hello from web-0\n");

    // The host has no address or link in the pod network.
    let host = std::process::Command::new("ip")
        .args(["-o", "addr"])
        .output()
        .expect("ip addr");
    assert!(
        !String::from_utf8_lossy(&host.stdout).contains("10.244."),
        "the host must not see pod addresses"
    );
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("links")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(!links.iter().any(|l| l.starts_with("kt")), "{links:?}");

    assert_eq!(
        h.node.logs("default", "web-0", None, false, None).as_deref(),
        Some("web-started\n")
    );
    h.delete("default", "client");
    h.wait_gone("default", "client", Duration::from_secs(10)).await;
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_pods_start_like_the_image_replicate_by_dns_and_keep_their_data() {
    let h = harness();
    let _controllers = h.controllers();
    database_namespace(&h);
    let data = h.claim("database", "data-mysql-0");
    h.claim("database", "data-mysql-1");
    let started = std::time::Instant::now();
    h.create("pods", "database", mysql_pod(0, false));
    let pod = h.wait_ready("database", "mysql-0", Duration::from_secs(60)).await;
    let first_start = started.elapsed();
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(
        data.join("mysql").is_dir(),
        "the data directory lives in the claim's volume"
    );
    let init_log = h
        .node
        .logs("database", "mysql-0", Some("init-mysql-config"), false, None)
        .expect("init log");
    assert!(
        init_log.contains("Generated config for mysql-0:\n[mysqld]\nserver-id=1\nlog-bin=mysql-bin"),
        "{init_log}"
    );

    // Through the port-forward path, the server greets (protocol 10, a MariaDB version).
    let mut stream = h.node.connect("database", "mysql-0", 3306).await.expect("connect 3306");
    let mut greeting = [0u8; 64];
    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut greeting)
        .await
        .expect("greeting");
    assert!(read > 10 && greeting[4] == 10, "protocol 10 greeting");
    assert!(String::from_utf8_lossy(&greeting[5..read]).contains("MariaDB"));

    let users = h
        .sql(
            "database",
            "mysql-0",
            "SELECT CONCAT(user,'@',host) FROM mysql.user WHERE user='root' ORDER BY host",
        )
        .await;
    assert_eq!(users, "root@%\nroot@localhost\n");
    let grants = h.sql("database", "mysql-0", "SHOW GRANTS FOR 'root'@'%'").await;
    assert!(
        grants.contains("GRANT ALL PRIVILEGES ON *.* TO `root`@`%`") && grants.contains("WITH GRANT OPTION"),
        "{grants}"
    );
    let settings = h
        .sql(
            "database",
            "mysql-0",
            "SELECT @@server_id, @@log_bin, @@bind_address, @@port",
        )
        .await;
    assert_eq!(settings, "1\t1\t0.0.0.0\t3306\n");
    let binlog = h.sql("database", "mysql-0", "SHOW BINLOG EVENTS").await;
    assert!(!binlog.contains("root"), "the first start writes no binlog: {binlog}");
    let log = h.node.logs("database", "mysql-0", None, false, None).expect("log");
    assert!(
        log.contains("Initializing database files") && log.contains("Temporary server stopped"),
        "{log}"
    );
    assert!(
        !log.contains("root") || !log.contains("IDENTIFIED"),
        "no SQL with passwords in the log"
    );

    // A replica, configured by the tutorial's steps, replicates from the primary's DNS name.
    h.sql(
        "database",
        "mysql-0",
        "CREATE USER 'repl'@'%' IDENTIFIED BY 'replpass'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
    )
    .await;
    let status = h.sql("database", "mysql-0", "SHOW MASTER STATUS").await;
    let mut fields = status.split('\t');
    let (file, position) = (
        fields.next().expect("file").to_string(),
        fields.next().expect("position").to_string(),
    );
    h.create("pods", "database", mysql_pod(1, false));
    h.wait_ready("database", "mysql-1", Duration::from_secs(60)).await;
    h.sql(
        "database",
        "mysql-1",
        &format!(
            "CHANGE MASTER TO MASTER_HOST='mysql-0.mysql-headless.database.svc.cluster.local', MASTER_USER='repl', \
             MASTER_PASSWORD='replpass', MASTER_LOG_FILE='{file}', MASTER_LOG_POS={position}, MASTER_CONNECT_RETRY=1; START SLAVE"
        ),
    )
    .await;
    h.sql("database", "mysql-0", "CREATE DATABASE appdb; USE appdb; CREATE TABLE replication_test (id INT PRIMARY KEY, msg VARCHAR(50)); INSERT INTO replication_test VALUES (1, 'written_on_primary')").await;
    h.wait_replicated("written_on_primary\n").await;

    // Delete and recreate the primary: same claim, no second initialisation, data and password kept. Another
    // pod takes the freed address meanwhile, so the primary comes back on a new one.
    let old_ip = h.store.get("pods", "database", "mysql-0").expect("pod")["status"]["podIP"].clone();
    h.delete("database", "mysql-0");
    h.wait_gone("database", "mysql-0", Duration::from_secs(15)).await;
    assert!(data.join("mysql").is_dir(), "the claim's data stays");
    h.create("pods", "database", shell_pod("filler", "sleep 3600"));
    let filler = h.wait_ready("database", "filler", Duration::from_secs(20)).await;
    assert_eq!(filler["status"]["podIP"], old_ip, "the freed address is reused first");
    let restarted = std::time::Instant::now();
    h.create("pods", "database", mysql_pod(0, false));
    let pod = h.wait_ready("database", "mysql-0", Duration::from_secs(60)).await;
    assert_ne!(pod["status"]["podIP"], old_ip);
    let second_start = restarted.elapsed();
    let log = h.node.logs("database", "mysql-0", None, false, None).expect("log");
    assert!(!log.contains("Initializing database files"), "{log}");
    let rows = h
        .sql("database", "mysql-0", "SELECT msg FROM appdb.replication_test")
        .await;
    assert_eq!(rows, "written_on_primary\n");
    // The replica's IO thread resolves the same name again, gets the new address from cluster DNS and catches up.
    let primary_ip = h.store.get("pods", "database", "mysql-0").expect("pod")["status"]["podIP"]
        .as_str()
        .expect("ip")
        .to_string();
    let name = "mysql-0.mysql-headless.database.svc.cluster.local";
    let (_, resolved, _) = h.exec("database", "mysql-1", &["getent", "hosts", name]).await;
    assert_eq!(resolved, format!("{primary_ip:<15} {name}\n"));
    h.sql(
        "database",
        "mysql-0",
        "USE appdb; INSERT INTO replication_test VALUES (2, 'after_restart')",
    )
    .await;
    h.wait_replicated("written_on_primary\nafter_restart\n").await;
    eprintln!("first start to Ready: {first_start:?}; restart to Ready: {second_start:?}");
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_option_mariadb_does_not_know_crashes_the_server_into_crash_loop_back_off() {
    let h = harness();
    database_namespace(&h);
    h.claim("database", "data-mysql-1");
    h.create("pods", "database", mysql_pod(1, true));
    let pod = h
        .wait_pod(
            "database",
            "mysql-1",
            "CrashLoopBackOff",
            Duration::from_secs(60),
            |pod| pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff",
        )
        .await;
    let status = &pod["status"]["containerStatuses"][0];
    assert!(status["restartCount"].as_u64() >= Some(1), "{status:#}");
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    assert_ne!(status["lastState"]["terminated"]["exitCode"], 0);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(condition(&pod, "Ready"), "False");
    let previous = h
        .node
        .logs("database", "mysql-1", None, true, None)
        .expect("previous log");
    assert!(previous.contains("unknown variable 'super-read-only=ON'"), "{previous}");
    assert!(h.events("database").iter().any(|e| {
        e.starts_with("Warning BackOff: Back-off restarting failed container mysql in pod mysql-1_database(")
    }));
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_bad_configuration_show_as_a_kubelet_reports_them() {
    let h = harness();
    h.faults.unpullable_image("mysql:nope");
    let mut unpullable = shell_pod("unpullable", "sleep 3600");
    unpullable["spec"]["containers"][0]["image"] = json!("mysql:nope");
    h.create("pods", "default", unpullable);
    h.wait_pod(
        "default",
        "unpullable",
        "ImagePullBackOff",
        Duration::from_secs(10),
        |pod| pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff",
    )
    .await;
    let events = h.events("default");
    assert!(events.iter().any(|e| e.starts_with(
        "Warning Failed: Failed to pull image \"mysql:nope\": rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/mysql:nope\""
    )), "{events:#?}");
    assert!(
        events.contains(&"Normal BackOff: Back-off pulling image \"mysql:nope\"".to_string()),
        "{events:#?}"
    );
    h.faults.clear_unpullable_images();
    h.wait_ready("default", "unpullable", Duration::from_secs(10)).await;

    h.faults.set_crash(Some("crasher".into()));
    h.create("pods", "default", shell_pod("crasher", "sleep 3600"));
    let pod = h
        .wait_pod(
            "default",
            "crasher",
            "CrashLoopBackOff",
            Duration::from_secs(10),
            |pod| pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff",
        )
        .await;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    h.faults.set_crash(None);

    let mut secretless = shell_pod("secretless", "sleep 3600");
    secretless["spec"]["containers"][0]["env"] =
        json!([{ "name": "P", "valueFrom": { "secretKeyRef": { "name": "nope", "key": "k" } } }]);
    h.create("pods", "default", secretless);
    let pod = h
        .wait_pod(
            "default",
            "secretless",
            "CreateContainerConfigError",
            Duration::from_secs(10),
            |pod| pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError",
        )
        .await;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "secret \"nope\" not found"
    );
    h.create(
        "secrets",
        "default",
        json!({ "metadata": { "name": "nope" }, "data": { "k": SECRET } }),
    );
    h.wait_ready("default", "secretless", Duration::from_secs(10)).await;
    let (_, value, _) = h.exec("default", "secretless", &["sh", "-c", "echo $P"]).await;
    assert_eq!(value, "root\n");

    let mut failing_init = shell_pod("failing-init", "sleep 3600");
    failing_init["spec"]["initContainers"] =
        json!([{ "name": "init", "image": "busybox:1.36", "command": ["sh", "-c", "echo failing; exit 3"] }]);
    h.create("pods", "default", failing_init);
    let pod = h
        .wait_pod(
            "default",
            "failing-init",
            "Init:CrashLoopBackOff",
            Duration::from_secs(10),
            |pod| pod["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff",
        )
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert_eq!(condition(&pod, "Initialized"), "False");

    let mut unhealthy = shell_pod("unhealthy", "sleep 3600");
    unhealthy["spec"]["containers"][0]["livenessProbe"] =
        json!({ "exec": { "command": ["sh", "-c", "echo sick; exit 1"] }, "periodSeconds": 1, "failureThreshold": 2 });
    h.create("pods", "default", unhealthy);
    h.wait_pod(
        "default",
        "unhealthy",
        "a liveness restart",
        Duration::from_secs(15),
        |pod| pod["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(1),
    )
    .await;
    let events = h.events("default");
    assert!(
        events.contains(&"Warning Unhealthy: Liveness probe failed: sick".to_string()),
        "{events:#?}"
    );
    assert!(
        events.contains(&"Normal Killing: Container main failed liveness probe, will be restarted".to_string()),
        "{events:#?}"
    );
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_start_keeps_tcp_closed_while_the_temporary_server_runs() {
    let h = harness();
    database_namespace(&h);
    h.claim("database", "data-mysql-0");
    h.faults.set_slow_first_start(Some(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    h.create("pods", "database", mysql_pod(0, false));
    h.wait_pod(
        "database",
        "mysql-0",
        "the temporary server",
        Duration::from_secs(60),
        |_| {
            h.node
                .logs("database", "mysql-0", None, false, None)
                .is_some_and(|log| log.contains("Temporary server started."))
        },
    )
    .await;
    let refused = h
        .node
        .connect("database", "mysql-0", 3306)
        .await
        .expect_err("TCP is refused");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (code, out, err) = h
        .exec(
            "database",
            "mysql-0",
            &["mariadb-admin", "-S", "/run/mysqld/mysqld.sock", "ping"],
        )
        .await;
    // The server answers on its socket (ping succeeds even when refused for the root password set by then).
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("mysqld is alive") || err.contains("Access denied"),
        "{out}{err}"
    );
    assert_eq!(
        condition(&h.store.get("pods", "database", "mysql-0").expect("pod"), "Ready"),
        "False"
    );
    h.wait_ready("database", "mysql-0", Duration::from_secs(60)).await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    h.finish();
}

const VICTIM: &str = "KUBESIM_NODE_TEST_VICTIM";

/// In a child test process: a node running one shell pod (whose `sleep` is a grandchild), until killed.
fn run_victim(prefix: String, dir: std::path::PathBuf) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::new();
        let node = Node::start(store.clone(), Faults::default(), dir, prefix).expect("node");
        store
            .create("pods", "default", shell_pod("victim", "sleep 3600"))
            .expect("pod");
        let mut changes = store.subscribe();
        while store
            .get("pods", "default", "victim")
            .is_none_or(|pod| condition(&pod, "Ready") != "True")
        {
            let _ = changes.recv().await;
        }
        println!("VICTIM-READY");
        std::future::pending::<()>().await;
        drop(node);
    });
}

#[test]
fn an_abrupt_end_of_the_simulator_takes_every_pod_process_with_it() {
    if let (Ok(prefix), Ok(dir)) = (std::env::var(VICTIM), std::env::var("KUBESIM_NODE_TEST_DIR")) {
        run_victim(prefix, dir.into());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!(
        "kt{}v{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut victim = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "node::tests::an_abrupt_end_of_the_simulator_takes_every_pod_process_with_it",
            "--nocapture",
        ])
        .env(VICTIM, &prefix)
        .env("KUBESIM_NODE_TEST_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("victim starts");
    let stdout = victim.stdout.take().expect("stdout");
    let ready = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .any(|line| line.contains("VICTIM-READY"));
    assert!(ready, "the victim node ran its pod");
    let ours = format!("{prefix}/");
    let before = sys::marked_processes(|marker| marker.starts_with(&ours));
    assert!(
        before.len() >= 4,
        "node holder, pause, mount holder, shell and sleep: {before:?}"
    );
    victim.kill().expect("SIGKILL");
    victim.wait().expect("reaped");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = sys::marked_processes(|marker| marker.starts_with(&ours));
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes outlived the simulator: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_loads_the_time_zone_tables_unless_told_to_skip_them() {
    let h = harness();
    database_namespace(&h);
    h.claim("database", "data-mysql-0");
    h.claim("database", "data-mysql-1");
    h.create("pods", "database", mysql_pod(0, false));
    let mut skipping = mysql_pod(1, false);
    skipping["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({ "name": "MARIADB_INITDB_SKIP_TZINFO", "value": "1" }));
    h.create("pods", "database", skipping);
    h.wait_ready("database", "mysql-0", Duration::from_secs(120)).await;
    h.wait_ready("database", "mysql-1", Duration::from_secs(120)).await;
    let zones = "SELECT COUNT(*) FROM mysql.time_zone_name";
    let loaded: u64 = h
        .sql("database", "mysql-0", zones)
        .await
        .trim()
        .parse()
        .expect("a count");
    assert!(loaded > 300, "the zoneinfo of this machine is loaded: {loaded} zones");
    let converted = h
        .sql(
            "database",
            "mysql-0",
            "SELECT CONVERT_TZ('2026-01-01 12:00:00', 'UTC', 'Europe/Paris')",
        )
        .await;
    assert_eq!(converted.trim(), "2026-01-01 13:00:00");
    assert_eq!(h.sql("database", "mysql-1", zones).await.trim(), "0");
    // Loaded without the binary log: the primary's binlog holds no time zone rows to replicate.
    let events = h.sql("database", "mysql-0", "SHOW BINLOG EVENTS").await;
    assert!(!events.contains("time_zone"), "{events}");
    h.finish();
}
