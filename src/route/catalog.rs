//! Many servers merged behind one session: the gateway's view at `/mcp`, `/sse` and stdio.
//!
//! Each client session opens a session with every member server (through that member's own
//! route, with its tool curation). Lists are gathered from all members at once, each within
//! the list timeout, and merged: tool and prompt names become `SERVER--NAME` (kept to the
//! 64 characters `[A-Za-z0-9_-]` that clients accept; a collision gets a numbered suffix,
//! in config order, and is logged), resources keep their URIs and are routed by owner.
//! Each member's lists are kept until it sends `list_changed`, so a merged list costs no
//! round trip when nothing changed. Calls go to the member that owns the name or URI, with the client's own id, so answers,
//! progress and cancellations need no remapping; requests a member server sends (sampling,
//! elicitation, roots) get an id of the session's own so that the answer finds that member.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use super::{Backend, Filed, Outgoing, Route, SessionTx};
use crate::curation::Curation;
use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::hub::{LATEST_LEGACY, negotiate};

/// Longest tool or prompt name clients accept.
const MAX_NAME: usize = 64;
/// The server capabilities the merged view routes.
const ROUTED: &[&str] = &["tools", "prompts", "resources", "logging", "completions"];
/// Pages fetched from one member for one list, at most.
const MAX_PAGES: usize = 100;

/// One server of the merged view.
pub struct Member {
    pub name: String,
    pub backend: Backend,
    pub curation: Option<Curation>,
    /// How long the merged lists wait for this server.
    pub list_timeout: Duration,
}

/// Where merged names and URIs lead.
#[derive(Default)]
struct Names {
    tools: HashMap<String, (usize, String)>,
    prompts: HashMap<String, (usize, String)>,
    resources: HashMap<String, usize>,
    templates: Vec<(String, usize)>,
}

pub struct Catalog {
    members: Vec<Member>,
    separator: String,
    names: Mutex<Names>,
    /// Each member's last answer to each list (all pages), until it says the list changed.
    cache: Mutex<HashMap<(usize, String), Vec<Value>>>,
}

impl Catalog {
    pub fn new(members: Vec<Member>, separator: &str) -> Arc<Catalog> {
        Arc::new(Catalog {
            members,
            separator: separator.to_owned(),
            names: Default::default(),
            cache: Default::default(),
        })
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Open a client session over every member.
    pub async fn attach(self: &Arc<Self>, client: SessionTx) -> CatalogSession {
        let shared = Arc::new(Shared {
            client,
            state: Mutex::new(State::default()),
            catalog: Arc::downgrade(self),
        });
        let mut subs = vec![];
        for (i, m) in self.members.iter().enumerate() {
            let weak = Arc::downgrade(&shared);
            let tx = SessionTx::direct(move |o| from_member(&weak, i, o));
            match m.backend.open_curated(tx, m.curation.as_ref()).await {
                Ok(r) => subs.push(Some(r)),
                Err(e) => {
                    tracing::warn!(server = %m.name, "left out of this session: {e}");
                    subs.push(None);
                }
            }
        }
        CatalogSession {
            catalog: self.clone(),
            subs,
            shared,
        }
    }

    /// End every member's shared link.
    pub async fn shutdown(&self) {
        for m in &self.members {
            m.backend.shutdown().await;
        }
    }

    /// Forget member `i`'s cached lists of the kind a `list_changed` notification names.
    fn invalidate(&self, i: usize, notification: &str) {
        let list = match notification {
            "notifications/tools/list_changed" => "tools/list",
            "notifications/prompts/list_changed" => "prompts/list",
            "notifications/resources/list_changed" => "resources/",
            _ => return,
        };
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|(m, method), _| !(*m == i && method.starts_with(list)));
        }
    }

    /// The merged name of `name` from member `i`.
    fn merged(&self, i: usize, name: &str, taken: &HashSet<String>) -> String {
        merged_name(&self.members[i].name, name, &self.separator, taken)
    }

    /// The member and original name behind a merged tool or prompt name. Names not listed
    /// yet are resolved by their `SERVER--` prefix.
    fn resolve(&self, kind: Kind, merged: &str) -> Option<(usize, String)> {
        let known = self.names.lock().ok().and_then(|n| {
            match kind {
                Kind::Tool => n.tools.get(merged),
                Kind::Prompt => n.prompts.get(merged),
            }
            .cloned()
        });
        known.or_else(|| {
            let (server, rest) = merged.split_once(&self.separator)?;
            let i = self.members.iter().position(|m| m.name == server)?;
            Some((i, rest.to_owned()))
        })
    }

    /// The member that serves `uri`: a listed resource, else a template whose fixed start it
    /// has, else the only member.
    fn owner_of(&self, uri: &str) -> Option<usize> {
        let names = self.names.lock().ok()?;
        if let Some(i) = names.resources.get(uri) {
            return Some(*i);
        }
        names
            .templates
            .iter()
            .filter(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, i)| *i)
            .or_else(|| (self.members.len() == 1).then_some(0))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Tool,
    Prompt,
}

/// Merge capability `more` into `have`: objects member by member, flags by "or".
fn union(have: &mut Value, more: &Value) {
    match (have, more) {
        (Value::Object(h), Value::Object(m)) => {
            for (k, v) in m {
                match h.get_mut(k) {
                    Some(slot) => union(slot, v),
                    None => {
                        h.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Bool(h), Value::Bool(m)) => *h |= *m,
        _ => {}
    }
}

/// `SERVER--NAME`, in the characters and length clients accept, not in `taken`.
pub fn merged_name(server: &str, name: &str, separator: &str, taken: &HashSet<String>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let full = format!("{}{separator}{}", clean(server), clean(name));
    let base = if full.len() <= MAX_NAME {
        full
    } else {
        // Long names keep their start and a short hash of the whole, so that they stay apart.
        let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        format!("{}-{:08x}", &full[..MAX_NAME - 9], hash as u32)
    };
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = base.len().min(MAX_NAME - suffix.len());
            format!("{}{suffix}", &base[..keep])
        })
        .find(|c| !taken.contains(c))
        .unwrap_or(base)
}

struct Shared {
    client: SessionTx,
    state: Mutex<State>,
    catalog: Weak<Catalog>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Requests of the session's own (fan-outs); their answers go to a waiter.
    waiting: HashMap<Id, oneshot::Sender<Message>>,
    /// The client's requests in flight, by member.
    inflight: HashMap<Id, usize>,
    /// Requests members sent to the client: the id the client saw → (member, the member's id).
    server_requests: HashMap<Id, (usize, Id)>,
}

/// A message from member `i` on its way to the client.
fn from_member(shared: &Weak<Shared>, i: usize, o: Outgoing) -> Filed {
    let Some(sh) = shared.upgrade() else {
        return Filed::Closed;
    };
    let Outgoing { mut msg, related } = o;
    if let Ok(mut st) = sh.state.lock() {
        if msg.is_response() {
            let Some(id) = msg.id() else {
                return Filed::Yes;
            };
            if let Some(w) = st.waiting.remove(&id) {
                let _ = w.send(msg);
                return Filed::Yes;
            }
            st.inflight.remove(&id);
        } else if msg.is_request() {
            let Some(id) = msg.id() else {
                return Filed::Yes;
            };
            st.next += 1;
            let mine = Id::string(&format!("mcp-proxy-s{i}-{}", st.next));
            st.server_requests.insert(mine.clone(), (i, id));
            msg.set_id(&mine);
        } else if let Some(m) = msg.method().filter(|m| m.ends_with("/list_changed")) {
            if let Some(c) = sh.catalog.upgrade() {
                c.invalidate(i, m);
            }
        } else if msg.method() == Some("notifications/cancelled")
            && let Some(theirs) = msg.cancelled_request_id()
        {
            // A member gave up on one of its requests: the client knows it by our id.
            let mine = st
                .server_requests
                .iter()
                .find(|(_, (m, t))| *m == i && *t == theirs)
                .map(|(k, _)| k.clone());
            if let Some(mine) = mine {
                st.server_requests.remove(&mine);
                msg.set_param("requestId", mine.to_raw());
            }
        }
    }
    match sh.client.try_send(Outgoing::new(msg, related)) {
        Ok(()) => Filed::Yes,
        Err(_) => Filed::Closed,
    }
}

/// One client session over the merged view.
pub struct CatalogSession {
    catalog: Arc<Catalog>,
    subs: Vec<Option<Route>>,
    shared: Arc<Shared>,
}

impl CatalogSession {
    fn reply(&self, msg: Message) {
        let related = msg.id();
        let _ = self.shared.client.try_send(Outgoing::new(msg, related));
    }

    pub async fn send(&self, msg: Message) {
        if msg.is_request() {
            return self.request(msg).await;
        }
        if msg.is_notification() {
            if msg.method() == Some("notifications/cancelled")
                && let Some(id) = msg.cancelled_request_id()
            {
                let member = self
                    .shared
                    .state
                    .lock()
                    .ok()
                    .and_then(|mut st| st.inflight.remove(&id));
                if let Some(Some(r)) = member.and_then(|i| self.subs.get(i)) {
                    r.send(msg).await;
                }
                return;
            }
            for r in self.subs.iter().flatten() {
                r.send(msg.clone()).await;
            }
            return;
        }
        // The client's answer to a request a member sent.
        let Some(id) = msg.id() else { return };
        let target = self
            .shared
            .state
            .lock()
            .ok()
            .and_then(|mut st| st.server_requests.remove(&id));
        if let Some((i, theirs)) = target
            && let Some(Some(r)) = self.subs.get(i)
        {
            let mut m = msg;
            m.set_id(&theirs);
            r.send(m).await;
        }
    }

    /// Send `msg` to member `i` as the client's own request.
    async fn forward(&self, i: usize, msg: Message) {
        let Some(id) = msg.id() else { return };
        let Some(Some(r)) = self.subs.get(i) else {
            let name = &self.catalog.members[i].name;
            return self.reply(Message::error(
                id,
                code::UPSTREAM_UNAVAILABLE,
                &format!("server `{name}` is not available"),
                None,
            ));
        };
        if let Ok(mut st) = self.shared.state.lock() {
            st.inflight.insert(id, i);
        }
        r.send(msg).await;
    }

    /// Ask every member at once; each answer (or `None`: no answer in its time).
    async fn fan_out(&self, method: &str, params: &Value) -> Vec<Option<Message>> {
        let open = vec![true; self.subs.len()];
        self.fan_out_some(method, &open, |_| params.clone()).await
    }

    /// Every page of a list from every member: per member, its items.
    async fn gather(&self, method: &str, field: &str) -> Vec<Vec<Value>> {
        let mut items: Vec<Vec<Value>> = vec![vec![]; self.subs.len()];
        let mut cursors: Vec<Option<Value>> = vec![None; self.subs.len()];
        let mut open: Vec<bool> = self.subs.iter().map(Option::is_some).collect();
        // Lists a member has not said changed come from the cache.
        if let Ok(cache) = self.catalog.cache.lock() {
            for (i, slot) in items.iter_mut().enumerate() {
                if let Some(cached) = cache.get(&(i, method.to_owned())) {
                    *slot = cached.clone();
                    open[i] = false;
                }
            }
        }
        for _ in 0..MAX_PAGES {
            if !open.iter().any(|o| *o) {
                break;
            }
            // One round: the next page of every member that has one.
            let answers = self
                .fan_out_some(method, &open, |i| match &cursors[i] {
                    Some(c) => json!({ "cursor": c }),
                    None => json!({}),
                })
                .await;
            for (i, a) in answers.into_iter().enumerate() {
                if !open[i] {
                    continue;
                }
                let result = a.and_then(|m| m.result_as::<Value>());
                let Some(result) = result else {
                    open[i] = false;
                    continue;
                };
                if let Some(list) = result.get(field).and_then(Value::as_array) {
                    items[i].extend(list.iter().cloned());
                }
                cursors[i] = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
                open[i] = cursors[i].is_some();
                if !open[i]
                    && let Ok(mut cache) = self.catalog.cache.lock()
                {
                    cache.insert((i, method.to_owned()), items[i].clone());
                }
            }
        }
        items
    }

    /// Ask the members marked open at once, each with its own params.
    async fn fan_out_some(
        &self,
        method: &str,
        open: &[bool],
        params_for: impl Fn(usize) -> Value,
    ) -> Vec<Option<Message>> {
        let asks = self.subs.iter().enumerate().map(|(i, r)| {
            let params = params_for(i);
            async move {
                if !open[i] {
                    return None;
                }
                let r = r.as_ref()?;
                let (tx, rx) = oneshot::channel();
                let id = {
                    let mut st = self.shared.state.lock().ok()?;
                    st.next += 1;
                    let id = Id::string(&format!("mcp-proxy-c{}", st.next));
                    st.waiting.insert(id.clone(), tx);
                    id
                };
                r.send(Message::request(id.clone(), method, Some(to_raw(&params))))
                    .await;
                let wait = self.catalog.members[i].list_timeout;
                let answer = tokio::time::timeout(wait, rx)
                    .await
                    .ok()
                    .and_then(Result::ok);
                if answer.is_none() {
                    if let Ok(mut st) = self.shared.state.lock() {
                        st.waiting.remove(&id);
                    }
                    tracing::warn!(
                        server = %self.catalog.members[i].name,
                        "no answer to {method} within {}s; left out",
                        wait.as_secs_f32()
                    );
                }
                answer
            }
        });
        futures_util::future::join_all(asks).await
    }

    async fn request(&self, msg: Message) {
        let Some(id) = msg.id() else { return };
        let method = msg.method().unwrap_or("").to_owned();
        let params = msg.params_as::<Value>().unwrap_or(Value::Null);
        match method.as_str() {
            "initialize" => self.initialize(id, &params).await,
            "ping" => self.reply(Message::response(id, to_raw(&json!({})))),
            "logging/setLevel" => {
                let _ = self.fan_out("logging/setLevel", &params).await;
                self.reply(Message::response(id, to_raw(&json!({}))));
            }
            "tools/list" => self.list(id, Kind::Tool).await,
            "prompts/list" => self.list(id, Kind::Prompt).await,
            "resources/list" => self.list_resources(id, "resources/list", "resources").await,
            "resources/templates/list" => {
                self.list_resources(id, "resources/templates/list", "resourceTemplates")
                    .await
            }
            "tools/call" | "prompts/get" => {
                let kind = if method == "tools/call" {
                    Kind::Tool
                } else {
                    Kind::Prompt
                };
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                match self.catalog.resolve(kind, name) {
                    Some((i, original)) => {
                        let mut m = msg;
                        m.set_param("name", to_raw(&original));
                        self.forward(i, m).await;
                    }
                    None => self.reply(Message::error(
                        id,
                        code::INVALID_PARAMS,
                        &format!(
                            "unknown {}: {name}",
                            if method == "tools/call" {
                                "tool"
                            } else {
                                "prompt"
                            }
                        ),
                        None,
                    )),
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
                let mut owner = self.catalog.owner_of(uri);
                if owner.is_none() {
                    // Not listed yet in this process: learn the owners, then look again.
                    self.learn_resources().await;
                    owner = self.catalog.owner_of(uri);
                }
                match owner {
                    Some(i) => self.forward(i, msg).await,
                    None => self.reply(Message::error(
                        id,
                        code::INVALID_PARAMS,
                        &format!("no server offers the resource {uri}"),
                        None,
                    )),
                }
            }
            "completion/complete" => {
                let r = params.get("ref").cloned().unwrap_or(Value::Null);
                let target = match r.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => r
                        .get("name")
                        .and_then(Value::as_str)
                        .and_then(|n| self.catalog.resolve(Kind::Prompt, n))
                        .map(|(i, original)| (i, Some(original))),
                    _ => r
                        .get("uri")
                        .and_then(Value::as_str)
                        .and_then(|u| self.catalog.owner_of(u))
                        .map(|i| (i, None)),
                };
                match target {
                    Some((i, original)) => {
                        let mut m = msg;
                        if let Some(name) = original {
                            let mut r = r;
                            r["name"] = name.into();
                            m.set_param("ref", to_raw(&r));
                        }
                        self.forward(i, m).await;
                    }
                    None => self.reply(Message::error(
                        id,
                        code::INVALID_PARAMS,
                        "no server offers what this completion refers to",
                        None,
                    )),
                }
            }
            other => self.reply(Message::error(
                id,
                code::METHOD_NOT_FOUND,
                &format!("{other} cannot be routed to one of the merged servers"),
                None,
            )),
        }
    }

    /// Answer `initialize` for the merged view; every member session is initialised too (a
    /// shared server answers that at once), so that each knows the client's capabilities.
    async fn initialize(&self, id: Id, params: &Value) {
        let answers = self.fan_out("initialize", params).await;
        let mut caps = Map::new();
        let mut instructions = vec![];
        for (i, a) in answers.iter().enumerate() {
            let Some(result) = a.as_ref().and_then(|m| m.result_as::<Value>()) else {
                continue;
            };
            if let Some(Value::Object(c)) = result.get("capabilities") {
                // Only what the merged view routes (tasks and extensions are not, yet).
                for (k, v) in c.iter().filter(|(k, _)| ROUTED.contains(&k.as_str())) {
                    match caps.get_mut(k) {
                        Some(have) => union(have, v),
                        None => {
                            caps.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            if let Some(text) = result.get("instructions").and_then(Value::as_str) {
                instructions.push(format!("## {}\n{text}", self.catalog.members[i].name));
            }
        }
        // The merged lists can change whenever a member's do.
        for list in ["tools", "prompts", "resources"] {
            if let Some(Value::Object(c)) = caps.get_mut(list) {
                c.insert("listChanged".into(), true.into());
            }
        }
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut result = json!({
            "protocolVersion": negotiate(asked, LATEST_LEGACY),
            "capabilities": caps,
            "serverInfo": { "name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION") },
        });
        if !instructions.is_empty() {
            result["instructions"] = instructions.join("\n\n").into();
        }
        self.reply(Message::response(id, to_raw(&result)));
    }

    async fn list(&self, id: Id, kind: Kind) {
        let (method, field) = match kind {
            Kind::Tool => ("tools/list", "tools"),
            Kind::Prompt => ("prompts/list", "prompts"),
        };
        let per_member = self.gather(method, field).await;
        let mut taken = HashSet::new();
        let mut table = HashMap::new();
        let mut merged = vec![];
        for (i, items) in per_member.into_iter().enumerate() {
            for mut item in items {
                let Some(original) = item.get("name").and_then(Value::as_str).map(str::to_owned)
                else {
                    continue;
                };
                let name = self.catalog.merged(i, &original, &taken);
                let plain = merged_name(
                    &self.catalog.members[i].name,
                    &original,
                    &self.catalog.separator,
                    &HashSet::new(),
                );
                if name != plain {
                    tracing::warn!(
                        server = %self.catalog.members[i].name,
                        "{field} name `{plain}` is taken; `{original}` is offered as `{name}`"
                    );
                }
                taken.insert(name.clone());
                table.insert(name.clone(), (i, original));
                item["name"] = name.into();
                merged.push(item);
            }
        }
        if let Ok(mut n) = self.catalog.names.lock() {
            match kind {
                Kind::Tool => n.tools = table,
                Kind::Prompt => n.prompts = table,
            }
        }
        self.reply(Message::response(id, to_raw(&json!({ field: merged }))));
    }

    async fn list_resources(&self, id: Id, method: &str, field: &str) {
        let merged = self.gather_resources(method, field).await;
        self.reply(Message::response(id, to_raw(&json!({ field: merged }))));
    }

    /// Gather resources (or templates) from every member, noting who owns what.
    async fn gather_resources(&self, method: &str, field: &str) -> Vec<Value> {
        let per_member = self.gather(method, field).await;
        let mut merged = vec![];
        let mut owners = HashMap::new();
        let mut templates = vec![];
        for (i, items) in per_member.into_iter().enumerate() {
            for item in items {
                if let Some(uri) = item.get("uri").and_then(Value::as_str) {
                    owners.entry(uri.to_owned()).or_insert(i);
                }
                if let Some(t) = item.get("uriTemplate").and_then(Value::as_str) {
                    let prefix = t.split('{').next().unwrap_or("").to_owned();
                    templates.push((prefix, i));
                }
                merged.push(item);
            }
        }
        if let Ok(mut n) = self.catalog.names.lock() {
            if field == "resources" {
                n.resources = owners;
            } else {
                n.templates = templates;
            }
        }
        merged
    }

    /// Learn which member owns which resource and template.
    async fn learn_resources(&self) {
        self.gather_resources("resources/list", "resources").await;
        self.gather_resources("resources/templates/list", "resourceTemplates")
            .await;
    }

    /// End the session with every member.
    pub async fn close(&self) {
        for r in self.subs.iter().flatten() {
            Box::pin(r.close()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_united() {
        let mut a = json!({ "tools": { "listChanged": false }, "tasks": { "list": {} } });
        union(
            &mut a,
            &json!({ "tools": { "listChanged": true }, "tasks": { "cancel": {} }, "logging": {} }),
        );
        assert_eq!(a["tools"]["listChanged"], true);
        assert!(a["tasks"]["list"].is_object() && a["tasks"]["cancel"].is_object());
        assert!(a["logging"].is_object());
    }

    #[test]
    fn names_are_namespaced_clean_short_and_unique() {
        let none = HashSet::new();
        assert_eq!(merged_name("fs", "read_file", "--", &none), "fs--read_file");
        assert_eq!(
            merged_name("my.server", "a b", "--", &none),
            "my_server--a_b"
        );
        let long = merged_name("server", &"x".repeat(100), "--", &none);
        assert_eq!(long.len(), 64);
        assert_ne!(long, merged_name("server", &"x".repeat(101), "--", &none));
        let taken: HashSet<String> = ["fs--read".to_owned()].into();
        assert_eq!(merged_name("fs", "read", "--", &taken), "fs--read-2");
        let all_taken: HashSet<String> = ["fs--read".to_owned(), "fs--read-2".to_owned()].into();
        assert_eq!(merged_name("fs", "read", "--", &all_taken), "fs--read-3");
        assert!(
            merged_name("s", "t", "__", &none)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
    }
}
