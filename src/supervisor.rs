//! Nothing a stdio server starts may outlive it, or the proxy, whatever ends them.
//!
//! Servers started through `npx`, `uvx`, `docker run` or a shell script leave processes of
//! their own behind (grandchildren of the proxy), and a grandchild does not die with its
//! parent: killed with `kill -9`, the proxy could not end them, and they were adopted by init.
//!
//! So on Linux every stdio server runs under a small supervisor: the proxy's own binary,
//! started in a mode of its own. The proxy forks the supervisor, which forks the server (in a
//! process group of its own) and then becomes this supervisor:
//!
//! - it is a *child subreaper*: every process the server leaves behind, in its group or not
//!   (even after `setsid`), becomes its child when its own parent dies;
//! - it dies with nobody: its parent-death signal is SIGTERM, which it handles;
//! - when the server exits, or the proxy asks (SIGTERM), or the proxy is gone (however it
//!   ended), it ends the server's group and every process left to it: SIGTERM, a grace period,
//!   then SIGKILL, until none is left; then it exits as the server did.
//!
//! The server's stdio is the proxy's pipes, untouched: the supervisor holds none of them.

use std::time::{Duration, Instant};

/// The first argument that starts the binary as a supervisor.
pub const MAGIC: &str = "__mcp_proxy_supervise__";

/// How long the processes a server left behind get after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// Whether servers can run under a supervisor here.
#[cfg(target_os = "linux")]
pub fn available() -> bool {
    std::path::Path::new("/proc/self/exe").exists()
}

#[cfg(not(target_os = "linux"))]
pub fn available() -> bool {
    false
}

/// When the binary was started as a supervisor (`MAGIC SERVER_PID PROXY_PID`), supervise and
/// exit; otherwise return.
pub fn run_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(MAGIC) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let pid = |i: usize| {
            args.get(i)
                .and_then(|a| a.parse::<libc::pid_t>().ok())
                .unwrap_or(0)
        };
        linux::supervise(pid(2), pid(3));
    }
    #[allow(unreachable_code)]
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
pub use linux::install;

#[cfg(target_os = "linux")]
mod linux {
    #![allow(unsafe_code)]

    use super::*;
    use std::ffi::CString;
    use std::os::fd::RawFd;

    /// The signals the supervisor waits for instead of being ended by them.
    fn watched() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset fill the set we own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [
                libc::SIGCHLD,
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGQUIT,
            ] {
                libc::sigaddset(&mut set, s);
            }
            set
        }
    }

    /// Make `cmd` start under a supervisor. `report` is the write end of a pipe on which the
    /// server's process id is written (4 bytes), so that the proxy can name the server's pid.
    pub fn install(cmd: &mut tokio::process::Command, report: RawFd) -> std::io::Result<()> {
        let exe = CString::new("/proc/self/exe")?;
        let name = CString::new("mcp-proxy-supervisor")?;
        let magic = CString::new(MAGIC)?;
        let proxy = CString::new(std::process::id().to_string())?;
        let mut digits = [0u8; 24];
        let set = watched();
        let hook = move || -> std::io::Result<()> {
            // SAFETY: between fork and exec only async-signal-safe calls are made, and no
            // allocation: every buffer was made before the fork.
            unsafe {
                let proxy_pid = libc::getppid();
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                let server = libc::fork();
                if server < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if server == 0 {
                    // The server: a process group of its own, and it dies with the supervisor.
                    libc::setpgid(0, 0);
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
                    return Ok(());
                }
                // The supervisor.
                let bytes = server.to_ne_bytes();
                libc::write(report, bytes.as_ptr().cast(), bytes.len());
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                if libc::getppid() != proxy_pid {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                // Hold none of the server's pipes (its stdout must end when it closes it);
                // keep stderr, which is the proxy's log of this server.
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    if null > 2 {
                        libc::close(null);
                    }
                }
                let server_arg = itoa(server as u32, &mut digits);
                let argv = [
                    name.as_ptr(),
                    magic.as_ptr(),
                    server_arg,
                    proxy.as_ptr(),
                    std::ptr::null(),
                ];
                libc::execv(exe.as_ptr(), argv.as_ptr());
                // Could not become the supervisor: the server must not run unsupervised.
                libc::kill(server, libc::SIGKILL);
                libc::_exit(127);
            }
        };
        // SAFETY: the hook only makes async-signal-safe calls (see above).
        unsafe {
            cmd.pre_exec(hook);
        }
        Ok(())
    }

    /// `n` in decimal, NUL-terminated, in `buf`; a pointer to it.
    fn itoa(mut n: u32, buf: &mut [u8; 24]) -> *const libc::c_char {
        let mut i = buf.len() - 1;
        buf[i] = 0;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        buf[i..].as_ptr().cast()
    }

    /// Why supervision ended.
    #[derive(PartialEq)]
    enum End {
        ServerExited,
        Asked,
        ProxyGone,
    }

    pub fn supervise(server: libc::pid_t, proxy: libc::pid_t) -> ! {
        let set = watched();
        // SAFETY: plain system calls on our own process.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_NAME, c"mcp-supervisor".as_ptr(), 0, 0, 0);
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
        }
        let mut status: Option<libc::c_int> = None;
        let end = if server <= 0 {
            End::Asked
        } else {
            loop {
                if unsafe { libc::getppid() } != proxy {
                    break End::ProxyGone;
                }
                let sig = wait_signal(&set, Duration::from_secs(1));
                reap(server, &mut status);
                if status.is_some() {
                    break End::ServerExited;
                }
                match sig {
                    Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT) => {
                        if unsafe { libc::getppid() } != proxy {
                            break End::ProxyGone;
                        }
                        break End::Asked;
                    }
                    _ => continue,
                }
            }
        };
        let left = end_all(server, &set, &mut status);
        if left > 0 {
            eprintln!(
                "mcp-proxy supervisor: ended {left} process(es) the server {}",
                if end == End::ServerExited {
                    "left behind"
                } else {
                    "started"
                }
            );
        }
        exit_as(status)
    }

    /// Wait at most `wait` for one of `set`; the signal, if one came.
    fn wait_signal(set: &libc::sigset_t, wait: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: sigtimedwait reads the set and the timeout we own.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }

    /// Reap every child that has ended; note the server's status. Whether children remain.
    fn reap(server: libc::pid_t, status: &mut Option<libc::c_int>) -> bool {
        loop {
            let mut st: libc::c_int = 0;
            // SAFETY: waitpid writes the status we own.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid > 0 {
                if pid == server {
                    *status = Some(st);
                }
                continue;
            }
            return pid == 0;
        }
    }

    /// The processes to end besides the server: our children (processes left to us are
    /// re-parented here) and the members of the server's group.
    fn leftovers(server: libc::pid_t) -> Vec<libc::pid_t> {
        let me = std::process::id() as libc::pid_t;
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .filter(|pid| *pid != server && *pid != me)
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        // After the command name in parentheses: state, parent, group.
                        let mut rest = s[s.rfind(')')? + 1..].split_whitespace().skip(1);
                        let parent: libc::pid_t = rest.next()?.parse().ok()?;
                        let group: libc::pid_t = rest.next()?.parse().ok()?;
                        Some(parent == me || (server > 0 && group == server))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// End the server's group and every process left to us: SIGTERM, a grace period, then
    /// SIGKILL until none is left. How many processes besides the server were ended.
    fn end_all(
        server: libc::pid_t,
        set: &libc::sigset_t,
        status: &mut Option<libc::c_int>,
    ) -> usize {
        let mut seen = std::collections::HashSet::new();
        let signal_all = |sig: libc::c_int, seen: &mut std::collections::HashSet<libc::pid_t>| {
            // SAFETY: signals to the server's group and to our own children.
            unsafe {
                if server > 0 {
                    libc::kill(-server, sig);
                }
                for p in leftovers(server) {
                    seen.insert(p);
                    libc::kill(p, sig);
                }
            }
        };
        signal_all(libc::SIGTERM, &mut seen);
        let grace_end = Instant::now() + GRACE;
        while Instant::now() < grace_end {
            if !reap(server, status) && !group_alive(server) {
                return seen.len();
            }
            // Processes re-parented to us since: they get SIGTERM too.
            signal_all(libc::SIGTERM, &mut seen);
            wait_signal(set, Duration::from_millis(50));
        }
        let kill_end = Instant::now() + Duration::from_secs(5);
        loop {
            signal_all(libc::SIGKILL, &mut seen);
            let more = reap(server, status);
            if (!more && !group_alive(server)) || Instant::now() > kill_end {
                break;
            }
            wait_signal(set, Duration::from_millis(20));
        }
        seen.len()
    }

    /// Whether any process is left in the server's group.
    fn group_alive(server: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks.
        server > 0 && unsafe { libc::kill(-server, 0) } == 0
    }

    /// Exit as the server did: its exit status, or the signal that ended it.
    fn exit_as(status: Option<libc::c_int>) -> ! {
        match status {
            Some(st) if libc::WIFEXITED(st) => std::process::exit(libc::WEXITSTATUS(st)),
            Some(st) if libc::WIFSIGNALED(st) => {
                let sig = libc::WTERMSIG(st);
                // SAFETY: restore the default action of `sig` and raise it on ourselves.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    let mut one: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut one);
                    libc::sigaddset(&mut one, sig);
                    libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
                    libc::raise(sig);
                }
                std::process::exit(128 + sig)
            }
            _ => std::process::exit(0),
        }
    }
}
