//! The official Python SDK client driving server-everything through the proxy, every way round.

use std::time::Duration;

use crate::util::*;

fn scenario_passes(args: &[&str]) {
    let mut all = vec![scenario()];
    all.extend(args.iter().map(|s| s.to_string()));
    let (ok, out) = run_to_end(&python(), &all, Duration::from_secs(240));
    assert!(ok, "SDK scenario failed ({args:?}):\n{out}");
    assert!(out.contains("0 failed"), "{out}");
}

fn everything_behind_proxy(extra: &[&str]) -> Proxy {
    let mut args: Vec<String> = vec!["--port".into(), "0".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(everything());
    args.push("stdio".into());
    Proxy::start_raw(&args)
}

#[test]
fn streamable_http_two_clients_share_one_stdio_server() {
    let p = everything_behind_proxy(&[]);
    scenario_passes(&["--url", &p.url("/mcp"), "--clients", "2", "--take-turns"]);
}

#[test]
fn sse_two_clients_share_one_stdio_server() {
    let p = everything_behind_proxy(&[]);
    scenario_passes(&[
        "--transport",
        "sse",
        "--url",
        &p.url("/sse"),
        "--clients",
        "2",
        "--take-turns",
    ]);
}

#[test]
fn per_client_servers_serve_concurrent_clients_exactly() {
    let p = everything_behind_proxy(&["--per-client"]);
    scenario_passes(&["--url", &p.url("/mcp"), "--clients", "2", "--quick"]);
    scenario_passes(&[
        "--transport",
        "sse",
        "--url",
        &p.url("/sse"),
        "--clients",
        "2",
        "--quick",
    ]);
}

#[test]
fn chain_stdio_client_to_proxy_url_to_proxy_port_to_stdio_server() {
    let p = everything_behind_proxy(&[]);
    scenario_passes(&["--quick", "--stdio", BIN, &p.url("/mcp")]);
    scenario_passes(&[
        "--quick",
        "--stdio",
        BIN,
        "--transport",
        "sse",
        &p.url("/sse"),
    ]);
    // auto: a /sse URL is probed with Streamable HTTP first, then served over SSE.
    scenario_passes(&["--quick", "--stdio", BIN, &p.url("/sse")]);
}

fn remote_everything(mode: &str) -> (Running, u16) {
    let port = free_port();
    let mut args = everything();
    let program = args.remove(0);
    args.push(mode.into());
    let run = Running::spawn(&program, &args, &[("PORT", port.to_string())]);
    wait_port(port, Duration::from_secs(20));
    (run, port)
}

#[test]
fn stdio_client_reaches_remote_streamable_http_server() {
    let (_server, port) = remote_everything("streamableHttp");
    scenario_passes(&["--stdio", BIN, &format!("http://127.0.0.1:{port}/mcp")]);
}

#[test]
fn stdio_client_reaches_remote_sse_server() {
    let (_server, port) = remote_everything("sse");
    scenario_passes(&[
        "--quick",
        "--stdio",
        BIN,
        &format!("http://127.0.0.1:{port}/sse"),
    ]);
    scenario_passes(&[
        "--quick",
        "--stdio",
        BIN,
        "--transport",
        "sse",
        &format!("http://127.0.0.1:{port}/sse"),
    ]);
}

#[test]
fn remote_server_re_served_over_http_to_two_clients() {
    let (_server, port) = remote_everything("streamableHttp");
    let p = Proxy::start(&[&format!("http://127.0.0.1:{port}/mcp")]);
    scenario_passes(&["--url", &p.url("/mcp"), "--clients", "2", "--quick"]);
}

fn ts_scenario_passes(url: &str, transport: &str, clients: &str) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/ts_scenario.mjs")
        .display()
        .to_string();
    let mut cmd = std::process::Command::new(node());
    cmd.args([script.as_str(), url, transport, clients])
        .env("MCP_PEERS_NODE", peers().join("node"));
    let out = cmd.output().expect("run the TypeScript SDK client");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "TypeScript SDK scenario failed ({url}):\n{text}"
    );
    assert!(text.contains("0 failed"), "{text}");
}

#[test]
fn typescript_sdk_clients_over_streamable_http_and_sse() {
    let proxy = everything_behind_proxy(&[]);
    ts_scenario_passes(&proxy.url("/mcp"), "streamable", "2");
    ts_scenario_passes(&proxy.url("/sse"), "sse", "1");
}
