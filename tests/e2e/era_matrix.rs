//! Every pair of client era × server era × front: a client of 2026-07-28 or of the
//! session-based revisions reaches a server of either era through the proxy, serving it on
//! HTTP or on stdio. Each run checks tools/call, elicitation, sampling, roots, progress, a
//! list-changed notification and a resource update end to end.
//!
//! Two sets of peers: spec-exact ones written for these tests (tests/clients/era_client.py,
//! tests/servers/era_server.py, whose legacy side is the Python SDK 1.x), and the official
//! Python SDK 2.x, whose client can be pinned to either era and whose server speaks both
//! (tests/clients/sdk2_client.py, tests/servers/sdk2_server.py).

use std::time::Duration;

use crate::util::*;

/// The test server of `era` on stdio, as a command line.
fn server_command(era: &str) -> Vec<String> {
    vec![
        python(),
        repo_file("tests/servers/era_server.py"),
        "--era".into(),
        era.into(),
    ]
}

/// The test server of `era` on Streamable HTTP; its URL.
fn server_http(era: &str) -> (Running, String) {
    let port = free_port();
    let mut args = server_command(era);
    let program = args.remove(0);
    args.extend(["--port".into(), port.to_string()]);
    let run = Running::spawn(&program, &args, &[]);
    wait_port(port, Duration::from_secs(20));
    (run, format!("http://127.0.0.1:{port}/mcp"))
}

/// Run the client of `era` against `target` (["--url", URL] or ["--stdio", CMD...]).
fn client(era: &str, target: Vec<String>, what: &str) {
    let mut args = vec![
        repo_file("tests/clients/era_client.py"),
        "--era".into(),
        era.into(),
    ];
    args.extend(target);
    let (ok, out) = run_to_end(&python(), &args, Duration::from_secs(90));
    assert!(ok, "{what}: {era} client failed:\n{out}");
    assert!(out.contains("checks passed"), "{what}:\n{out}");
}

const ERAS: [&str; 2] = ["modern", "legacy"];

/// HTTP front, server a stdio child.
#[test]
fn http_front_stdio_servers() {
    for server in ERAS {
        let mut args: Vec<String> = vec!["--port".into(), "0".into(), "--".into()];
        args.extend(server_command(server));
        let proxy = Proxy::start_raw(&args);
        for c in ERAS {
            client(
                c,
                vec!["--url".into(), proxy.url("/mcp")],
                &format!("HTTP front, {server} stdio server"),
            );
        }
    }
}

/// HTTP front, server remote over Streamable HTTP.
#[test]
fn http_front_remote_servers() {
    for server in ERAS {
        let (_srv, url) = server_http(server);
        let proxy = Proxy::start(&[&url]);
        for c in ERAS {
            client(
                c,
                vec!["--url".into(), proxy.url("/mcp")],
                &format!("HTTP front, {server} remote server"),
            );
        }
    }
}

/// stdio front (`mcp-proxy URL`), server remote over Streamable HTTP.
#[test]
fn stdio_front_remote_servers() {
    for server in ERAS {
        let (_srv, url) = server_http(server);
        for c in ERAS {
            client(
                c,
                vec!["--stdio".into(), BIN.into(), url.clone()],
                &format!("stdio front, {server} remote server"),
            );
        }
    }
}

/// The SDK 2.x server (both eras; the proxy speaks 2026-07-28 with it) as a command line.
fn sdk2_server() -> Vec<String> {
    vec![python2(), repo_file("tests/servers/sdk2_server.py")]
}

/// Run the SDK 2.x client pinned to `era` against `target`.
fn sdk2_client(era: &str, target: Vec<String>, what: &str) {
    sdk2_client_prefixed(era, "", target, what)
}

/// The same, with tool names prefixed (a merged view).
fn sdk2_client_prefixed(era: &str, prefix: &str, target: Vec<String>, what: &str) {
    let mut args = vec![
        repo_file("tests/clients/sdk2_client.py"),
        "--era".into(),
        era.into(),
        "--prefix".into(),
        prefix.into(),
    ];
    args.extend(target);
    let (ok, out) = run_to_end(&python2(), &args, Duration::from_secs(90));
    assert!(ok, "{what}: SDK 2.x {era} client failed:\n{out}");
    assert!(out.contains("checks passed"), "{what}:\n{out}");
}

/// The official SDK 2.x on both ends: its client of either era, its server (2026-07-28) or the
/// SDK 1.x legacy server, behind the HTTP front and behind the stdio front.
#[test]
fn sdk2_peers_on_both_fronts() {
    // HTTP front, servers as stdio children.
    for (server, label) in [
        (sdk2_server(), "SDK 2.x server"),
        (server_command("legacy"), "SDK 1.x legacy server"),
    ] {
        let mut args: Vec<String> = vec!["--port".into(), "0".into(), "--".into()];
        args.extend(server);
        let proxy = Proxy::start_raw(&args);
        for c in ERAS {
            sdk2_client(
                c,
                vec!["--url".into(), proxy.url("/mcp")],
                &format!("HTTP front, {label}"),
            );
        }
    }
    // stdio front, the SDK 2.x server remote over Streamable HTTP.
    let port = free_port();
    let mut args = sdk2_server();
    let program = args.remove(0);
    args.extend(["--port".into(), port.to_string()]);
    let _srv = Running::spawn(&program, &args, &[]);
    wait_port(port, Duration::from_secs(30));
    let url = format!("http://127.0.0.1:{port}/mcp");
    for c in ERAS {
        sdk2_client(
            c,
            vec!["--stdio".into(), BIN.into(), url.clone()],
            "stdio front, remote SDK 2.x server",
        );
    }
}

/// The merged view with a 2026-07-28 server (SDK 2.x) and a session-based one (SDK 1.x's
/// mcp-server-time) behind one endpoint: the SDK 2.x client of either era reaches the modern
/// server's tools, sampling, elicitation, roots, progress and subscriptions through it, over
/// HTTP and on stdio.
#[tokio::test]
async fn sdk2_client_on_a_merged_view_of_mixed_eras() {
    let server = sdk2_server();
    let config = temp_file(
        "mixed-eras",
        &serde_json::json!({ "mcpServers": {
            "modern": { "command": server[0], "args": [server[1]] },
            "time": { "command": time_server() },
        } })
        .to_string(),
    );
    let proxy = Proxy::start(&["--config", &config]);
    for c in ERAS {
        sdk2_client_prefixed(
            c,
            "modern--",
            vec!["--url".into(), proxy.url("/mcp")],
            "merged view over HTTP",
        );
    }
    sdk2_client_prefixed(
        "modern",
        "modern--",
        vec![
            "--stdio".into(),
            BIN.into(),
            "--config".into(),
            config.clone(),
        ],
        "merged view on stdio",
    );
    let status = proxy.status().await.to_string();
    assert!(
        status.contains("\"protocol\":\"2026-07-28\"")
            && status.contains("\"protocol\":\"session-based\""),
        "{status}"
    );
    let _ = std::fs::remove_file(&config);
}
