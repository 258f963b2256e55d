//! A small MCP server on stdio, built in so that the proxy can be tried (and benchmarked)
//! with nothing else installed: `mcp-proxy --port 8080 -- mcp-proxy --demo-server`.
//!
//! Tools: `echo`, `add`, `sleep` (reports progress), `sample` (asks the client's model),
//! `elicit` (asks the user), `roots` (lists the client's roots), `blob` (a payload of N bytes),
//! `stats` (how many requests clients cancelled), `crash` (exits with a status). `sleep` also
//! logs (`notifications/message`, level info) when the client's log level lets it.
//! One resource (`demo://readme`, subscribable), one template (`demo://item/{id}`), one prompt.
//!
//! It speaks both protocol eras: session clients `initialize` as usual, and requests whose
//! `_meta` names revision 2026-07-28 are served statelessly (`server/discover`, `input_required`
//! results for sampling, elicitation and roots, `subscriptions/listen`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot};

use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::hub::{LATEST_LEGACY, LEGACY_VERSIONS};
use crate::transport::stdio::{Line, own_stdin, own_stdout, read_line, write_lines};

type Waiters = Arc<Mutex<HashMap<Id, oneshot::Sender<Message>>>>;

struct Demo {
    extra_tools: usize,
    out: mpsc::Sender<Message>,
    waiters: Waiters,
    next: std::sync::atomic::AtomicU64,
    /// Requests being handled, so that `notifications/cancelled` can stop them.
    running: Mutex<HashMap<Id, tokio::task::AbortHandle>>,
    cancelled: std::sync::atomic::AtomicU64,
    /// The level a session client set (`None`: log everything).
    log_level: Mutex<Option<String>>,
    /// The last `blob` result made (its size and text), given again for the same size.
    blobs: Mutex<Option<(usize, bool, bytestring::ByteString)>>,
}

/// `extra_tools`: that many more tools (`tool_1`, …, each answering its own name), for
/// benchmarks of large lists.
pub async fn run(extra_tools: usize) {
    let (out, rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(write_lines(own_stdout(), rx, |_, _| {}));
    let demo = Arc::new(Demo {
        extra_tools,
        out,
        waiters: Default::default(),
        next: Default::default(),
        running: Default::default(),
        cancelled: Default::default(),
        log_level: Default::default(),
        blobs: Default::default(),
    });
    let mut stdin = BufReader::with_capacity(64 * 1024, own_stdin());
    while let Ok(Some(line)) = read_line(&mut stdin, 64 << 20).await {
        let Line::Data(bytes) = line else { continue };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg = match Message::parse_one(bytes) {
            Ok(m) => m,
            Err(e) => {
                let _ = demo.out.send(e.to_response()).await;
                continue;
            }
        };
        if msg.is_response() {
            let waiter = msg
                .id()
                .and_then(|id| demo.waiters.lock().ok()?.remove(&id));
            if let Some(w) = waiter {
                let _ = w.send(msg);
            }
        } else if msg.is_request() {
            let Some(id) = msg.id() else { continue };
            let d = demo.clone();
            let task_id = id.clone();
            let task = tokio::spawn(async move {
                let answer = match echo_fast(&msg, &d.blobs) {
                    Some(result) => Message::response_from_text(task_id.clone(), result),
                    None => match d.handle(&msg).await {
                        Ok(result) => Message::response(task_id.clone(), to_raw(&result)),
                        Err((c, m)) => Message::error(task_id.clone(), c, &m, None),
                    },
                };
                if let Ok(mut r) = d.running.lock() {
                    r.remove(&task_id);
                }
                let _ = d.out.send(answer).await;
            });
            if let Ok(mut r) = demo.running.lock() {
                r.insert(id, task.abort_handle());
            }
        } else if msg.method() == Some("notifications/cancelled") {
            let id = msg.cancelled_request_id();
            let task = id.and_then(|id| demo.running.lock().ok()?.remove(&id));
            if let Some(t) = task {
                t.abort();
                demo.cancelled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    // Nobody is left to answer: requests still running (a subscription stream) end now.
    if let Ok(mut r) = demo.running.lock() {
        for (_, task) in r.drain() {
            task.abort();
        }
    }
    drop(demo);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

type Outcome = Result<Value, (i64, String)>;

/// `echo`, the benchmarks' tool, answered without decoding its message: the message's JSON
/// text goes into the result as it came.
fn echo_fast(
    msg: &Message,
    blobs: &Mutex<Option<(usize, bool, bytestring::ByteString)>>,
) -> Option<bytestring::ByteString> {
    #[derive(serde::Deserialize)]
    struct Args {
        message: Box<serde_json::value::RawValue>,
        #[serde(default, rename = "isError")]
        is_error: bool,
    }
    #[derive(serde::Deserialize)]
    struct Call {
        name: String,
        arguments: Args,
    }
    #[derive(serde::Deserialize)]
    struct Blob {
        name: String,
        arguments: BlobArgs,
    }
    #[derive(serde::Deserialize)]
    struct BlobArgs {
        bytes: u64,
    }
    if msg.method() != Some("tools/call") {
        return None;
    }
    let modern = crate::era::RequestMeta::of(msg)
        .version
        .is_some_and(|v| crate::era::is_modern(&v));
    let extra = if modern {
        r#","resultType":"complete""#
    } else {
        ""
    };
    // A JSON string as it was read (and checked), or made here: the result is JSON as built.
    let result = |text: &str| {
        bytestring::ByteString::from(format!(
            r#"{{"content":[{{"type":"text","text":{text}}}]{extra}}}"#
        ))
    };
    if let Some(call) = msg.params_as::<Call>()
        && call.name == "echo"
        && call.arguments.message.get().starts_with('"')
        && !call.arguments.is_error
    {
        return Some(result(call.arguments.message.get()));
    }
    let blob: Blob = msg.params_as()?;
    if blob.name != "blob" {
        return None;
    }
    let n = blob.arguments.bytes.min(16 << 20) as usize;
    let mut cache = blobs.lock().ok()?;
    if let Some((size, era, text)) = cache.as_ref()
        && *size == n
        && *era == modern
    {
        return Some(text.clone());
    }
    let made = result(&format!("\"{}\"", "x".repeat(n)));
    *cache = Some((n, modern, made.clone()));
    Some(made)
}

fn initialize_result(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "prompts": { "listChanged": true },
            "logging": {},
            "completions": {},
        },
        "serverInfo": { "name": "mcp-proxy-demo", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "A demo server built into mcp-proxy.",
    })
}

enum Input {
    Got(Value),
    /// The `input_required` result that asks for it.
    Need(Value),
}

fn text(s: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": s.into() }] })
}

impl Demo {
    async fn ask(&self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = Id::string(&format!("demo-{n}"));
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id.clone(), tx);
        }
        let _ = self
            .out
            .send(Message::request(id, method, Some(to_raw(&params))))
            .await;
        let answer = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .map_err(|_| (code::INTERNAL_ERROR, format!("no answer to {method}")))?
            .map_err(|_| (code::INTERNAL_ERROR, "closed".to_owned()))?;
        if let Some(r) = answer.result_as::<Value>() {
            return Ok(r);
        }
        let e: Value = answer
            .error_value()
            .and_then(|e| serde_json::from_str(e.get()).ok())
            .unwrap_or(Value::Null);
        Err((code::INTERNAL_ERROR, format!("{method} failed: {e}")))
    }

    /// Answer a request of either era: a request whose `_meta` names revision 2026-07-28 (or
    /// `server/discover`) is served statelessly, with what that revision requires.
    async fn handle(&self, msg: &Message) -> Outcome {
        let method = msg.method().unwrap_or("");
        let modern = method == "server/discover"
            || crate::era::RequestMeta::of(msg)
                .version
                .is_some_and(|v| crate::era::is_modern(&v));
        if !modern {
            return self.handle_era(msg, false).await;
        }
        if let Err(r) = crate::era::validate(msg, &crate::era::Headers::default()) {
            return Err((r.code, r.message));
        }
        match method {
            "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe" => {
                return Err((
                    code::METHOD_NOT_FOUND,
                    format!(
                        "{method} does not exist in protocol revision {}",
                        crate::era::MODERN
                    ),
                ));
            }
            "server/discover" => {
                let init = initialize_result(LATEST_LEGACY);
                return Ok(json!({
                    "resultType": "complete",
                    "supportedVersions": crate::era::MODERN_VERSIONS,
                    "capabilities": init["capabilities"],
                    "instructions": init["instructions"],
                    "_meta": { crate::era::META_SERVER_INFO: init["serverInfo"] },
                    "ttlMs": 60_000,
                    "cacheScope": "public",
                }));
            }
            "subscriptions/listen" => return self.listen(msg).await,
            _ => {}
        }
        let mut result = self.handle_era(msg, true).await?;
        if let Value::Object(r) = &mut result {
            r.entry("resultType").or_insert("complete".into());
            if matches!(
                method,
                "tools/list"
                    | "prompts/list"
                    | "resources/list"
                    | "resources/templates/list"
                    | "resources/read"
            ) {
                r.insert("ttlMs".into(), 0.into());
                r.insert("cacheScope".into(), "public".into());
            }
        }
        Ok(result)
    }

    /// A 2026-07-28 subscription: acknowledged, then an update for each subscribed resource
    /// (as `resources/subscribe` does for session clients); open until cancelled.
    async fn listen(&self, msg: &Message) -> Outcome {
        let params: Value = msg.params_as().unwrap_or(Value::Null);
        let sub = msg
            .id()
            .map(|i| i.to_raw())
            .unwrap_or_else(|| to_raw(&Value::Null));
        let wanted = &params["notifications"];
        let mut honoured = serde_json::Map::new();
        for flag in [
            "toolsListChanged",
            "promptsListChanged",
            "resourcesListChanged",
        ] {
            if wanted[flag] == true {
                honoured.insert(flag.into(), true.into());
            }
        }
        if let Some(uris) = wanted["resourceSubscriptions"].as_array() {
            honoured.insert("resourceSubscriptions".into(), Value::Array(uris.clone()));
        }
        let mut ack = Message::notification(
            "notifications/subscriptions/acknowledged",
            Some(to_raw(&json!({ "notifications": honoured }))),
        );
        ack.set_param_meta(crate::era::META_SUBSCRIPTION, sub.clone());
        let _ = self.out.send(ack).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for uri in wanted["resourceSubscriptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let mut n = Message::notification(
                "notifications/resources/updated",
                Some(to_raw(&json!({ "uri": uri }))),
            );
            n.set_param_meta(crate::era::META_SUBSCRIPTION, sub.clone());
            let _ = self.out.send(n).await;
        }
        std::future::pending().await
    }

    async fn handle_era(&self, msg: &Message, modern: bool) -> Outcome {
        let params: Value = msg.params_as().unwrap_or(Value::Null);
        match msg.method().unwrap_or("") {
            "initialize" => {
                let asked = params["protocolVersion"].as_str().unwrap_or("");
                let version = if LEGACY_VERSIONS.contains(&asked) {
                    asked
                } else {
                    LATEST_LEGACY
                };
                Ok(initialize_result(version))
            }
            "logging/setLevel" => {
                if let Ok(mut l) = self.log_level.lock() {
                    *l = params["level"].as_str().map(str::to_owned);
                }
                Ok(json!({}))
            }
            "ping" | "resources/unsubscribe" => Ok(json!({})),
            "resources/subscribe" => {
                let uri = params["uri"].clone();
                let out = self.out.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let n = Message::notification(
                        "notifications/resources/updated",
                        Some(to_raw(&json!({ "uri": uri }))),
                    );
                    let _ = out.send(n).await;
                });
                Ok(json!({}))
            }
            "tools/list" => Ok(json!({ "tools": tools(self.extra_tools) })),
            "tools/call" => self.call(&params, msg, modern).await,
            "resources/list" => Ok(json!({ "resources": [
                { "uri": "demo://readme", "name": "readme", "mimeType": "text/plain" }
            ]})),
            "resources/templates/list" => Ok(json!({ "resourceTemplates": [
                { "uriTemplate": "demo://item/{id}", "name": "item", "mimeType": "text/plain" }
            ]})),
            "resources/read" => {
                let uri = params["uri"].as_str().unwrap_or("");
                // The process id tells two copies of the demo server apart.
                let pid = std::process::id();
                let body = if uri == "demo://readme" {
                    format!("This is the mcp-proxy demo server (process {pid}).")
                } else if let Some(id) = uri.strip_prefix("demo://item/") {
                    format!("item {id} (process {pid})")
                } else {
                    return Err((code::INVALID_PARAMS, format!("unknown resource {uri}")));
                };
                Ok(json!({ "contents": [{ "uri": uri, "mimeType": "text/plain", "text": body }] }))
            }
            "prompts/list" => Ok(json!({ "prompts": [{
                "name": "greet", "description": "Greets someone",
                "arguments": [{ "name": "name", "required": true }]
            }]})),
            "prompts/get" => {
                let name = params["arguments"]["name"].as_str().unwrap_or("world");
                Ok(
                    json!({ "messages": [{ "role": "user", "content": { "type": "text", "text": format!("Say hello to {name}") } }] }),
                )
            }
            "completion/complete" => {
                let prefix = params["argument"]["value"].as_str().unwrap_or("");
                let values: Vec<&str> = ["alice", "bob", "carol"]
                    .into_iter()
                    .filter(|v| v.starts_with(prefix))
                    .collect();
                Ok(
                    json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }),
                )
            }
            m => Err((code::METHOD_NOT_FOUND, format!("Method not found: {m}"))),
        }
    }

    /// What the client answers to `method`: asked now (session clients), or taken from the
    /// retry's `inputResponses` after an `input_required` result (2026-07-28 clients).
    async fn input(
        &self,
        modern: bool,
        params: &Value,
        key: &str,
        method: &str,
        request: Value,
    ) -> Result<Input, (i64, String)> {
        if !modern {
            return self.ask(method, request).await.map(Input::Got);
        }
        Ok(match params["inputResponses"].get(key) {
            Some(v) => Input::Got(v.clone()),
            None => Input::Need(json!({
                "resultType": "input_required",
                "inputRequests": { key: { "method": method, "params": request } },
            })),
        })
    }

    async fn call(&self, params: &Value, msg: &Message, modern: bool) -> Outcome {
        let args = &params["arguments"];
        match params["name"].as_str().unwrap_or("") {
            "echo" => {
                let mut r = text(args["message"].as_str().unwrap_or(""));
                // `"isError": true` answers with a tool error (for trying clients and gateways).
                if args["isError"] == Value::Bool(true) {
                    r["isError"] = Value::Bool(true);
                }
                Ok(r)
            }
            "add" => {
                let (a, b) = (
                    args["a"].as_f64().unwrap_or(0.0),
                    args["b"].as_f64().unwrap_or(0.0),
                );
                Ok(text(format!("{}", a + b)))
            }
            "blob" => {
                let n = args["bytes"].as_u64().unwrap_or(1024).min(16 << 20) as usize;
                Ok(text("x".repeat(n)))
            }
            "sleep" => {
                let ms = args["ms"].as_u64().unwrap_or(100).min(600_000);
                let steps = 4u64;
                let token = msg.progress_token();
                // A 2026-07-28 client gets log messages only when its request asks for them.
                let level = if modern {
                    crate::era::RequestMeta::of(msg).log_level
                } else {
                    Some(
                        self.log_level
                            .lock()
                            .ok()
                            .and_then(|l| l.clone())
                            .unwrap_or_else(|| "debug".into()),
                    )
                };
                if level.is_some_and(|l| {
                    crate::route::level_rank("info") >= crate::route::level_rank(&l)
                }) {
                    let note = json!({ "level": "info", "logger": "demo", "data": format!("sleeping {ms} ms") });
                    let _ = self
                        .out
                        .send(Message::notification(
                            "notifications/message",
                            Some(to_raw(&note)),
                        ))
                        .await;
                }
                for i in 1..=steps {
                    tokio::time::sleep(Duration::from_millis(ms / steps)).await;
                    if let Some(t) = &token {
                        let p = json!({ "progressToken": serde_json::from_str::<Value>(t.as_json()).unwrap_or_default(),
                                        "progress": i, "total": steps, "message": format!("step {i}") });
                        let _ = self
                            .out
                            .send(Message::notification(
                                "notifications/progress",
                                Some(to_raw(&p)),
                            ))
                            .await;
                    }
                }
                Ok(text(format!("slept {ms} ms")))
            }
            "sample" => {
                let prompt = args["prompt"].as_str().unwrap_or("Hello");
                let request = json!({
                    "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                    "maxTokens": 100,
                });
                let r = match self
                    .input(modern, params, "sample", "sampling/createMessage", request)
                    .await?
                {
                    Input::Got(r) => r,
                    Input::Need(ask) => return Ok(ask),
                };
                Ok(text(format!(
                    "model said: {}",
                    r["content"]["text"].as_str().unwrap_or("")
                )))
            }
            "elicit" => {
                let request = json!({
                    "mode": "form",
                    "message": args["message"].as_str().unwrap_or("What is your name?"),
                    "requestedSchema": { "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] },
                });
                let r = match self
                    .input(modern, params, "elicit", "elicitation/create", request)
                    .await?
                {
                    Input::Got(r) => r,
                    Input::Need(ask) => return Ok(ask),
                };
                Ok(text(format!(
                    "user answered: {} {}",
                    r["action"].as_str().unwrap_or(""),
                    r["content"]
                )))
            }
            "stats" => Ok(text(format!(
                "cancelled={}",
                self.cancelled.load(std::sync::atomic::Ordering::Relaxed)
            ))),
            "crash" => {
                let status = args["status"].as_i64().unwrap_or(3) as i32;
                std::process::exit(status);
            }
            "roots" => {
                let r = match self
                    .input(modern, params, "roots", "roots/list", json!({}))
                    .await?
                {
                    Input::Got(r) => r,
                    Input::Need(ask) => return Ok(ask),
                };
                Ok(text(format!("roots: {}", r["roots"])))
            }
            extra
                if extra
                    .strip_prefix("tool_")
                    .and_then(|k| k.parse::<usize>().ok())
                    .is_some_and(|k| k >= 1 && k <= self.extra_tools) =>
            {
                Ok(text(extra))
            }
            other => Err((code::INVALID_PARAMS, format!("Unknown tool: {other}"))),
        }
    }
}

fn tools(extra: usize) -> Value {
    let obj = |props: Value, req: &[&str]| json!({ "type": "object", "properties": props, "required": req });
    let mut list = json!([
        { "name": "echo", "description": "Returns the message", "inputSchema": obj(json!({ "message": { "type": "string" } }), &["message"]) },
        { "name": "add", "description": "Adds two numbers", "inputSchema": obj(json!({ "a": { "type": "number" }, "b": { "type": "number" } }), &["a", "b"]) },
        { "name": "blob", "description": "Returns a text of N bytes", "inputSchema": obj(json!({ "bytes": { "type": "integer" } }), &[]) },
        { "name": "sleep", "description": "Waits, reporting progress", "inputSchema": obj(json!({ "ms": { "type": "integer" } }), &[]) },
        { "name": "sample", "description": "Asks the client's model", "inputSchema": obj(json!({ "prompt": { "type": "string" } }), &[]) },
        { "name": "elicit", "description": "Asks the user", "inputSchema": obj(json!({ "message": { "type": "string" } }), &[]) },
        { "name": "roots", "description": "Lists the client's roots", "inputSchema": obj(json!({}), &[]) },
        { "name": "stats", "description": "Counts requests cancelled by clients", "inputSchema": obj(json!({}), &[]) },
        { "name": "crash", "description": "Exits the server process with a status", "inputSchema": obj(json!({ "status": { "type": "integer" } }), &[]) },
    ]);
    if let Value::Array(tools) = &mut list {
        for k in 1..=extra {
            tools.push(json!({
                "name": format!("tool_{k}"),
                "description": format!("Extra tool number {k}; answers its name"),
                "inputSchema": obj(json!({}), &[]),
            }));
        }
    }
    list
}
