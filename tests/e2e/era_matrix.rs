//! Every pair of client era × server era × front: a client of 2026-07-28 or of the
//! session-based revisions (tests/clients/era_client.py) reaches a server of either era
//! (tests/servers/era_server.py) through the proxy, serving it on HTTP or on stdio. Each run
//! checks tools/call, elicitation, sampling, roots, progress, a list-changed notification and
//! a resource update end to end.

use std::path::PathBuf;
use std::time::Duration;

use crate::util::*;

fn script(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// The test server of `era` on stdio, as a command line.
fn server_command(era: &str) -> Vec<String> {
    vec![
        python(),
        script("tests/servers/era_server.py"),
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
        script("tests/clients/era_client.py"),
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
