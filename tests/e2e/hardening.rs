//! A failing server, a hostile client or an early end of input must never take the proxy
//! down, leak a secret or lose an answer.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::*;

fn misbehaving(mode: &str) -> Vec<String> {
    vec![
        python(),
        repo_file("tests/servers/misbehaving.py"),
        mode.to_owned(),
    ]
}

/// Zombie children of `pid` (ended, never waited for).
fn zombies_of(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 1..].to_owned();
                    let mut f = rest.split_whitespace();
                    let state = f.next()?.to_owned();
                    let parent: u32 = f.next()?.parse().ok()?;
                    Some(state == "Z" && parent == pid)
                })
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn a_server_that_keeps_failing_is_restarted_calmly() {
    // One that exits at once, and one that exits on `initialize` (from a config file, with
    // no era probe).
    let config = temp_file(
        "exits-on-init",
        &json!({ "mcpServers": { "bad": { "command": python(), "args": [repo_file("tests/servers/misbehaving.py"), "exit-on-init"] } } })
            .to_string(),
    );
    let mut quick = Proxy::start(&["--", "/bin/false"]);
    let mut on_init = Proxy::start(&["--server-era", "legacy", "--config", &config]);
    std::thread::sleep(Duration::from_secs(12));
    for (what, proxy) in [
        ("/bin/false", &mut quick),
        ("exit on initialize", &mut on_init),
    ] {
        let log = proxy.run.log_text();
        let starts = log.matches("started server process").count();
        // Starts at 0, 1, 3 and 7 s (and the era probe's second start of /bin/false).
        assert!(
            (3..=8).contains(&starts),
            "{what}: {starts} starts in 12 s:\n{log}"
        );
        assert_eq!(zombies_of(proxy.run.child.id()), 0, "{what}: zombies");
        let health = reqwest::get(proxy.url("/healthz")).await.expect("healthz");
        assert_eq!(health.status(), 200, "{what}");
        let status = proxy.status().await;
        let server = &status["servers"][0];
        assert_eq!(server["state"], "failed", "{what}: {status}");
        let restarts = server["restarts"].as_u64().unwrap_or(0);
        assert!(restarts >= 2, "{what}: restarts not counted: {status}");
        // One chain of restarts: each wait is twice the one before.
        assert!(
            log.contains("again in 1s")
                && log.contains("again in 2s")
                && log.contains("again in 4s"),
            "{what}:\n{log}"
        );
        assert_eq!(
            log.matches("again in 2s").count(),
            1,
            "{what}: more than one chain:\n{log}"
        );
        let t = Instant::now();
        let exit = proxy.run.terminate().expect("SIGTERM ends the proxy");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            t.elapsed()
        );
        assert!(exit.success(), "{what}: {exit:?}");
    }
}

#[tokio::test]
async fn secrets_in_a_server_url_reach_no_client_and_no_log() {
    let down = free_port();
    let url = format!("http://someone:SECRETPW@127.0.0.1:{down}/mcp?key=SECRETKEY&x=1");
    let config = temp_file(
        "secret-url",
        &json!({ "mcpServers": { "remote": { "url": url } } }).to_string(),
    );
    let own = Proxy::start(&["--debug", &url]);
    let gateway = Proxy::start(&["--debug", "--config", &config]);
    let mut bodies = String::new();
    for (proxy, path) in [
        (&own, "/mcp"),
        (&gateway, "/servers/remote/mcp"),
        (&gateway, "/mcp"),
    ] {
        let r = post(&proxy.url(path), None, INIT, &[]).await;
        bodies.push_str(&r.body);
        if let Some(sid) = r.header("mcp-session-id") {
            let r = post(&proxy.url(path), Some(&sid), &call(1, "x", json!({})), &[]).await;
            bodies.push_str(&r.body);
        }
        let mut sse = reqwest::Client::new()
            .get(proxy.url(path.replace("mcp", "sse").as_str()))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("GET sse");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(2), sse.chunk()).await
        {
            bodies.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    bodies.push_str(&gateway.status().await.to_string());
    // The error the client got does name the server (redacted).
    assert!(
        bodies.contains("cannot connect to http://***@127.0.0.1"),
        "{bodies}"
    );
    let logs = format!("{}\n{}", own.run.log_text(), gateway.run.log_text());
    for secret in ["SECRETPW", "SECRETKEY", "someone"] {
        assert!(
            !bodies.contains(secret),
            "{secret} reached a client: {bodies}"
        );
        assert!(!logs.contains(secret), "{secret} reached the log:\n{logs}");
    }
}

#[tokio::test]
async fn per_client_processes_and_sessions_are_capped() {
    let mut proxy = Proxy::demo(&["--per-client", "--max-processes", "3"]);
    let url = proxy.url("/mcp");
    let demo_processes = || {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).ends_with("--demo-server\0"))
                    .unwrap_or(false)
            })
            .count()
    };
    let before = demo_processes();
    // Bare sessions: each new one past the cap ends the one idle the longest.
    let mut sids = vec![];
    for _ in 0..6 {
        sids.push(session(&url).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        demo_processes() - before <= 3,
        "more than 3 server processes"
    );
    let old = post(
        &url,
        Some(&sids[0]),
        &call(1, "echo", json!({"message": "x"})),
        &[],
    )
    .await;
    assert_eq!(
        old.status, 404,
        "the oldest idle session was ended: {}",
        old.body
    );
    // Three busy sessions: a fourth is refused, and the busy ones are served.
    let busy: Vec<String> = sids[3..].to_vec();
    let mut calls = vec![];
    for (i, sid) in busy.iter().enumerate() {
        let (url, sid) = (url.clone(), sid.clone());
        calls.push(tokio::spawn(async move {
            call_tool(&url, &sid, 10 + i as u64, "sleep", json!({"ms": 2000})).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = post(&url, None, INIT, &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("--max-processes"), "{}", refused.body);
    for c in calls {
        let a = c.await.expect("call");
        assert!(a.to_string().contains("slept"), "{a}");
    }
    proxy
        .run
        .wait_log("--max-processes", Duration::from_secs(5));
    let t = Instant::now();
    assert!(proxy.run.terminate().is_some_and(|s| s.success()));
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn sessions_and_parked_calls_are_capped() {
    // (The proxy parks calls for servers of the session-based revisions.)
    let proxy = Proxy::demo(&[
        "--max-sessions",
        "5",
        "--max-parked",
        "3",
        "--server-era",
        "legacy",
    ]);
    let url = proxy.url("/mcp");
    for _ in 0..20 {
        session(&url).await;
    }
    let status = proxy.status().await;
    assert!(
        status["servers"][0]["sessions"].as_u64().unwrap_or(99) <= 5,
        "{status}"
    );
    // 2026-07-28 calls that wait for input: the fourth makes the first give way.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
    });
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "elicit"),
    ];
    let mut states = vec![];
    for i in 0..4u64 {
        let r = post(
            &url,
            None,
            &rpc(
                i,
                "tools/call",
                json!({"name": "elicit", "arguments": {}, "_meta": meta}),
            ),
            &headers,
        )
        .await;
        let a = answer(&r);
        assert_eq!(a["result"]["resultType"], "input_required", "{a}");
        let key = a["result"]["inputRequests"]
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .expect("an input request");
        states.push((a["result"]["requestState"].clone(), key));
    }
    assert_eq!(proxy.status().await["servers"][0]["parkedCalls"], 3);
    let retry = |i: u64| {
        rpc(
            i,
            "tools/call",
            json!({"name": "elicit", "arguments": {}, "_meta": meta, "requestState": states[i as usize].0,
                   "inputResponses": {states[i as usize].1.clone(): {"action": "accept", "content": {"name": "Ada"}}}}),
        )
    };
    let first = answer(&post(&url, None, &retry(0), &headers).await);
    assert_eq!(first["error"]["code"], -32602, "{first}");
    let last = answer(&post(&url, None, &retry(3), &headers).await);
    assert!(last.to_string().contains("Ada"), "{last}");
}

/// Whether the server closed `conn` (a read returns end of input) within `within`.
fn closed_within(conn: &mut std::net::TcpStream, within: Duration) -> bool {
    conn.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_cut_off_and_healthz_answers() {
    let proxy = Proxy::demo(&[
        "--header-timeout",
        "2",
        "--body-timeout",
        "2",
        "--max-connections",
        "20",
    ]);
    let addr = ("127.0.0.1", proxy.port);
    // 30 connections that send a request line and one header, then nothing.
    let mut stalled = vec![];
    for _ in 0..30 {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .expect("write");
        stalled.push(c);
    }
    // Past the cap, new connections take the stalled ones' places: /healthz answers.
    for _ in 0..3 {
        let t = Instant::now();
        let r = reqwest::get(proxy.url("/healthz")).await.expect("healthz");
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    // The ones left are closed after the header timeout.
    let last = stalled.last_mut().expect("a stalled connection");
    assert!(
        closed_within(last, Duration::from_secs(5)),
        "a stalled connection stayed open"
    );
    // A body shorter than its Content-Length, and a chunked body that never ends.
    for head in [
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\"",
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"jso\r\n",
    ] {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.write_all(head.as_bytes()).expect("write");
        c.set_read_timeout(Some(Duration::from_secs(6)))
            .expect("timeout");
        let t = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&got).contains("--body-timeout") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[test]
fn the_end_of_input_loses_no_answer() {
    let upstream = Proxy::demo(&[]);
    let config = temp_file(
        "eof",
        &json!({ "mcpServers": { "demo": { "command": BIN, "args": ["--demo-server"] } } })
            .to_string(),
    );
    for (what, args, tool) in [
        ("mcp-proxy URL", vec![upstream.url("/mcp")], "sleep"),
        (
            "mcp-proxy --config",
            vec!["--config".to_owned(), config],
            "demo--sleep",
        ),
    ] {
        let mut c = LineClient::start(&args);
        c.send(INIT);
        c.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        // The last line without a newline, and the input ends at once.
        let last = call(7, tool, json!({"ms": 300}));
        c.send_raw(last.as_bytes());
        c.close_input();
        let got = c.until_answer(json!(7), Duration::from_secs(20));
        assert!(
            got.last()
                .is_some_and(|a| a.to_string().contains("slept 300 ms")),
            "{what}: {got:?}"
        );
        let status = exits_within(&mut c, Duration::from_secs(10)).expect("the proxy ended");
        assert!(status.success(), "{what}: {status:?}");
    }
}

#[tokio::test]
async fn a_long_call_outlives_a_short_session_timeout() {
    let proxy = Proxy::demo(&["--session-timeout", "2"]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let a = call_tool(&url, &sid, 1, "sleep", json!({"ms": 5000})).await;
    assert!(a.to_string().contains("slept 5000 ms"), "{a}");
    // Idle now: it expires.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = post(
        &url,
        Some(&sid),
        &call(2, "echo", json!({"message": "x"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn a_request_over_the_size_limit_is_refused_by_its_id() {
    let upstream = Proxy::demo(&[]);
    let mut c = LineClient::start(&[
        "--max-message-size".into(),
        "1K".into(),
        upstream.url("/mcp"),
    ]);
    c.send(&call(41, "echo", json!({"message": "x".repeat(5000)})));
    let got = c.next(Duration::from_secs(10)).expect("an answer");
    assert_eq!(got["id"], 41, "{got}");
    assert_eq!(got["error"]["code"], -32002, "{got}");
}

#[tokio::test]
async fn a_server_that_closes_its_output_is_ended_and_started_again() {
    let server = misbehaving("close-stdout");
    let mut args = vec![
        "--server-era".to_owned(),
        "legacy".to_owned(),
        "--timeout".to_owned(),
        "60".to_owned(),
        "--".to_owned(),
    ];
    args.extend(server);
    let mut all = vec!["--port".to_owned(), "0".to_owned()];
    all.extend(args);
    let proxy = Proxy::start_raw(&all);
    let url = proxy.url("/mcp");
    let r = post(&url, None, INIT, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    proxy
        .run
        .wait_log("closed its output", Duration::from_secs(10));
    let sid = r.header("mcp-session-id").expect("session");
    let t = Instant::now();
    let a = call_tool(&url, &sid, 1, "noop", json!({})).await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the call waited {:?}",
        t.elapsed()
    );
    assert!(a["error"].is_object() || a["result"].is_object(), "{a}");
    proxy
        .run
        .wait_log("starting the server again", Duration::from_secs(10));
    let status = proxy.status().await;
    assert!(
        status["servers"][0]["restarts"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
}

#[tokio::test]
async fn a_cancelled_request_ends_its_post() {
    let proxy = Proxy::demo(&[]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let (u, s) = (url.clone(), sid.clone());
    let t = Instant::now();
    let slow = tokio::spawn(async move {
        post(&u, Some(&s), &call(5, "sleep", json!({"ms": 20000})), &[]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"changed my mind"}}"#,
        &[],
    )
    .await;
    assert_eq!(n.status, 202);
    let r = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the cancelled POST ended")
        .expect("post");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(5));
    // The demo server was told.
    let stats = call_tool(&url, &sid, 6, "stats", json!({})).await;
    assert!(stats.to_string().contains("cancelled=1"), "{stats}");
}

#[tokio::test]
async fn a_request_id_already_in_flight_is_refused() {
    let proxy = Proxy::demo(&[]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let (u, s) = (url.clone(), sid.clone());
    let first =
        tokio::spawn(async move { call_tool(&u, &s, 9, "sleep", json!({"ms": 1000})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dup = post(
        &url,
        Some(&sid),
        &call(9, "echo", json!({"message": "x"})),
        &[],
    )
    .await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    let e = dup.json();
    assert_eq!(e["id"], 9, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already in flight"),
        "{e}"
    );
    let a = first.await.expect("first");
    assert!(a.to_string().contains("slept 1000 ms"), "{a}");
    // On stdio too.
    let mut c = LineClient::start(&[proxy.url("/mcp")]);
    c.send(INIT);
    c.until_answer(json!(0), Duration::from_secs(10));
    c.send(&call(3, "sleep", json!({"ms": 500})));
    c.send(&call(3, "echo", json!({"message": "x"})));
    let got = c.until_answer(json!(3), Duration::from_secs(10));
    assert!(
        got.last().is_some_and(|m| m["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already in flight")),
        "{got:?}"
    );
    let got = c.until_answer(json!(3), Duration::from_secs(10));
    assert!(
        got.last()
            .is_some_and(|m| m.to_string().contains("slept 500 ms")),
        "{got:?}"
    );
}

#[test]
fn config_files_that_cannot_be_are_refused_at_once() {
    let dots = temp_file("dots", r#"{ "mcpServers": { "..": { "command": "x" } } }"#);
    let fifo = std::env::temp_dir().join(format!("mcp-proxy-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    for (file, says) in [
        (
            dots.as_str(),
            ":1: mcpServers...: `..` cannot be a server name",
        ),
        ("/dev/zero", "/dev/zero: not a regular file"),
        (fifo.to_str().unwrap_or(""), "not a regular file"),
    ] {
        let t = Instant::now();
        let (ok, out) = run_to_end(
            BIN,
            &["--port".into(), "0".into(), "--config".into(), file.into()],
            Duration::from_secs(10),
        );
        assert!(!ok, "{file}: {out}");
        assert!(out.contains(says), "{file}: {out}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{file}: {:?}",
            t.elapsed()
        );
    }
    let _ = std::fs::remove_file(&fifo);
}

#[test]
fn process_wide_bounds_are_flags() {
    let config = temp_file(
        "bounded",
        r#"{ "mcpServers": { "one": { "command": "mcp-proxy", "args": ["--demo-server"] } } }"#,
    );
    // Under the default (4 MiB) the file would pass; a smaller bound refuses it, by name.
    let (ok, out) = run_to_end(
        BIN,
        &[
            "--port".into(),
            "0".into(),
            "--max-config-size".into(),
            "50".into(),
            "--config".into(),
            config.clone(),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("--max-config-size"), "{out}");
    assert!(out.contains(&config), "{out}");
    for (flag, value) in [
        ("--max-config-size", "lots"),
        ("--pipe-size", "huge"),
        ("--client-queue", "0"),
        ("--max-streams", "0"),
    ] {
        let (ok, out) = run_to_end(
            BIN,
            &["--port".into(), "0".into(), flag.into(), value.into()],
            Duration::from_secs(10),
        );
        assert!(!ok, "{flag} {value}: {out}");
        assert!(
            out.contains(flag.trim_start_matches('-')),
            "{flag} {value}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_changed_storm_reaches_clients_as_a_trickle() {
    let config = temp_file(
        "storm",
        &json!({ "mcpServers": {
            "storm": { "command": python(), "args": [repo_file("tests/servers/misbehaving.py"), "list-changed-storm"] },
            "garbage": { "command": python(), "args": [repo_file("tests/servers/misbehaving.py"), "garbage"] },
        } })
        .to_string(),
    );
    let proxy = Proxy::start(&["--config", &config, "--server-era", "legacy"]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let mut stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET stream");
    let end = Instant::now() + Duration::from_secs(3);
    let mut seen = String::new();
    while Instant::now() < end {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(200), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let told = seen.matches("notifications/tools/list_changed").count();
    // At most one each 250 ms (and the server sent about 3,000).
    assert!((1..=16).contains(&told), "{told} list_changed in 3 s");
    // Neither the storm nor the garbage fills the log.
    let lines = proxy.run.log_text().lines().count();
    assert!(lines < 80, "{lines} log lines:\n{}", proxy.run.log_text());
    let garbage = proxy
        .run
        .log_text()
        .matches("wrote a line that is not JSON-RPC")
        .count();
    assert!(
        (1..=5).contains(&garbage),
        "{garbage} lines about the garbage"
    );
}

#[tokio::test]
async fn smaller_things() {
    let proxy = Proxy::demo(&[]);
    // An Mcp-Session-Id that is not valid UTF-8 is said to be invalid, not missing.
    let r = reqwest::Client::new()
        .post(proxy.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "mcp-session-id",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").expect("header"),
        )
        .body(call(1, "echo", json!({"message": "x"})))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("not a valid session id"), "{body}");
    // A batch on /sse is answered as one array.
    let mut sse = reqwest::Client::new()
        .get(proxy.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    let first =
        String::from_utf8_lossy(&sse.chunk().await.expect("chunk").expect("endpoint")).to_string();
    let endpoint = first
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint")
        .trim()
        .to_owned();
    let post_url = proxy.url(&endpoint);
    let send = async |body: String| {
        reqwest::Client::new()
            .post(&post_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post")
            .status()
    };
    assert_eq!(send(INIT.into()).await, 202);
    assert_eq!(
        send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into()).await,
        202
    );
    let batch = format!(
        "[{},{}]",
        call(21, "echo", json!({"message": "a"})),
        call(22, "sleep", json!({"ms": 200}))
    );
    assert_eq!(send(batch).await, 202);
    let mut seen = String::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !seen.contains("slept") {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), sse.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let array = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.starts_with('['))
        .unwrap_or_else(|| panic!("no array event: {seen}"));
    let answers: serde_json::Value = serde_json::from_str(array).expect("JSON array");
    assert_eq!(answers.as_array().map(Vec::len), Some(2), "{answers}");
    // A refused connection is not taken for a transport.
    let down = free_port();
    let mut c = LineClient::start(&[format!("http://127.0.0.1:{down}/mcp")]);
    c.send(INIT);
    c.until_answer(json!(0), Duration::from_secs(10));
    assert!(
        !c.run.log_text().contains("speaks Streamable HTTP"),
        "{}",
        c.run.log_text()
    );
}
