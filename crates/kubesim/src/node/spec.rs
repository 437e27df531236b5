//! Pure decisions about a pod spec: what a container runs, which image it reports, its environment, and which
//! host directories appear at which paths in its mount view.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

/// The fully qualified reference a container runtime reports for an image (`mysql:8.0` ->
/// `docker.io/library/mysql:8.0`).
pub fn qualified_image(image: &str) -> String {
    let (name, reference) = split_reference(image);
    let first = name.split('/').next().unwrap_or_default();
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let name = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{name}{reference}")
}

/// (repository, ":tag" or "@digest"); a missing tag is ":latest".
fn split_reference(image: &str) -> (&str, String) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, format!("@{digest}"));
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (&image[..last_slash + colon], image[last_slash + colon..].to_string()),
        None => (image, ":latest".to_string()),
    }
}

/// A stable, made-up content digest for an image (the same image always reports the same imageID).
pub fn image_id(image: &str) -> String {
    let qualified = qualified_image(image);
    let (name, _) = split_reference(&qualified);
    let digest: String = (0u64..4)
        .map(|seed| {
            let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for byte in qualified.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{hash:016x}")
        })
        .collect();
    format!("{name}@sha256:{digest}")
}

/// Images that run as the local MariaDB server: `mysql:*`, `mariadb:*`, `<anything>/mysql`, `<anything>/mariadb`.
pub fn is_database_image(image: &str) -> bool {
    let (name, _) = split_reference(image);
    let last = name.rsplit('/').next().unwrap_or_default();
    last == "mysql" || last == "mariadb"
}

/// The message a container runtime gives when an image does not exist.
pub fn pull_error(image: &str) -> String {
    let qualified = qualified_image(image);
    format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{qualified}\": failed to resolve reference \"{qualified}\": {qualified}: not found"
    )
}

/// The error containerd reports when the registry rate-limits pulls (Docker Hub's wording).
pub fn rate_limit_error(image: &str) -> String {
    let qualified = qualified_image(image);
    let (repository, tag) = qualified
        .strip_prefix("docker.io/")
        .unwrap_or(&qualified)
        .rsplit_once(':')
        .unwrap_or((&qualified, "latest"));
    format!(
        "rpc error: code = Unknown desc = failed to pull and unpack image \"{qualified}\": failed to resolve reference \"{qualified}\": unexpected status from HEAD request to https://registry-1.docker.io/v2/{repository}/manifests/{tag}: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
    )
}

/// What a container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The database image's entrypoint: first-start initialisation, then `mariadbd` with extra options.
    Database { server_args: Vec<String> },
    /// An argv run as written.
    Command(Vec<String>),
}

/// `command` replaces the image's entrypoint and `args` its CMD, as in Kubernetes.
pub fn program(image: &str, command: &[String], args: &[String]) -> Program {
    if !command.is_empty() {
        return Program::Command(command.iter().chain(args).cloned().collect());
    }
    if is_database_image(image) {
        match args.first().map(String::as_str) {
            None => {
                return Program::Database {
                    server_args: Vec::new(),
                };
            }
            Some(first) if first.starts_with('-') => {
                return Program::Database {
                    server_args: args.to_vec(),
                };
            }
            Some("mysqld" | "mariadbd") => {
                return Program::Database {
                    server_args: args[1..].to_vec(),
                };
            }
            Some(_) => return Program::Command(args.to_vec()),
        }
    }
    if args.is_empty() {
        Program::Command(vec!["sh".to_string()])
    } else {
        Program::Command(args.to_vec())
    }
}

/// Reads Secrets and ConfigMaps for env resolution.
pub trait Lookup {
    fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value>;
}

fn decode_secret(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret.get("data")?.get(key)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn config_value(config_map: &Value, key: &str) -> Option<String> {
    config_map.get("data")?.get(key)?.as_str().map(str::to_string)
}

/// Expands `$(NAME)` references to earlier variables; `$$(NAME)` escapes, unknown names stay as written.
pub fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(index) = rest.find('$') {
        out.push_str(&rest[..index]);
        let after = &rest[index + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match defined.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment, or the CreateContainerConfigError message.
pub fn environment(
    pod: &Value,
    container: &Value,
    hostname: &str,
    lookup: &dyn Lookup,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), hostname.into()),
        ("HOME".into(), "/root".into()),
    ];
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for source in container.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
        let prefix = source.get("prefix").and_then(Value::as_str).unwrap_or_default();
        let (resource, reference, label) = if let Some(r) = source.get("secretRef") {
            ("secrets", r, "secret")
        } else if let Some(r) = source.get("configMapRef") {
            ("configmaps", r, "configmap")
        } else {
            continue;
        };
        let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
        let optional = reference.get("optional").and_then(Value::as_bool) == Some(true);
        let Some(object) = lookup.object(resource, namespace, name) else {
            if optional {
                continue;
            }
            return Err(format!("{label} \"{name}\" not found"));
        };
        for key in object
            .get("data")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let value = if resource == "secrets" {
                decode_secret(&object, key)
            } else {
                config_value(&object, key)
            };
            if let Some(value) = value {
                set(&mut env, format!("{prefix}{key}"), value);
            }
        }
    }
    for var in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let name = var.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let value = if let Some(value) = var.get("value").and_then(Value::as_str) {
            expand(value, &env)
        } else if let Some(from) = var.get("valueFrom") {
            match resolve_value_from(pod, namespace, from, lookup)? {
                Some(value) => value,
                None => continue,
            }
        } else {
            String::new()
        };
        set(&mut env, name, value);
    }
    Ok(env)
}

fn resolve_value_from(
    pod: &Value,
    namespace: &str,
    from: &Value,
    lookup: &dyn Lookup,
) -> Result<Option<String>, String> {
    let keyed = |reference: &Value, resource: &str, kind: &str, label: &str| -> Result<Option<String>, String> {
        let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
        let key = reference.get("key").and_then(Value::as_str).unwrap_or_default();
        let optional = reference.get("optional").and_then(Value::as_bool) == Some(true);
        let Some(object) = lookup.object(resource, namespace, name) else {
            return if optional {
                Ok(None)
            } else {
                Err(format!("{label} \"{name}\" not found"))
            };
        };
        let value = if resource == "secrets" {
            decode_secret(&object, key)
        } else {
            config_value(&object, key)
        };
        match value {
            Some(value) => Ok(Some(value)),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {kind} {namespace}/{name}")),
        }
    };
    if let Some(reference) = from.get("secretKeyRef") {
        return keyed(reference, "secrets", "Secret", "secret");
    }
    if let Some(reference) = from.get("configMapKeyRef") {
        return keyed(reference, "configmaps", "ConfigMap", "configmap");
    }
    if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
        let pointer = match path {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            "metadata.uid" => "/metadata/uid",
            "spec.nodeName" => "/spec/nodeName",
            "spec.serviceAccountName" => "/spec/serviceAccountName",
            "status.podIP" => "/status/podIP",
            "status.hostIP" => "/status/hostIP",
            _ => return Ok(Some(String::new())),
        };
        return Ok(Some(
            pod.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ));
    }
    Ok(Some(String::new()))
}

/// One host path made visible at `target` inside a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub file: bool,
}

/// The container's bind mounts: its volumeMounts (from `volumes`: volume name -> host directory), then the
/// node's own files (hosts, hostname, resolv.conf), private scratch directories, and for the database image
/// its data, config and my.cnf unless the manifest mounts something there.
pub fn binds(
    container: &Value,
    volumes: &BTreeMap<String, PathBuf>,
    pod_files: &PodFiles,
    database: bool,
) -> Result<Vec<Bind>, String> {
    let mut binds = Vec::new();
    for mount in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = mount.get("name").and_then(Value::as_str).unwrap_or_default();
        let target = mount.get("mountPath").and_then(Value::as_str).unwrap_or_default();
        if !target.starts_with('/') {
            return Err(format!(
                "volumeMount \"{name}\": mountPath \"{target}\" must be absolute"
            ));
        }
        let Some(source) = volumes.get(name) else {
            return Err(format!(
                "volumeMount \"{name}\" references a volume the pod does not declare"
            ));
        };
        let mut source = source.clone();
        if let Some(sub_path) = mount.get("subPath").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            if sub_path.split('/').any(|part| part == "..") {
                return Err(format!(
                    "volumeMount \"{name}\": subPath \"{sub_path}\" must not contain '..'"
                ));
            }
            source = source.join(sub_path);
        }
        let file = source.is_file();
        binds.push(Bind {
            source,
            target: PathBuf::from(target),
            read_only: mount.get("readOnly").and_then(Value::as_bool) == Some(true),
            file,
        });
    }
    let mut extra = vec![
        (pod_files.hosts.clone(), "/etc/hosts", true),
        (pod_files.hostname.clone(), "/etc/hostname", true),
        (pod_files.resolv_conf.clone(), "/etc/resolv.conf", true),
        (pod_files.tmp.clone(), "/tmp", false),
        (pod_files.run_mysqld.clone(), "/run/mysqld", false),
    ];
    if database {
        extra.push((pod_files.database_data.clone(), "/var/lib/mysql", false));
        extra.push((pod_files.database_conf_d.clone(), "/etc/mysql/conf.d", false));
        extra.push((pod_files.database_my_cnf.clone(), "/etc/mysql/my.cnf", true));
    }
    for (source, target, file) in extra {
        if !binds.iter().any(|b: &Bind| b.target == Path::new(target)) {
            binds.push(Bind {
                source,
                target: PathBuf::from(target),
                read_only: false,
                file,
            });
        }
    }
    Ok(binds)
}

/// Host paths of a container's private files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
    pub tmp: PathBuf,
    pub run_mysqld: PathBuf,
    pub database_data: PathBuf,
    pub database_conf_d: PathBuf,
    pub database_my_cnf: PathBuf,
}

/// The my.cnf of the database image: the server reads it first and then `conf.d`, like the official images
/// (never Debian's /etc/mysql/mariadb.conf.d, whose bind-address=127.0.0.1 would hide the server).
pub fn database_my_cnf() -> &'static str {
    "# Generated by the kubesim node, as the database image ships it.\n\
     [client-server]\n\
     socket=/run/mysqld/mysqld.sock\n\
     \n\
     [mysqld]\n\
     user=root\n\
     datadir=/var/lib/mysql\n\
     socket=/run/mysqld/mysqld.sock\n\
     port=3306\n\
     bind-address=0.0.0.0\n\
     \n\
     !includedir /etc/mysql/conf.d/\n"
}

/// The resolv.conf the kubelet writes for a `ClusterFirst` pod: the cluster DNS server and the cluster search
/// path, `ndots:5` so that short names (`mysql-0.mysql-headless`) go through the search path first.
pub fn resolv_conf(namespace: &str, nameserver: std::net::Ipv4Addr) -> String {
    format!(
        "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {nameserver}\noptions ndots:5\n"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn images_are_qualified_like_containerd_reports_them() {
        assert_eq!(qualified_image("mysql:8.0"), "docker.io/library/mysql:8.0");
        assert_eq!(qualified_image("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(qualified_image("bitnami/mysql:8.4"), "docker.io/bitnami/mysql:8.4");
        assert_eq!(
            qualified_image("registry.local:5000/db/mariadb:11"),
            "registry.local:5000/db/mariadb:11"
        );
        assert!(image_id("mysql:8.0").starts_with("docker.io/library/mysql@sha256:"));
        assert_eq!(
            image_id("mysql:8.0").len(),
            "docker.io/library/mysql@sha256:".len() + 64
        );
        assert_eq!(image_id("mysql:8.0"), image_id("docker.io/library/mysql:8.0"));
    }

    #[test]
    fn database_images_are_recognised_by_repository_name() {
        for image in [
            "mysql:8.0",
            "mariadb:11.4",
            "mysql",
            "docker.io/library/mariadb:10.11",
            "registry:5000/x/mysql:8",
        ] {
            assert!(is_database_image(image), "{image}");
        }
        for image in [
            "busybox:1.36",
            "mysql-client:1",
            "bitnami/mysqld-exporter:1",
            "registry:5000/mysql/tools:1",
        ] {
            assert!(!is_database_image(image), "{image}");
        }
    }

    #[test]
    fn command_overrides_the_database_entrypoint() {
        let sh = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            program("mysql:8.0", &sh(&["sh", "-c", "sleep 3600"]), &[]),
            Program::Command(sh(&["sh", "-c", "sleep 3600"]))
        );
        assert_eq!(
            program("mysql:8.0", &[], &[]),
            Program::Database { server_args: vec![] }
        );
        assert_eq!(
            program("mariadb:11", &[], &sh(&["--log-bin"])),
            Program::Database {
                server_args: sh(&["--log-bin"])
            }
        );
        assert_eq!(
            program("mariadb:11", &[], &sh(&["mariadbd", "--x"])),
            Program::Database {
                server_args: sh(&["--x"])
            }
        );
        assert_eq!(program("busybox:1.36", &[], &[]), Program::Command(sh(&["sh"])));
        assert_eq!(
            program("busybox:1.36", &[], &sh(&["echo", "hi"])),
            Program::Command(sh(&["echo", "hi"]))
        );
    }

    struct Objects(Vec<(String, String, Value)>);
    impl Lookup for Objects {
        fn object(&self, resource: &str, _namespace: &str, name: &str) -> Option<Value> {
            self.0
                .iter()
                .find(|(r, n, _)| r == resource && n == name)
                .map(|(_, _, v)| v.clone())
        }
    }

    #[test]
    fn env_resolves_secrets_and_reports_missing_ones_like_the_kubelet() {
        let pod =
            json!({ "metadata": { "name": "mysql-0", "namespace": "database" }, "status": { "podIP": "10.244.0.2" } });
        let container = json!({ "env": [
            { "name": "MYSQL_ROOT_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "mysql-secret", "key": "MYSQL_ROOT_PASSWORD" } } },
            { "name": "GREETING", "value": "pw=$(MYSQL_ROOT_PASSWORD) $$(X)" },
            { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        ]});
        let secret = json!({ "data": { "MYSQL_ROOT_PASSWORD": "cm9vdA==" } });
        let objects = Objects(vec![("secrets".into(), "mysql-secret".into(), secret)]);
        let env = environment(&pod, &container, "mysql-0", &objects).expect("env");
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("MYSQL_ROOT_PASSWORD"), Some("root"));
        assert_eq!(get("GREETING"), Some("pw=root $(X)"));
        assert_eq!(get("POD"), Some("mysql-0"));
        assert_eq!(get("HOSTNAME"), Some("mysql-0"));

        assert_eq!(
            environment(&pod, &container, "mysql-0", &Objects(vec![])),
            Err("secret \"mysql-secret\" not found".into())
        );
        let wrong_key = Objects(vec![("secrets".into(), "mysql-secret".into(), json!({ "data": {} }))]);
        assert_eq!(
            environment(&pod, &container, "mysql-0", &wrong_key),
            Err("couldn't find key MYSQL_ROOT_PASSWORD in Secret database/mysql-secret".into())
        );
    }

    #[test]
    fn database_containers_get_private_data_and_config_unless_mounted() {
        let files = PodFiles {
            hosts: "/p/hosts".into(),
            hostname: "/p/hostname".into(),
            resolv_conf: "/p/resolv.conf".into(),
            tmp: "/p/c/tmp".into(),
            run_mysqld: "/p/c/run-mysqld".into(),
            database_data: "/p/c/data".into(),
            database_conf_d: "/p/c/conf.d".into(),
            database_my_cnf: "/p/c/my.cnf".into(),
        };
        let container = json!({ "volumeMounts": [
            { "name": "data", "mountPath": "/var/lib/mysql" },
            { "name": "mysql-config", "mountPath": "/etc/mysql/conf.d" },
        ]});
        let volumes = BTreeMap::from([
            ("data".to_string(), PathBuf::from("/pv/1")),
            ("mysql-config".to_string(), PathBuf::from("/p/v/cfg")),
        ]);
        let planned = binds(&container, &volumes, &files, true).expect("binds");
        let at = |target: &str| {
            planned
                .iter()
                .filter(|b| b.target == Path::new(target))
                .map(|b| b.source.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(at("/var/lib/mysql"), vec![PathBuf::from("/pv/1")]);
        assert_eq!(at("/etc/mysql/conf.d"), vec![PathBuf::from("/p/v/cfg")]);
        assert_eq!(at("/etc/mysql/my.cnf"), vec![PathBuf::from("/p/c/my.cnf")]);
        assert_eq!(at("/etc/hosts"), vec![PathBuf::from("/p/hosts")]);
        let missing = json!({ "volumeMounts": [{ "name": "nope", "mountPath": "/x" }] });
        assert_eq!(
            binds(&missing, &volumes, &files, false),
            Err("volumeMount \"nope\" references a volume the pod does not declare".into())
        );
    }

    #[test]
    fn my_cnf_includes_conf_d_and_listens_everywhere() {
        let cnf = database_my_cnf();
        assert!(cnf.contains("bind-address=0.0.0.0"));
        assert!(cnf.contains("!includedir /etc/mysql/conf.d/"));
        assert!(cnf.contains("user=root"));
        assert!(!cnf.contains("mariadb.conf.d"));
    }
}
