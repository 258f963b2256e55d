//! Latency, throughput and memory of the proxy in front of the built-in demo server.
//!
//! `cargo bench` (or `cargo bench -- --calls N`). Under `cargo test` it does nothing.
//!
//! Rows: the demo server over stdio directly (the floor), and mcp-proxy serving it over
//! Streamable HTTP (JSON answers) to one session, to 16 and 64 concurrent sessions, and to 16
//! clients sharing one session. Every answer is checked against its request.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-proxy");
const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;

fn call(id: u64, msg: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{msg}"}}}}}}"#
    )
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn stdio_floor(calls: u64) -> (Duration, Duration) {
    let mut child = Command::new(BIN)
        .arg("--demo-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("demo server");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    writeln!(stdin, "{INIT}").unwrap();
    out.read_line(&mut line).unwrap();
    let mut lat = vec![];
    for i in 1..=calls {
        let msg = format!("m{i}");
        let t = Instant::now();
        writeln!(stdin, "{}", call(i, &msg)).unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        lat.push(t.elapsed());
        assert!(
            line.contains(&format!("\"id\":{i},")) && line.contains(&msg),
            "wrong answer: {line}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: String,
) -> (Option<String>, String) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("post");
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (sid, resp.text().await.expect("body"))
}

async fn open(client: &reqwest::Client, url: &str) -> String {
    let (sid, _) = post(client, url, None, INIT.to_owned()).await;
    let sid = sid.expect("session id");
    post(
        client,
        url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
    )
    .await;
    sid
}

/// `clients` tasks, `per` calls each, over `sessions` distinct sessions; calls/s.
async fn throughput(
    url: &str,
    clients: usize,
    sessions: usize,
    per: u64,
    wrong: Arc<AtomicU64>,
) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let mut sids = vec![];
    for _ in 0..sessions {
        sids.push(open(&client, url).await);
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
                let id = (c as u64) * 1_000_000 + i;
                let msg = format!("c{c}-{i}");
                let (_, body) = post(&client, &url, Some(&sid), call(id, &msg)).await;
                if !(body.contains(&format!("\"id\":{id},")) && body.contains(&msg)) {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (clients as u64 * per) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --all-targets`; the figures come from `cargo bench`
    }
    let calls: u64 = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (f50, f99) = stdio_floor(calls);
    println!("| row | p50 | p99 | calls/s |");
    println!("| --- | --- | --- | --- |");
    println!("| demo server over stdio, direct (floor) | {f50:.0?} | {f99:.0?} | |");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let mut proxy = Command::new(BIN)
        .args([
            "--port",
            &port.to_string(),
            "--log-level",
            "warn",
            "--",
            BIN,
            "--demo-server",
        ])
        .spawn()
        .expect("proxy");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = reqwest::Client::new();
    let sid = loop {
        if let Ok(r) = client
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INIT)
            .send()
            .await
        {
            let s = r
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = r.text().await;
            break s.expect("session");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let first = start.elapsed();
    let idle = rss_kib(proxy.id());
    let mut lat = vec![];
    for i in 1..=calls {
        let msg = format!("m{i}");
        let t = Instant::now();
        let (_, body) = post(&client, &url, Some(&sid), call(i, &msg)).await;
        lat.push(t.elapsed());
        assert!(
            body.contains(&format!("\"id\":{i},")) && body.contains(&msg),
            "wrong answer: {body}"
        );
    }
    println!(
        "| mcp-proxy, Streamable HTTP, 1 client | {:.0?} | {:.0?} | |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    let wrong = Arc::new(AtomicU64::new(0));
    for (clients, sessions) in [(16, 16), (64, 64), (16, 1)] {
        let per = (calls * 4 / clients as u64).max(50);
        let rate = throughput(&url, clients, sessions, per, wrong.clone()).await;
        println!("| mcp-proxy, {clients} clients, {sessions} session(s) | | | {rate:.0} |");
    }
    let busy = rss_kib(proxy.id());
    let mut sessions = vec![];
    for _ in 0..1000 {
        sessions.push(open(&client, &url).await);
    }
    let thousand = rss_kib(proxy.id());
    println!();
    println!("first answer after start (incl. child start): {first:.1?}");
    println!(
        "RSS idle: {:.1} MiB; after load: {:.1} MiB; with 1,000 more sessions: {:.1} MiB",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
        thousand as f64 / 1024.0
    );
    println!("wrong answers: {}", wrong.load(Ordering::Relaxed));
    let _ = proxy.kill();
    let _ = proxy.wait();
}
