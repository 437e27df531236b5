//! A pod sandbox: a sleeping "pause" process holding the pod's network, UTS and IPC namespaces, the pod's
//! files (hosts, hostname, resolv.conf, volumes), and per container a mount namespace (held by another sleeping
//! process) whose root is a throwaway overlay of the host's root with the container's volumes bound in.
//! Container, exec and probe processes enter these namespaces before `exec`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use base64::Engine;
use serde_json::Value;

use super::spec::Bind;
use super::sys::{self, Spawner, Step, cstring};

/// The namespaces a pod's processes share.
pub struct Namespaces {
    pub net: File,
    pub uts: File,
    pub ipc: File,
}

/// A container's mount namespace and holder process.
struct Holder {
    child: std::process::Child,
    mnt: Arc<File>,
}

pub struct Sandbox {
    pub dir: PathBuf,
    pub hostname: String,
    pub address: Ipv4Addr,
    pub veth: Mutex<Option<String>>,
    pause: Mutex<Option<std::process::Child>>,
    namespaces: Mutex<Option<Arc<Namespaces>>>,
    holders: Mutex<BTreeMap<String, Holder>>,
    hosts: Mutex<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sandbox {
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("etc-hosts")
    }
    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("etc-hostname")
    }
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("etc-resolv.conf")
    }
    pub fn container_dir(&self, container: &str) -> PathBuf {
        self.dir.join("containers").join(container)
    }

    /// Starts the pause process in fresh network, UTS and IPC namespaces named `hostname`.
    pub fn create(
        spawner: &Spawner,
        sleep: &Path,
        dir: PathBuf,
        hostname: &str,
        address: Ipv4Addr,
        namespace: &str,
        marker: &str,
    ) -> anyhow::Result<Sandbox> {
        std::fs::create_dir_all(dir.join("volumes"))?;
        std::fs::create_dir_all(dir.join("containers"))?;
        std::fs::write(dir.join("etc-hostname"), format!("{hostname}\n"))?;
        std::fs::write(
            dir.join("etc-resolv.conf"),
            super::spec::resolv_conf(namespace, super::DNS_IP),
        )?;
        std::fs::write(dir.join("etc-hosts"), "")?;
        let mut pause = sys::spawn_holder(
            spawner,
            sleep,
            marker,
            vec![
                Step::Unshare(libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC),
                Step::SetHostname(CString::new(hostname).context("hostname with NUL")?),
            ],
        )
        .context("cannot start the pod sandbox")?;
        let [net, uts, ipc] = <[File; 3]>::try_from(
            sys::open_namespaces_or_kill(&mut pause, &["net", "uts", "ipc"])
                .context("cannot open the sandbox namespaces")?,
        )
        .expect("three namespaces asked, three opened");
        let namespaces = Namespaces { net, uts, ipc };
        Ok(Sandbox {
            dir,
            hostname: hostname.to_string(),
            address,
            veth: Mutex::new(None),
            pause: Mutex::new(Some(pause)),
            namespaces: Mutex::new(Some(Arc::new(namespaces))),
            holders: Mutex::new(BTreeMap::new()),
            hosts: Mutex::new(String::new()),
        })
    }

    pub fn pause_pid(&self) -> Option<u32> {
        lock(&self.pause).as_ref().map(std::process::Child::id)
    }

    pub fn namespaces(&self) -> Option<Arc<Namespaces>> {
        lock(&self.namespaces).clone()
    }

    /// Rewrites the hosts file in place (same inode: it is bind-mounted into every container) when it changed.
    pub fn write_hosts(&self, content: &str) -> std::io::Result<()> {
        let mut current = lock(&self.hosts);
        if *current == content {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new().write(true).open(self.hosts_path())?;
        file.write_all(content.as_bytes())?;
        file.set_len(content.len() as u64)?;
        *current = content.to_string();
        Ok(())
    }

    /// The mount namespace of a container, created on first use with `binds`.
    pub fn container_mounts(
        &self,
        spawner: &Spawner,
        sleep: &Path,
        container: &str,
        binds: &[Bind],
        marker: &str,
    ) -> anyhow::Result<Arc<File>> {
        if let Some(holder) = lock(&self.holders).get(container) {
            return Ok(holder.mnt.clone());
        }
        let layer = self.container_dir(container).join("layer");
        std::fs::create_dir_all(&layer)?;
        let mut child = sys::spawn_holder(spawner, sleep, marker, holder_steps(&layer, binds))
            .with_context(|| format!("cannot set up the mounts of container {container}"))?;
        let [mnt] = <[File; 1]>::try_from(sys::open_namespaces_or_kill(&mut child, &["mnt"])?)
            .expect("one namespace asked, one opened");
        let mnt = Arc::new(mnt);
        lock(&self.holders).insert(
            container.to_string(),
            Holder {
                child,
                mnt: mnt.clone(),
            },
        );
        Ok(mnt)
    }

    /// Kills the pause and holder processes and closes the namespace handles (the namespaces, the veth and
    /// every mount vanish with them).
    pub fn destroy(&self) {
        let holders = std::mem::take(&mut *lock(&self.holders));
        for (_, mut holder) in holders {
            let _ = holder.child.kill();
            let _ = holder.child.wait();
        }
        if let Some(mut pause) = lock(&self.pause).take() {
            let _ = pause.kill();
            let _ = pause.wait();
        }
        lock(&self.namespaces).take();
    }
}

/// Pre-exec steps that build a container's mount view: a new mount namespace, an overlay of the host root whose
/// writable layer lives on a tmpfs (nothing a container writes outside its volumes reaches the host), the host's
/// /dev, /proc and /sys, then `pivot_root` into it and the bind mounts (sources reached through the old root).
pub fn holder_steps(layer: &Path, binds: &[Bind]) -> Vec<Step> {
    let at = |path: &Path| cstring(path);
    let root = layer.join("root");
    let old_root = Path::new("/.kubesim-old-root");
    let mut steps = vec![
        Step::Unshare(libc::CLONE_NEWNS),
        Step::PrivateMounts,
        Step::Mount {
            source: c"tmpfs".to_owned(),
            target: at(layer),
            fstype: Some(c"tmpfs".to_owned()),
            flags: 0,
            data: Some(c"mode=755".to_owned()),
        },
        Step::Mkdir(at(&layer.join("upper"))),
        Step::Mkdir(at(&layer.join("work"))),
        Step::Mkdir(at(&root)),
        Step::Mount {
            source: c"overlay".to_owned(),
            target: at(&root),
            fstype: Some(c"overlay".to_owned()),
            flags: 0,
            data: Some(cstring(format!(
                "lowerdir=/,upperdir={},workdir={}",
                layer.join("upper").display(),
                layer.join("work").display()
            ))),
        },
    ];
    for system in ["/dev", "/proc", "/sys"] {
        steps.push(Step::Mount {
            source: cstring(system),
            target: at(&root.join(&system[1..])),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
    }
    steps.push(Step::Mkdir(at(&root.join(&old_root.to_string_lossy()[1..]))));
    steps.push(Step::PivotRoot {
        new_root: at(&root),
        put_old: at(&root.join(&old_root.to_string_lossy()[1..])),
    });
    steps.push(Step::Chdir(c"/".to_owned()));
    for bind in binds {
        let mut ancestor = PathBuf::from("/");
        let components: Vec<_> = bind.target.components().skip(1).collect();
        for (index, component) in components.iter().enumerate() {
            ancestor.push(component);
            let last = index + 1 == components.len();
            if last && bind.file {
                steps.push(Step::EnsureFile(at(&ancestor)));
            } else {
                steps.push(Step::Mkdir(at(&ancestor)));
            }
        }
        let source = old_root.join(bind.source.strip_prefix("/").unwrap_or(&bind.source));
        steps.push(Step::Mount {
            source: at(&source),
            target: at(&bind.target),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
        if bind.read_only {
            steps.push(Step::Mount {
                source: at(&source),
                target: at(&bind.target),
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                data: None,
            });
        }
    }
    steps.push(Step::DetachMount(at(old_root)));
    steps.push(Step::Rmdir(at(old_root)));
    steps
}

/// How a process enters a container: the pod's namespaces, the container's mount namespace, its environment.
pub struct Entry {
    pub namespaces: Arc<Namespaces>,
    pub mnt: Arc<File>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// The node's process marker (see `sys::MARKER`).
    pub marker: String,
}

impl Entry {
    /// A command that runs `argv` inside the container. Keep `self` alive until it is spawned.
    pub fn command(&self, argv: &[String]) -> std::process::Command {
        self.command_in(argv, sys::prepare)
    }

    /// Like [`Entry::command`] for a process that starts its own session (see `sys::prepare_in_session`).
    pub fn session_command(&self, argv: &[String]) -> std::process::Command {
        self.command_in(argv, sys::prepare_in_session)
    }

    fn command_in(
        &self,
        argv: &[String],
        prepare: fn(&mut std::process::Command, &str, Vec<Step>),
    ) -> std::process::Command {
        let mut command = std::process::Command::new(argv.first().map_or("sh", String::as_str));
        command
            .args(argv.iter().skip(1))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        prepare(
            &mut command,
            &self.marker,
            vec![
                Step::SetNs(self.namespaces.net.as_raw_fd(), libc::CLONE_NEWNET),
                Step::SetNs(self.namespaces.uts.as_raw_fd(), libc::CLONE_NEWUTS),
                Step::SetNs(self.namespaces.ipc.as_raw_fd(), libc::CLONE_NEWIPC),
                Step::SetNs(self.mnt.as_raw_fd(), libc::CLONE_NEWNS),
                Step::Chdir(cstring(&self.working_dir)),
            ],
        );
        command
    }
}

/// Reads the objects volumes come from.
pub trait VolumeSource {
    fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value>;
}

/// Prepares the pod's volumes under `dir/volumes` and returns volume name -> host directory (or the
/// FailedMount message).
pub fn prepare_volumes(
    pod: &Value,
    dir: &Path,
    source: &dyn VolumeSource,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut volumes = BTreeMap::new();
    for volume in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = volume
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let local = dir.join("volumes").join(&name);
        let path = if let Some(claim) = volume
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        {
            let pvc = source
                .object("persistentvolumeclaims", namespace, claim)
                .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
            let volume_name = pvc
                .pointer("/spec/volumeName")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("PVC {namespace}/{claim} has not been bound"))?;
            let pv = source
                .object("persistentvolumes", "", volume_name)
                .ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
            let path = pv
                .pointer("/spec/hostPath/path")
                .or_else(|| pv.pointer("/spec/local/path"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("persistentvolume \"{volume_name}\" has no hostPath"))?;
            std::fs::create_dir_all(path).map_err(|e| format!("cannot create {path}: {e}"))?;
            PathBuf::from(path)
        } else if let Some(path) = volume.pointer("/hostPath/path").and_then(Value::as_str) {
            let kind = volume
                .pointer("/hostPath/type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if kind == "DirectoryOrCreate" {
                std::fs::create_dir_all(path).map_err(|e| format!("cannot create {path}: {e}"))?;
            }
            PathBuf::from(path)
        } else if let Some(secret) = volume.get("secret") {
            let secret_name = secret.get("secretName").and_then(Value::as_str).unwrap_or_default();
            let object = source.object("secrets", namespace, secret_name);
            let optional = secret.get("optional").and_then(Value::as_bool) == Some(true);
            let object = match object {
                Some(object) => object,
                None if optional => Value::Null,
                None => return Err(format!("secret \"{secret_name}\" not found")),
            };
            write_keys(&local, &object, secret.get("items"), |v| {
                base64::engine::general_purpose::STANDARD.decode(v).ok()
            })?;
            local
        } else if let Some(config_map) = volume.get("configMap") {
            let config_name = config_map.get("name").and_then(Value::as_str).unwrap_or_default();
            let optional = config_map.get("optional").and_then(Value::as_bool) == Some(true);
            let object = match source.object("configmaps", namespace, config_name) {
                Some(object) => object,
                None if optional => Value::Null,
                None => return Err(format!("configmap \"{config_name}\" not found")),
            };
            write_keys(&local, &object, config_map.get("items"), |v| {
                Some(v.as_bytes().to_vec())
            })?;
            local
        } else {
            // emptyDir and anything else: a directory of the pod.
            std::fs::create_dir_all(&local).map_err(|e| format!("cannot create {}: {e}", local.display()))?;
            local
        };
        volumes.insert(name, path);
    }
    Ok(volumes)
}

fn write_keys(
    dir: &Path,
    object: &Value,
    items: Option<&Value>,
    decode: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let data = object
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let selected: Vec<(String, String)> = match items.and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .filter_map(|item| {
                Some((
                    item.get("key")?.as_str()?.to_string(),
                    item.get("path")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in selected {
        if path.split('/').any(|part| part == "..") {
            continue;
        }
        if let Some(bytes) = data.get(&key).and_then(Value::as_str).and_then(&decode) {
            let target = dir.join(&path);
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::write(&target, bytes).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_steps_pivot_into_an_overlay_and_bind_volumes_from_the_old_root() {
        let binds = vec![
            Bind {
                source: "/pv/data".into(),
                target: "/var/lib/mysql".into(),
                read_only: false,
                file: false,
            },
            Bind {
                source: "/pod/etc-hosts".into(),
                target: "/etc/hosts".into(),
                read_only: true,
                file: true,
            },
        ];
        let steps = format!("{:?}", holder_steps(Path::new("/pod/containers/mysql/layer"), &binds));
        let pivot = steps.find("PivotRoot").expect("pivot");
        let overlay = steps
            .find("lowerdir=/,upperdir=/pod/containers/mysql/layer/upper")
            .expect("overlay");
        let bind = steps
            .find("source: \"/.kubesim-old-root/pv/data\", target: \"/var/lib/mysql\"")
            .expect("bind");
        assert!(overlay < pivot && pivot < bind, "{steps}");
        assert!(steps.contains("EnsureFile(\"/etc/hosts\")"));
        assert!(steps.contains("Mkdir(\"/var/lib\")"));
        assert!(
            steps.ends_with("DetachMount(\"/.kubesim-old-root\"), Rmdir(\"/.kubesim-old-root\")]"),
            "{steps}"
        );
    }
}
