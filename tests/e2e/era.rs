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
    for extra in [&[][..], &["--per-client"][..]] {
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
    let backend = Proxy::demo(&[]);
    let proxy = Proxy::start(&[&backend.url("/mcp")]);
    modern_client_reaches_legacy_server(&proxy.url("/mcp")).await;
}

#[tokio::test]
async fn modern_requests_that_disagree_or_ask_too_much_are_refused() {
    let proxy = Proxy::demo(&[]);
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
