//! Who may use the proxy: API keys and tokens, OAuth access tokens from a real authorization
//! server (`oidc-provider`, tests/servers/oauth_as.mjs) found by real clients through the
//! proxy's own metadata, the per-identity policy, limits and the audit log.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"modern","version":"1"}}"#;

/// A session at `url` with credentials `auth`; its id.
async fn session_as(url: &str, auth: &[(&str, &str)]) -> String {
    let r = post(url, None, INIT, auth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.header("mcp-session-id").expect("session id");
    let n = post(
        url,
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        auth,
    )
    .await;
    assert_eq!(n.status, 202, "{}", n.body);
    id
}

fn first(r: &Reply) -> Value {
    r.events()
        .into_iter()
        .rfind(|m| m.get("id").is_some())
        .unwrap_or_else(|| r.json())
}

async fn names(url: &str, sid: &str, auth: &[(&str, &str)]) -> Vec<String> {
    let r = post(
        url,
        Some(sid),
        r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#,
        auth,
    )
    .await;
    let mut n: Vec<String> = first(&r)["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    n.sort();
    n
}

async fn call_as(url: &str, sid: &str, auth: &[(&str, &str)], tool: &str, args: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    first(&post(url, Some(sid), &call(id, tool, args), auth).await)
}

/// A 2026-07-28 request (no session; credentials on each request).
async fn modern(url: &str, auth: &[(&str, &str)], method: &str, params: &str) -> Reply {
    let sep = if params.is_empty() { "" } else { "," };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"{method}","params":{{{params}{sep}{META}}}}}"#
    );
    let name = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["params"]["name"].as_str().map(str::to_owned));
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = &name {
        headers.push(("mcp-name", n));
    }
    headers.extend_from_slice(auth);
    post(url, None, &body, &headers).await
}

async fn get(url: &str, auth: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in auth {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("sent");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn audit_lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn keys_let_known_clients_in_and_keep_strangers_out() {
    let audit =
        std::env::temp_dir().join(format!("mcp-proxy-audit-keys-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let audit = audit.display().to_string();
    let proxy = Proxy::start_env(
        &[
            "--api-token".into(),
            "ci:ci-token-0123456789".into(),
            "--auth-failures".into(),
            "4".into(),
            "--audit-log".into(),
            audit.clone(),
            "--".into(),
            BIN.into(),
            "--demo-server".into(),
        ],
        &[(
            "ALLOWED_KEYS",
            "alice:alice-key-123456,bob-key-7654321".into(),
        )],
    );
    let url = proxy.url("/mcp");
    // No credentials, a wrong key, a wrong token: 401 with a challenge, nothing served.
    let r = post(&url, None, INIT, &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    let r = post(&url, None, INIT, &[("x-api-key", "alice-key-12345")]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        !r.body.contains("alice"),
        "says nothing about known keys: {}",
        r.body
    );
    let r = post(
        &url,
        None,
        INIT,
        &[("authorization", "Bearer nope-nope-nope")],
    )
    .await;
    assert_eq!(r.status, 401);
    // /healthz stays open; /status needs credentials.
    assert_eq!(get(&proxy.url("/healthz"), &[]).await.0, 200);
    assert_eq!(get(&proxy.url("/status"), &[]).await.0, 401);
    assert_eq!(
        get(&proxy.url("/status"), &[("x-api-key", "alice-key-123456")])
            .await
            .0,
        200
    );
    // Each way of proving who one is: X-Api-Key, ?key=, a bare key from the list, a token.
    let alice = [("x-api-key", "alice-key-123456")];
    let sid = session_as(&url, &alice).await;
    let a = call_as(&url, &sid, &alice, "echo", json!({"message": "hi"})).await;
    assert!(a.to_string().contains("hi"), "{a}");
    let with_query = format!("{url}?key=bob-key-7654321");
    let bob_sid = session_as(&with_query, &[]).await;
    let a = call_as(
        &with_query,
        &bob_sid,
        &[],
        "echo",
        json!({"message": "query"}),
    )
    .await;
    assert!(a.to_string().contains("query"), "{a}");
    let ci = [("authorization", "Bearer ci-token-0123456789")];
    session_as(&url, &ci).await;
    // Someone else's session does not exist for you.
    let r = post(
        &url,
        Some(&sid),
        &call(8, "echo", json!({"message": "x"})),
        &ci,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(
        &url,
        Some(&sid),
        &call(8, "echo", json!({"message": "x"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    // A 2026-07-28 client proves itself on every request.
    let r = modern(
        &url,
        &alice,
        "tools/call",
        r#""name":"echo","arguments":{"message":"m"}"#,
    )
    .await;
    assert!(r.body.contains("\"m\""), "{}", r.body);
    assert_eq!(modern(&url, &[], "tools/list", "").await.status, 401);
    // Repeated failures from one address: refused for the rest of the minute, even with a
    // good key, with Retry-After.
    for _ in 0..4 {
        post(&url, None, INIT, &[("x-api-key", "wrong-key-000000")]).await;
    }
    let r = post(&url, None, INIT, &alice).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // The key sent in the query string is in no log line; the audit names the identities.
    let log = proxy.run.log_text();
    assert!(
        !log.contains("bob-key-7654321") && !log.contains("alice-key-123456"),
        "{log}"
    );
    let lines = audit_lines(&audit);
    assert!(
        lines
            .iter()
            .any(|l| l["identity"]["name"] == "alice" && l["outcome"] == "ok"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["identity"]["name"] == "key-2"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["outcome"] == "unauthenticated"),
        "{lines:?}"
    );
    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        !text.contains("7654321") && !text.contains("123456\""),
        "{text}"
    );
}

fn gateway_config() -> String {
    temp_file(
        "inbound-gateway",
        &format!(
            r#"{{ "mcpServers": {{
    "one": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "two": {{ "command": "{BIN}", "args": ["--demo-server"] }}
}} }}"#
        ),
    )
}

#[tokio::test]
async fn two_identities_see_and_use_different_tools_and_every_outcome_is_audited() {
    let policy = std::env::temp_dir().join(format!("mcp-proxy-policy-{}.json", std::process::id()));
    std::fs::write(
        &policy,
        r#"{ rules: [
            { who: { key: "alice" }, servers: ["one"] },
            { who: { key: "bob" }, servers: ["two"], tools: ["echo", "sleep", "add"], deny: { tools: ["two--add"] },
              limits: { concurrency: 1 } },
        ] }"#,
    )
    .expect("policy");
    let audit =
        std::env::temp_dir().join(format!("mcp-proxy-audit-policy-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let audit = audit.display().to_string();
    let config = gateway_config();
    let proxy = Proxy::start(&[
        "--config",
        &config,
        "--api-key",
        "alice:alice-key-123456",
        "--api-key",
        "bob:bob-key-7654321",
        "--api-key",
        "carol:carol-key-000000",
        "--policy",
        &policy.display().to_string(),
        "--audit-log",
        &audit,
    ]);
    let merged = proxy.url("/mcp");
    let alice = [("x-api-key", "alice-key-123456")];
    let bob = [("x-api-key", "bob-key-7654321")];
    let carol = [("x-api-key", "carol-key-000000")];
    let a_sid = session_as(&merged, &alice).await;
    let b_sid = session_as(&merged, &bob).await;
    let a_tools = names(&merged, &a_sid, &alice).await;
    let b_tools = names(&merged, &b_sid, &bob).await;
    assert!(
        a_tools.iter().all(|t| t.starts_with("one--")) && a_tools.contains(&"one--add".into()),
        "{a_tools:?}"
    );
    assert_eq!(b_tools, vec!["two--echo", "two--sleep"]);
    // Each is refused the other's tools, and the denied one.
    let r = call_as(
        &merged,
        &a_sid,
        &alice,
        "two--echo",
        json!({"message": "x"}),
    )
    .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not available"),
        "{r}"
    );
    let r = call_as(&merged, &b_sid, &bob, "one--echo", json!({"message": "x"})).await;
    assert!(r["error"].is_object(), "{r}");
    let r = call_as(&merged, &b_sid, &bob, "two--add", json!({"a": 1, "b": 2})).await;
    assert!(r["error"].is_object(), "{r}");
    let r = call_as(&merged, &a_sid, &alice, "one--add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["result"]["content"][0]["text"], "3", "{r}");
    // A tool error and a JSON-RPC error, audited as such.
    let r = call_as(
        &merged,
        &a_sid,
        &alice,
        "one--echo",
        json!({"message": "e", "isError": true}),
    )
    .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    call_as(&merged, &a_sid, &alice, "one--nonexistent", json!({})).await;
    // On /servers/NAME/: bob cannot reach "one" at all; alice sees all of it.
    let r = post(&proxy.url("/servers/one/mcp"), None, INIT, &bob).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let one = proxy.url("/servers/one/mcp");
    let sid = session_as(&one, &alice).await;
    assert!(names(&one, &sid, &alice).await.contains(&"add".into()));
    let two = proxy.url("/servers/two/mcp");
    let sid = session_as(&two, &bob).await;
    assert_eq!(names(&two, &sid, &bob).await, vec!["echo", "sleep"]);
    let r = call_as(&two, &sid, &bob, "add", json!({"a": 1, "b": 2})).await;
    assert!(r["error"].is_object(), "{r}");
    // 2026-07-28 clients: the same lists and refusals.
    let r = modern(&merged, &bob, "tools/list", "").await;
    let listed: Vec<String> = r.json()["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed, vec!["two--echo", "two--sleep"], "{}", r.body);
    let r = modern(
        &merged,
        &bob,
        "tools/call",
        r#""name":"one--echo","arguments":{"message":"m"}"#,
    )
    .await;
    assert!(r.body.contains("not available"), "{}", r.body);
    // Someone no rule names gets nothing.
    let c_sid = session_as(&merged, &carol).await;
    assert!(names(&merged, &c_sid, &carol).await.is_empty());
    // Limits: bob may have one call waiting at once.
    let slow = {
        let merged = merged.clone();
        let b_sid = b_sid.clone();
        tokio::spawn(async move {
            call_as(
                &merged,
                &b_sid,
                &[("x-api-key", "bob-key-7654321")],
                "two--sleep",
                json!({"ms": 1500}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = call_as(&merged, &b_sid, &bob, "two--echo", json!({"message": "x"})).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("at once"),
        "{r}"
    );
    let _ = slow.await;
    // The policy is reloaded live: carol gets "two", and is told that her lists changed.
    let mut stream = reqwest::Client::new()
        .get(&merged)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &c_sid)
        .header("mcp-protocol-version", "2025-06-18")
        .header("x-api-key", "carol-key-000000")
        .send()
        .await
        .expect("GET stream");
    assert_eq!(stream.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        &policy,
        r#"{ rules: [ { who: { key: "carol" }, servers: ["two"] } ] }"#,
    )
    .expect("policy");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let n = names(&merged, &c_sid, &carol).await;
        if n.contains(&"two--echo".into()) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the new policy did not take effect: {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen = String::new();
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(told, "no list_changed on the stream: {seen}");
    // Every outcome is in the audit log.
    let lines = audit_lines(&audit);
    for outcome in ["ok", "tool_error", "error", "denied", "limited"] {
        assert!(
            lines
                .iter()
                .any(|l| l["outcome"] == outcome && l["event"] == "call"),
            "no `{outcome}` line: {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["outcome"] == "denied" && l["event"] == "refused" && l["server"] == "one")
    );
    let ok = lines
        .iter()
        .find(|l| l["outcome"] == "ok" && l["name"] == "add")
        .expect("an ok line");
    assert_eq!(ok["server"], "one");
    assert_eq!(ok["identity"]["name"], "alice");
    assert!(ok["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(ok["durationMs"].is_number() && ok["requestBytes"].is_number());
    assert!(
        ok.get("arguments").is_none(),
        "arguments only when asked for"
    );
}

/// oidc-provider issuing tokens for the proxy (client credentials, resource indicators).
struct Issuer {
    _run: Running,
    port: u16,
}

fn issuer() -> Issuer {
    let client = json!({"client_id": "robot", "client_secret": "robot-secret", "grant_types": ["client_credentials"], "redirect_uris": [], "response_types": [], "token_endpoint_auth_method": "client_secret_basic"});
    let (run, port) = Running::spawn_listening(
        &node(),
        &[
            repo_file("tests/servers/oauth_as.mjs"),
            "--port".into(),
            "0".into(),
            "--resource".into(),
            "*".into(),
            "--static-client".into(),
            client.to_string(),
        ],
    );
    Issuer { _run: run, port }
}

/// A client-credentials token for `resource`, straight from the authorization server.
async fn token_for(issuer: u16, resource: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{issuer}/token"))
        .basic_auth("robot", Some("robot-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", "mcp:read"),
        ])
        .send()
        .await
        .expect("token request");
    let v: Value = r.json().await.expect("json");
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

fn sdk_client(args: &[&str]) -> (bool, String) {
    let mut all = vec![repo_file("tests/clients/oauth_sdk_client.mjs")];
    all.extend(args.iter().map(|s| s.to_string()));
    run_to_end(&node(), &all, Duration::from_secs(60))
}

#[tokio::test]
async fn oauth_clients_find_the_issuer_through_the_proxy_and_bad_tokens_are_refused() {
    let is = issuer();
    let iss = format!("http://127.0.0.1:{}", is.port);
    let proxy = Proxy::start(&["--auth-issuer", &iss, "--", BIN, "--demo-server"]);
    let url = proxy.url("/mcp");
    // The metadata clients discover it by.
    let r = post(&url, None, INIT, &[]).await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    let (status, body) = get(&proxy.url("/.well-known/oauth-protected-resource/mcp"), &[]).await;
    assert_eq!(status, 200);
    let prm: Value = serde_json::from_str(&body).expect("metadata");
    assert_eq!(prm["resource"], url);
    assert_eq!(prm["authorization_servers"][0], iss);
    // The official TypeScript SDK, with its own OAuth: client credentials over /mcp and /sse,
    // and the authorization code in a browser.
    let (ok, out) = sdk_client(&[
        "--url",
        &url,
        "--client-id",
        "robot",
        "--client-secret",
        "robot-secret",
        "--expected-issuer",
        &iss,
        "--tool",
        "echo",
        "--args",
        r#"{"message":"sdk"}"#,
    ]);
    assert!(ok && out.contains(r#""text":"sdk""#), "{out}");
    let (ok, out) = sdk_client(&[
        "--transport",
        "sse",
        "--url",
        &proxy.url("/sse"),
        "--client-id",
        "robot",
        "--client-secret",
        "robot-secret",
        "--expected-issuer",
        &iss,
        "--tool",
        "echo",
        "--args",
        r#"{"message":"over sse"}"#,
    ]);
    assert!(ok && out.contains("over sse"), "{out}");
    let (ok, out) = sdk_client(&[
        "--url",
        &url,
        "--tool",
        "echo",
        "--args",
        r#"{"message":"signed in"}"#,
    ]);
    assert!(ok && out.contains("signed in"), "{out}");
    // mcp-proxy itself as the OAuth client in front of it.
    let info =
        r#"{"client_id":"robot","client_secret":"robot-secret","grant_type":"client_credentials"}"#;
    let mut c = LineClient::start_env(
        &[
            "--static-oauth-client-info".into(),
            info.into(),
            url.clone(),
        ],
        &[(
            "XDG_CACHE_HOME",
            std::env::temp_dir()
                .join(format!("mcp-proxy-inbound-cache-{}", std::process::id()))
                .display()
                .to_string(),
        )],
    );
    c.send(INIT);
    let a = c
        .until_answer(json!(0), Duration::from_secs(30))
        .pop()
        .expect("answer");
    assert!(a.get("result").is_some(), "{a}");
    c.send(&call(1, "echo", json!({"message": "proxy to proxy"})));
    let a = c
        .until_answer(json!(1), Duration::from_secs(30))
        .pop()
        .expect("answer");
    assert!(a.to_string().contains("proxy to proxy"), "{a}");
    // A 2026-07-28 client with a token.
    let token = token_for(is.port, &url).await;
    let bearer = format!("Bearer {token}");
    let r = modern(
        &url,
        &[("authorization", &bearer)],
        "tools/call",
        r#""name":"echo","arguments":{"message":"modern"}"#,
    )
    .await;
    assert!(r.body.contains("modern"), "{}", r.body);
    // A token for another resource, a tampered one, garbage: 401 invalid_token.
    let other = token_for(is.port, "http://127.0.0.1:1/mcp").await;
    // One character in the middle of the signature changed.
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() - 20;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    for (bad, said) in [
        (other.as_str(), "another audience"),
        (tampered.as_str(), "signature"),
        ("not.a.jwt", "malformed"),
    ] {
        let b = format!("Bearer {bad}");
        let r = post(&url, None, INIT, &[("authorization", &b)]).await;
        assert_eq!(r.status, 401, "{bad}: {}", r.body);
        let h = r.header("www-authenticate").unwrap_or_default();
        assert!(
            h.contains("invalid_token") && r.body.contains(said),
            "{h} {}",
            r.body
        );
    }
    // The client's token never goes on to a server: the demo server is behind stdio, and the
    // proxy's own log has none of it.
    assert!(!proxy.run.log_text().contains(&token));
}

#[tokio::test]
async fn scopes_the_policy_asks_for_get_403_insufficient_scope() {
    let is = issuer();
    let iss = format!("http://127.0.0.1:{}", is.port);
    let policy = temp_file(
        "scope-policy",
        r#"{ rules: [ { who: { scope: "mcp:read" }, tools: ["echo"] }, { who: { scope: "mcp:admin" }, tools: ["*"] } ] }"#,
    );
    let proxy = Proxy::start(&[
        "--auth-issuer",
        &iss,
        "--policy",
        &policy,
        "--",
        BIN,
        "--demo-server",
    ]);
    let url = proxy.url("/mcp");
    let token = token_for(is.port, &url).await;
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let sid = session_as(&url, &auth).await;
    assert_eq!(names(&url, &sid, &auth).await, vec!["echo"]);
    let r = post(
        &url,
        Some(&sid),
        &call(3, "add", json!({"a": 1, "b": 2})),
        &auth,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let h = r.header("www-authenticate").unwrap_or_default();
    assert!(
        h.contains("insufficient_scope") && h.contains("mcp:admin") && h.contains("mcp:read"),
        "{h}"
    );
    // With the JWKS server gone, known keys keep working.
    drop(is);
    let a = call_as(&url, &sid, &auth, "echo", json!({"message": "still"})).await;
    assert!(a.to_string().contains("still"), "{a}");
    // A proxy that never got the keys says the provider cannot be reached (503).
    let fresh = Proxy::start(&["--auth-issuer", &iss, "--", BIN, "--demo-server"]);
    let r = post(&fresh.url("/mcp"), None, INIT, &auth).await;
    assert_eq!(r.status, 503, "{}", r.body);
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection() {
    let is = issuer();
    let iss = format!("http://127.0.0.1:{}", is.port);
    let proxy = Proxy::start_env(
        &[
            "--auth-issuer".into(),
            iss.clone(),
            "--auth-introspection".into(),
            format!("{iss}/token/introspection"),
            "--auth-client-id".into(),
            "robot".into(),
            "--".into(),
            BIN.into(),
            "--demo-server".into(),
        ],
        &[("MCP_PROXY_AUTH_CLIENT_SECRET", "robot-secret".into())],
    );
    let url = proxy.url("/mcp");
    // Unknown to the authorization server: not active.
    let r = post(
        &url,
        None,
        INIT,
        &[("authorization", "Bearer opaque-and-unknown-token")],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("not active"), "{}", r.body);
    // Real but issued for no resource (an opaque token without an audience): active, yet not
    // for this proxy, so refused.
    let v: Value = reqwest::Client::new()
        .post(format!("{iss}/token"))
        .basic_auth("robot", Some("robot-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mcp:read")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let opaque = v["access_token"].as_str().expect("a token").to_owned();
    assert_eq!(opaque.split('.').count(), 1, "opaque: {opaque}");
    let bearer = format!("Bearer {opaque}");
    let r = post(&url, None, INIT, &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("another audience"), "{}", r.body);
    assert!(!proxy.run.log_text().contains(&opaque));
}
