//! Bad input and faults, on the wire, against the built-in demo server.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde_json::json;

use crate::util::*;

#[tokio::test]
async fn bad_http_input_gets_clear_errors_and_the_session_keeps_working() {
    let p = Proxy::demo(&["--max-message-size", "4KiB"]);
    let mcp = p.url("/mcp");
    let sid = session(&mcp).await;

    let r = post(&mcp, Some(&sid), "{not json", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);

    let r = post(&mcp, Some(&sid), r#"{"jsonrpc":"2.0","id":1}"#, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32600);

    let r = post(&mcp, Some(&sid), &"x".repeat(5000), &[]).await;
    assert_eq!(r.status, 413);

    let r = post(
        &mcp,
        Some("no-such-session"),
        &call(1, "echo", json!({"message": "x"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 404);

    let r = post(&mcp, None, &call(1, "echo", json!({"message": "x"})), &[]).await;
    assert_eq!(r.status, 400, "missing session header");

    let r = reqwest::Client::new()
        .post(&mcp)
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(call(1, "echo", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let r = reqwest::Client::new()
        .post(&mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(call(1, "echo", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);

    let r = post(
        &mcp,
        Some(&sid),
        &call(2, "echo", json!({"message": "still here"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["content"][0]["text"], "still here");

    let r = post(
        &mcp,
        Some(&sid),
        &call(3, "echo", json!({})),
        &[("mcp-protocol-version", "1999-01-01")],
    )
    .await;
    assert_eq!(r.status, 400, "unsupported protocol version header");

    // An ended session is gone.
    let d = reqwest::Client::new()
        .delete(&mcp)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    let r = post(&mcp, Some(&sid), &call(4, "echo", json!({})), &[]).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn host_and_origin_are_checked_and_cors_opens_only_named_origins() {
    let p = Proxy::demo(&["--allow-origin", "https://app.example"]);
    let mcp = p.url("/mcp");
    let r = post(&mcp, None, INIT, &[("host", "evil.example:80")]).await;
    assert_eq!(r.status, 403, "DNS rebinding: foreign Host");
    let r = post(&mcp, None, INIT, &[("origin", "https://evil.example")]).await;
    assert_eq!(r.status, 403);
    let r = post(&mcp, None, INIT, &[("origin", "https://app.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert!(
        r.header("access-control-expose-headers")
            .unwrap_or_default()
            .contains("mcp-session-id")
    );
    let pre = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &mcp)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert!(pre.headers().get("access-control-allow-methods").is_some());
}

#[tokio::test]
async fn unknown_methods_and_fields_pass_through_byte_for_byte() {
    let p = Proxy::demo(&[]);
    let mcp = p.url("/mcp");
    let sid = session(&mcp).await;
    // The demo answers an unknown method with -32601: the request reached it, and the
    // error came back. Unknown members in params and _meta reach the server untouched:
    // `echo` returns the exact message text it got.
    let r = post(
        &mcp,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":"u-1","method":"vendor/custom","params":{"x":1.50}}"#,
        &[],
    )
    .await;
    assert_eq!(r.json()["error"]["code"], -32601);
    assert_eq!(r.json()["id"], "u-1");
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"é\u00e9 1.50"},"_meta":{"vendor.example/x":{"n":1e3}}},"extra":true}"#;
    let r = post(&mcp, Some(&sid), body, &[]).await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "éé 1.50");
    assert_eq!(r.json()["id"], 7);
}

#[tokio::test]
async fn cancellation_reaches_the_server_and_ended_sessions_cancel_their_calls() {
    let p = Proxy::demo(&[]);
    let mcp = p.url("/mcp");
    let sid = session(&mcp).await;
    let url = mcp.clone();
    let s2 = sid.clone();
    let slow = tokio::spawn(async move {
        post(
            &url,
            Some(&s2),
            &call(5, "sleep", json!({"ms": 20000})),
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = post(&mcp, Some(&sid), r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"user"}}"#, &[]).await;
    assert_eq!(c.status, 202);
    slow.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post(&mcp, Some(&sid), &call(6, "stats", json!({})), &[]).await;
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "cancelled=1",
        "{}",
        r.body
    );

    // A session that ends (DELETE) with a call in flight cancels it upstream.
    let other = session(&mcp).await;
    let url = mcp.clone();
    let o2 = other.clone();
    let slow = tokio::spawn(async move {
        post(
            &url,
            Some(&o2),
            &call(1, "sleep", json!({"ms": 20000})),
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    reqwest::Client::new()
        .delete(&mcp)
        .header("mcp-session-id", &other)
        .send()
        .await
        .unwrap();
    slow.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post(&mcp, Some(&sid), &call(7, "stats", json!({})), &[]).await;
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "cancelled=2",
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_broken_answer_stream_resumes_with_last_event_id() {
    let p = Proxy::demo(&[]);
    let mcp = p.url("/mcp");
    let sid = session(&mcp).await;
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":800},"_meta":{"progressToken":"t"}}}).to_string();
    let resp = reqwest::Client::new()
        .post(&mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // Read the first event, then drop the connection.
    let mut stream = resp;
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().expect("an event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    let last = seen
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("event id")
        .to_owned();
    let resumed = reqwest::Client::new()
        .get(&mcp)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), resumed.text())
        .await
        .unwrap()
        .unwrap();
    let reply = Reply {
        status: 200,
        headers: Default::default(),
        body: text,
    };
    let events = reply.events();
    assert!(
        events
            .iter()
            .any(|e| e["id"] == 9 && e["result"]["content"][0]["text"] == "slept 800 ms"),
        "{}",
        reply.body
    );
    assert!(
        !events.iter().any(|e| e["params"]["progress"] == 1),
        "the event before Last-Event-ID is not sent again"
    );
}

#[tokio::test]
async fn a_batch_is_answered_whole() {
    let p = Proxy::demo(&[]);
    let mcp = p.url("/mcp");
    let sid = session(&mcp).await;
    let batch = format!(
        "[{},{}]",
        call(1, "echo", json!({"message":"a"})),
        call(2, "add", json!({"a":1,"b":2}))
    );
    let r = post(&mcp, Some(&sid), &batch, &[]).await;
    assert_eq!(r.status, 200);
    let events = r.events();
    assert!(events.iter().any(|e| e["id"] == 1), "{}", r.body);
    assert!(
        events
            .iter()
            .any(|e| e["id"] == 2 && e["result"]["content"][0]["text"] == "3"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_crashed_server_fails_pending_and_new_requests_at_once() {
    let p = Proxy::demo(&[]);
    let mcp = p.url("/mcp");
    let sid = session(&mcp).await;
    let url = mcp.clone();
    let s2 = sid.clone();
    let pending = tokio::spawn(async move {
        post(
            &url,
            Some(&s2),
            &call(1, "sleep", json!({"ms": 60000})),
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let _ = post(
        &mcp,
        Some(&sid),
        &call(2, "crash", json!({"status": 3})),
        &[],
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("pending answered")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = if r.body.starts_with('{') {
        r.json().to_string()
    } else {
        r.events().iter().map(|e| e.to_string()).collect()
    };
    assert!(text.contains("exited with status 3"), "{text}");
    let r = post(
        &mcp,
        Some(&sid),
        &call(3, "echo", json!({"message": "x"})),
        &[],
    )
    .await;
    assert!(r.body.contains("exited with status 3"), "{}", r.body);

    // The server is started again (after 1 s); the same session goes on, and is told that
    // the server's lists may have changed.
    let get = reqwest::Client::new()
        .get(&mcp)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .expect("GET stream");
    let mut back = None;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let r = post(
            &mcp,
            Some(&sid),
            &call(10 + i, "echo", json!({"message": "again"})),
            &[],
        )
        .await;
        if r.body.contains("again") {
            back = Some(r);
            break;
        }
    }
    assert!(back.is_some(), "the server did not come back");
    let mut get = get;
    let first = tokio::time::timeout(Duration::from_secs(5), get.chunk())
        .await
        .expect("an event")
        .expect("chunk")
        .expect("data");
    assert!(
        String::from_utf8_lossy(&first).contains("list_changed"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let status: serde_json::Value = reqwest::get(p.url("/status"))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["servers"][0]["restarts"], 1, "{status}");
    assert_eq!(status["servers"][0]["state"], "ready", "{status}");
}

#[test]
fn a_missing_command_is_one_clear_line() {
    let (ok, out) = run_to_end(
        BIN,
        &[
            "--port".into(),
            "0".into(),
            "--".into(),
            "no-such-command-xyz".into(),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok);
    let line = out
        .lines()
        .find(|l| l.contains("no-such-command-xyz"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("command not found") && line.contains("PATH="),
        "{line}"
    );
}

#[test]
fn sigterm_ends_the_proxy_and_its_server_process() {
    let mut p = Proxy::demo(&[]);
    let line = p
        .run
        .wait_log("started server process", Duration::from_secs(10));
    let pid: i32 = line
        .split("pid=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .expect("pid in log");
    assert!(pid_alive(pid));
    let status = p.run.terminate().expect("proxy exited");
    assert!(status.success(), "exit status {status:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!pid_alive(pid), "server process {pid} outlived the proxy");
}

#[test]
fn stdio_front_answers_bad_lines_and_stays_usable() {
    let backend = Proxy::demo(&[]);
    let mut front = Running::spawn(BIN, &[backend.url("/mcp")], &[]);
    let mut stdin = front.child.stdin.take().unwrap();
    let mut stdout = BufReader::new(front.child.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(stdin, "this is not json").unwrap();
    stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], -32700);
    writeln!(stdin, "{INIT}").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v["result"]["serverInfo"]["name"], "mcp-proxy-demo",
        "{line}"
    );
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(stdin, "{}", call(1, "echo", json!({"message": "ok"}))).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "ok");
    drop(stdin);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while front.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < end,
            "stdio front did not exit at end of input"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn remote_server_down_is_a_clear_error() {
    let port = free_port();
    let mut front = Running::spawn(BIN, &[format!("http://127.0.0.1:{port}/mcp")], &[]);
    let mut stdin = front.child.stdin.take().unwrap();
    let mut stdout = BufReader::new(front.child.stdout.take().unwrap());
    writeln!(stdin, "{INIT}").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], 0);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect"),
        "{line}"
    );
}
