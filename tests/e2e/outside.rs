//! What outside clients, servers and harnesses found: resources with the same URI on two
//! servers, silent remotes in /status, unasked log messages, orphaned grandchildren, clients
//! that stop reading, shutdown that hangs, and remotes that never answer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

/// Every page of a merged list.
async fn all_pages(url: &str, sid: &str, method: &str, field: &str) -> Vec<Value> {
    let mut items = vec![];
    let mut cursor: Option<Value> = None;
    for n in 0..100 {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let a = answer(&post(url, Some(sid), &rpc(100 + n, method, params), &[]).await);
        items.extend(a["result"][field].as_array().cloned().unwrap_or_default());
        cursor = a["result"]
            .get("nextCursor")
            .cloned()
            .filter(|c| !c.is_null());
        if cursor.is_none() {
            break;
        }
    }
    items
}

#[tokio::test]
async fn resources_with_the_same_uri_on_two_servers_are_each_reachable() {
    // Two copies of server-everything (one on stdio, one remote) and two demo servers: the
    // same URIs twice each.
    let port = free_port();
    let mut ev = everything();
    let node = ev.remove(0);
    ev.push("streamableHttp".into());
    let _remote = Running::spawn(&node, &ev, &[("PORT", port.to_string())]);
    wait_port(port, Duration::from_secs(30));
    let everything_js = everything()[1].clone();
    let config = temp_file(
        "same-uris",
        &format!(
            r#"{{ "mcpServers": {{
    "one": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "two": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "ev": {{ "command": "{node}", "args": ["{everything_js}", "stdio"] }},
    "ev_remote": {{ "url": "http://127.0.0.1:{port}/mcp" }}
}} }}"#
        ),
    );
    let proxy = Proxy::start(&["--config", &config, "--page-size", "25"]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;

    let resources = all_pages(&url, &sid, "resources/list", "resources").await;
    let uris: Vec<String> = resources
        .iter()
        .filter_map(|r| r["uri"].as_str().map(str::to_owned))
        .collect();
    let unique: HashSet<&String> = uris.iter().collect();
    assert_eq!(unique.len(), uris.len(), "a URI is listed twice: {uris:?}");
    // The first server in the file keeps the URI; the later one's is renamed.
    assert!(uris.contains(&"demo://readme".to_owned()), "{uris:?}");
    assert!(uris.contains(&"two+demo://readme".to_owned()), "{uris:?}");
    assert!(
        uris.contains(&"demo://resource/static/document/architecture.md".to_owned())
            && uris
                .contains(&"ev-remote+demo://resource/static/document/architecture.md".to_owned()),
        "{uris:?}"
    );
    let log = proxy.run.log_text();
    assert!(
        log.contains("`demo://readme` is offered by an earlier server too")
            && log.contains("two+demo://readme"),
        "{log}"
    );

    // Every listed resource can be read, and the answer names it as listed.
    let mut id = 1000;
    for uri in &uris {
        id += 1;
        let a = answer(
            &post(
                &url,
                Some(&sid),
                &rpc(id, "resources/read", json!({ "uri": uri })),
                &[],
            )
            .await,
        );
        let contents = a["result"]["contents"]
            .as_array()
            .unwrap_or_else(|| panic!("{uri}: {a}"));
        assert_eq!(contents[0]["uri"], json!(uri), "{a}");
    }
    // The two demo servers are two processes: each read reached its own.
    let read = async |id: u64, uri: &str| {
        let a = answer(
            &post(
                &url,
                Some(&sid),
                &rpc(id, "resources/read", json!({ "uri": uri })),
                &[],
            )
            .await,
        );
        a["result"]["contents"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let first = read(1, "demo://readme").await;
    let second = read(2, "two+demo://readme").await;
    assert!(
        first.contains("process") && second.contains("process"),
        "{first} / {second}"
    );
    assert_ne!(first, second, "both reads reached the same server");
    let servers = proxy.servers().await;
    let pid = |name: &str| servers[name]["pid"].as_u64().expect("pid").to_string();
    assert!(
        first.contains(&pid("one")) && second.contains(&pid("two")),
        "{first} / {second}"
    );

    // Templates too: listed once each, and a URI made from the renamed one reaches its server.
    let templates = all_pages(&url, &sid, "resources/templates/list", "resourceTemplates").await;
    let names: Vec<&str> = templates
        .iter()
        .filter_map(|t| t["uriTemplate"].as_str())
        .collect();
    assert!(
        names.contains(&"demo://item/{id}") && names.contains(&"two+demo://item/{id}"),
        "{names:?}"
    );
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "{names:?}"
    );
    let item = read(3, "two+demo://item/7").await;
    assert!(
        item.contains("item 7") && item.contains(&pid("two")),
        "{item}"
    );
    let item = read(4, "demo://item/7").await;
    assert!(item.contains(&pid("one")), "{item}");

    // Links to resources in a tool's result name them as the client knows them: the
    // second server-everything's links lead to its own resources.
    let tools = all_pages(&url, &sid, "tools/list", "tools").await;
    let links_tool = tools
        .iter()
        .filter_map(|t| t["name"].as_str())
        .find(|n| n.starts_with("ev_remote") && n.ends_with("get-resource-links"))
        .unwrap_or_else(|| panic!("no get-resource-links of ev_remote: {tools:?}"))
        .to_owned();
    let a = answer(
        &post(
            &url,
            Some(&sid),
            &rpc(
                6,
                "tools/call",
                json!({"name": links_tool, "arguments": {"count": 2}}),
            ),
            &[],
        )
        .await,
    );
    let links: Vec<String> = a["result"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("{a}"))
        .iter()
        .filter(|c| c["type"] == "resource_link")
        .filter_map(|c| c["uri"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(links.len(), 2, "{a}");
    for (i, link) in links.iter().enumerate() {
        assert!(link.starts_with("ev-remote+demo://"), "{link} in {a}");
        let a = answer(
            &post(
                &url,
                Some(&sid),
                &rpc(7 + i as u64, "resources/read", json!({ "uri": link })),
                &[],
            )
            .await,
        );
        assert_eq!(a["result"]["contents"][0]["uri"], json!(link), "{a}");
    }
    // The first server's links are its own, unchanged.
    let own_tool = tools
        .iter()
        .filter_map(|t| t["name"].as_str())
        .find(|n| !n.starts_with("ev_remote") && n.ends_with("get-resource-links"))
        .unwrap_or_else(|| panic!("no get-resource-links of ev: {tools:?}"))
        .to_owned();
    let a = answer(
        &post(
            &url,
            Some(&sid),
            &rpc(
                9,
                "tools/call",
                json!({"name": own_tool, "arguments": {"count": 1}}),
            ),
            &[],
        )
        .await,
    );
    assert!(
        a["result"]["content"][1]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("demo://")),
        "{a}"
    );

    // Completions reach the server behind the renamed template.
    let a = answer(
        &post(
            &url,
            Some(&sid),
            &rpc(
                5,
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "two+demo://item/{id}"}, "argument": {"name": "id", "value": "b"}}),
            ),
            &[],
        )
        .await,
    );
    assert_eq!(a["result"]["completion"]["values"], json!(["bob"]), "{a}");

    // A subscription to the renamed resource: its update comes back under the same name.
    let mut stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET stream");
    let a = answer(
        &post(
            &url,
            Some(&sid),
            &rpc(
                6,
                "resources/subscribe",
                json!({"uri": "two+demo://readme"}),
            ),
            &[],
        )
        .await,
    );
    assert!(a.get("result").is_some(), "{a}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains("resources/updated") {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(
        seen.contains("notifications/resources/updated") && seen.contains("two+demo://readme"),
        "{seen}"
    );
}

/// A 2026-07-28 `tools/call` of `tool`, with `_meta` and optionally a log level.
fn modern_call(id: u64, tool: &str, args: Value, level: Option<&str>) -> String {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
    });
    if let Some(l) = level {
        meta["io.modelcontextprotocol/logLevel"] = l.into();
    }
    rpc(
        id,
        "tools/call",
        json!({"name": tool, "arguments": args, "_meta": meta}),
    )
}

fn logs(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count()
}

async fn modern_over_http(url: &str, id: u64, tool: &str, level: Option<&str>) -> Vec<Value> {
    let r = post(
        url,
        None,
        &modern_call(id, tool, json!({"ms": 100}), level),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
    )
    .await;
    let mut all = r.events();
    if all.is_empty() {
        all.push(r.json());
    }
    assert!(
        all.iter()
            .any(|m| m["id"] == id && m.get("result").is_some()),
        "{}",
        r.body
    );
    all
}

#[tokio::test]
async fn a_2026_client_gets_log_messages_only_when_it_asks_on_every_front() {
    let config = temp_file(
        "unasked-logs",
        &format!(
            r#"{{ "mcpServers": {{ "demo": {{ "command": "{BIN}", "args": ["--demo-server"] }} }} }}"#
        ),
    );
    let http = Proxy::start(&["--config", &config]);
    let single = Proxy::demo(&[]);
    let wait = Duration::from_secs(20);
    // stdio: the merged view (`--config`, no --port) and one remote server (`mcp-proxy URL`).
    for (what, args) in [
        (
            "stdio, merged view",
            vec!["--config".to_owned(), config.clone()],
        ),
        ("stdio, one server", vec![single.url("/mcp")]),
    ] {
        let tool = if what.contains("merged") {
            "demo--sleep"
        } else {
            "sleep"
        };
        let mut c = LineClient::start(&args);
        c.send(&modern_call(1, tool, json!({"ms": 100}), None));
        let got = c.until_answer(json!(1), wait);
        assert_eq!(
            logs(&got),
            0,
            "{what}: a log message nobody asked for: {got:?}"
        );
        c.send(&modern_call(2, tool, json!({"ms": 100}), Some("info")));
        let got = c.until_answer(json!(2), wait);
        assert_eq!(logs(&got), 1, "{what}: the log message asked for: {got:?}");
        c.send(&modern_call(3, tool, json!({"ms": 100}), Some("error")));
        let got = c.until_answer(json!(3), wait);
        assert_eq!(logs(&got), 0, "{what}: below the level asked for: {got:?}");
    }
    // HTTP: the merged view, a named server, and one server.
    for (what, url, tool) in [
        ("/mcp, merged view", http.url("/mcp"), "demo--sleep"),
        ("/servers/demo/mcp", http.url("/servers/demo/mcp"), "sleep"),
        ("/mcp, one server", single.url("/mcp"), "sleep"),
    ] {
        let got = modern_over_http(&url, 1, tool, None).await;
        assert_eq!(logs(&got), 0, "{what}: {got:?}");
        let got = modern_over_http(&url, 2, tool, Some("info")).await;
        assert_eq!(logs(&got), 1, "{what}: {got:?}");
    }
    // A session client of the stdio merged view still gets the server's log messages.
    let mut c = LineClient::start(&["--config".to_owned(), config.clone()]);
    c.send(INIT);
    c.until_answer(json!(0), wait);
    c.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    c.send(&rpc(1, "logging/setLevel", json!({"level": "info"})));
    c.until_answer(json!(1), wait);
    c.send(&call(2, "demo--sleep", json!({"ms": 100})));
    let got = c.until_answer(json!(2), wait);
    assert_eq!(logs(&got), 1, "session client: {got:?}");
}

/// A server that answers every request with HTTP 401.
fn unauthorized_server(port: u16) -> Running {
    let script = format!(
        r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="mcp"')
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_DELETE = answer
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#
    );
    let run = Running::spawn(&python(), &["-c".into(), script], &[]);
    wait_port(port, Duration::from_secs(20));
    run
}

/// Poll /status until server `name` satisfies `ok`; its entry.
async fn status_until(
    proxy: &Proxy,
    name: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + within;
    loop {
        let s = proxy.servers().await;
        let entry = s.get(name).cloned().unwrap_or(Value::Null);
        if ok(&entry) {
            return entry;
        }
        assert!(Instant::now() < end, "{name} never got there: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn status_tells_whether_remote_servers_can_be_reached() {
    let down = free_port();
    let locked = free_port();
    let _locked = unauthorized_server(locked);
    let config = temp_file(
        "remote-status",
        &format!(
            r#"{{ "mcpServers": {{
    "demo": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "later": {{ "url": "http://127.0.0.1:{down}/mcp" }},
    "locked": {{ "url": "http://127.0.0.1:{locked}/mcp" }}
}} }}"#
        ),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let wait = Duration::from_secs(20);
    // Down: failed, saying why, never reached.
    let later = status_until(&proxy, "later", wait, |s| s["state"] == "failed").await;
    assert!(
        later["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{later}"
    );
    assert!(
        later["lastReached"].is_null() && later["lastErrorAt"].is_string(),
        "{later}"
    );
    // Answering 401: failed, and the error says so.
    let locked = status_until(&proxy, "locked", wait, |s| s["state"] == "failed").await;
    assert!(
        locked["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{locked}"
    );
    // The stdio server is ready in the same terms.
    let demo = status_until(&proxy, "demo", wait, |s| s["state"] == "ready").await;
    assert_eq!(demo["transport"], "stdio", "{demo}");
    assert!(demo["lastReached"].is_string(), "{demo}");
    // The remote comes up: it is found ready without any client, with its transport and era.
    let _up = Proxy::start_raw(&[
        "--port".into(),
        down.to_string(),
        "--".into(),
        BIN.into(),
        "--demo-server".into(),
    ]);
    let later = status_until(&proxy, "later", Duration::from_secs(30), |s| {
        s["state"] == "ready"
    })
    .await;
    assert_eq!(later["transport"], "streamable-http", "{later}");
    // (The proxy in front of the demo server answers 2026-07-28 clients itself.)
    assert_eq!(later["protocol"], "2026-07-28", "{later}");
    assert!(later["lastReached"].is_string(), "{later}");
    // Clients reach it through the proxy.
    let url = proxy.url("/servers/later/mcp");
    let sid = session(&url).await;
    let a = call_tool(&url, &sid, 1, "echo", json!({"message": "up"})).await;
    assert!(a.to_string().contains("up"), "{a}");
}

/// A server that accepts connections and never answers.
fn silent_server(port: u16) -> Running {
    let script = format!(
        r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port}))
s.listen(64)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
"#
    );
    let run = Running::spawn(&python(), &["-c".into(), script], &[]);
    wait_port(port, Duration::from_secs(20));
    run
}

#[test]
fn a_remote_that_never_answers_gets_a_clear_error_and_holds_up_nothing() {
    let port = free_port();
    let _silent = silent_server(port);
    let url = format!("http://127.0.0.1:{port}/mcp");
    // Default flags but --timeout: the era probe is bounded like any request.
    let mut c = LineClient::start(&["--timeout".into(), "3".into(), url.clone()]);
    let t = Instant::now();
    c.send(INIT);
    let got = c.until_answer(json!(0), Duration::from_secs(15));
    let err = &got.last().expect("an answer")["error"];
    assert_eq!(err["code"], -32001, "{got:?}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer within 3s")),
        "{got:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The end of input ends the proxy, with every answer written.
    c.send(&call(1, "echo", json!({"message": "x"})));
    c.close_input();
    let got = c.until_answer(json!(1), Duration::from_secs(15));
    assert!(got.last().expect("answer")["error"].is_object(), "{got:?}");
    let status = exits_within(&mut c, Duration::from_secs(10)).expect("the proxy ended");
    assert!(status.success(), "{status:?}");
    // SIGTERM while the first request hangs ends it at once.
    let mut c = LineClient::start(&["--timeout".into(), "60".into(), url]);
    c.send(INIT);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let status = c.run.terminate().expect("the proxy ended on SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(status.success(), "{status:?}");
}

/// Processes whose command line starts with `needle` (as `ps` would show them).
fn processes_with(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .starts_with(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn gone_within(needle: &str, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if processes_with(needle).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A shell that starts two grandchildren (one in its group, one in a session of its own)
/// and then becomes the demo server; `tag` marks the grandchildren.
fn server_with_grandchildren(tag: u32) -> String {
    format!("sleep {tag}1 & setsid sleep {tag}2 & exec {BIN} --demo-server")
}

#[tokio::test]
async fn nothing_a_server_started_outlives_the_proxy_a_restart_or_a_reload() {
    let tag = 40_000 + std::process::id() % 10_000;
    // 1. kill -9 of the proxy.
    let mut proxy = Proxy::start(&["--", "sh", "-c", &server_with_grandchildren(tag)]);
    let sid = session(&proxy.url("/mcp")).await;
    assert!(!sid.is_empty());
    let needle = format!("sleep {tag}");
    assert_eq!(processes_with(&needle).len(), 2, "both grandchildren run");
    proxy.run.child.kill().expect("kill -9");
    let _ = proxy.run.child.wait();
    assert!(
        gone_within(&needle, Duration::from_secs(10)),
        "left behind after kill -9 of the proxy: {:?}",
        processes_with(&needle)
    );

    // 2. A server that crashes and is started again; 3. then removed by a reload.
    let tag = tag + 1;
    let needle = format!("sleep {tag}");
    let script = server_with_grandchildren(tag);
    let config = temp_file(
        "grandchildren",
        &json!({ "mcpServers": { "g": { "command": "sh", "args": ["-c", script] } } }).to_string(),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let url = proxy.url("/servers/g/mcp");
    let sid = session(&url).await;
    let first: HashSet<i32> = processes_with(&needle).into_iter().collect();
    assert_eq!(first.len(), 2, "both grandchildren run");
    let _ = call_tool(&url, &sid, 1, "crash", json!({"status": 3})).await;
    proxy
        .run
        .wait_log("server started again", Duration::from_secs(20));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now: HashSet<i32> = processes_with(&needle).into_iter().collect();
        if now.is_disjoint(&first) && now.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < end,
            "after a restart: before {first:?}, now {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&config, r#"{ "mcpServers": {} }"#).expect("rewrite the config");
    proxy.run.wait_log("removed: g", Duration::from_secs(20));
    assert!(
        gone_within(&needle, Duration::from_secs(10)),
        "left behind after a reload removed the server: {:?}",
        processes_with(&needle)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_a_bounded_amount_and_holds_up_no_shutdown() {
    use std::io::{Read, Write};
    let mut proxy = Proxy::demo(&["--client-buffer", "16MiB", "--shutdown-timeout", "2"]);
    // An SSE client that reads the endpoint event, initialises, and then never reads again.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    write!(
        stalled,
        "GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("GET /sse");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("sessionId=") {
        let n = stalled.read(&mut buf).expect("read the endpoint event");
        assert!(n > 0, "the stream ended");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_string();
    let endpoint = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint")
        .trim()
        .to_owned();
    let post_url = proxy.url(&endpoint);
    let client = reqwest::Client::new();
    let send = async |body: String| {
        client
            .post(&post_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("POST failed: {e:?}"))
    };
    assert_eq!(send(INIT.to_owned()).await, 202);
    assert_eq!(
        send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned()).await,
        202
    );
    let pid = proxy.run.child.id();
    let before = rss_mib(pid);
    // 1 MiB results, 80 of them, that the client never reads.
    for i in 0..80u64 {
        let status = send(call(10 + i, "blob", json!({"bytes": 1 << 20}))).await;
        assert!(status == 202 || status == 404, "{status}");
    }
    // The session ends once more than --client-buffer waits for the client...
    proxy
        .run
        .wait_log("not reading its messages", Duration::from_secs(60));
    assert_eq!(send(call(1000, "echo", json!({"message": "x"}))).await, 404);
    // ...and what it held is given back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_mib(pid);
    assert!(
        after - before < 80.0,
        "the proxy grew from {before:.1} to {after:.1} MiB for one client that does not read"
    );
    // Another client is served all along.
    let sid = session(&proxy.url("/mcp")).await;
    let a = call_tool(
        &proxy.url("/mcp"),
        &sid,
        1,
        "echo",
        json!({"message": "fine"}),
    )
    .await;
    assert!(a.to_string().contains("fine"), "{a}");
    // SIGTERM ends the proxy within seconds, the stalled connection notwithstanding.
    let t = Instant::now();
    let status = proxy.run.terminate().expect("the proxy ended");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert!(status.success(), "{status:?}");
    drop(stalled);
}
