//! Modern (2026-07-28, stateless) clients in front of legacy servers, next to legacy sessions
//! on the same endpoint.

use crate::util::*;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"modern","version":"1"}}"#;

async fn modern(url: &str, method: &str, id: u64, params: &str) -> Reply {
    let sep = if params.is_empty() { "" } else { "," };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}{sep}{META}}}}}"#
    );
    let name = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["params"]["name"].as_str().map(str::to_owned));
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = &name {
        headers.push(("mcp-name", n));
    }
    post(url, None, &body, &headers).await
}

async fn modern_client_reaches_legacy_server(url: &str) {
    let d = modern(url, "server/discover", 1, "").await;
    assert_eq!(d.status, 200, "{}", d.body);
    let r = &d.json()["result"];
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["supportedVersions"][0], "2026-07-28");
    assert!(r["capabilities"]["tools"].is_object(), "{r}");
    assert!(r["ttlMs"].is_number() && r["cacheScope"].is_string(), "{r}");
    assert!(
        d.header("mcp-session-id").is_none(),
        "stateless: no session"
    );

    let l = modern(url, "tools/list", 2, "").await;
    let r = &l.json()["result"];
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["ttlMs"], 0);
    assert_eq!(r["cacheScope"], "private");
    assert!(r["tools"].as_array().is_some_and(|t| !t.is_empty()), "{r}");

    let c = modern(
        url,
        "tools/call",
        3,
        r#""name":"echo","arguments":{"message":"from the future"}"#,
    )
    .await;
    let v = c.json();
    assert_eq!(v["id"], 3);
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["content"][0]["text"], "from the future");
}

#[tokio::test]
async fn modern_client_legacy_server_shared_and_per_client() {
    for extra in [
        &["--server-era", "legacy"][..],
        &["--server-era", "legacy", "--per-client"][..],
    ] {
        let proxy = Proxy::demo(extra);
        modern_client_reaches_legacy_server(&proxy.url("/mcp")).await;
        // A legacy client keeps its session on the same endpoint.
        let init = post(
            &proxy.url("/mcp"),
            None,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"old","version":"1"}}}"#,
            &[],
        )
        .await;
        assert_eq!(init.status, 200);
        assert!(init.header("mcp-session-id").is_some());
    }
}

#[tokio::test]
async fn modern_client_legacy_remote_server() {
    let backend = Proxy::demo(&["--server-era", "legacy"]);
    let proxy = Proxy::start(&["--server-era", "legacy", &backend.url("/mcp")]);
    modern_client_reaches_legacy_server(&proxy.url("/mcp")).await;
}

#[tokio::test]
async fn modern_requests_that_disagree_or_ask_too_much_are_refused() {
    let proxy = Proxy::demo(&["--server-era", "legacy"]);
    let url = proxy.url("/mcp");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo",{META}}}}}"#
    );
    let r = post(
        &url,
        None,
        &body,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32020);
    let r = post(
        &url,
        None,
        &body,
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-name", "add")],
    )
    .await;
    assert_eq!(r.json()["error"]["code"], -32020);
    let future = body.replace("2026-07-28", "2099-01-01");
    let r = post(
        &url,
        None,
        &future,
        &[("mcp-protocol-version", "2099-01-01")],
    )
    .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32022);
    assert_eq!(v["error"]["data"]["requested"], "2099-01-01");
    // Header and body versions that disagree.
    let r = post(
        &url,
        None,
        &future,
        &[("mcp-protocol-version", "2026-07-28")],
    )
    .await;
    assert_eq!(r.json()["error"]["code"], -32020);
    // Still serving.
    modern_client_reaches_legacy_server(&url).await;
}

/// A modern request from a client that can answer elicitations.
async fn asking(url: &str, id: u64, params: &str) -> serde_json::Value {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{{params},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{"elicitation":{{}}}},"io.modelcontextprotocol/clientInfo":{{"name":"modern","version":"1"}}}}}}}}"#
    );
    let name = serde_json::from_str::<serde_json::Value>(&body).expect("json")["params"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let r = post(
        url,
        None,
        &body,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", &name),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn state_of(v: &serde_json::Value) -> String {
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    v["result"]["requestState"]
        .as_str()
        .expect("requestState")
        .to_owned()
}

#[tokio::test]
async fn parked_calls_resume_re_ask_and_refuse_what_they_must() {
    let proxy = Proxy::demo(&["--server-era", "legacy"]);
    let url = proxy.url("/mcp");
    let first = asking(&url, 1, r#""name":"elicit","arguments":{}"#).await;
    let state = state_of(&first);
    let key = first["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("a key");
    assert_eq!(
        first["result"]["inputRequests"][&key]["method"],
        "elicitation/create"
    );
    // Wrong keys: asked again, with a new state.
    let again = asking(
        &url,
        2,
        &format!(r#""name":"elicit","arguments":{{}},"requestState":"{state}","inputResponses":{{"nope":{{}}}}"#),
    )
    .await;
    let state2 = state_of(&again);
    assert!(
        again["result"]["inputRequests"][&key].is_object(),
        "{again}"
    );
    // The used state cannot be used again, nor moved to another tool, nor forged.
    let reused = asking(
        &url,
        3,
        &format!(
            r#""name":"elicit","arguments":{{}},"requestState":"{state}","inputResponses":{{}}"#
        ),
    )
    .await;
    assert_eq!(reused["error"]["code"], -32602, "{reused}");
    let moved = asking(
        &url,
        4,
        &format!(r#""name":"echo","arguments":{{"message":"x"}},"requestState":"{state2}""#),
    )
    .await;
    assert_eq!(moved["error"]["code"], -32602, "{moved}");
    let forged = format!("{}x", &state2[..state2.len() - 1]);
    let f = asking(
        &url,
        5,
        &format!(r#""name":"elicit","arguments":{{}},"requestState":"{forged}""#),
    )
    .await;
    assert_eq!(f["error"]["code"], -32602, "{f}");
    // The right answer finishes the call, under the retry's id.
    let done = asking(
        &url,
        6,
        &format!(r#""name":"elicit","arguments":{{}},"requestState":"{state2}","inputResponses":{{"{key}":{{"action":"accept","content":{{"name":"Ada"}}}}}}"#),
    )
    .await;
    assert_eq!(done["id"], 6);
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("Ada"), "{done}");
}

#[tokio::test]
async fn parked_calls_time_out_and_are_cancelled_upstream() {
    let proxy = Proxy::demo(&["--server-era", "legacy", "--input-timeout", "1"]);
    let url = proxy.url("/mcp");
    let state = state_of(&asking(&url, 1, r#""name":"elicit","arguments":{}"#).await);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = asking(
        &url,
        2,
        &format!(
            r#""name":"elicit","arguments":{{}},"requestState":"{state}","inputResponses":{{}}"#
        ),
    )
    .await;
    assert_eq!(late["error"]["code"], -32602, "{late}");
    let stats = asking(&url, 3, r#""name":"stats","arguments":{}"#).await;
    assert_eq!(
        stats["result"]["content"][0]["text"], "cancelled=1",
        "the server was told: {stats}"
    );
}

#[tokio::test]
async fn a_server_that_dies_under_a_parked_call_gives_an_error() {
    let proxy = Proxy::demo(&["--server-era", "legacy"]);
    let url = proxy.url("/mcp");
    let first = asking(&url, 1, r#""name":"elicit","arguments":{}"#).await;
    let state = state_of(&first);
    let _ = asking(&url, 2, r#""name":"crash","arguments":{"status":3}"#).await;
    let r = asking(
        &url,
        3,
        &format!(
            r#""name":"elicit","arguments":{{}},"requestState":"{state}","inputResponses":{{}}"#
        ),
    )
    .await;
    assert_eq!(r["id"], 3);
    assert_eq!(r["error"]["code"], -32000, "{r}");
}

#[tokio::test]
async fn modern_requests_without_the_required_headers_are_refused() {
    let proxy = Proxy::demo(&[]);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"x"}},{META}}}}}"#
    );
    for headers in [
        &[("mcp-protocol-version", "2026-07-28")][..],
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ][..],
    ] {
        let r = post(&proxy.url("/mcp"), None, &body, headers).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], -32020);
    }
}

#[tokio::test]
async fn a_modern_client_that_closes_its_stream_cancels_the_call_upstream() {
    let proxy = Proxy::demo(&["--server-era", "legacy"]);
    let url = proxy.url("/mcp");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":8000},"_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "sleep")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream",
        "progress comes first, on a stream"
    );
    let mut resp = resp;
    let first = resp.chunk().await.expect("chunk").expect("an event");
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    drop(resp);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stats = asking(&url, 2, r#""name":"stats","arguments":{}"#).await;
    assert_eq!(
        stats["result"]["content"][0]["text"], "cancelled=1",
        "the server was told: {stats}"
    );
}
