//! Starting the real binary and the real peers, and talking raw HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-proxy");

/// A file of this repository (a test peer script), as a path.
pub fn repo_file(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

pub fn peers() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".peers");
    assert!(
        dir.join(".installed").exists(),
        "test peers are missing: run scripts/install-peers (scripts/test does)"
    );
    dir
}

pub fn python() -> String {
    peers().join("venv/bin/python").display().to_string()
}

/// Python with the SDK 2.x (revision 2026-07-28) installed.
pub fn python2() -> String {
    peers().join("venv2/bin/python").display().to_string()
}

/// The `mcp-server-time` command (the Python reference server).
pub fn time_server() -> String {
    peers()
        .join("venv/bin/mcp-server-time")
        .display()
        .to_string()
}

/// A temporary file of this test process, holding `text`.
pub fn temp_file(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("mcp-proxy-{name}-{}.json", std::process::id()));
    std::fs::write(&path, text).expect("write a temporary file");
    path.display().to_string()
}

pub fn node() -> String {
    peers()
        .join("node/node_modules/.bin/node")
        .display()
        .to_string()
}

pub fn everything() -> Vec<String> {
    vec![
        node(),
        peers()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
    ]
}

pub fn scenario() -> String {
    repo_file("tests/clients/sdk_scenario.py")
}

/// A running process whose stderr is collected; killed (group and all) when dropped.
pub struct Running {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn spawn(program: &str, args: &[String], env: &[(&str, String)]) -> Running {
        Self::spawn_with(program, args, env, Stdio::piped())
    }

    /// A peer that binds port 0 and prints `{"event":"listening",…,"port":P}` on stdout;
    /// the port it got (no race with other tests for a port picked beforehand).
    pub fn spawn_listening(program: &str, args: &[String]) -> (Running, u16) {
        let mut run = Self::spawn_with(program, args, &[], Stdio::piped());
        let stdout = run.child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["event"] == "listening"
                    && let Some(p) = v["port"].as_u64()
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(p as u16);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => (run, port),
            Err(_) => panic!(
                "{program} {args:?} did not say where it listens; stderr:\n{}",
                run.log_text()
            ),
        }
    }

    fn spawn_with(
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        stdout: Stdio,
    ) -> Running {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, log }
    }

    /// Wait until a stderr line contains `needle`; return that line.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no log line with `{needle}` within {within:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc_kill(pid, 15) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc_kill(pid, 0) == 0 }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// The proxy serving HTTP; `port` is read from its "listening on" line.
pub struct Proxy {
    pub run: Running,
    pub port: u16,
}

impl Proxy {
    pub fn start(args: &[&str]) -> Proxy {
        let mut all: Vec<String> = vec!["--port".into(), "0".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        Self::start_raw(&all)
    }

    pub fn start_raw(args: &[String]) -> Proxy {
        Self::start_env(args, &[])
    }

    pub fn start_env(args: &[String], env: &[(&str, String)]) -> Proxy {
        let run = Running::spawn(BIN, args, env);
        let line = run.wait_log("listening on http://", Duration::from_secs(20));
        let port = line
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split([' ', '/']).next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in `{line}`"));
        Proxy { run, port }
    }

    /// The proxy in front of its own built-in demo server.
    pub fn demo(extra: &[&str]) -> Proxy {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--", BIN, "--demo-server"]);
        Proxy::start(&args)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET /status`, as JSON.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(self.url("/status"))
            .await
            .expect("status")
            .json()
            .await
            .expect("status is JSON")
    }

    /// `GET /status`: the named servers by name.
    pub async fn servers(&self) -> std::collections::HashMap<String, serde_json::Value> {
        let s = self.status().await;
        s["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .filter_map(|x| Some((x["name"].as_str()?.to_owned(), x.clone())))
            .collect()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_port(port: u16, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port} after {within:?}");
}

/// Run a command to completion; its status, stdout and stderr.
pub fn run_to_end(program: &str, args: &[String], within: Duration) -> (bool, String) {
    run_to_end_env(program, args, &[], within)
}

pub fn run_to_end_env(
    program: &str,
    args: &[String],
    env: &[(&str, String)],
    within: Duration,
) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let end = Instant::now() + within;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// === raw HTTP ===

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    /// The JSON-RPC messages in an SSE body.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }
}

pub async fn post(url: &str, session: Option<&str>, body: &str, extra: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{},"roots":{}},"clientInfo":{"name":"e2e","version":"1"}}}"#;

/// Initialise a session over Streamable HTTP; its id.
pub async fn session(url: &str) -> String {
    let r = post(url, None, INIT, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.header("mcp-session-id").expect("session id");
    let n = post(
        url,
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &[],
    )
    .await;
    assert_eq!(n.status, 202);
    id
}

/// `tools/list` in session `sid` at `url`: the tools.
pub async fn list_tools(url: &str, sid: &str) -> serde_json::Value {
    let r = post(
        url,
        Some(sid),
        r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#,
        &[],
    )
    .await;
    let answer = r.events().pop().unwrap_or_else(|| r.json());
    answer["result"]["tools"].clone()
}

/// Call `tool` in session `sid` at `url`; the JSON-RPC answer (from a JSON or an SSE body).
pub async fn call_tool(
    url: &str,
    sid: &str,
    id: u64,
    tool: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    let r = post(url, Some(sid), &call(id, tool, args), &[]).await;
    r.events()
        .into_iter()
        .rfind(|m| m.get("id").is_some())
        .unwrap_or_else(|| r.json())
}

pub fn call(id: u64, tool: &str, args: serde_json::Value) -> String {
    serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}).to_string()
}

/// A client of the proxy's stdio front: lines in, lines out.
pub struct LineClient {
    pub run: Running,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LineClient {
    pub fn start(args: &[String]) -> LineClient {
        Self::start_env(args, &[])
    }

    pub fn start_env(args: &[String], env: &[(&str, String)]) -> LineClient {
        let mut run = Running::spawn(BIN, args, env);
        let stdin = run.child.stdin.take();
        let stdout = run.child.stdout.take().expect("stdout piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LineClient { run, stdin, lines }
    }

    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the proxy");
        stdin.flush().expect("flush");
    }

    /// Write bytes as they are (no newline added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to the proxy");
        stdin.flush().expect("flush");
    }

    /// Close the proxy's input.
    pub fn close_input(&mut self) {
        self.stdin.take();
    }

    /// The next line within `within`, as JSON.
    pub fn next(&self, within: Duration) -> Option<serde_json::Value> {
        let line = self.lines.recv_timeout(within).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// Every message up to and including the answer with `id`.
    pub fn until_answer(&self, id: serde_json::Value, within: Duration) -> Vec<serde_json::Value> {
        let end = Instant::now() + within;
        let mut seen = vec![];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let Some(m) = self.next(left) else { break };
            let done = m.get("id") == Some(&id) && m.get("method").is_none();
            seen.push(m);
            if done {
                return seen;
            }
        }
        panic!(
            "no answer with id {id} within {within:?}; got {seen:?}\nlog:\n{}",
            self.run.log_text()
        );
    }
}

pub fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// The JSON-RPC answer in a reply (a JSON or an SSE body).
pub fn answer(r: &Reply) -> Value {
    r.events()
        .into_iter()
        .rfind(|m| m.get("id").is_some())
        .unwrap_or_else(|| r.json())
}

pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0)
        / 1024.0
}

pub fn exits_within(c: &mut LineClient, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(s)) = c.run.child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
