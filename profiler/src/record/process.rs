//! A target process's life: open an existing pid (through a pidfd, so a recycled pid can
//! never be confused with the target), or launch a command held before `exec` until the
//! sampler is attached; notice the exit; collect a launched command's exit code.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RecordError;

/// A process being recorded.
pub struct TargetProcess {
    pid: u32,
    pidfd: OwnedFd,
    launched: Option<Launched>,
    command_line: String,
    /// The program's file: the resolved command for a launched one, /proc/PID/exe otherwise.
    exe: Option<std::path::PathBuf>,
}

/// A child we forked: blocked on `release` until the sampler runs, then `exec`s.
struct Launched {
    release: Option<OwnedFd>,
    exec_error: Option<OwnedFd>,
    program: String,
    exit_code: Option<i32>,
}

impl TargetProcess {
    /// Opens an existing process by pid.
    pub fn open(pid: u32) -> Result<Self, RecordError> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(RecordError::NoSuchPid(pid));
        }
        let pidfd = pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => RecordError::NoSuchPid(pid),
            _ => RecordError::Io(format!("opening pid {pid}"), e),
        })?;
        let command_line = read_cmdline(pid).unwrap_or_default();
        let target = TargetProcess {
            pid,
            pidfd,
            launched: None,
            command_line,
            exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        };
        if target.has_exited() {
            return Err(RecordError::ExitedBeforeAttach(pid));
        }
        Ok(target)
    }

    /// Forks a child that waits before `exec`ing `argv`. The command is resolved first, so a
    /// missing command is reported before anything is started.
    pub fn launch(argv: &[String]) -> Result<Self, RecordError> {
        let program = argv.first().ok_or(RecordError::EmptyCommand)?;
        let path = resolve_command(program)
            .ok_or_else(|| RecordError::CommandNotFound(program.clone()))?;
        let to_c = |s: &[u8]| {
            CString::new(s).map_err(|_| {
                RecordError::BadCommand(format!("argument contains a NUL byte: {s:?}"))
            })
        };
        let c_path = to_c(path.as_os_str().as_bytes())?;
        let c_args: Vec<CString> = argv
            .iter()
            .map(|a| to_c(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());

        let (release_rd, release_wr) =
            pipe().map_err(|e| RecordError::Io("creating a pipe".into(), e))?;
        let (err_rd, err_wr) = pipe().map_err(|e| RecordError::Io("creating a pipe".into(), e))?;
        // SAFETY: the child only calls async-signal-safe functions (close, read, execv, write,
        // _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(RecordError::Io("fork".into(), io::Error::last_os_error()));
        }
        if pid == 0 {
            unsafe {
                libc::close(release_wr.as_raw_fd());
                libc::close(err_rd.as_raw_fd());
                let mut byte = 0u8;
                let n = loop {
                    let n = libc::read(release_rd.as_raw_fd(), (&raw mut byte).cast(), 1);
                    if n >= 0 || *libc::__errno_location() != libc::EINTR {
                        break n;
                    }
                };
                if n != 1 {
                    // The profiler went away before attaching: do not run unprofiled.
                    libc::_exit(127);
                }
                libc::execv(c_path.as_ptr(), c_argv.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(
                    err_wr.as_raw_fd(),
                    (&raw const errno).cast(),
                    size_of::<i32>(),
                );
                libc::_exit(127);
            }
        }
        drop(release_rd);
        drop(err_wr);
        let pid = pid as u32;
        let pidfd =
            pidfd_open(pid).map_err(|e| RecordError::Io(format!("opening pid {pid}"), e))?;
        Ok(TargetProcess {
            pid,
            pidfd,
            launched: Some(Launched {
                release: Some(release_wr),
                exec_error: Some(err_rd),
                program: program.clone(),
                exit_code: None,
            }),
            command_line: argv.join(" "),
            exe: std::fs::canonicalize(&path).ok().or(Some(path)),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pidfd, readable once the process has exited.
    pub fn pidfd(&self) -> std::os::fd::RawFd {
        self.pidfd.as_raw_fd()
    }

    pub fn is_launched(&self) -> bool {
        self.launched.is_some()
    }

    /// The program's file, when known.
    pub fn exe(&self) -> Option<&std::path::Path> {
        self.exe.as_deref()
    }

    /// The command line, for summaries and capture comments.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Lets a launched child `exec` (no-op for `--pid`); reports a failed `exec`.
    pub fn release(&mut self) -> Result<(), RecordError> {
        let Some(l) = self.launched.as_mut() else {
            return Ok(());
        };
        if let Some(fd) = l.release.take() {
            let file = std::fs::File::from(fd);
            io::Write::write_all(&mut &file, b"g")
                .map_err(|e| RecordError::Io("starting the command".into(), e))?;
        }
        if let Some(fd) = l.exec_error.take() {
            let mut file = std::fs::File::from(fd);
            let mut buf = [0u8; 4];
            // EOF (0 bytes) means the exec succeeded: the pipe is close-on-exec.
            let n = io::Read::read(&mut file, &mut buf).unwrap_or(0);
            if n == 4 {
                let err = io::Error::from_raw_os_error(i32::from_ne_bytes(buf));
                let program = l.program.clone();
                let _ = self.wait_exit_code();
                return Err(RecordError::CommandFailed(program, err));
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; true when it has.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n > 0 && pfd.revents != 0
    }

    pub fn has_exited(&self) -> bool {
        self.wait_exit(Duration::ZERO)
    }

    /// Asks a launched child to stop (as Ctrl-C in its terminal would).
    pub fn interrupt(&self) {
        if self.launched.is_some() && !self.has_exited() {
            // SAFETY: pidfd_send_signal on our own child's pidfd.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.pidfd.as_raw_fd(),
                    libc::SIGINT,
                    0,
                    0,
                );
            }
        }
    }

    /// Reaps a launched child and returns the shell-style exit code (128+signal when killed).
    /// None for `--pid` targets.
    pub fn wait_exit_code(&mut self) -> Option<i32> {
        let pid = self.pid as libc::pid_t;
        let l = self.launched.as_mut()?;
        if let Some(code) = l.exit_code {
            return Some(code);
        }
        let mut status = 0;
        // SAFETY: waiting on our own child.
        let r = loop {
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break r;
            }
        };
        let code = if r < 0 {
            1
        } else if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            1
        };
        l.exit_code = Some(code);
        Some(code)
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        // A launched child that never got released must not linger blocked.
        if let Some(l) = &self.launched
            && l.release.is_some()
        {
            // SAFETY: our own child.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            let _ = self.wait_exit_code();
        }
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(super) fn read_cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if parts.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        return Some(format!("[{}]", comm.trim()));
    }
    Some(parts.join(" "))
}

/// Finds `program` like a shell: a name with a `/` is used as is, others are searched on PATH.
fn resolve_command(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file())
            && CString::new(p.as_os_str().as_bytes())
                // SAFETY: a valid C string.
                .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    if program.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(OsStr::new(program)))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_commands_like_a_shell() {
        assert!(resolve_command("sh").is_some());
        assert!(resolve_command("/bin/sh").is_some());
        assert!(resolve_command("no-such-command-4242").is_none());
        assert!(resolve_command("./no/such/file").is_none());
        assert!(resolve_command("").is_none());
    }

    #[test]
    fn launched_child_waits_for_release_and_passes_its_exit_code() {
        let mut t = TargetProcess::launch(&["sh".into(), "-c".into(), "exit 7".into()]).unwrap();
        // Held before exec: still alive however long we wait.
        assert!(!t.wait_exit(Duration::from_millis(100)));
        t.release().unwrap();
        assert!(t.wait_exit(Duration::from_secs(10)));
        assert_eq!(t.wait_exit_code(), Some(7));
    }

    #[test]
    fn unreleased_child_is_killed_on_drop() {
        let t = TargetProcess::launch(&["sleep".into(), "100".into()]).unwrap();
        let pid = t.pid();
        drop(t);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn missing_pid_is_reported() {
        assert!(matches!(
            TargetProcess::open(i32::MAX as u32),
            Err(RecordError::NoSuchPid(_))
        ));
    }
}
