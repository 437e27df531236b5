//! Processes inside namespaces: pre-exec namespace and mount steps, a long-lived spawner thread, process-group
//! signals, and TCP connections opened from inside a network namespace.
//!
//! Every long-running process is forked by one dedicated thread that lives as long as the node and gets
//! `PR_SET_PDEATHSIG(SIGKILL)`: the signal fires when the *forking thread* exits, so forking from tokio worker or
//! blocking-pool threads (which come and go) would kill pods at random; forking from a thread that only ends with
//! the node means the processes die exactly when the simulator does, even on SIGKILL.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One action run in the forked child before `exec`. Everything is prepared in the parent: the child only makes
/// system calls (no allocation between fork and exec).
#[derive(Debug)]
pub enum Step {
    /// `unshare(flags)`.
    Unshare(libc::c_int),
    /// `setns(fd, nstype)`; the fd must stay open in the parent until the spawn returns.
    SetNs(RawFd, libc::c_int),
    SetHostname(CString),
    /// Makes every mount of the (new) mount namespace private, so nothing propagates back to the host.
    PrivateMounts,
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mkdir`, an existing entry is fine.
    Mkdir(CString),
    /// Makes sure a regular file exists at the path (a symlink there is replaced): bind mount target for a file.
    EnsureFile(CString),
    PivotRoot {
        new_root: CString,
        put_old: CString,
    },
    DetachMount(CString),
    Rmdir(CString),
    Chdir(CString),
}

pub fn cstring(path: impl AsRef<OsStr>) -> CString {
    // Paths come from pod specs and our own directories; an interior NUL cannot be mounted anyway.
    CString::new(path.as_ref().as_bytes()).unwrap_or_else(|_| c"/nonexistent-path-with-nul".to_owned())
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn run_step(step: &Step) -> io::Result<()> {
    // SAFETY: plain system calls on pointers to CStrings owned by the step, which outlives the call.
    unsafe {
        match step {
            Step::Unshare(flags) => check(libc::unshare(*flags)),
            Step::SetNs(fd, nstype) => check(libc::setns(*fd, *nstype)),
            Step::SetHostname(name) => check(libc::sethostname(name.as_ptr(), name.as_bytes().len())),
            Step::PrivateMounts => check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                *flags,
                data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )),
            Step::Mkdir(path) => {
                if libc::mkdir(path.as_ptr(), 0o755) == -1 {
                    let error = io::Error::last_os_error();
                    if error.raw_os_error() != Some(libc::EEXIST) {
                        return Err(error);
                    }
                }
                Ok(())
            }
            Step::EnsureFile(path) => {
                let mut stat: libc::stat = std::mem::zeroed();
                if libc::lstat(path.as_ptr(), &mut stat) == 0 {
                    if stat.st_mode & libc::S_IFMT != libc::S_IFLNK {
                        return Ok(());
                    }
                    check(libc::unlink(path.as_ptr()))?;
                }
                let fd = libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                check(fd)?;
                libc::close(fd);
                Ok(())
            }
            Step::PivotRoot { new_root, put_old } => {
                let result = libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr());
                if result == -1 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }
            Step::DetachMount(path) => check(libc::umount2(path.as_ptr(), libc::MNT_DETACH)),
            Step::Rmdir(path) => check(libc::rmdir(path.as_ptr())),
            Step::Chdir(path) => check(libc::chdir(path.as_ptr())),
        }
    }
}

/// Adds the pre-exec work to a command: the node marker, die with the simulator, own process group, then the
/// steps.
pub fn prepare(command: &mut std::process::Command, marker: &str, steps: Vec<Step>) {
    command.process_group(0);
    prepare_in_session(command, marker, steps);
}

/// Like [`prepare`] without the process group: for a process that starts its own session (a terminal's; a group
/// leader cannot), which makes it the leader of a new group all the same.
pub fn prepare_in_session(command: &mut std::process::Command, marker: &str, steps: Vec<Step>) {
    let parent = std::process::id() as libc::pid_t;
    command.env(MARKER, marker);
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            if libc::getppid() != parent {
                // The simulator died between fork and prctl.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for step in &steps {
                run_step(step)?;
            }
            Ok(())
        });
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread every long-lived process is forked from (see the module comment).
pub struct Spawner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Spawner {
    pub fn new(runtime: tokio::runtime::Handle, name: &str) -> io::Result<Spawner> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-spawner"))
            .spawn(move || {
                // tokio::process needs the runtime's reaper registered while spawning.
                let _runtime = runtime.enter();
                while let Ok(job) = receiver.recv() {
                    job();
                }
            })?;
        Ok(Spawner {
            jobs: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn submit<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> io::Result<mpsc::Receiver<T>> {
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let sender = jobs.as_ref().ok_or_else(|| io::Error::other("the node is shut down"))?;
        sender
            .send(Box::new(move || {
                let _ = reply.send(job());
            }))
            .map_err(|_| io::Error::other("the node is shut down"))?;
        Ok(result)
    }

    /// Forks a short or long-lived std process from the spawner thread (blocks briefly).
    pub fn spawn_std(&self, mut command: std::process::Command) -> io::Result<std::process::Child> {
        self.submit(move || command.spawn())?
            .recv()
            .map_err(|_| io::Error::other("the node is shut down"))?
    }

    /// Forks a tokio process from the spawner thread.
    pub async fn spawn_tokio(&self, mut command: tokio::process::Command) -> io::Result<tokio::process::Child> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let receiver = self.submit(move || {
            let _ = reply.send(command.spawn());
        })?;
        drop(receiver);
        result.await.map_err(|_| io::Error::other("the node is shut down"))?
    }

    /// Ends the thread (after the processes are gone).
    pub fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// Sends `signal` to every process of a process group.
pub fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a group; pgid > 1 so never "every process".
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// SIGKILL to one process.
pub fn kill(pid: u32) {
    // SAFETY: kill(2) on a pid found alive; pid > 1 checked.
    if pid > 1 {
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Reaps a direct child if it has exited (processes killed during shutdown must not linger as zombies).
pub fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on our own child with WNOHANG.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Opens `/proc/<pid>/ns/<kind>` (holding it keeps the namespace alive).
/// Starts a process that only holds namespaces: `sleep infinity` run after `steps`, marked with `marker`.
pub fn spawn_holder(
    spawner: &Spawner,
    sleep: &Path,
    marker: &str,
    steps: Vec<Step>,
) -> io::Result<std::process::Child> {
    let mut command = std::process::Command::new(sleep);
    command
        .arg("infinity")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    prepare(&mut command, marker, steps);
    spawner.spawn_std(command)
}

/// Handles to the holder's namespaces of the given kinds (`net`, `mnt`, ...), in order. If one cannot be opened,
/// the holder is killed and reaped, so that no namespace is left without an owner.
pub fn open_namespaces_or_kill(holder: &mut std::process::Child, kinds: &[&str]) -> io::Result<Vec<File>> {
    let opened: io::Result<Vec<File>> = kinds.iter().map(|kind| open_namespace(holder.id(), kind)).collect();
    if opened.is_err() {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    opened
}

pub fn open_namespace(pid: u32, kind: &str) -> io::Result<File> {
    File::open(format!("/proc/{pid}/ns/{kind}"))
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The environment variable every process of a node carries, valued `<node prefix>/<pod uid or "node">`: it
/// identifies the node's processes (and their descendants, which inherit it) without relying on pids,
/// process groups or namespace inodes, which the kernel reuses.
pub const MARKER: &str = "KUBESIM_NODE";

/// Live processes whose marker value satisfies `matches`.
pub fn marked_processes(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let key = format!("{MARKER}=");
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ.split(|b| *b == 0).any(|var| {
                    var.strip_prefix(key.as_bytes())
                        .is_some_and(|value| matches(&String::from_utf8_lossy(value)))
                })
            })
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// Opens a TCP connection from inside the network namespace `netns` (a thread enters it, connects, and ends).
pub async fn connect_in_namespace(
    netns: &File,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let netns = netns.try_clone()?;
    let (reply, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            let connected = (|| -> io::Result<std::net::TcpStream> {
                // SAFETY: setns on a namespace fd we own; it only affects this short-lived thread.
                check(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) })?;
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            })();
            let _ = reply.send(connected);
        })?;
    let stream = result.await.map_err(|_| io::Error::other("connect thread ended"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// Finds a program in the usual system directories (root's PATH may lack the sbin directories).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(Into::into),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Exit code as a container runtime reports it: the code, or 128 + signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
