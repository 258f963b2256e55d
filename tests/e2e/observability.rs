//! Metrics, traces and health: a scripted workload counted exactly in `/metrics`; a client's
//! trace continuing through the proxy into an SDK server, seen by a real OTLP receiver
//! (tests/servers/otlp_receiver.py); `/readyz`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

async fn scrape(url: &str, openmetrics: bool) -> String {
    let mut req = reqwest::Client::new().get(url);
    if openmetrics {
        req = req.header("accept", "application/openmetrics-text; version=1.0.0");
    }
    req.send()
        .await
        .expect("scrape")
        .text()
        .await
        .unwrap_or_default()
}

/// The value of the sample `name{labels}` (labels as written, in order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn call_in(url: &str, sid: &str, id: u64, tool: &str, args: Value) -> Value {
    call_tool(url, sid, id, tool, args).await
}

#[tokio::test]
async fn metrics_count_exactly_the_workload() {
    let config = temp_file(
        "metrics-gateway",
        &format!(
            r#"{{ "mcpServers": {{
    "one": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "two": {{ "command": "{BIN}", "args": ["--demo-server"], "timeout": 0.3 }}
}} }}"#
        ),
    );
    let proxy = Proxy::start(&["--config", &config, "--ignore-tool", "one--add"]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    list_tools(&url, &sid).await;
    // 3 ok, 2 tool errors, 1 JSON-RPC error (unknown tool), 1 timeout, 2 refused.
    for i in 0..3 {
        let a = call_in(&url, &sid, 10 + i, "one--echo", json!({"message": "ok"})).await;
        assert!(a.get("result").is_some(), "{a}");
    }
    for i in 0..2 {
        let a = call_in(
            &url,
            &sid,
            20 + i,
            "two--echo",
            json!({"message": "e", "isError": true}),
        )
        .await;
        assert_eq!(a["result"]["isError"], true, "{a}");
    }
    let a = call_in(&url, &sid, 30, "one--nonexistent", json!({})).await;
    assert!(a.get("error").is_some(), "{a}");
    let a = call_in(&url, &sid, 40, "two--sleep", json!({"ms": 3000})).await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    for i in 0..2 {
        let a = call_in(&url, &sid, 50 + i, "one--add", json!({"a": 1, "b": 2})).await;
        assert!(a.get("error").is_some(), "{a}");
    }
    let text = scrape(&proxy.url("/metrics"), false).await;
    let count = |labels: &str| sample(&text, &format!("mcp_proxy_requests_total{{{labels}}}"));
    assert_eq!(
        count(r#"server="one",method="tools/call",tool="one--echo",outcome="ok""#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count(r#"server="two",method="tools/call",tool="two--echo",outcome="tool_error""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count(r#"server="one",method="tools/call",tool="other",outcome="error""#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(r#"server="two",method="tools/call",tool="two--sleep",outcome="timeout""#),
        Some(1.0),
        "{text}"
    );
    // A hidden tool was never listed: its name is no label value.
    assert_eq!(
        count(r#"server="one",method="tools/call",tool="other",outcome="refused""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count(r#"server="merged",method="tools/list",tool="",outcome="ok""#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(r#"server="merged",method="initialize",tool="",outcome="ok""#),
        Some(1.0),
        "{text}"
    );
    // Nothing else was counted as a tool call.
    let calls: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("mcp_proxy_requests_total{") && l.contains(r#"method="tools/call""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(calls, 9.0, "{text}");
    assert_eq!(
        sample(
            &text,
            r#"mcp_proxy_errors_total{server="two",method="tools/call",code="-32001"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"mcp_server_operation_duration_seconds_count{server="one",mcp_method_name="tools/call",gen_ai_tool_name="one--echo",error_type=""}"#
        ),
        Some(3.0),
        "{text}"
    );
    // Towards the servers: the three echoes, timed as the server answered them (under the
    // name the server gave the tool).
    assert_eq!(
        sample(
            &text,
            r#"mcp_client_operation_duration_seconds_count{server="one",mcp_method_name="tools/call",gen_ai_tool_name="echo",error_type=""}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"mcp_proxy_calls_in_flight{server="one"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"mcp_proxy_sessions{server="merged",transport="streamable-http",era="session-based"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"mcp_proxy_server_state{server="one",state="ready"}"#
        ),
        Some(1.0)
    );
    assert!(
        sample(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{text}"
    );
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n > 3.0));
    assert!(!text.contains("# EOF"));
    // OpenMetrics when asked.
    let om = scrape(&proxy.url("/metrics"), true).await;
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    // Ready: every required server answers.
    let r = reqwest::get(proxy.url("/readyz")).await.expect("readyz");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn readiness_waits_for_required_servers_only() {
    let config = |required: bool| {
        temp_file(
            &format!("readyz-{required}"),
            &format!(
                r#"{{ "mcpServers": {{
    "good": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "broken": {{ "command": "/bin/false", "required": {required} }}
}} }}"#
            ),
        )
    };
    let strict = Proxy::start(&["--config", &config(true)]);
    let lenient = Proxy::start(&["--config", &config(false)]);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = reqwest::get(strict.url("/readyz")).await.expect("readyz");
        let l = reqwest::get(lenient.url("/readyz")).await.expect("readyz");
        let (s_status, l_status) = (s.status().as_u16(), l.status().as_u16());
        let body: Value = s.json().await.unwrap_or(Value::Null);
        if s_status == 503 && l_status == 200 {
            assert_eq!(body["waitingFor"][0]["name"], "broken", "{body}");
            break;
        }
        assert!(
            Instant::now() < end,
            "strict {s_status} {body}, lenient {l_status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // /healthz answers whatever the servers do.
    assert_eq!(
        reqwest::get(strict.url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
}

/// The OTLP receiver and the file it writes spans to.
fn receiver(tag: &str) -> (Running, u16, std::path::PathBuf) {
    let out = std::env::temp_dir().join(format!(
        "mcp-proxy-spans-{tag}-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&out);
    let (run, port) = Running::spawn_listening(
        &python(),
        &[
            repo_file("tests/servers/otlp_receiver.py"),
            "--port".into(),
            "0".into(),
            "--out".into(),
            out.display().to_string(),
        ],
    );
    (run, port, out)
}

fn spans(file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";

#[tokio::test]
async fn a_trace_continues_through_the_proxy_into_the_server() {
    let (_rx, port, file) = receiver("through");
    let proxy = Proxy::start_env(
        &[
            "--log-format".into(),
            "json".into(),
            "--log-level".into(),
            "debug".into(),
            "--".into(),
            python(),
            repo_file("tests/servers/traced_server.py"),
        ],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"traced","arguments":{{}},"_meta":{{"traceparent":"00-{TRACE}-{CALLER}-01","tracestate":"vendor=x"}}}}}}"#
    );
    let r = post(
        &url,
        Some(&sid),
        &body,
        &[("mcp-protocol-version", "2025-06-18")],
    )
    .await;
    let answer = r.events().pop().unwrap_or_else(|| r.json());
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned();
    let seen: Value = serde_json::from_str(&text).expect("json");
    let tp = seen["traceparent"]
        .as_str()
        .expect("the server got a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts[1], TRACE, "same trace: {tp}");
    assert_ne!(parts[2], CALLER, "a span of the proxy's in between: {tp}");
    assert_eq!(seen["tracestate"], "vendor=x");
    // The spans: the client's span → the proxy's server span → its client span → the server.
    let end = Instant::now() + Duration::from_secs(20);
    let (server, client) = loop {
        let all = spans(&file);
        let find = |kind: &str| {
            all.iter()
                .find(|s| s["traceId"] == TRACE && s["kind"] == kind)
                .cloned()
        };
        if let (Some(s), Some(c)) = (find("SERVER"), find("CLIENT")) {
            break (s, c);
        }
        assert!(Instant::now() < end, "no spans: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(server["name"], "tools/call traced");
    assert_eq!(server["parentSpanId"], CALLER, "{server}");
    assert_eq!(client["parentSpanId"], server["spanId"], "{client}");
    assert_eq!(
        client["spanId"], parts[2],
        "the server got the client span's context"
    );
    let a = &server["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "traced");
    assert_eq!(a["mcp.session.id"], sid.as_str());
    assert_eq!(a["mcp.protocol.version"], "2025-06-18");
    assert_eq!(a["jsonrpc.request.id"], "5");
    assert_eq!(a["network.transport"], "tcp");
    assert_eq!(server["service"], "mcp-proxy");
    // The proxy's JSON log lines about the request carry its trace and span.
    let log = proxy.run.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!(r#""trace_id":"{TRACE}""#))
                && l.contains(&format!(r#""span_id":{}"#, server["spanId"]))),
        "{log}"
    );
    // A failing call: error.type on the spans.
    let r = post(
        &url,
        Some(&sid),
        &call(6, "nonexistent", json!({})),
        &[("mcp-protocol-version", "2025-06-18")],
    )
    .await;
    assert!(
        r.body.contains("error") || r.body.contains("isError"),
        "{}",
        r.body
    );
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let all = spans(&file);
        if let Some(s) = all
            .iter()
            .find(|s| s["name"] == "tools/call nonexistent" && s["kind"] == "SERVER")
        {
            assert!(s["attributes"]["error.type"].is_string(), "{s}");
            break;
        }
        assert!(Instant::now() < end, "no span of the failed call: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sampling_at_zero_sends_no_spans_and_leaves_requests_untouched() {
    let (_rx, port, file) = receiver("zero");
    let proxy = Proxy::start_env(
        &[
            "--".into(),
            python(),
            repo_file("tests/servers/traced_server.py"),
        ],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_TRACES_SAMPLER", "traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", "0".into()),
        ],
    );
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let a = call_tool(&url, &sid, 3, "traced", json!({})).await;
    let text = a["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let seen: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    // Nothing sampled and nothing to follow: the request reaches the server untouched.
    assert!(seen["traceparent"].is_null(), "{seen}");
    assert!(a.get("result").is_some(), "{a}");
    // A client's own trace context still continues through the proxy (its span unsampled).
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"traced","arguments":{{}},"_meta":{{"traceparent":"00-{TRACE}-{CALLER}-00"}}}}}}"#
    );
    let r = post(
        &url,
        Some(&sid),
        &body,
        &[("mcp-protocol-version", "2025-06-18")],
    )
    .await;
    let answer = r.events().pop().unwrap_or_else(|| r.json());
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let seen: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let tp = seen["traceparent"].as_str().unwrap_or("");
    assert!(tp.contains(TRACE) && tp.ends_with("-00"), "{seen}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(spans(&file).is_empty(), "{:?}", spans(&file));
}
