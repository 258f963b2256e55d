//! The stdio wire: newline-delimited JSON-RPC over a child's stdin/stdout (client side), and
//! the line framing that our own stdin/stdout front end shares.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{CommandSpec, ConnectError, Connection, Inbound, Limits, undeliverable};
use crate::jsonrpc::{Id, Message};

/// Environment variables a child gets when the environment is not passed through
/// (the same set the official SDKs use).
const DEFAULT_ENV: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR",
];

/// One line read with a size limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Data(Vec<u8>),
    /// The line was longer than the limit; it was read to its end and dropped. `id` is the
    /// top-level `id` it carried, so that the refusal can name the request.
    TooLong {
        len: usize,
        id: Option<Id>,
    },
}

/// Finds the top-level `"id"` of a JSON object streamed past it, without keeping the rest.
#[derive(Default)]
struct IdSniffer {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, expecting a member name next.
    expect_key: bool,
    key: Vec<u8>,
    reading_key: bool,
    /// The member being read is `id`.
    at_id: bool,
    capturing: bool,
    value: Vec<u8>,
    found: Option<Vec<u8>>,
    gave_up: bool,
}

impl IdSniffer {
    const MAX_ID: usize = 256;

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.found.is_some() || self.gave_up {
                return;
            }
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if self.capturing {
            let ends = !self.in_string && self.depth == 1 && (b == b',' || b == b'}');
            if ends {
                self.found = Some(std::mem::take(&mut self.value));
                return;
            }
            if self.value.len() >= Self::MAX_ID {
                self.gave_up = true;
                return;
            }
            self.value.push(b);
        }
        if self.in_string {
            if self.reading_key && (b != b'"' || self.escaped) {
                self.key.push(b);
            }
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.reading_key {
                    self.reading_key = false;
                    self.at_id = self.key == b"id";
                    self.key.clear();
                }
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.expect_key = false;
                    self.reading_key = true;
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.expect_key = true;
                }
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b',' if self.depth == 1 => self.expect_key = true,
            b':' if self.depth == 1 && self.at_id => {
                self.at_id = false;
                self.capturing = true;
            }
            _ => {}
        }
    }

    fn id(&self) -> Option<Id> {
        let text = std::str::from_utf8(self.found.as_deref()?).ok()?.trim();
        let raw = serde_json::from_str::<Box<serde_json::value::RawValue>>(text).ok()?;
        matches!(text.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
            .then(|| Id::from_raw(&raw))
    }
}

/// Read one `\n`-terminated line of at most `max` bytes. `Ok(None)` at end of input.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    let mut sniffer: Option<Box<IdSniffer>> = None;
    let too_long = |total: usize, sniffer: &Option<Box<IdSniffer>>| Line::TooLong {
        len: total,
        id: sniffer.as_ref().and_then(|s| s.id()),
    };
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if total == 0 {
                None
            } else if total > max {
                Some(too_long(total, &sniffer))
            } else {
                Some(Line::Data(buf))
            });
        }
        let (take, done) = match memchr_newline(chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let piece = if done { &chunk[..take - 1] } else { chunk };
        total += piece.len();
        if total <= max {
            buf.extend_from_slice(piece);
        } else {
            // Over the limit: what was kept goes, and only the request's id is looked for.
            let s = sniffer.get_or_insert_with(Default::default);
            if !buf.is_empty() {
                s.feed(&buf);
                buf = Vec::new();
            }
            s.feed(piece);
        }
        reader.consume(take);
        if done {
            if total > max {
                return Ok(Some(too_long(total, &sniffer)));
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(Line::Data(buf)));
        }
    }
}

fn memchr_newline(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

/// Writes messages as lines, flushing when no more are queued (batches writes under load).
pub async fn write_lines<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<Message>,
    mut on_error: impl FnMut(Message, &std::io::Error),
) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut failed = None;
        while let Some(m) = next.take() {
            let mut result = Ok(());
            for part in m.pieces().into_parts() {
                result = w.write_all(&part).await;
                if result.is_err() {
                    break;
                }
            }
            if let Err(e) = result.and(w.write_all(b"\n").await) {
                on_error(m, &e);
                failed = Some(e);
                break;
            }
            next = rx.try_recv().ok();
        }
        if failed.is_none()
            && let Err(e) = w.flush().await
        {
            tracing::debug!("flush failed: {e}");
            failed = Some(e);
        }
        if failed.is_some() {
            // The other end is gone: answer whatever is still queued, then stop.
            rx.close();
            while let Some(m) = rx.recv().await {
                on_error(m, &std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            return;
        }
    }
    let _ = w.flush().await;
}

/// Start `spec` as a child process and link to its stdin/stdout.
pub fn spawn(spec: &CommandSpec, limits: Limits) -> Result<Connection, ConnectError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !spec.pass_environment {
        cmd.env_clear();
        for key in DEFAULT_ENV {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let supervised = supervise(&mut cmd);
    let spawned = cmd.spawn();
    // The parent's copy of the report pipe's write end goes, so that its read end ends.
    let server_pid = supervised.and_then(|(read, write)| {
        drop(write);
        read_pid(read)
    });
    let mut child = spawned.map_err(|e| spawn_error(spec, &e))?;
    let supervisor = child.id();
    // What the user knows as the server's process: the server itself, not its supervisor.
    let pid = server_pid.or(supervisor);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ConnectError::Other("child stdio was not captured".into()));
    };
    widen_pipe(&stdin);
    widen_pipe(&stdout);
    tracing::info!(server = %spec.name, command = %spec.program, pid = pid.unwrap_or(0), "started server process");

    let (out_tx, out_rx) = mpsc::channel::<Message>(256);
    let (in_tx, in_rx) = mpsc::channel::<Inbound>(256);
    let describe = Arc::new(std::sync::Mutex::new(format!("stdio ({})", spec.program)));

    let name = spec.name.clone();
    let stderr_key = format!("stderr:{name}");
    let quiet: Arc<std::sync::atomic::AtomicBool> = Default::default();
    let hush = quiet.clone();
    tokio::spawn(async move {
        let mut r = BufReader::new(stderr);
        while let Ok(Some(line)) = read_line(&mut r, 64 * 1024).await {
            if let Line::Data(bytes) = line {
                let text = String::from_utf8_lossy(&bytes);
                tail::keep(&name, &text);
                if hush.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::debug!(target: "mcp_proxy::server_stderr", "[{name}] {text}");
                } else if let Some(held) =
                    crate::throttle::allow_within(&stderr_key, crate::limits::get().stderr_lines)
                {
                    if held > 0 {
                        tracing::info!(target: "mcp_proxy::server_stderr", "[{name}] ({held} lines of its stderr not logged)");
                    }
                    tracing::info!(target: "mcp_proxy::server_stderr", "[{name}] {text}");
                }
            }
        }
    });

    let reader_tx = in_tx.clone();
    let max = limits.max_message_size;
    let server = spec.name.clone();
    let reader = tokio::spawn(async move {
        let mut r = BufReader::with_capacity(256 * 1024, stdout);
        loop {
            match read_line(&mut r, max).await {
                Ok(Some(Line::Data(bytes))) => {
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let bytes = bytes::Bytes::from(bytes);
                    match Message::parse(bytes.clone()) {
                        Ok(p) => {
                            for msg in p.into_messages() {
                                let ev = Inbound::Message { msg, related: None };
                                if reader_tx.send(ev).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                                .into_owned();
                            crate::warn_throttled!(
                                format!("not-json:{server}"),
                                "server {server} wrote a line that is not JSON-RPC ({e}): {text}"
                            );
                        }
                    }
                }
                Ok(Some(Line::TooLong { len: n, .. })) => crate::warn_throttled!(
                    format!("too-long:{server}"),
                    "server {server} sent a message of {n} bytes, over --max-message-size ({max}); dropped"
                ),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("reading server stdout: {e}");
                    return;
                }
            }
        }
    });

    let processes = Processes {
        signal: supervisor,
        group: server_pid,
        supervised: server_pid.is_some(),
    };
    let task = tokio::spawn(run(child, processes, stdin, out_rx, in_tx, reader));
    Ok(Connection {
        tx: out_tx,
        rx: in_rx,
        task,
        describe,
        quiet: Some(quiet),
        pid,
    })
}

/// The processes behind one stdio link, and how to end them.
struct Processes {
    /// The child the proxy started: the supervisor, or (unsupervised) the server.
    signal: Option<u32>,
    /// The server's own process group, when it runs supervised.
    group: Option<u32>,
    supervised: bool,
}

impl Processes {
    /// Ask the server to end. Supervised: its supervisor ends the server's group and whatever
    /// it left behind. Otherwise: the child's group.
    fn terminate(&self) {
        if self.supervised {
            signal_one(self.signal, libc::SIGTERM);
        } else {
            signal_group(self.signal, libc::SIGTERM);
        }
    }

    /// The last resort.
    fn kill(&self) {
        signal_group(self.signal, libc::SIGKILL);
        if self.supervised {
            signal_group(self.group, libc::SIGKILL);
        }
    }
}

async fn run(
    mut child: Child,
    processes: Processes,
    stdin: tokio::process::ChildStdin,
    out_rx: mpsc::Receiver<Message>,
    in_tx: mpsc::Sender<Inbound>,
    reader: tokio::task::JoinHandle<()>,
) {
    let err_tx = in_tx.clone();
    let mut writer = tokio::spawn(write_lines(stdin, out_rx, move |m, e| {
        if let Some(answer) = undeliverable(&m, &format!("cannot write to server process: {e}")) {
            let _ = err_tx.try_send(Inbound::Message {
                msg: answer,
                related: None,
            });
        }
    }));
    let mut reader = reader;
    let mut output_ended = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => {
                writer.abort();
                break Some(status);
            }
            _ = &mut writer => break None,
            // A server that closes its stdout is done, whether or not its process runs on.
            _ = &mut reader, if !output_ended => {
                output_ended = true;
                if let Ok(status) = tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
                    // It exited (its output ends with it).
                    writer.abort();
                    output_ended = false;
                    break Some(status);
                }
                tracing::info!("the server closed its output but runs on; ending it");
                processes.terminate();
            }
        }
    };
    let status = match status {
        Some(s) => s,
        None => {
            // We were asked to end: stdin is closed now; give the server time to exit.
            match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    processes.terminate();
                    match tokio::time::timeout(Duration::from_secs(8), child.wait()).await {
                        Ok(s) => s,
                        Err(_) => {
                            processes.kill();
                            child.wait().await
                        }
                    }
                }
            }
        }
    };
    if !processes.supervised {
        // Anything the child started and left behind in its group goes with it.
        signal_group(processes.signal, libc::SIGTERM);
        let group = processes.signal;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            signal_group(group, libc::SIGKILL);
        });
    }
    if !reader.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
    }
    let reason = match status {
        Ok(s) => describe_exit(s),
        Err(e) => format!("server process could not be waited for: {e}"),
    };
    let reason = if output_ended {
        format!("the server closed its output ({reason})")
    } else {
        reason
    };
    tracing::info!("{reason}");
    let _ = in_tx.send(Inbound::Closed(reason)).await;
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("server process exited with status {c}"),
        (None, Some(sig)) => format!("server process was killed by signal {sig}"),
        _ => "server process exited".into(),
    }
}

fn spawn_error(spec: &CommandSpec, e: &std::io::Error) -> ConnectError {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => {
            let path = spec
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var("PATH").ok())
                .unwrap_or_default();
            format!("command not found (PATH={path})")
        }
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    };
    ConnectError::Spawn {
        program: spec.program.clone(),
        reason,
    }
}

/// Send `sig` to the child's whole process group (the child leads it).
fn signal_group(pid: Option<u32>, sig: libc::c_int) {
    let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, which we ignore.
    unsafe {
        libc::killpg(pid, sig);
    }
}

/// Let a pipe to or from a server hold up to `--pipe-size` (1 MiB; the kernel's default is
/// 64 KiB), so that a large message crosses it in fewer rounds of write, wake up, read.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer; a refusal leaves it as it was.
    unsafe {
        let size = crate::limits::get().pipe_size.min(i32::MAX as usize) as libc::c_int;
        if size > 0 {
            libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, size);
        }
    }
}

/// Send `sig` to one process.
fn signal_one(pid: Option<u32>, sig: libc::c_int) {
    let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: kill only sends a signal.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Start the command under a supervisor (see [`crate::supervisor`]) when this system allows
/// it: the two ends of the pipe on which the server's pid comes. Otherwise the child is
/// ended by the kernel when the proxy dies.
#[cfg(target_os = "linux")]
fn supervise(cmd: &mut Command) -> Option<(std::fs::File, std::fs::File)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    if !crate::supervisor::available() {
        set_parent_death_signal(cmd);
        return None;
    }
    let mut fds = [0 as libc::c_int; 2];
    #[allow(unsafe_code)]
    // SAFETY: pipe2 fills the two descriptors, which the files below then own.
    let pipe = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
            None
        } else {
            Some((
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            ))
        }
    };
    let Some((read, write)) = pipe else {
        set_parent_death_signal(cmd);
        return None;
    };
    match crate::supervisor::install(cmd, write.as_raw_fd()) {
        Ok(()) => Some((read, write)),
        Err(_) => {
            set_parent_death_signal(cmd);
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn supervise(_cmd: &mut Command) -> Option<(std::fs::File, std::fs::File)> {
    None
}

/// The server's pid, as its supervisor reported it.
fn read_pid(mut read: std::fs::File) -> Option<u32> {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    read.read_exact(&mut bytes).ok()?;
    u32::try_from(i32::from_ne_bytes(bytes))
        .ok()
        .filter(|p| *p > 1)
}

/// Ask the kernel to end the child when this process dies, even by SIGKILL.
#[cfg(target_os = "linux")]
fn set_parent_death_signal(cmd: &mut Command) {
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches only the new process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
}

/// Our own stdin, driven by the event loop when it is a pipe or a socket (as when a client
/// starts us), so that no blocking thread sits between the client and us; anything else
/// (a terminal, a file) is read the portable way.
pub fn own_stdin() -> std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> {
    match event_driven(&std::io::stdin()) {
        Some(Own::Pipe(f)) => match tokio::net::unix::pipe::Receiver::from_file(f) {
            Ok(r) => return Box::pin(r),
            Err(e) => tracing::debug!("stdin pipe: {e}"),
        },
        Some(Own::Socket(s)) => match tokio::net::UnixStream::from_std(s) {
            Ok(s) => return Box::pin(s),
            Err(e) => tracing::debug!("stdin socket: {e}"),
        },
        None => {}
    }
    Box::pin(tokio::io::stdin())
}

/// Our own stdout; see [`own_stdin`].
pub fn own_stdout() -> std::pin::Pin<Box<dyn AsyncWrite + Send>> {
    match event_driven(&std::io::stdout()) {
        Some(Own::Pipe(f)) => match tokio::net::unix::pipe::Sender::from_file(f) {
            Ok(w) => return Box::pin(w),
            Err(e) => tracing::debug!("stdout pipe: {e}"),
        },
        Some(Own::Socket(s)) => match tokio::net::UnixStream::from_std(s) {
            Ok(s) => return Box::pin(s),
            Err(e) => tracing::debug!("stdout socket: {e}"),
        },
        None => {}
    }
    Box::pin(tokio::io::stdout())
}

enum Own {
    Pipe(std::fs::File),
    Socket(std::os::unix::net::UnixStream),
}

fn event_driven(fd: &impl std::os::fd::AsFd) -> Option<Own> {
    use std::os::unix::fs::FileTypeExt;
    let owned = fd.as_fd().try_clone_to_owned().ok()?;
    let file = std::fs::File::from(owned);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        Some(Own::Pipe(file))
    } else if kind.is_socket() {
        let s = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        s.set_nonblocking(true).ok()?;
        Some(Own::Socket(s))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_limited_and_reading_goes_on() {
        let input: &[u8] = b"short\r\n0123456789abcdef\nok\nlast";
        let mut r = BufReader::with_capacity(4, input);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Some(Line::Data(b"short".to_vec()))
        );
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Some(Line::TooLong { len: 16, id: None })
        );
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Some(Line::Data(b"ok".to_vec()))
        );
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Some(Line::Data(b"last".to_vec()))
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_keeps_its_id() {
        let long = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{{\"id\":9,\"s\":\"{}\\\"}}\"}},\"id\":\"req-7\"}}\n",
            "x".repeat(5000)
        );
        let input = format!("{long}{{\"id\":42,\"pad\":\"{}\"}}\n", "y".repeat(100));
        let mut r = BufReader::with_capacity(64, input.as_bytes());
        match read_line(&mut r, 1000).await.unwrap() {
            Some(Line::TooLong { id, .. }) => assert_eq!(id, Some(Id::string("req-7"))),
            other => panic!("{other:?}"),
        }
        match read_line(&mut r, 50).await.unwrap() {
            Some(Line::TooLong { id, .. }) => assert_eq!(id, Some(Id::number(42))),
            other => panic!("{other:?}"),
        }
    }
}

/// The last lines of each stdio server's stderr, for the admin console; kept only once
/// [`tail::enable`] was called (nothing is kept otherwise).
pub mod tail {
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{LazyLock, Mutex};
    use std::time::SystemTime;

    /// Lines kept per server.
    pub const LINES: usize = 200;
    /// Longest line kept (longer ones are cut).
    const LINE_BYTES: usize = 2048;

    static ON: AtomicBool = AtomicBool::new(false);
    type Lines = VecDeque<(SystemTime, String)>;
    static TAILS: LazyLock<Mutex<HashMap<String, Lines>>> = LazyLock::new(Default::default);

    pub fn enable() {
        ON.store(true, Ordering::Relaxed);
    }

    pub fn keep(server: &str, line: &str) {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let mut text = line.to_owned();
        if text.len() > LINE_BYTES {
            let mut cut = LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        if let Ok(mut t) = TAILS.lock() {
            let q = t.entry(server.to_owned()).or_default();
            if q.len() >= LINES {
                q.pop_front();
            }
            q.push_back((SystemTime::now(), text));
        }
    }

    /// The lines kept for `server`, oldest first.
    pub fn lines(server: &str) -> Vec<(SystemTime, String)> {
        TAILS
            .lock()
            .ok()
            .and_then(|t| t.get(server).map(|q| q.iter().cloned().collect()))
            .unwrap_or_default()
    }
}
