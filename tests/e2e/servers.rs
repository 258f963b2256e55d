//! Named servers from an `mcpServers` file (and `--named-server`), each at /servers/NAME/.

use std::time::Duration;

use crate::util::*;

fn era_server() -> String {
    repo_file("tests/servers/era_server.py")
}

#[tokio::test]
async fn servers_from_a_config_file_are_served_by_name() {
    let config = temp_file(
        "servers",
        &format!(
            r#"{{
  // As Claude Desktop writes it, with comments and trailing commas.
  "mcpServers": {{
    "demo": {{ "command": "{BIN}", "args": ["--demo-server"], "tools": {{ "deny": ["sl*"] }} }},
    "legacy": {{ "command": "{py}", "args": ["{era}", "--era", "legacy"], "timeout": 30 }},
    "missing": {{ "command": "no-such-command-anywhere" }},
    "off": {{ "command": "nothing", "disabled": true }},
  }},
}}"#,
            py = python(),
            era = era_server(),
        ),
    );
    let proxy = Proxy::start(&["--config", &config]);
    // Both working servers answer at their own path; the one that cannot start does not stop
    // them.
    era_client(
        "modern",
        "",
        vec!["--url".into(), proxy.url("/servers/legacy/mcp")],
        "a named server",
    );
    let init = post(
        &proxy.url("/servers/demo/mcp"),
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        &[],
    )
    .await;
    assert_eq!(
        init.json()["result"]["serverInfo"]["name"],
        "mcp-proxy-demo"
    );
    // The server's own deny pattern hides its `sleep` tool.
    let sid = session(&proxy.url("/servers/demo/mcp")).await;
    let tools = list_tools(&proxy.url("/servers/demo/mcp"), &sid)
        .await
        .to_string();
    assert!(
        tools.contains("\"echo\"") && !tools.contains("\"sleep\""),
        "{tools}"
    );
    // The HTTP+SSE endpoint names its own message path.
    let sse = reqwest::Client::new()
        .get(proxy.url("/servers/demo/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    let mut sse = sse;
    let first = sse.chunk().await.expect("chunk").expect("endpoint event");
    assert!(
        String::from_utf8_lossy(&first).contains("data: /servers/demo/messages?sessionId="),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let status = proxy.status().await;
    let servers = status["servers"].as_array().expect("servers");
    let names: Vec<&str> = servers.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["demo", "legacy", "missing"], "{status}");
    assert!(
        servers[..2].iter().all(|s| s["state"] == "ready"),
        "{status}"
    );
    assert_eq!(servers[2]["state"], "failed", "{status}");
    assert!(
        servers[2]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-command-anywhere")),
        "{status}"
    );
    // Its clients are told why, at once.
    let r = post(
        &proxy.url("/servers/missing/mcp"),
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        &[],
    )
    .await;
    assert_eq!(r.json()["error"]["code"], -32000, "{}", r.body);
    assert!(
        proxy.run.log_text().contains("no-such-command-anywhere"),
        "the failed server is named in the log"
    );
}

#[tokio::test]
async fn named_servers_come_from_the_command_line() {
    let demo = format!("{BIN} --demo-server");
    let proxy = Proxy::start(&[
        "--named-server",
        "one",
        &demo,
        "--named-server",
        "two",
        &demo,
    ]);
    for name in ["one", "two"] {
        let init = post(
            &proxy.url(&format!("/servers/{name}/mcp")),
            None,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            &[],
        )
        .await;
        assert_eq!(init.status, 200, "{name}: {}", init.body);
    }
    // Merged at the root, with a separator of one's own.
    let proxy = Proxy::start(&["--separator", "__", "--named-server", "one", &demo]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let r = post(
        &url,
        Some(&sid),
        &call(
            2,
            "one__echo",
            serde_json::json!({"message": "joined by __"}),
        ),
        &[],
    )
    .await;
    assert!(r.body.contains("joined by __"), "{}", r.body);
}

#[test]
fn a_broken_config_file_stops_everything_with_one_line() {
    let config = temp_file(
        "broken",
        "{\n  \"mcpServers\": {\n    \"x\": { \"url\": \"ftp://nope\" }\n  }\n}",
    );
    let (ok, out) = run_to_end(
        BIN,
        &[
            "--port".into(),
            "0".into(),
            "--config".into(),
            config.clone(),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok);
    assert!(
        out.contains(&format!("{config}:3: mcpServers.x.url")),
        "{out}"
    );
    let mut child = std::process::Command::new(BIN)
        .args(["--port", "0", "--config", &config])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    assert_eq!(child.wait().expect("exit").code(), Some(2));
    // On stdio, named servers are served merged, and nothing else.
    let (ok, out) = run_to_end(
        BIN,
        &[
            "--named-server".into(),
            "a".into(),
            "x".into(),
            "https://example.com/mcp".into(),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok && out.contains("--port"), "{out}");
}

#[tokio::test]
async fn tools_are_hidden_renamed_and_refused_as_configured() {
    let tool_config = temp_file(
        "tools",
        r#"{ "tools": {
            "demo--echo": { "displayName": "Say it back", "description": "Echoes." },
            "demo--add": { "enabled": false },
        } }"#,
    );
    let demo = format!("{BIN} --demo-server");
    let proxy = Proxy::start(&[
        "--named-server",
        "demo",
        &demo,
        "--ignore-tool",
        "sl*p",
        "--tool-config",
        &tool_config,
    ]);
    let url = proxy.url("/servers/demo/mcp");
    // A session client.
    let sid = session(&url).await;
    let tools = list_tools(&url, &sid).await;
    let names: Vec<&str> = tools
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"add") && !names.contains(&"sleep"),
        "{names:?}"
    );
    let echo = tools
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "echo"))
        .expect("echo");
    assert_eq!(echo["title"], "Say it back");
    assert_eq!(echo["description"], "Echoes.");
    let refused = post(
        &url,
        Some(&sid),
        &call(2, "add", serde_json::json!({"a": 1, "b": 2})),
        &[],
    )
    .await;
    assert_eq!(refused.json()["error"]["code"], -32602, "{}", refused.body);
    let fine = post(
        &url,
        Some(&sid),
        &call(3, "echo", serde_json::json!({"message": "hi"})),
        &[],
    )
    .await;
    assert!(fine.body.contains("hi"), "{}", fine.body);
    // A 2026-07-28 client sees the same.
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let list = post(
        &url,
        None,
        &format!(r#"{{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{{{meta}}}}}"#),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    let text = list.json()["result"]["tools"].to_string();
    assert!(
        text.contains("Say it back") && !text.contains("\"sleep\""),
        "{text}"
    );
    let refused = post(
        &url,
        None,
        &format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"sleep","arguments":{{}},{meta}}}}}"#),
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "sleep")],
    )
    .await;
    assert_eq!(refused.json()["error"]["code"], -32602, "{}", refused.body);
}

/// A config file with the demo server and the SDK 1.x era server, as a path.
fn two_servers() -> String {
    temp_file(
        "merged",
        &format!(
            r#"{{ "mcpServers": {{
    "demo": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "legacy": {{ "command": "{py}", "args": ["{era}", "--era", "legacy"] }},
}} }}"#,
            py = python(),
            era = era_server(),
        ),
    )
}

/// Run tests/clients/era_client.py of `era` against `target`, with tool names prefixed.
fn era_client(era: &str, prefix: &str, target: Vec<String>, what: &str) {
    let mut args = vec![
        repo_file("tests/clients/era_client.py"),
        "--era".into(),
        era.into(),
        "--prefix".into(),
        prefix.into(),
    ];
    args.extend(target);
    let (ok, out) = run_to_end(&python(), &args, Duration::from_secs(120));
    assert!(ok, "{what}:\n{out}");
}

/// Every server merged at /mcp, /sse and on stdio: the SDK client reaches the era server's
/// tools as `legacy--NAME`, with elicitation, sampling, roots, progress, list_changed and a
/// resource update all passing through the merge.
#[tokio::test]
async fn servers_are_merged_at_the_root_and_on_stdio() {
    let config = two_servers();
    let proxy = Proxy::start(&["--config", &config]);
    era_client(
        "legacy",
        "legacy--",
        vec!["--url".into(), proxy.url("/mcp")],
        "merged /mcp",
    );
    era_client(
        "legacy",
        "legacy--",
        vec!["--url".into(), proxy.url("/sse")],
        "merged /sse",
    );
    // A 2026-07-28 client on the merged view: input_required, listen, Mcp-Param headers.
    era_client(
        "modern",
        "legacy--",
        vec!["--url".into(), proxy.url("/mcp")],
        "merged /mcp, 2026-07-28",
    );
    // Both servers' tools, namespaced, in one list.
    let sid = session(&proxy.url("/mcp")).await;
    let tools = list_tools(&proxy.url("/mcp"), &sid).await.to_string();
    assert!(
        tools.contains("\"demo--echo\"") && tools.contains("\"legacy--echo\""),
        "{tools}"
    );
    let r = post(
        &proxy.url("/mcp"),
        Some(&sid),
        &call(
            3,
            "demo--echo",
            serde_json::json!({"message": "through the merge"}),
        ),
        &[],
    )
    .await;
    assert!(r.body.contains("through the merge"), "{}", r.body);
    let r = post(
        &proxy.url("/mcp"),
        Some(&sid),
        &call(4, "nope--x", serde_json::json!({})),
        &[],
    )
    .await;
    assert_eq!(r.json()["error"]["code"], -32602, "{}", r.body);
    // Claude Desktop style: the proxy on stdio, every server behind it; clients of both eras.
    for era in ["legacy", "modern"] {
        era_client(
            era,
            "legacy--",
            vec![
                "--stdio".into(),
                BIN.into(),
                "--config".into(),
                config.clone(),
            ],
            &format!("merged on stdio, {era} client"),
        );
    }
}

/// A server that takes too long to list its tools is left out of the merged list after its
/// timeout; the others' tools come without waiting for it.
#[tokio::test]
async fn a_slow_server_does_not_hold_up_the_merged_list() {
    let config = temp_file(
        "slow",
        &format!(
            r#"{{ "mcpServers": {{
    "demo": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "slow": {{ "command": "{py}", "args": ["{era}", "--era", "legacy", "--slow-lists", "30"], "timeout": 1 }},
}} }}"#,
            py = python(),
            era = era_server(),
        ),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let url = proxy.url("/mcp");
    // Wait for both servers to be up.
    for _ in 0..100 {
        let s = proxy.status().await;
        let ready = s["servers"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|x| x["state"] == "ready").count() == 2);
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sid = session(&url).await;
    let started = std::time::Instant::now();
    let tools = list_tools(&url, &sid).await.to_string();
    let took = started.elapsed();
    assert!(
        tools.contains("\"demo--echo\"") && !tools.contains("slow--"),
        "{tools}"
    );
    assert!(took < Duration::from_secs(5), "the list took {took:?}");
    // The other server's calls go on meanwhile.
    let r = post(
        &url,
        Some(&sid),
        &call(
            3,
            "demo--echo",
            serde_json::json!({"message": "not held up"}),
        ),
        &[],
    )
    .await;
    assert!(r.body.contains("not held up"), "{}", r.body);
}

/// The gateway with four kinds of server at once: server-everything and mcp-server-time on
/// stdio, the era server remote over Streamable HTTP, and server-everything remote over
/// HTTP+SSE. The SDK client runs its whole scenario against the era server's tools through the
/// merge over /mcp, /sse and stdio, and every other server answers a call through it too.
#[tokio::test]
async fn four_kinds_of_server_behind_one_endpoint() {
    let era_port = free_port();
    let _era = Running::spawn(
        &python(),
        &[
            era_server(),
            "--era".into(),
            "legacy".into(),
            "--port".into(),
            era_port.to_string(),
        ],
        &[],
    );
    let sse_port = free_port();
    let mut ev = everything();
    let node = ev.remove(0);
    ev.push("sse".into());
    let _sse = Running::spawn(&node, &ev, &[("PORT", sse_port.to_string())]);
    wait_port(era_port, Duration::from_secs(30));
    wait_port(sse_port, Duration::from_secs(30));
    let everything_js = everything()[1].clone();
    let time = peers()
        .join("venv/bin/mcp-server-time")
        .display()
        .to_string();
    let config = temp_file(
        "four",
        &format!(
            r#"{{ "mcpServers": {{
    "everything": {{ "command": "{node}", "args": ["{everything_js}", "stdio"] }},
    "time": {{ "command": "{time}", "args": ["--local-timezone", "UTC"] }},
    "era": {{ "url": "http://127.0.0.1:{era_port}/mcp" }},
    "remote": {{ "url": "http://127.0.0.1:{sse_port}/sse", "type": "sse" }},
}} }}"#
        ),
    );
    let proxy = Proxy::start(&["--config", &config]);
    for (target, what) in [
        (vec!["--url".into(), proxy.url("/mcp")], "/mcp"),
        (vec!["--url".into(), proxy.url("/sse")], "/sse"),
        (
            vec![
                "--stdio".into(),
                BIN.into(),
                "--config".into(),
                config.clone(),
            ],
            "stdio",
        ),
    ] {
        era_client("legacy", "era--", target, &format!("gateway over {what}"));
    }
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let tools = list_tools(&url, &sid).await.to_string();
    for name in [
        "everything--echo",
        "time--get_current_time",
        "era--ask",
        "remote--echo",
    ] {
        assert!(
            tools.contains(&format!("\"{name}\"")),
            "{name} missing: {tools}"
        );
    }
    for (id, name, args, expect) in [
        (
            2,
            "everything--echo",
            serde_json::json!({"message": "via stdio"}),
            "via stdio",
        ),
        (
            3,
            "remote--echo",
            serde_json::json!({"message": "via sse"}),
            "via sse",
        ),
        (
            4,
            "time--get_current_time",
            serde_json::json!({"timezone": "UTC"}),
            "UTC",
        ),
    ] {
        let r = post(&url, Some(&sid), &call(id, name, args), &[]).await;
        assert!(r.body.contains(expect), "{name}: {}", r.body);
    }
}

/// Two SDK clients on the merged view at once, each with answers of its own: sampling,
/// elicitation and the rest reach only the client whose call caused them, and the whole
/// server-everything scenario (resources, prompts, completion, logging, subscriptions) runs
/// through the merge.
#[test]
fn two_clients_on_the_merged_view_get_their_own_server_requests() {
    let everything_js = everything()[1].clone();
    let node = node();
    let config = temp_file(
        "two-clients",
        &format!(
            r#"{{ "mcpServers": {{
    "everything": {{ "command": "{node}", "args": ["{everything_js}", "stdio"] }},
    "demo": {{ "command": "{BIN}", "args": ["--demo-server"] }},
}} }}"#
        ),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let (ok, out) = run_to_end(
        &python(),
        &[
            scenario(),
            "--url".into(),
            proxy.url("/mcp"),
            "--clients".into(),
            "2".into(),
            "--take-turns".into(),
            "--prefix".into(),
            "everything--".into(),
        ],
        Duration::from_secs(240),
    );
    assert!(ok && out.contains("0 failed"), "{out}");
}

/// A server that dies in the middle of a call: the caller gets an error at once, the other
/// server keeps serving, and the dead one is started again; the client is told its lists
/// changed and its tools work again, in the same session.
#[tokio::test]
async fn a_server_that_crashes_mid_call_comes_back() {
    let config = temp_file(
        "crash",
        &serde_json::json!({ "mcpServers": {
            "demo": { "command": BIN, "args": ["--demo-server"] },
            "time": { "command": time_server() },
        } })
        .to_string(),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    // The client's stream for notifications.
    let mut stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("stream");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.chunk().await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    let tools = list_tools(&url, &sid).await.to_string();
    assert!(tools.contains("time--get_current_time"), "{tools}");
    let before = proxy.servers().await;
    assert_eq!(before["demo"]["tools"], 9, "{before:?}");
    let pid = before["demo"]["pid"].as_u64().expect("a pid");
    assert!(before["demo"]["uptimeSeconds"].is_u64(), "{before:?}");
    let crash = call_tool(
        &url,
        &sid,
        2,
        "demo--crash",
        serde_json::json!({"status": 3}),
    )
    .await;
    assert_eq!(crash["error"]["code"], -32000, "{crash}");
    // The other server answers meanwhile.
    let args = serde_json::json!({"timezone": "UTC"});
    let other = call_tool(&url, &sid, 3, "time--get_current_time", args).await;
    assert!(other.to_string().contains("UTC"), "{other}");
    // Back after its backoff, and the client is told.
    let mut back = None;
    for _ in 0..100 {
        let s = proxy.servers().await;
        if s["demo"]["state"] == "ready" && s["demo"]["restarts"] == 1 {
            back = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.expect("the demo server was not started again within 10 s");
    assert_ne!(back["demo"]["pid"].as_u64(), Some(pid), "{back:?}");
    assert_eq!(back["time"]["restarts"], 0, "{back:?}");
    for _ in 0..50 {
        if seen
            .lock()
            .unwrap()
            .contains("notifications/tools/list_changed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.lock()
            .unwrap()
            .contains("notifications/tools/list_changed"),
        "{}",
        seen.lock().unwrap()
    );
    let again = call_tool(
        &url,
        &sid,
        4,
        "demo--echo",
        serde_json::json!({"message": "back"}),
    )
    .await;
    assert_eq!(again["result"]["content"][0]["text"], "back", "{again}");
    let _ = std::fs::remove_file(&config);
}

/// With --page-size, the merged list comes in pages across the servers, with opaque cursors;
/// a made-up cursor is refused.
#[tokio::test]
async fn merged_lists_come_in_pages_with_opaque_cursors() {
    let config = temp_file(
        "pages",
        &serde_json::json!({ "mcpServers": {
            "demo": { "command": BIN, "args": ["--demo-server", "--demo-tools", "20"] },
            "time": { "command": time_server() },
        } })
        .to_string(),
    );
    let proxy = Proxy::start(&["--config", &config, "--page-size", "10"]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let mut names = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let params = match &cursor {
            Some(c) => serde_json::json!({ "cursor": c }),
            None => serde_json::json!({}),
        };
        let body = serde_json::json!({"jsonrpc":"2.0","id":pages + 1,"method":"tools/list","params":params});
        let r = post(&url, Some(&sid), &body.to_string(), &[]).await;
        let result = r.json()["result"].clone();
        let tools = result["tools"].as_array().cloned().unwrap_or_default();
        assert!(tools.len() <= 10, "{}", r.body);
        names.extend(
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned)),
        );
        pages += 1;
        match result["nextCursor"].as_str() {
            Some(c) => {
                assert!(
                    !c.contains("demo") && !c.contains("time"),
                    "not opaque: {c}"
                );
                cursor = Some(c.to_owned());
            }
            None => break,
        }
        assert!(pages < 10, "too many pages");
    }
    // 9 demo tools, 20 extra, 2 of the time server: 31 in 4 pages, each once.
    assert_eq!(pages, 4, "{names:?}");
    assert_eq!(names.len(), 31, "{names:?}");
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 31);
    assert!(names.contains(&"time--get_current_time".to_owned()));
    assert!(names.contains(&"demo--tool_20".to_owned()));
    let bad = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"bm9wZQ"}}"#,
        &[],
    )
    .await;
    assert_eq!(bad.json()["error"]["code"], -32602, "{}", bad.body);
    let _ = std::fs::remove_file(&config);
}

/// Two servers whose merged names collide (`x.y` and `x_y` both become `x_y`): the first in
/// the file keeps the plain name, the second gets `-2`, the log says so, and each name leads
/// to its own server.
#[tokio::test]
async fn colliding_names_are_told_apart_in_file_order() {
    let config = temp_file(
        "collide",
        &format!(
            r#"{{ "mcpServers": {{
    "x_y": {{ "command": "{py}", "args": ["{era}", "--era", "legacy"] }},
    "x.y": {{ "command": "{BIN}", "args": ["--demo-server"] }},
}} }}"#,
            py = python(),
            era = era_server(),
        ),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let tools = list_tools(&url, &sid).await.to_string();
    assert!(
        tools.contains("\"x_y--echo\"") && tools.contains("\"x_y--echo-2\""),
        "{tools}"
    );
    proxy.run.wait_log(
        "tools name `x_y--echo` is taken; `echo` is offered as `x_y--echo-2`",
        Duration::from_secs(5),
    );
    // The era server (first in the file) answers `text`, the demo server `message`.
    let args = serde_json::json!({ "text": "era", "message": "demo" });
    for (id, name, expect) in [(2, "x_y--echo", "era"), (3, "x_y--echo-2", "demo")] {
        let r = post(&url, Some(&sid), &call(id, name, args.clone()), &[]).await;
        let text =
            r.events().pop().unwrap_or_else(|| r.json())["result"]["content"][0]["text"].clone();
        assert_eq!(text, expect, "{name}: {}", r.body);
    }
    let _ = std::fs::remove_file(&config);
}

/// A remote server that goes away and comes back: calls meanwhile get a clear error, and the
/// same client session reaches it again afterwards, on a fresh session of the server's.
#[tokio::test]
async fn a_remote_server_that_drops_is_reached_again() {
    let port = free_port();
    let spawn = || {
        Running::spawn(
            &python(),
            &[
                era_server(),
                "--era".into(),
                "legacy".into(),
                "--port".into(),
                port.to_string(),
            ],
            &[],
        )
    };
    let mut remote = spawn();
    wait_port(port, Duration::from_secs(30));
    let config = temp_file(
        "drop",
        &serde_json::json!({ "mcpServers": {
            "remote": { "url": format!("http://127.0.0.1:{port}/mcp") },
            "demo": { "command": BIN, "args": ["--demo-server"] },
        } })
        .to_string(),
    );
    let proxy = Proxy::start(&["--config", &config]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let hi = || serde_json::json!({ "text": "hi" });
    let r = call_tool(&url, &sid, 1, "remote--echo", hi()).await;
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    remote.terminate();
    let r = call_tool(&url, &sid, 2, "remote--echo", hi()).await;
    assert!(r["error"]["message"].is_string(), "{r}");
    // The other server is not affected.
    let fine = serde_json::json!({ "message": "fine" });
    let r = call_tool(&url, &sid, 3, "demo--echo", fine).await;
    assert_eq!(r["result"]["content"][0]["text"], "fine", "{r}");
    let _remote = spawn();
    wait_port(port, Duration::from_secs(30));
    let mut last = serde_json::Value::Null;
    for id in 4..60 {
        last = call_tool(&url, &sid, id, "remote--echo", hi()).await;
        if last["result"]["content"][0]["text"] == "hi" {
            let _ = std::fs::remove_file(&config);
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the remote server was not reached again: {last}");
}
