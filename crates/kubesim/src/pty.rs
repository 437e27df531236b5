//! Pseudo-terminals for `exec` with `tty=true`, as container runtimes give them: the process gets the terminal as
//! its controlling terminal and as stdin, stdout and stderr (so its output is one stream), and the client's resize
//! messages set the window size.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The master side of a process's terminal.
pub struct Terminal {
    master: AsyncFd<OwnedFd>,
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Opens a new pseudo-terminal: (non-blocking master, slave), both close-on-exec.
fn open_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain system calls; every returned descriptor is owned at once.
    unsafe {
        let master = OwnedFd::from_raw_fd(check(libc::posix_openpt(
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        ))?);
        check(libc::grantpt(master.as_raw_fd()))?;
        check(libc::unlockpt(master.as_raw_fd()))?;
        let mut name = [0 as libc::c_char; 128];
        let failed = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if failed != 0 {
            return Err(io::Error::from_raw_os_error(failed));
        }
        let slave = OwnedFd::from_raw_fd(check(libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        ))?);
        let flags = check(libc::fcntl(master.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
        Ok((master, slave))
    }
}

impl Terminal {
    /// Gives `command` a new terminal as stdin, stdout, stderr and controlling terminal. The child must start a
    /// session of its own before its pre-exec hooks run this one (a process-group leader cannot `setsid`).
    /// Needs a tokio runtime (the master is registered with its reactor).
    pub fn attach(command: &mut std::process::Command) -> io::Result<Terminal> {
        let (master, slave) = open_pair()?;
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: async-signal-safe system calls only. fd 0 is the terminal by now (stdio is set up before the
        // pre-exec hooks run); TIOCSCTTY makes it the controlling terminal of the child's new session.
        unsafe {
            command.pre_exec(|| {
                if libc::getsid(0) != libc::getpid() {
                    check(libc::setsid())?;
                }
                check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
                Ok(())
            });
        }
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as long as the AsyncFd owns it.
        let master = unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?;
        Ok(Terminal { master })
    }

    /// Reads what the process wrote; 0 once every holder of the terminal has closed it (Linux reports EIO then).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| {
                raw_io(fd.as_raw_fd(), |fd| unsafe {
                    libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
                })
            }) {
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Types `bytes` into the terminal.
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.master.ready(Interest::WRITABLE).await?;
            match guard.try_io(|fd| {
                raw_io(fd.as_raw_fd(), |fd| unsafe {
                    libc::write(fd, bytes.as_ptr().cast(), bytes.len())
                })
            }) {
                Ok(Ok(written)) => bytes = &bytes[written..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size (the process gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        check(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
    }
}

/// Runs one read/write system call, mapping -1 to the OS error.
fn raw_io(fd: RawFd, call: impl FnOnce(RawFd) -> libc::ssize_t) -> io::Result<usize> {
    let result = call(fd);
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

/// The terminal size a resize message (exec channel 4) asks for: `{"Width":..,"Height":..}`.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    serde_json::from_slice::<Size>(payload)
        .ok()
        .map(|size| (size.width, size.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_are_kubelet_json() {
        assert_eq!(parse_resize(br#"{"Width":120,"Height":40}"#), Some((120, 40)));
        assert_eq!(parse_resize(b"garbage"), None);
    }

    #[tokio::test]
    async fn a_process_on_a_terminal_sees_it_as_its_controlling_tty() {
        let mut command = std::process::Command::new("sh");
        command.args([
            "-c",
            "test -t 0 && test -t 1 && test -t 2 && stty size && echo on-stderr >&2; exit 4",
        ]);
        let terminal = Terminal::attach(&mut command).expect("terminal");
        terminal.resize(77, 11).expect("resize");
        let mut child = tokio::process::Command::from(command).spawn().expect("spawn");
        let mut output = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = terminal.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            output.extend_from_slice(&buf[..n]);
        }
        let status = child.wait().await.expect("wait");
        assert_eq!(status.code(), Some(4));
        // Terminal output translates \n to \r\n (onlcr), and stderr shares the stream.
        assert_eq!(String::from_utf8_lossy(&output), "11 77\r\non-stderr\r\n");
    }
}
