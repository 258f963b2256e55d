//! Latency, throughput and memory of MCP proxies, with the same trivial echo server behind
//! every row (`mcp-proxy --demo-server`, tool `echo`).
//!
//! `cargo bench` (`cargo bench -- --calls N` for more or fewer calls per figure). Rows:
//! - the echo server over stdio, no proxy (the stdio floor);
//! - a minimal native HTTP echo, no proxy (the HTTP floor; this binary re-run as a server);
//! - mcp-proxy serving the echo server over Streamable HTTP, and over HTTP+SSE;
//! - `mcp-proxy URL`: stdio in front of a remote server (the HTTP floor);
//! - `tools/call` for each client era × server era pair, translated or passed through;
//! - calls with no inbound auth, with an API key and with a JWT;
//! - calls with metrics off, on, and with tracing at sampling ratio 0;
//! - calls over a connection signed in with OAuth, beside a static bearer header and the
//!   server alone, and while short-lived tokens are refreshed;
//! - the merged view of 1 and 20 servers of 50 tools: merged `tools/list`, gathered and then
//!   cached, `tools/call` through the merge, and the proxy's memory per configured server;
//! - the Python `mcp-proxy` and `supergateway` (stateful), set up the same way, when
//!   `scripts/install-bench-peers` has installed them.
//!
//! Every answer is checked against its request; the number of wrong answers is printed.
//! Under `cargo test` this does nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-proxy");
const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const BIG: usize = 100 * 1024;

fn call(id: u64, msg: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{msg}"}}}}}}"#
    )
}

fn answers(body: &str, id: u64, msg: &str) -> bool {
    body.contains(&format!("\"id\":{id},")) && body.contains(msg)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or_default()
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
}

fn rss_mib(pid: u32) -> f64 {
    status_field(pid, "VmRSS:")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = vec![];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = status_field(p, "PPid:").and_then(|v| v.parse().ok()) {
                parents.push((p, pp));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (c, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            out.push(*c);
            frontier.push(*c);
        }
    }
    out
}

#[derive(Default)]
struct Row {
    name: String,
    p50: Duration,
    p99: Duration,
    big50: Duration,
    t16: Option<f64>,
    t64: Option<f64>,
    t16x1: Option<f64>,
    /// calls/s of 100 KiB echoes, 8 clients on 8 sessions.
    t8big: Option<f64>,
    /// calls/s of 100 KiB results (small requests), 8 clients on 8 sessions.
    t8results: Option<f64>,
    rss_idle: f64,
    rss_100: Option<f64>,
    rss_1000: Option<f64>,
    tree_1000: Option<f64>,
    procs: usize,
    first: Duration,
    wrong: u64,
}

impl Row {
    fn print(&self) {
        let rate = |v: Option<f64>| v.map(|r| format!("{r:.0}")).unwrap_or_default();
        let mib = |v: Option<f64>| v.map(|r| format!("{r:.1}")).unwrap_or_default();
        println!(
            "| {} | {:.0?} | {:.0?} | {:.0?} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1?} | {} |",
            self.name,
            self.p50,
            self.p99,
            self.big50,
            rate(self.t16),
            rate(self.t64),
            rate(self.t16x1),
            rate(self.t8big),
            rate(self.t8results),
            self.rss_idle,
            mib(self.rss_100),
            mib(self.rss_1000),
            mib(self.tree_1000),
            self.procs,
            self.first,
            self.wrong,
        );
    }
}

// === stdio peers ===

struct StdioPeer {
    child: Child,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
    line: String,
}

impl StdioPeer {
    fn start(program: &str, args: &[&str]) -> StdioPeer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stdio peer");
        let stdin = child.stdin.take().expect("stdin");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        StdioPeer {
            child,
            stdin,
            out,
            line: String::new(),
        }
    }

    fn ask(&mut self, body: &str) -> &str {
        writeln!(self.stdin, "{body}").expect("write");
        self.line.clear();
        self.out.read_line(&mut self.line).expect("read");
        &self.line
    }

    fn tell(&mut self, body: &str) {
        writeln!(self.stdin, "{body}").expect("write");
    }

    fn latencies(&mut self, calls: u64, size: usize, wrong: &AtomicU64) -> Vec<Duration> {
        let mut lat = vec![];
        for i in 1..=calls {
            let msg = message(i, size);
            let t = Instant::now();
            let body = call(i, &msg);
            let ok = answers(self.ask(&body), i, &msg);
            lat.push(t.elapsed());
            if !ok {
                wrong.fetch_add(1, Ordering::Relaxed);
            }
        }
        lat
    }
}

impl Drop for StdioPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(i: u64, size: usize) -> String {
    let tag = format!("m{i}-");
    if size <= tag.len() {
        return tag;
    }
    let pad = size - tag.len();
    tag + &"x".repeat(pad)
}

fn stdio_row(name: &str, program: &str, args: &[&str], calls: u64, wrong: &AtomicU64) -> Row {
    let start = Instant::now();
    let mut peer = StdioPeer::start(program, args);
    peer.ask(INIT);
    peer.tell(INITIALIZED);
    let first_ok = answers(peer.ask(&call(0, "first")), 0, "first");
    let first = start.elapsed();
    if !first_ok {
        wrong.fetch_add(1, Ordering::Relaxed);
    }
    let pid = peer.child.id();
    let rss_idle = rss_mib(pid);
    let mut lat = peer.latencies(calls, 16, wrong);
    let mut big = peer.latencies((calls / 10).max(20), BIG, wrong);
    Row {
        name: name.into(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        big50: pct(&mut big, 0.5),
        rss_idle,
        procs: descendants(pid).len(),
        first,
        ..Row::default()
    }
}

// === Streamable HTTP peers ===

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client")
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: String,
) -> Result<(Option<String>, String), String> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body);
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((sid, text))
}

async fn open(client: &reqwest::Client, url: &str) -> Result<Option<String>, String> {
    let (sid, _) = post(client, url, None, INIT.to_owned()).await?;
    post(client, url, sid.as_deref(), INITIALIZED.into()).await?;
    Ok(sid)
}

/// `clients` tasks making `per` calls each over `sessions` sessions; calls/s.
async fn throughput(
    url: &str,
    clients: usize,
    sessions: usize,
    per: u64,
    wrong: Arc<AtomicU64>,
) -> f64 {
    throughput_of(url, clients, sessions, per, 0, wrong).await
}

/// `clients` tasks calling `blob` for results of `size` bytes, `per` calls each over
/// `sessions` sessions; calls/s.
async fn results_throughput(
    url: &str,
    clients: usize,
    sessions: usize,
    per: u64,
    size: usize,
    wrong: Arc<AtomicU64>,
) -> f64 {
    let client = client();
    let mut sids = vec![];
    for _ in 0..sessions {
        sids.push(open(&client, url).await.expect("open session"));
    }
    let start = Instant::now();
    let mut tasks = vec![];
    for c in 0..clients {
        let client = client.clone();
        let url = url.to_owned();
        let sid = sids[c % sessions].clone();
        let wrong = wrong.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let id = (c as u64 + 1) * 1_000_000 + i;
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"blob","arguments":{{"bytes":{size}}}}}}}"#
                );
                match post(&client, &url, sid.as_deref(), body).await {
                    Ok((_, b)) if b.contains(&format!("\"id\":{id},")) && b.len() > size => {}
                    _ => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (clients as u64 * per) as f64 / start.elapsed().as_secs_f64()
}

/// As [`throughput`], with messages (and so results) of `size` bytes.
async fn throughput_of(
    url: &str,
    clients: usize,
    sessions: usize,
    per: u64,
    size: usize,
    wrong: Arc<AtomicU64>,
) -> f64 {
    let client = client();
    let mut sids = vec![];
    for _ in 0..sessions {
        sids.push(open(&client, url).await.expect("open session"));
    }
    let start = Instant::now();
    let mut tasks = vec![];
    for c in 0..clients {
        let client = client.clone();
        let url = url.to_owned();
        let sid = sids[c % sessions].clone();
        let wrong = wrong.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let id = (c as u64 + 1) * 1_000_000 + i;
                let mut msg = format!("c{c}-{i}-");
                if size > msg.len() {
                    msg.push_str(&"x".repeat(size - msg.len()));
                }
                match post(&client, &url, sid.as_deref(), call(id, &msg)).await {
                    Ok((_, body)) if answers(&body, id, &msg) => {}
                    _ => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (clients as u64 * per) as f64 / start.elapsed().as_secs_f64()
}

async fn http_latencies(
    client: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    calls: u64,
    size: usize,
    wrong: &AtomicU64,
) -> Vec<Duration> {
    let mut lat = vec![];
    for i in 1..=calls {
        let msg = message(i, size);
        let t = Instant::now();
        let ok = matches!(post(client, url, sid, call(i, &msg)).await, Ok((_, b)) if answers(&b, i, &msg));
        lat.push(t.elapsed());
        if !ok {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    lat
}

/// A server process reached over Streamable HTTP at `url`.
async fn http_row(
    name: &str,
    mut server: Child,
    url: &str,
    calls: u64,
    sessions: bool,
    wrong: Arc<AtomicU64>,
) -> Row {
    let start = Instant::now();
    let client = client();
    let sid = loop {
        if start.elapsed() > Duration::from_secs(60) {
            panic!("{name}: no answer at {url} within 60 s");
        }
        if let Ok(sid) = open(&client, url).await {
            match post(&client, url, sid.as_deref(), call(0, "first")).await {
                Ok((_, b)) if answers(&b, 0, "first") => break sid,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let first = start.elapsed();
    let pid = server.id();
    let rss_idle = rss_mib(pid);
    let mut lat = http_latencies(&client, url, sid.as_deref(), calls, 16, &wrong).await;
    let mut big = http_latencies(
        &client,
        url,
        sid.as_deref(),
        (calls / 10).max(20),
        BIG,
        &wrong,
    )
    .await;
    let mut row = Row {
        name: name.into(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        big50: pct(&mut big, 0.5),
        rss_idle,
        first,
        ..Row::default()
    };
    let per = |clients: u64| (calls * 4 / clients).max(50);
    row.t16 = Some(throughput(url, 16, 16, per(16), wrong.clone()).await);
    row.t64 = Some(throughput(url, 64, 64, per(64), wrong.clone()).await);
    row.t16x1 = Some(throughput(url, 16, 1, per(16), wrong.clone()).await);
    row.t8big = Some(throughput_of(url, 8, 8, (calls / 20).max(50), BIG, wrong.clone()).await);
    row.t8results =
        Some(results_throughput(url, 8, 8, (calls / 10).max(50), BIG, wrong.clone()).await);
    if sessions {
        // Sessions that stay open (the throughput runs opened 81 already).
        let mut kept = vec![];
        for target in [100usize, 1000] {
            while kept.len() < target {
                match open(&client, url).await {
                    Ok(s) => kept.push(s),
                    Err(e) => {
                        eprintln!("{name}: opening session {} failed: {e}", kept.len() + 1);
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss = rss_mib(pid);
            if target == 100 {
                row.rss_100 = Some(rss);
            } else {
                row.rss_1000 = Some(rss);
                row.tree_1000 =
                    Some(rss + descendants(pid).iter().map(|p| rss_mib(*p)).sum::<f64>());
            }
        }
    }
    row.procs = descendants(pid).len();
    let _ = server.kill();
    let _ = server.wait();
    row
}

// === HTTP+SSE (2024-11-05) ===

async fn sse_row(
    name: &str,
    mut server: Child,
    base: &str,
    calls: u64,
    wrong: Arc<AtomicU64>,
) -> Row {
    let client = client();
    let start = Instant::now();
    let resp = loop {
        if let Ok(r) = client
            .get(format!("{base}/sse"))
            .header("accept", "text/event-stream")
            .send()
            .await
        {
            break r;
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!("{name}: no SSE endpoint");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
    let mut next_data = async || loop {
        match events.next().await {
            Some(Ok(ev)) => {
                if let Some(d) = ev.data {
                    return (ev.event, d);
                }
            }
            other => panic!("{name}: SSE stream ended: {:?}", other.map(|r| r.err())),
        }
    };
    let (_, endpoint) = next_data().await;
    let post_url = format!("{base}{}", endpoint.trim());
    let send = |body: String| {
        let c = client.clone();
        let u = post_url.clone();
        async move {
            c.post(u)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|_| ())
        }
    };
    send(INIT.into()).await.expect("post initialize");
    next_data().await;
    send(INITIALIZED.into()).await.expect("post initialized");
    send(call(0, "first")).await.expect("post call");
    let (_, b) = next_data().await;
    let first = start.elapsed();
    if !answers(&b, 0, "first") {
        wrong.fetch_add(1, Ordering::Relaxed);
    }
    let rss_idle = rss_mib(server.id());
    let mut run = async |calls: u64, size: usize| {
        let mut lat = vec![];
        for i in 1..=calls {
            let msg = message(i, size);
            let t = Instant::now();
            send(call(i, &msg)).await.expect("post call");
            let (_, b) = next_data().await;
            lat.push(t.elapsed());
            if !answers(&b, i, &msg) {
                wrong.fetch_add(1, Ordering::Relaxed);
            }
        }
        lat
    };
    let mut lat = run(calls, 16).await;
    let mut big = run((calls / 10).max(20), BIG).await;
    let row = Row {
        name: name.into(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        big50: pct(&mut big, 0.5),
        rss_idle,
        procs: descendants(server.id()).len(),
        first,
        ..Row::default()
    };
    let _ = server.kill();
    let _ = server.wait();
    row
}

// === the HTTP floor: a minimal native Streamable HTTP echo ===

async fn http_echo_server(port: u16) {
    use axum::http::header;
    async fn handle(body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return axum::http::StatusCode::BAD_REQUEST.into_response();
        };
        let Some(id) = req.get("id").cloned() else {
            return axum::http::StatusCode::ACCEPTED.into_response();
        };
        let result = match req["method"].as_str() {
            Some("initialize") => serde_json::json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "http-echo", "version": "1"}
            }),
            Some("tools/call") if req["params"]["name"] == "blob" => {
                let n = req["params"]["arguments"]["bytes"].as_u64().unwrap_or(0) as usize;
                serde_json::json!({ "content": [{"type": "text", "text": "x".repeat(n)}] })
            }
            Some("tools/call") => serde_json::json!({
                "content": [{"type": "text", "text": req["params"]["arguments"]["message"]}]
            }),
            _ => serde_json::json!({}),
        };
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::HeaderName::from_static("mcp-session-id"), "floor"),
            ],
            answer.to_string(),
        )
            .into_response()
    }
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(handle))
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

// === the SSE floor: a minimal native HTTP+SSE endpoint ===

async fn sse_floor_server(port: u16) {
    use axum::response::IntoResponse;
    async fn handle() -> axum::response::Response {
        let first = futures_util::stream::once(async {
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(
                b"event: endpoint\ndata: /messages?sessionId=floor\n\n",
            ))
        });
        let body = axum::body::Body::from_stream(first.chain(futures_util::stream::pending()));
        (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            body,
        )
            .into_response()
    }
    let app = axum::Router::new().route("/sse", axum::routing::get(handle));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

/// Open `n` HTTP+SSE sessions at `base`, `at_once` at a time (each until its `endpoint`
/// event); how long it took. The streams stay open until the end.
async fn open_sse_sessions(base: &str, n: usize, at_once: usize) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    // Wait for the server.
    let start = Instant::now();
    while client.get(format!("{base}/sse")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no SSE endpoint at {base}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut kept = vec![];
    let t = Instant::now();
    for _ in 0..n.div_ceil(at_once) {
        let opens = (0..at_once).map(|_| {
            let c = client.clone();
            let url = format!("{base}/sse");
            async move {
                let resp = c
                    .get(url)
                    .header("accept", "text/event-stream")
                    .send()
                    .await
                    .expect("GET /sse");
                let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
                loop {
                    match events.next().await {
                        Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => break,
                        Some(Ok(_)) => {}
                        other => panic!("SSE stream ended: {:?}", other.map(|r| r.err())),
                    }
                }
                events
            }
        });
        kept.extend(futures_util::future::join_all(opens).await);
    }
    let took = t.elapsed();
    drop(kept);
    took
}

/// Park `batches` × `per` 2026-07-28 calls that wait for input (the demo server's `elicit`),
/// one after the other (a stdio server's requests say not which call they are for, so
/// concurrent calls would be told apart by their order only); the time each batch took and
/// the proxy's memory after it.
async fn park_calls(batches: usize, per: usize) -> Vec<String> {
    let port = free_port();
    let p = port.to_string();
    let mut server = spawn(
        BIN,
        &[
            "--port",
            &p,
            "--log-level",
            "warn",
            "--server-era",
            "legacy",
            "--max-parked",
            "1000000",
            "--",
            BIN,
            "--demo-server",
        ],
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = client();
    let start = Instant::now();
    while open(&client, &url).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "no proxy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = server.id();
    let mut rows = vec![format!("| before | | {:.1} MiB |", rss_mib(pid))];
    let body = |i: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"elicit","arguments":{{}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{"elicitation":{{}}}},"io.modelcontextprotocol/clientInfo":{{"name":"bench","version":"1"}}}}}}}}"#
        )
    };
    for b in 0..batches {
        let t = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = vec![];
        for _ in 0..1 {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= per {
                        return;
                    }
                    let _ = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2026-07-28")
                        .header("mcp-method", "tools/call")
                        .header("mcp-name", "elicit")
                        .body(body(b * per + i))
                        .send()
                        .await
                        .map(|r| async { r.text().await });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        rows.push(format!(
            "| calls {}–{} | {:.2?} | {:.1} MiB |",
            b * per + 1,
            (b + 1) * per,
            t.elapsed(),
            rss_mib(pid)
        ));
    }
    let _ = server.kill();
    let _ = server.wait();
    rows
}

/// Peak resident memory of `pid` since it started (VmHWM), MiB.
fn peak_mib(pid: u32) -> f64 {
    status_field(pid, "VmHWM:")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Echo one message of `mib` MiB through the server at `url`; a table row with its peak
/// memory.
async fn big_echo_row(
    name: &str,
    mut server: Child,
    url: &str,
    mib: usize,
    wrong: &AtomicU64,
) -> String {
    let client = client();
    let start = Instant::now();
    let sid = loop {
        if let Ok(sid) = open(&client, url).await {
            break sid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name}: no answer"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let pid = server.id();
    let before = peak_mib(pid);
    let msg = message(1, mib << 20);
    let t = Instant::now();
    let ok = matches!(post(&client, url, sid.as_deref(), call(1, &msg)).await, Ok((_, b)) if answers(&b, 1, &msg));
    let took = t.elapsed();
    if !ok {
        wrong.fetch_add(1, Ordering::Relaxed);
    }
    let peak = peak_mib(pid);
    let _ = server.kill();
    let _ = server.wait();
    format!(
        "| {name} | {mib} MiB | {before:.1} MiB | {peak:.1} MiB | {:.2}x | {took:.2?} |",
        peak / mib as f64
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spawn(program: &str, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

/// mcp-proxy serving the demo server over HTTP on a free port. The demo server speaks both
/// eras; `server_era` says which one the proxy speaks with it.
fn proxy_before_demo(server_era: &str) -> (Child, u16) {
    let port = free_port();
    let p = port.to_string();
    let args = [
        "--port",
        &p,
        "--log-level",
        "warn",
        "--server-era",
        server_era,
        "--",
        BIN,
        "--demo-server",
    ];
    (spawn(BIN, &args), port)
}

// === the gateway ===

/// A config file of `n` demo servers with `tools` tools each; its path.
fn gateway_config(n: usize, tools: usize) -> String {
    let servers: Vec<String> = (1..=n)
        .map(|k| {
            format!(
                r#""s{k}": {{ "command": "{BIN}", "args": ["--demo-server", "--demo-tools", "{}"] }}"#,
                tools.saturating_sub(9)
            )
        })
        .collect();
    let path =
        std::env::temp_dir().join(format!("mcp-proxy-bench-{n}-{}.json", std::process::id()));
    let text = format!("{{ \"mcpServers\": {{ {} }} }}", servers.join(",\n"));
    std::fs::write(&path, text).expect("config");
    path.display().to_string()
}

/// The proxy's own memory: resident anonymous pages (code shared with the children aside).
fn anon_mib(pid: u32) -> f64 {
    status_field(pid, "RssAnon:")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The latency of `calls` calls of the echo tool `tool` in session `sid` at `url`; wrong
/// answers are counted in `wrong`.
async fn echo_calls(
    http: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    tool: &str,
    calls: u64,
    wrong: &AtomicU64,
) -> Vec<Duration> {
    let mut lat = vec![];
    for i in 1..=calls {
        let msg = message(i, 16);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"{msg}"}}}}}}"#
        );
        let t = Instant::now();
        let ok = matches!(post(http, url, sid, body).await, Ok((_, b)) if answers(&b, i, &msg));
        lat.push(t.elapsed());
        if !ok {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    lat
}

/// Merged `tools/list` over `n` servers of 50 tools: first (gathered) and later (cached)
/// answers; `tools/call` through the merge; the proxy's memory per configured server.
async fn gateway_rows(calls: u64, wrong: &AtomicU64) -> Vec<String> {
    let mut out = vec![];
    let mut anon = vec![];
    for n in [1usize, 20] {
        let port = free_port();
        let config = gateway_config(n, 50);
        let mut server = spawn(
            BIN,
            &[
                "--port",
                &port.to_string(),
                "--log-level",
                "warn",
                "--config",
                &config,
            ],
        );
        let url = format!("http://127.0.0.1:{port}/mcp");
        let http = client();
        let start = Instant::now();
        let sid = loop {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no answer at {url}"
            );
            if let Ok(sid) = open(&http, &url).await {
                break sid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let list = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
        let t = Instant::now();
        let first = post(&http, &url, sid.as_deref(), list.to_owned()).await;
        let cold = t.elapsed();
        let count = first
            .as_ref()
            .map(|(_, b)| b.matches("\"name\":\"s").count())
            .unwrap_or(0);
        if count != n * 50 {
            wrong.fetch_add(1, Ordering::Relaxed);
            eprintln!("merged list of {n} servers has {count} tools");
        }
        let mut warm = vec![];
        for _ in 0..200 {
            let t = Instant::now();
            let _ = post(&http, &url, sid.as_deref(), list.to_owned()).await;
            warm.push(t.elapsed());
        }
        let mut lat = echo_calls(&http, &url, sid.as_deref(), "s1--echo", calls, wrong).await;
        // The same server alone, as a bridge, in the same process: the merge's own cost is
        // the difference.
        let alone = format!("http://127.0.0.1:{port}/servers/s1/mcp");
        let alone_sid = open(&http, &alone).await.ok().flatten();
        let mut bridge =
            echo_calls(&http, &alone, alone_sid.as_deref(), "echo", calls, wrong).await;
        // A 2026-07-28 client: each request on a merged session of its own.
        let mut modern = vec![];
        for i in 1..=calls.min(2000) {
            let msg = message(i, 16);
            let t = Instant::now();
            let ok = post_modern_named(&http, &url, "s1--echo", i, &msg).await;
            modern.push(t.elapsed());
            if !ok {
                wrong.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        anon.push((n, anon_mib(server.id())));
        out.push(format!(
            "| {n} × 50 tools | {} | {cold:.1?} | {:.0?} | {:.0?} | {:.0?} | {:.0?} | {:.0?} | {:.1} |",
            n * 50,
            pct(&mut warm, 0.5),
            pct(&mut warm, 0.99),
            pct(&mut lat, 0.5),
            pct(&mut bridge, 0.5),
            pct(&mut modern, 0.5),
            anon_mib(server.id()),
        ));
        let _ = server.kill();
        let _ = server.wait();
    }
    if let [(1, one), (20, twenty)] = anon[..] {
        out.push(format!(
            "proxy's own memory per configured server (RssAnon, 20 servers vs 1): {:.2} MiB",
            (twenty - one) / 19.0
        ));
    }
    out
}

// === protocol eras ===

const MODERN_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}"#;

/// One `tools/call` of a 2026-07-28 client: no session, the request metadata in headers
/// and `_meta`.
async fn post_modern(client: &reqwest::Client, url: &str, id: u64, msg: &str) -> bool {
    post_modern_named(client, url, "echo", id, msg).await
}

/// The same, of the tool `tool`.
async fn post_modern_named(
    client: &reqwest::Client,
    url: &str,
    tool: &str,
    id: u64,
    msg: &str,
) -> bool {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"{msg}"}},{MODERN_META}}}}}"#
    );
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => r.text().await.is_ok_and(|b| answers(&b, id, msg)),
        Err(_) => false,
    }
}

/// p50, p99 and calls/s at 16 clients of `tools/call` for one client era × server era.
async fn era_row(client_era: &str, server_era: &str, calls: u64, wrong: &Arc<AtomicU64>) -> String {
    let (mut server, port) = proxy_before_demo(server_era);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let http = client();
    let modern = client_era == "modern";
    let start = Instant::now();
    let sid = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no answer at {url}"
        );
        if modern {
            if post_modern(&http, &url, 0, "first").await {
                break None;
            }
        } else if let Ok(sid) = open(&http, &url).await
            && matches!(post(&http, &url, sid.as_deref(), call(0, "first")).await, Ok((_, b)) if answers(&b, 0, "first"))
        {
            break sid;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut lat = vec![];
    for i in 1..=calls {
        let msg = message(i, 16);
        let t = Instant::now();
        let ok = if modern {
            post_modern(&http, &url, i, &msg).await
        } else {
            matches!(post(&http, &url, sid.as_deref(), call(i, &msg)).await, Ok((_, b)) if answers(&b, i, &msg))
        };
        lat.push(t.elapsed());
        if !ok {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    let rate = if modern {
        let per = (calls / 4).max(50);
        let t = Instant::now();
        let mut tasks = vec![];
        for c in 0..16u64 {
            let http = http.clone();
            let url = url.clone();
            let wrong = wrong.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    let id = (c + 1) * 1_000_000 + i;
                    if !post_modern(&http, &url, id, &format!("c{c}-{i}-")).await {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        (16 * per) as f64 / t.elapsed().as_secs_f64()
    } else {
        throughput(&url, 16, 16, (calls / 4).max(50), wrong.clone()).await
    };
    let _ = server.kill();
    let _ = server.wait();
    let how = match (client_era, server_era) {
        ("legacy", "legacy") | ("modern", "auto") => "passed through",
        ("legacy", _) => "translated: initialize from server/discover, _meta added",
        _ => "translated: _meta onto the proxy's session, resultType and cache fields added",
    };
    let server_name = if server_era == "auto" {
        "2026-07-28"
    } else {
        "2025-11-25"
    };
    let client_name = if modern { "2026-07-28" } else { "2025-06-18" };
    format!(
        "| {client_name} client → {server_name} server | {how} | {:.0?} | {:.0?} | {rate:.0} |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    )
}

/// A test peer (installed by scripts/install-peers) that binds port 0 and prints
/// `{"event":"listening",…,"port":P}`; the child and its port.
fn spawn_listening(program: &str, args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "listening"
                && let (Some(p), Some(tx)) = (v["port"].as_u64(), tx.take())
            {
                let _ = tx.send(p as u16);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{program} {args:?} did not say where it listens"));
    (child, port)
}

fn end(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// `echo` calls (`{"text": …}`) for `within` or `calls` calls, whichever ends first.
async fn text_echo_calls(
    http: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    calls: u64,
    within: Duration,
    wrong: &AtomicU64,
) -> Vec<Duration> {
    let mut lat = vec![];
    let end = Instant::now() + within;
    for i in 1..=calls {
        if Instant::now() > end {
            break;
        }
        let msg = message(i, 16);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{msg}"}}}}}}"#
        );
        let t = Instant::now();
        // (The SDK server puts the id last.)
        let ok = matches!(post(http, url, sid, body).await, Ok((_, b))
            if b.contains(&msg) && (b.contains(&format!("\"id\":{i},")) || b.contains(&format!("\"id\":{i}}}"))));
        lat.push(t.elapsed());
        if !ok {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    lat
}

/// Open a session at `url` (retrying while the proxy starts or signs in).
async fn open_when_ready(http: &reqwest::Client, url: &str) -> Option<String> {
    for _ in 0..300 {
        if let Ok(s) = open(http, url).await
            && s.is_some()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// mcp-proxy --port in front of `server_url`, with `args` and `env`; its /mcp URL.
fn proxy_to(server_url: &str, args: &[&str], env: &[(&str, String)]) -> (Child, String) {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["--port", &port.to_string(), "--log-level", "warn"])
        .args(args)
        .arg(server_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("mcp-proxy");
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

/// Calls over a connection signed in with OAuth beside the same calls with a static bearer
/// header (the token the sign-in got), to an MCP server (TypeScript SDK) that checks JWTs from
/// `oidc-provider` (the test peers tests/servers/oauth_as.mjs and protected_server.mjs). The
/// three paths take turns in blocks of 250 calls, so that the server's own warming up and
/// drift weigh on all alike. Then the same with 4-second tokens, refreshed as calls go on.
async fn oauth_rows(calls: u64, wrong: &AtomicU64) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let node = root.join(".peers/node/node_modules/.bin/node");
    if !root.join(".peers/.installed").exists() || !node.exists() {
        eprintln!("the OAuth rows need the test peers: run scripts/install-peers");
        return vec![];
    }
    let node = node.display().to_string();
    let file = |rel: &str| root.join(rel).display().to_string();
    let mut out = vec![];
    let mut row = |name: &str, lat: &mut Vec<Duration>, extra: String| {
        let n = lat.len();
        out.push(format!(
            "| {name} | {n} | {:.2?} | {:.2?} | {:.1?} | {extra} |",
            pct(lat, 0.5),
            pct(lat, 0.99),
            lat.iter().max().copied().unwrap_or_default(),
        ));
    };
    for ttl in ["3600", "4"] {
        let log =
            std::env::temp_dir().join(format!("mcp-proxy-bench-as-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let log_s = log.display().to_string();
        let (auth, auth_port) = spawn_listening(
            &node,
            &[
                &file("tests/servers/oauth_as.mjs"),
                "--port",
                "0",
                "--resource",
                "*",
                "--access-ttl",
                ttl,
                "--log",
                &log_s,
            ],
        );
        let issuer = format!("http://127.0.0.1:{auth_port}");
        let (server, mcp_port) = spawn_listening(
            &node,
            &[
                &file("tests/servers/protected_server.mjs"),
                "--port",
                "0",
                "--issuer",
                &issuer,
            ],
        );
        let server_url = format!("http://127.0.0.1:{mcp_port}/mcp");
        let cache =
            std::env::temp_dir().join(format!("mcp-proxy-bench-oauth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let env = [
            ("XDG_CACHE_HOME", cache.display().to_string()),
            ("BROWSER", file("tests/clients/browser.py")),
        ];
        let (signed, url) = proxy_to(&server_url, &[], &env);
        let http = client();
        // The first initialize signs in (the browser stand-in follows the redirects).
        let sid = open_when_ready(&http, &url).await;
        let forever = Duration::from_secs(3600);
        if ttl == "4" {
            text_echo_calls(&http, &url, sid.as_deref(), 1000, forever, wrong).await;
            let mut lat = text_echo_calls(
                &http,
                &url,
                sid.as_deref(),
                u64::MAX,
                Duration::from_secs(15),
                wrong,
            )
            .await;
            let refreshes = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(r#""grant":"refresh_token""#))
                .count();
            row(
                "mcp-proxy --port, signed in with OAuth, 4 s tokens (15 s of calls)",
                &mut lat,
                format!("{refreshes} refreshes meanwhile"),
            );
        } else {
            // The token the sign-in got, as a static header.
            let token = std::fs::read_dir(cache.join("mcp-proxy"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .find_map(|e| {
                    let v: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
                    v["tokens"]["access_token"].as_str().map(str::to_owned)
                })
                .unwrap_or_default();
            let bearer = format!("Bearer {token}");
            let mut headers = reqwest::header::HeaderMap::new();
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&bearer) {
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            let direct = reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client");
            let direct_sid = open(&direct, &server_url).await.ok().flatten();
            let (plain, plain_url) = proxy_to(
                &server_url,
                &["--no-oauth", "-H", "Authorization", &bearer],
                &[],
            );
            let plain_sid = open_when_ready(&http, &plain_url).await;
            let paths = [
                (&http, url.as_str(), sid.as_deref()),
                (&direct, server_url.as_str(), direct_sid.as_deref()),
                (&http, plain_url.as_str(), plain_sid.as_deref()),
            ];
            for (c, u, s) in paths {
                text_echo_calls(c, u, s, 500, forever, wrong).await;
            }
            let mut lat: [Vec<Duration>; 3] = Default::default();
            for _ in 0..calls.max(1000).div_ceil(250) {
                for (k, (c, u, s)) in paths.iter().enumerate() {
                    lat[k].extend(text_echo_calls(c, u, *s, 250, forever, wrong).await);
                }
            }
            let [mut a, mut b, mut c] = lat;
            row(
                "mcp-proxy --port, signed in with OAuth",
                &mut a,
                String::new(),
            );
            row(
                "mcp-proxy --port, static bearer header (-H Authorization)",
                &mut c,
                String::new(),
            );
            row(
                "the server alone, static bearer header (floor)",
                &mut b,
                String::new(),
            );
            end(plain);
        }
        end(signed);
        end(server);
        end(auth);
        let _ = std::fs::remove_dir_all(&cache);
        let _ = std::fs::remove_file(&log);
    }
    out
}

/// `tools/call` through mcp-proxy with no auth, with an API key, and with a JWT checked
/// against a key set from a file (kept in memory: no network per request). The three take
/// turns in blocks of 250 calls.
async fn auth_rows(calls: u64, wrong: &AtomicU64) -> Vec<String> {
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("key")
        .as_ref()
        .to_vec();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("key");
    let point = pair.public_key().as_ref().to_vec();
    let b = |x: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256",
        "x": b(&point[1..33]), "y": b(&point[33..65])}]});
    let jwks_file =
        std::env::temp_dir().join(format!("mcp-proxy-bench-jwks-{}.json", std::process::id()));
    std::fs::write(&jwks_file, jwks.to_string()).expect("jwks file");
    let jwks_path = jwks_file.display().to_string();
    let issuer = "https://issuer.bench.example";
    let ports = [free_port(), free_port(), free_port()];
    let start = |port: u16, extra: &[&str]| {
        let p = port.to_string();
        let mut args = vec![
            "--port",
            &p,
            "--log-level",
            "warn",
            "--server-era",
            "legacy",
            "--identity-rate",
            "1000000",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", BIN, "--demo-server"]);
        spawn(BIN, &args)
    };
    let plain = start(ports[0], &[]);
    let keyed = start(ports[1], &["--api-key", "bench:bench-key-0123456789"]);
    let jwt = start(
        ports[2],
        &["--auth-issuer", issuer, "--auth-jwks", &jwks_path],
    );
    let url = |p: u16| format!("http://127.0.0.1:{p}/mcp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"iss": issuer, "sub": "bench", "aud": url(ports[2]), "exp": now + 3600, "iat": now, "scope": "mcp"}),
        &jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
    )
    .expect("token");
    let with = |k: &str, v: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .expect("client")
    };
    let clients = [
        client(),
        with("x-api-key", "bench-key-0123456789"),
        with("authorization", &format!("Bearer {token}")),
    ];
    let mut sids = vec![];
    for (k, c) in clients.iter().enumerate() {
        sids.push(open_when_ready(c, &url(ports[k])).await);
    }
    for (k, c) in clients.iter().enumerate() {
        echo_calls(c, &url(ports[k]), sids[k].as_deref(), "echo", 500, wrong).await;
    }
    let mut lat: [Vec<Duration>; 3] = Default::default();
    for _ in 0..calls.max(1000).div_ceil(250) {
        for (k, c) in clients.iter().enumerate() {
            lat[k].extend(
                echo_calls(c, &url(ports[k]), sids[k].as_deref(), "echo", 250, wrong).await,
            );
        }
    }
    for c in [plain, keyed, jwt] {
        let mut c = c;
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&jwks_file);
    let names = [
        "mcp-proxy, Streamable HTTP, no auth",
        "mcp-proxy, Streamable HTTP, --api-key (X-Api-Key)",
        "mcp-proxy, Streamable HTTP, --auth-issuer (an ES256 JWT; keys in memory)",
    ];
    let base = pct(&mut lat[0].clone(), 0.5);
    names
        .iter()
        .zip(lat.iter_mut())
        .map(|(n, l)| {
            let p50 = pct(l, 0.5);
            format!(
                "| {n} | {} | {p50:.0?} | {:.0?} | {:.2}x |",
                l.len(),
                pct(l, 0.99),
                p50.as_secs_f64() / base.as_secs_f64()
            )
        })
        .collect()
}

/// `tools/call` with metrics off, with metrics on, and with metrics and tracing at a sampling
/// ratio of 0: latency (the three take turns in blocks of 250 calls) and throughput with 16
/// clients (three rounds each, in turn; the best of each).
async fn telemetry_rows(calls: u64, wrong: &Arc<AtomicU64>) -> Vec<String> {
    let ports = [free_port(), free_port(), free_port()];
    let start = |port: u16, extra: &[&str], env: &[(&str, &str)]| {
        let p = port.to_string();
        let mut args = vec![
            "--port",
            &p,
            "--log-level",
            "warn",
            "--server-era",
            "legacy",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", BIN, "--demo-server"]);
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("mcp-proxy")
    };
    let procs = [
        start(ports[0], &["--no-metrics"], &[]),
        start(ports[1], &[], &[]),
        start(
            ports[2],
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ],
        ),
    ];
    let url = |p: u16| format!("http://127.0.0.1:{p}/mcp");
    let http = client();
    let mut sids = vec![];
    for p in ports {
        sids.push(open_when_ready(&http, &url(p)).await);
    }
    for (k, p) in ports.iter().enumerate() {
        echo_calls(&http, &url(*p), sids[k].as_deref(), "echo", 500, wrong).await;
    }
    let mut lat: [Vec<Duration>; 3] = Default::default();
    for _ in 0..calls.max(1000).div_ceil(250) {
        for (k, p) in ports.iter().enumerate() {
            lat[k]
                .extend(echo_calls(&http, &url(*p), sids[k].as_deref(), "echo", 250, wrong).await);
        }
    }
    let mut rate = [0f64; 3];
    for _ in 0..3 {
        for (k, p) in ports.iter().enumerate() {
            let r = throughput(&url(*p), 16, 16, 300, wrong.clone()).await;
            rate[k] = rate[k].max(r);
        }
    }
    for mut c in procs {
        let _ = c.kill();
        let _ = c.wait();
    }
    let names = [
        "metrics off (--no-metrics)",
        "metrics on (the default)",
        "metrics on, tracing on at sampling ratio 0",
    ];
    let base = pct(&mut lat[0].clone(), 0.5);
    names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let p50 = pct(&mut lat[k], 0.5);
            format!(
                "| {n} | {p50:.0?} | {:.0?} | {:.2}x | {:.0} | {:.1}% |",
                pct(&mut lat[k], 0.99),
                p50.as_secs_f64() / base.as_secs_f64(),
                rate[k],
                100.0 * (rate[k] / rate[0] - 1.0)
            )
        })
        .collect()
}

/// The admin console's cost: a gateway of one demo server with the console off and on (idle,
/// nobody signed in), its resident memory and its calls; then the page's load over HTTP
/// (the page and its own assets, as a browser fetches them on sign-in) and the servers API.
async fn admin_rows(calls: u64, wrong: &Arc<AtomicU64>) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("mcp-proxy-bench-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let ports = [free_port(), free_port()];
    let start = |k: usize, admin: bool| {
        let sub = dir.join(format!("p{k}"));
        std::fs::create_dir_all(&sub).expect("folder");
        let config = sub.join("servers.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"mcpServers":{{"demo":{{"command":"{BIN}","args":["--demo-server"]}}}}}}"#
            ),
        )
        .expect("config");
        let p = ports[k].to_string();
        let c = config.display().to_string();
        let mut args = vec![
            "--port",
            &p,
            "--log-level",
            "warn",
            "--server-era",
            "legacy",
            "--config",
            &c,
        ];
        if admin {
            args.push("--admin");
        }
        Command::new(BIN)
            .args(&args)
            .env("ADMIN_PASSWORD", "bench-password-1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcp-proxy")
    };
    let procs = [start(0, false), start(1, true)];
    let url = |p: u16| format!("http://127.0.0.1:{p}/mcp");
    let http = client();
    let mut sids = vec![];
    for p in ports {
        sids.push(open_when_ready(&http, &url(p)).await);
    }
    // Idle: the servers started, one client session each, then nothing for 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = [rss_mib(procs[0].id()), rss_mib(procs[1].id())];
    let mut lat: [Vec<Duration>; 2] = Default::default();
    for (k, p) in ports.iter().enumerate() {
        echo_calls(
            &http,
            &url(*p),
            sids[k].as_deref(),
            "demo--echo",
            300,
            wrong,
        )
        .await;
    }
    for _ in 0..calls.max(1000).div_ceil(250) {
        for (k, p) in ports.iter().enumerate() {
            lat[k].extend(
                echo_calls(
                    &http,
                    &url(*p),
                    sids[k].as_deref(),
                    "demo--echo",
                    250,
                    wrong,
                )
                .await,
            );
        }
    }
    // The page, as a browser loads it: the HTML, then its script and style sheet.
    let base = format!("http://127.0.0.1:{}", ports[1]);
    let mut page = vec![];
    for _ in 0..50 {
        let t = Instant::now();
        for path in ["/admin/", "/admin/assets/app.js", "/admin/assets/app.css"] {
            let r = http
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("page");
            assert!(r.status().is_success(), "{path}");
            let _ = r.bytes().await;
        }
        page.push(t.elapsed());
    }
    let login = http
        .post(format!("{base}/admin/api/login"))
        .json(&serde_json::json!({ "username": "admin", "password": "bench-password-1" }))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .to_owned();
    let mut api = vec![];
    for _ in 0..50 {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/admin/api/servers"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("servers");
        assert!(r.status().is_success());
        let _ = r.bytes().await;
        api.push(t.elapsed());
    }
    let after = rss_mib(procs[1].id());
    for mut c in procs {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        format!(
            "| console off | {:.1} | {:.0?} | {:.0?} | | |",
            idle[0],
            pct(&mut lat[0], 0.5),
            pct(&mut lat[0], 0.99)
        ),
        format!(
            "| console on (--admin), idle | {:.1} (+{:.1}) | {:.0?} | {:.0?} | {:.1?} / {:.1?} | {:.1?} / {:.1?} |",
            idle[1],
            idle[1] - idle[0],
            pct(&mut lat[1], 0.5),
            pct(&mut lat[1], 0.99),
            pct(&mut page, 0.5),
            pct(&mut page, 0.99),
            pct(&mut api, 0.5),
            pct(&mut api, 0.99),
        ),
        format!("| console on, after 100 page and API loads | {after:.1} | | | | |"),
    ]
}

fn bench_peer(rel: &str) -> Option<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".peers/bench")
        .join(rel);
    p.exists().then(|| p.display().to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = args
        .iter()
        .position(|a| a == "--http-echo")
        .and_then(|i| args.get(i + 1))
    {
        http_echo_server(port.parse().expect("port")).await;
        return;
    }
    if let Some(port) = args
        .iter()
        .position(|a| a == "--sse-floor")
        .and_then(|i| args.get(i + 1))
    {
        sse_floor_server(port.parse().expect("port")).await;
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return; // built by `cargo test --all-targets`; the figures come from `cargo bench`
    }
    let calls: u64 = args
        .iter()
        .skip_while(|a| *a != "--calls")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let only: Option<String> = args.iter().skip_while(|a| *a != "--only").nth(1).cloned();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let wrong = Arc::new(AtomicU64::new(0));
    let me = std::env::current_exe()
        .expect("own path")
        .display()
        .to_string();
    let mut rows: Vec<Row> = vec![];
    let mut counted = 0u64;
    let mut tally = |rows: &mut Vec<Row>, mut row: Row| {
        let now = wrong.load(Ordering::Relaxed);
        row.wrong = now - counted;
        counted = now;
        rows.push(row);
    };

    if wanted("stdio") {
        tally(
            &mut rows,
            stdio_row(
                "echo server over stdio, no proxy (stdio floor)",
                BIN,
                &["--demo-server"],
                calls,
                &wrong,
            ),
        );
    }
    let floor_port = free_port();
    let floor = spawn(&me, &["--http-echo", &floor_port.to_string()]);
    let floor_url = format!("http://127.0.0.1:{floor_port}/mcp");
    if wanted("floor") {
        let port = free_port();
        let server = spawn(&me, &["--http-echo", &port.to_string()]);
        tally(
            &mut rows,
            http_row(
                "native HTTP echo, no proxy (HTTP floor)",
                server,
                &format!("http://127.0.0.1:{port}/mcp"),
                calls,
                false,
                wrong.clone(),
            )
            .await,
        );
    }
    if wanted("mcp-proxy") {
        let (server, port) = proxy_before_demo("legacy");
        tally(
            &mut rows,
            http_row(
                "mcp-proxy, Streamable HTTP",
                server,
                &format!("http://127.0.0.1:{port}/mcp"),
                calls,
                true,
                wrong.clone(),
            )
            .await,
        );
        let (server, port) = proxy_before_demo("legacy");
        tally(
            &mut rows,
            sse_row(
                "mcp-proxy, HTTP+SSE",
                server,
                &format!("http://127.0.0.1:{port}"),
                calls,
                wrong.clone(),
            )
            .await,
        );
        // Wait for the floor to listen, then put the stdio front before it.
        let _ = open(&client(), &floor_url).await;
        tally(
            &mut rows,
            stdio_row(
                "mcp-proxy URL (stdio → remote HTTP floor)",
                BIN,
                &[&floor_url, "--log-level", "warn"],
                calls,
                &wrong,
            ),
        );
    }
    if wanted("python") {
        match bench_peer("venv/bin/mcp-proxy") {
            Some(py) => {
                let port = free_port();
                let p = port.to_string();
                let server = spawn(&py, &["--port", &p, "--", BIN, "--demo-server"]);
                tally(
                    &mut rows,
                    http_row(
                        "Python mcp-proxy 0.13.0, Streamable HTTP",
                        server,
                        &format!("http://127.0.0.1:{port}/mcp"),
                        calls,
                        true,
                        wrong.clone(),
                    )
                    .await,
                );
            }
            None => eprintln!("Python mcp-proxy not installed: run scripts/install-bench-peers"),
        }
    }
    if wanted("supergateway") {
        match bench_peer("node/node_modules/supergateway/dist/index.js") {
            Some(sg) => {
                let port = free_port();
                let p = port.to_string();
                let cmd = format!("{BIN} --demo-server");
                let server = spawn(
                    "node",
                    &[
                        &sg,
                        "--stdio",
                        &cmd,
                        "--outputTransport",
                        "streamableHttp",
                        "--stateful",
                        "--port",
                        &p,
                        "--logLevel",
                        "none",
                    ],
                );
                tally(
                    &mut rows,
                    http_row(
                        "supergateway 4.0.0 (stateful), Streamable HTTP",
                        server,
                        &format!("http://127.0.0.1:{port}/mcp"),
                        calls,
                        true,
                        wrong.clone(),
                    )
                    .await,
                );
            }
            None => eprintln!("supergateway not installed: run scripts/install-bench-peers"),
        }
    }
    let gateway = if wanted("merged") {
        gateway_rows(calls, &wrong).await
    } else {
        vec![]
    };
    let mut large = vec![];
    if wanted("large") {
        let port = free_port();
        let server = spawn(&me, &["--http-echo", &port.to_string()]);
        let floor_url = format!("http://127.0.0.1:{port}/mcp");
        large.push(
            big_echo_row(
                "native HTTP echo, no proxy (HTTP floor)",
                server,
                &floor_url,
                50,
                &wrong,
            )
            .await,
        );
        for era in ["legacy", "auto"] {
            let (server, port) = proxy_before_demo(era);
            let url = format!("http://127.0.0.1:{port}/mcp");
            let name = format!("mcp-proxy, Streamable HTTP, --server-era {era}");
            large.push(big_echo_row(&name, server, &url, 50, &wrong).await);
        }
    }
    let parked = if wanted("park") {
        park_calls(5, 1000).await
    } else {
        vec![]
    };
    let mut sse_open = vec![];
    if wanted("sse-open") {
        let port = free_port();
        let mut server = spawn(&me, &["--sse-floor", &port.to_string()]);
        let took = open_sse_sessions(&format!("http://127.0.0.1:{port}"), 100, 10).await;
        sse_open.push(format!(
            "| native SSE endpoint, no proxy (SSE floor) | {took:.1?} |"
        ));
        let _ = server.kill();
        let _ = server.wait();
        let (mut server, port) = proxy_before_demo("legacy");
        let took = open_sse_sessions(&format!("http://127.0.0.1:{port}"), 100, 10).await;
        sse_open.push(format!("| mcp-proxy, HTTP+SSE | {took:.1?} |"));
        let _ = server.kill();
        let _ = server.wait();
    }
    let mut eras = vec![];
    if wanted("era") {
        for (c, srv) in [
            ("legacy", "legacy"),
            ("legacy", "auto"),
            ("modern", "legacy"),
            ("modern", "auto"),
        ] {
            eras.push(era_row(c, srv, calls, &wrong).await);
        }
    }
    let telemetry = if wanted("telemetry") {
        telemetry_rows(calls, &wrong).await
    } else {
        vec![]
    };
    let auth = if wanted("inbound") {
        auth_rows(calls, &wrong).await
    } else {
        vec![]
    };
    let oauth = if wanted("oauth") {
        oauth_rows(calls, &wrong).await
    } else {
        vec![]
    };
    let admin = if wanted("admin") {
        admin_rows(calls, &wrong).await
    } else {
        vec![]
    };
    let mut floor = floor;
    let _ = floor.kill();
    let _ = floor.wait();

    println!();
    println!(
        "| row | p50 | p99 | p50 100 KiB | calls/s 16 | calls/s 64 | calls/s 16→1 session | calls/s 100 KiB echo, 8 sessions | calls/s 100 KiB results, 8 sessions | RSS idle MiB | RSS 100 sessions | RSS 1,000 sessions | RSS 1,000 incl. children | processes | first answer | wrong answers |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &rows {
        r.print();
    }
    let find = |needle: &str| rows.iter().find(|r| r.name.contains(needle));
    if let (Some(floor), Some(ours)) = (find("(HTTP floor)"), find("mcp-proxy, Streamable")) {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!();
        println!(
            "mcp-proxy / HTTP floor: p50 {:.2}x (target ≤ 1.5x)",
            ratio(ours.p50, floor.p50)
        );
        if let (Some(a), Some(b)) = (ours.t64, floor.t64) {
            println!(
                "mcp-proxy / HTTP floor: throughput at 64 clients {:.0}% (target ≥ 60%)",
                100.0 * a / b
            );
        }
        println!(
            "mcp-proxy: idle RSS {:.1} MiB (target ≤ 6); 1,000 sessions add {:.1} MiB (target ≤ 30)",
            ours.rss_idle,
            ours.rss_1000.unwrap_or(0.0) - ours.rss_idle
        );
        if let (Some(a), Some(b)) = (ours.t8big, floor.t8big) {
            println!(
                "mcp-proxy / HTTP floor: 100 KiB echoes with 8 sessions {:.2}x (target ≥ 0.7x)",
                a / b
            );
        }
        if let (Some(a), Some(b)) = (ours.t8results, floor.t8results) {
            println!(
                "mcp-proxy / HTTP floor: 100 KiB results with 8 sessions {:.2}x (target ≥ 0.7x)",
                a / b
            );
        }
        if let Some(url) = find("mcp-proxy URL") {
            println!(
                "mcp-proxy URL: p50 {:.0?} = HTTP floor + {:.0?} ({:.2}x the floor's p50 added; target ≤ 1.5x)",
                url.p50,
                url.p50.saturating_sub(floor.p50),
                ratio(url.p50.saturating_sub(floor.p50), floor.p50)
            );
        }
    }
    if !eras.is_empty() {
        println!();
        println!(
            "tools/call through mcp-proxy /mcp, by protocol era (demo server behind, both eras):"
        );
        println!();
        println!("| pair | what the proxy does | p50 | p99 | calls/s 16 |");
        println!("| --- | --- | --- | --- | --- |");
        for e in &eras {
            println!("{e}");
        }
    }
    if !telemetry.is_empty() {
        println!();
        println!(
            "tools/call through mcp-proxy /mcp with and without metrics and tracing (demo server behind):"
        );
        println!();
        println!("| row | p50 | p99 | p50 / off | calls/s, 16 clients | vs off |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for t in &telemetry {
            println!("{t}");
        }
    }
    if !auth.is_empty() {
        println!();
        println!(
            "tools/call through mcp-proxy with and without inbound auth (demo server behind):"
        );
        println!();
        println!("| row | calls | p50 | p99 | p50 / no auth |");
        println!("| --- | --- | --- | --- | --- |");
        for a in &auth {
            println!("{a}");
        }
    }
    if !oauth.is_empty() {
        println!();
        println!(
            "tools/call through mcp-proxy to a server that checks OAuth tokens (TypeScript SDK, JWTs of oidc-provider):"
        );
        println!();
        println!("| row | calls | p50 | p99 | slowest | |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for o in &oauth {
            println!("{o}");
        }
    }
    if !admin.is_empty() {
        println!();
        println!(
            "The admin console (a gateway of one demo server; tools/call on /mcp; the page: HTML, script and style sheet, p50 / p99):"
        );
        println!();
        println!("| row | proxy RSS MiB | p50 | p99 | page load | GET /admin/api/servers |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for a in &admin {
            println!("{a}");
        }
    }
    if !large.is_empty() {
        println!();
        println!(
            "One large message echoed through /mcp (peak resident memory of the server process, VmHWM):"
        );
        println!();
        println!("| row | message | idle peak | peak | peak / message | answer in |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for l in &large {
            println!("{l}");
        }
    }
    if !parked.is_empty() {
        println!();
        println!(
            "Parking 5,000 2026-07-28 calls that wait for input, 1,000 at a time, one after the other:"
        );
        println!();
        println!("| calls | time | proxy RSS after |");
        println!("| --- | --- | --- |");
        for l in &parked {
            println!("{l}");
        }
    }
    if !sse_open.is_empty() {
        println!();
        println!(
            "Opening 100 HTTP+SSE sessions, 10 at a time (until each one's `endpoint` event):"
        );
        println!();
        println!("| row | time |");
        println!("| --- | --- |");
        for l in &sse_open {
            println!("{l}");
        }
    }
    if !gateway.is_empty() {
        println!();
        println!("The merged view (`--config`, demo servers of 50 tools each):");
        println!();
        println!(
            "| servers | tools | first merged tools/list | later tools/list p50 | p99 | tools/call p50 through the merge | the same server alone (/servers/s1/mcp) | 2026-07-28 tools/call through the merge | proxy RssAnon MiB |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for g in &gateway {
            println!("{g}");
        }
    }
    println!("wrong answers in all: {}", wrong.load(Ordering::Relaxed));
}
