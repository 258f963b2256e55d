//! Between one client session (or one 2026-07-28 request) and its route: what the identity
//! may not see is left out of lists, what it may not use is refused, its calls count against
//! its limits, and each call is written to the audit log when it is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::Caller;
use super::audit::Entry;
use super::policy::Kind;
use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::catalog::Catalog;

enum Noted {
    List(Kind),
    Call {
        method: String,
        server: String,
        name: String,
        started: Instant,
        size: usize,
        arguments: Option<Value>,
    },
}

pub struct Gate {
    caller: Caller,
    session: Mutex<String>,
    /// The named server this session is on (`/servers/NAME/`), if any.
    server: Option<String>,
    /// The merged view, to tell which server a merged name belongs to.
    catalog: Option<Arc<Catalog>>,
    noted: Mutex<HashMap<Id, Noted>>,
    /// Ends the task that tells the client about policy changes.
    done: tokio_util::sync::CancellationToken,
}

/// The list member and key of each listing method.
fn list_of(method: &str) -> Option<(Kind, &'static str, &'static str)> {
    Some(match method {
        "tools/list" => (Kind::Tool, "tools", "name"),
        "prompts/list" => (Kind::Prompt, "prompts", "name"),
        "resources/list" => (Kind::Resource, "resources", "uri"),
        "resources/templates/list" => (Kind::Resource, "resourceTemplates", "uriTemplate"),
        _ => return None,
    })
}

/// The members of a using request's params that the gate reads (not its arguments).
#[derive(serde::Deserialize)]
struct Target {
    name: Option<String>,
    uri: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<Value>,
}

/// What a using request is about: its kind and the name or URI as the client wrote it.
fn target_of(msg: &Message) -> Option<(Kind, String)> {
    let method = msg.method()?;
    if !matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
    ) {
        return None;
    }
    let t = msg.params_as::<Target>()?;
    let p = serde_json::json!({ "name": t.name, "uri": t.uri, "ref": t.reference });
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match msg.method()? {
        "tools/call" => Some((Kind::Tool, s(&p, "name")?)),
        "prompts/get" => Some((Kind::Prompt, s(&p, "name")?)),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Some((Kind::Resource, s(&p, "uri")?))
        }
        "completion/complete" => {
            let r = p.get("ref")?;
            match r.get("type").and_then(Value::as_str)? {
                "ref/prompt" => Some((Kind::Prompt, s(r, "name")?)),
                "ref/resource" => Some((Kind::Resource, s(r, "uri")?)),
                _ => None,
            }
        }
        _ => None,
    }
}

impl Gate {
    pub fn new(caller: Caller, server: Option<String>, catalog: Option<Arc<Catalog>>) -> Arc<Gate> {
        Arc::new(Gate {
            caller,
            session: Mutex::new(String::new()),
            server,
            catalog,
            noted: Default::default(),
            done: Default::default(),
        })
    }

    /// Tell the client its lists changed whenever the policy does (until the session ends).
    pub fn tell_changes(&self, client: crate::route::SessionTx) {
        let mut changed = self.caller.access.policy.changed.subscribe();
        let done = self.done.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = done.cancelled() => return,
                    r = changed.changed() => if r.is_err() { return },
                }
                for method in [
                    "notifications/tools/list_changed",
                    "notifications/prompts/list_changed",
                    "notifications/resources/list_changed",
                ] {
                    let m = Message::notification(method, None);
                    if client
                        .send(crate::route::Outgoing::new(m, None))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn set_session(&self, id: &str) {
        if let Ok(mut s) = self.session.lock() {
            *s = id.to_owned();
        }
    }

    /// The server and its own name behind what the client calls `name`.
    fn locate(&self, kind: Kind, name: &str) -> (String, String) {
        if let Some(s) = &self.server {
            return (s.clone(), name.to_owned());
        }
        if let Some(c) = &self.catalog
            && let Some(found) = c.locate(kind.as_str(), name)
        {
            return found;
        }
        (String::new(), name.to_owned())
    }

    fn allowed(&self, kind: Kind, name: &str) -> bool {
        let (server, own) = self.locate(kind, name);
        self.caller
            .access
            .policy
            .get()
            .allowed(&self.caller.identity, kind, &server, &own)
    }

    /// A scope that would allow the request, when the policy names one (for a 403).
    pub fn scope_needed(&self, msg: &Message) -> Option<String> {
        let (kind, name) = target_of(msg)?;
        if self.allowed(kind, &name) {
            return None;
        }
        let (server, own) = self.locate(kind, &name);
        self.caller
            .access
            .policy
            .get()
            .scope_needed(&self.caller.identity, kind, &server, &own)
    }

    fn audit(&self, e: Entry) {
        if let Some(a) = &self.caller.access.audit {
            a.call(e);
        }
    }

    /// A message from the client on its way to the route: `Err` is the answer that refuses it.
    pub fn admit(&self, msg: &Message) -> Result<(), Message> {
        if !msg.is_request() {
            return Ok(());
        }
        let Some(id) = msg.id() else { return Ok(()) };
        let method = msg.method().unwrap_or("");
        if let Some((kind, _, _)) = list_of(method) {
            if let Ok(mut n) = self.noted.lock() {
                n.insert(id, Noted::List(kind));
            }
            return Ok(());
        }
        let Some((kind, name)) = target_of(msg) else {
            return Ok(());
        };
        let session = self.session.lock().map(|s| s.clone()).unwrap_or_default();
        let identity = &self.caller.identity;
        let (server, own) = self.locate(kind, &name);
        let size = msg.params().map(|p| p.get().len()).unwrap_or(0);
        let payloads = self
            .caller
            .access
            .audit
            .as_ref()
            .is_some_and(|a| a.payloads);
        let arguments = payloads
            .then(|| {
                msg.params_as::<Value>()
                    .and_then(|p| p.get("arguments").cloned())
            })
            .flatten();
        let entry = |outcome: &'static str, error: String| Entry {
            identity,
            session: &session,
            server: Some(server.as_str()),
            method,
            name: Some(&own),
            outcome,
            error: Some(error),
            duration_ms: 0.0,
            request_bytes: size,
            response_bytes: 0,
            arguments: arguments.clone(),
            result: None,
        };
        let policy = self.caller.access.policy.get();
        if !policy.allowed(identity, kind, &server, &own) {
            let what = kind.as_str();
            let text = format!("{what} `{name}` is not available");
            self.audit(entry("denied", text.clone()));
            return Err(Message::error(
                id,
                code::INVALID_PARAMS,
                &text,
                Some(serde_json::json!({ "refusedBy": "mcp-proxy", "reason": "policy" })),
            ));
        }
        if !matches!(
            method,
            "tools/call" | "prompts/get" | "resources/read" | "completion/complete"
        ) {
            return Ok(());
        }
        if let Err(limit) = self.caller.access.limits.start(identity, &policy) {
            let text = format!(
                "too many requests waiting for answers at once (the limit is {limit}); try again when some are answered"
            );
            self.audit(entry("limited", text.clone()));
            return Err(Message::error(
                id,
                code::UPSTREAM_UNAVAILABLE,
                &text,
                Some(serde_json::json!({ "refusedBy": "mcp-proxy", "reason": "limit" })),
            ));
        }
        if let Ok(mut n) = self.noted.lock() {
            n.insert(
                id,
                Noted::Call {
                    method: method.to_owned(),
                    server,
                    name: own,
                    started: Instant::now(),
                    size,
                    arguments,
                },
            );
        }
        Ok(())
    }

    /// A message on its way to the client: an answer to a noted request is filtered
    /// (lists) or audited (calls).
    pub fn answered(&self, msg: &mut Message) {
        if !msg.is_response() {
            return;
        }
        let Some(id) = msg.id() else { return };
        let Some(noted) = self.noted.lock().ok().and_then(|mut n| n.remove(&id)) else {
            return;
        };
        match noted {
            Noted::List(kind) => self.filter(msg, kind),
            Noted::Call {
                method,
                server,
                name,
                started,
                size,
                arguments,
            } => {
                let identity = &self.caller.identity;
                self.caller.access.limits.end(identity);
                if self.caller.access.audit.is_none() {
                    return;
                }
                let result = msg.result_as::<Value>();
                let error = msg.error_value().map(|e| e.get().to_owned());
                let outcome = match (&result, &error) {
                    (_, Some(_)) => "error",
                    (Some(r), _) if r.get("isError") == Some(&Value::Bool(true)) => "tool_error",
                    _ => "ok",
                };
                let response_bytes = msg
                    .result()
                    .map(|r| r.get().len())
                    .or_else(|| msg.error_value().map(|e| e.get().len()))
                    .unwrap_or(0);
                let session = self.session.lock().map(|s| s.clone()).unwrap_or_default();
                self.audit(Entry {
                    identity,
                    session: &session,
                    server: Some(&server),
                    method: &method,
                    name: Some(&name),
                    outcome,
                    error,
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                    request_bytes: size,
                    response_bytes,
                    arguments,
                    result,
                });
            }
        }
    }

    /// The session ended: forget its requests (they will never be answered through here).
    pub fn forget_all(&self) {
        self.done.cancel();
        let calls = self
            .noted
            .lock()
            .map(|mut n| {
                let c = n
                    .values()
                    .filter(|x| matches!(x, Noted::Call { .. }))
                    .count();
                n.clear();
                c
            })
            .unwrap_or(0);
        for _ in 0..calls {
            self.caller.access.limits.end(&self.caller.identity);
        }
    }

    fn filter(&self, msg: &mut Message, kind: Kind) {
        let Some(mut r) = msg.result_as::<Value>() else {
            return;
        };
        let mut changed = false;
        for (k, member, key) in [
            (Kind::Tool, "tools", "name"),
            (Kind::Prompt, "prompts", "name"),
            (Kind::Resource, "resources", "uri"),
            (Kind::Resource, "resourceTemplates", "uriTemplate"),
        ] {
            if k != kind {
                continue;
            }
            if let Some(items) = r.get_mut(member).and_then(Value::as_array_mut) {
                let before = items.len();
                items.retain(|item| {
                    item.get(key)
                        .and_then(Value::as_str)
                        .is_some_and(|n| self.allowed(kind, n))
                });
                changed |= items.len() != before;
            }
        }
        if changed {
            msg.set("result", to_raw(&r));
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.done.cancel();
        self.forget_all();
    }
}
