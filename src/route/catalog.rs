//! Many servers merged behind one session: the gateway's view at `/mcp`, `/sse` and stdio.
//!
//! Each client session opens a session with every member server (through that member's own
//! route, with its tool curation). Lists are gathered from all members at once, each within
//! the list timeout, and merged: tool and prompt names become `SERVER--NAME` (kept to the
//! 64 characters `[A-Za-z0-9_-]` that clients accept; a collision gets a numbered suffix,
//! in config order, and is logged), resources keep their URIs and are routed by owner.
//! Each member's lists are kept until it sends `list_changed`, so a merged list costs no
//! round trip when nothing changed. Calls go to the member that owns the name or URI, with
//! the client's own id, so answers, progress and cancellations need no remapping; requests a
//! member server sends (sampling, elicitation, roots) get an id of the session's own so that
//! the answer finds that member.
//!
//! The members can change while clients stay connected ([`Catalog::replace`], on a reload):
//! every open session then ends its sessions with removed members (their calls in flight get
//! an error), opens and initialises sessions with added ones as the client initialised the
//! merged view, and tells the client that its lists changed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
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
/// The lists of the merged view; each can change whenever a member's does, or a member
/// comes or goes.
const LISTS: &[&str] = &["tools", "prompts", "resources"];

/// A member's identity: a server that is changed on reload becomes a new member.
type Key = u64;

/// One server of the merged view.
pub struct Member {
    key: Key,
    pub name: String,
    pub backend: Backend,
    pub curation: Option<Curation>,
    /// How long the merged lists wait for this server.
    pub list_timeout: Duration,
}

impl Member {
    pub fn new(
        name: String,
        backend: Backend,
        curation: Option<Curation>,
        list_timeout: Duration,
    ) -> Arc<Member> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Member {
            key: NEXT.fetch_add(1, Ordering::Relaxed),
            name,
            backend,
            curation,
            list_timeout,
        })
    }
}

/// Where merged names and URIs lead.
#[derive(Default)]
struct Names {
    tools: HashMap<String, (Key, String)>,
    prompts: HashMap<String, (Key, String)>,
    /// Merged resource URI → its member and the member's own URI.
    resources: HashMap<String, (Key, String)>,
    templates: Vec<Template>,
}

/// A resource template of the merged view.
struct Template {
    key: Key,
    /// The template as the client sees it, and as its member wrote it.
    merged: String,
    original: String,
}

impl Template {
    /// The fixed start of a template (up to its first variable).
    fn prefix(t: &str) -> &str {
        t.split('{').next().unwrap_or("")
    }
}

impl Names {
    fn forget(&mut self, gone: &HashSet<Key>) {
        self.tools.retain(|_, (k, _)| !gone.contains(k));
        self.prompts.retain(|_, (k, _)| !gone.contains(k));
        self.resources.retain(|_, (k, _)| !gone.contains(k));
        self.templates.retain(|t| !gone.contains(&t.key));
    }

    /// Whether some resource of member `key` is known to clients by another URI.
    fn renames(&self, key: Key) -> bool {
        self.resources.iter().any(|(m, (k, o))| *k == key && m != o)
            || self
                .templates
                .iter()
                .any(|t| t.key == key && t.merged != t.original)
    }

    /// The URI the client knows for member `key`'s own `uri`, when they differ.
    fn merged_uri(&self, key: Key, uri: &str) -> Option<String> {
        if let Some((merged, _)) = self
            .resources
            .iter()
            .find(|(m, (k, o))| *k == key && o == uri && *m != o)
        {
            return Some(merged.clone());
        }
        self.templates
            .iter()
            .filter(|t| t.key == key && t.merged != t.original)
            .find_map(|t| {
                let rest = uri.strip_prefix(Template::prefix(&t.original))?;
                Some(format!("{}{rest}", Template::prefix(&t.merged)))
            })
    }
}

pub struct Catalog {
    members: RwLock<Vec<Arc<Member>>>,
    separator: String,
    /// Merged lists longer than this are served in pages, with opaque cursors.
    page_size: Option<usize>,
    names: Mutex<Names>,
    /// Each member's last answer to each list (all pages), until it says the list changed.
    cache: Mutex<HashMap<(Key, String), Vec<Value>>>,
    /// The open client sessions, told when the members change.
    sessions: Mutex<Vec<Weak<Shared>>>,
    /// Collisions already logged (a list is merged often; each collision is told once).
    told: Mutex<HashSet<String>>,
}

impl Catalog {
    pub fn new(
        members: Vec<Arc<Member>>,
        separator: &str,
        page_size: Option<usize>,
    ) -> Arc<Catalog> {
        Arc::new(Catalog {
            members: RwLock::new(members),
            separator: separator.to_owned(),
            page_size: page_size.filter(|n| *n > 0),
            names: Default::default(),
            cache: Default::default(),
            sessions: Default::default(),
            told: Default::default(),
        })
    }

    /// The current members, in configuration order.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.members.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// Open a client session over every member.
    pub async fn attach(self: &Arc<Self>, client: SessionTx) -> CatalogSession {
        let shared = Arc::new(Shared {
            client,
            state: Mutex::new(State::default()),
            subs: Mutex::new(vec![]),
            syncing: tokio::sync::Mutex::new(()),
            catalog: Arc::downgrade(self),
        });
        // Registered first, so that a change of members while this session opens reaches it.
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|w| w.strong_count() > 0);
            s.push(Arc::downgrade(&shared));
        }
        shared.sync(self).await;
        CatalogSession {
            catalog: self.clone(),
            shared,
        }
    }

    /// Make `members` the merged view's servers. Members kept (the same `Arc`) keep their
    /// sessions; removed ones are closed in every session, added ones opened in every
    /// session, and every client is told that the lists changed.
    pub async fn replace(self: &Arc<Self>, members: Vec<Arc<Member>>) {
        let keep: HashSet<Key> = members.iter().map(|m| m.key).collect();
        let old = match self.members.write() {
            Ok(mut m) => std::mem::replace(&mut *m, members),
            Err(_) => return,
        };
        let gone: HashSet<Key> = old
            .iter()
            .map(|m| m.key)
            .filter(|k| !keep.contains(k))
            .collect();
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|(k, _), _| !gone.contains(k));
        }
        if let Ok(mut n) = self.names.lock() {
            n.forget(&gone);
        }
        let sessions: Vec<Arc<Shared>> = match self.sessions.lock() {
            Ok(mut s) => {
                s.retain(|w| w.strong_count() > 0);
                s.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => vec![],
        };
        let syncs = sessions.iter().map(|s| async move {
            if s.sync(self).await {
                s.lists_changed();
            }
        });
        futures_util::future::join_all(syncs).await;
    }

    /// Member `member` can be reached now (its user signed in): every session that had to
    /// leave it out opens it, and its client is told the lists changed. `false` once the
    /// member is no longer in the merged view.
    pub async fn revive(self: &Arc<Self>, member: &Arc<Member>) -> bool {
        if !self.members().iter().any(|m| m.key == member.key) {
            return false;
        }
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|(k, _), _| *k != member.key);
        }
        let sessions: Vec<Arc<Shared>> = match self.sessions.lock() {
            Ok(mut s) => {
                s.retain(|w| w.strong_count() > 0);
                s.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => vec![],
        };
        for s in sessions {
            let missing = s
                .subs()
                .iter()
                .any(|sub| sub.member.key == member.key && sub.route.is_none());
            if !missing {
                s.lists_changed();
                continue;
            }
            let _one = s.syncing.lock().await;
            if let Some(route) = s.open(member).await
                && let Ok(mut subs) = s.subs.lock()
                && let Some(sub) = subs.iter_mut().find(|x| x.member.key == member.key)
            {
                sub.route = Some(route);
            }
            s.lists_changed();
        }
        true
    }

    /// How many tools each member offers (after its tool rules), by name, as last listed.
    pub fn tool_counts(&self) -> HashMap<String, usize> {
        let names: HashMap<Key, String> = self
            .members()
            .iter()
            .map(|m| (m.key, m.name.clone()))
            .collect();
        let Ok(cache) = self.cache.lock() else {
            return HashMap::new();
        };
        cache
            .iter()
            .filter(|((_, method), _)| method == "tools/list")
            .filter_map(|((k, _), tools)| Some((names.get(k)?.clone(), tools.len())))
            .collect()
    }

    /// End every member's shared link.
    pub async fn shutdown(&self) {
        for m in self.members() {
            m.backend.shutdown().await;
        }
    }

    /// Forget member `key`'s cached lists of the kind a `list_changed` notification names.
    fn invalidate(&self, key: Key, notification: &str) {
        let list = match notification {
            "notifications/tools/list_changed" => "tools/list",
            "notifications/prompts/list_changed" => "prompts/list",
            "notifications/resources/list_changed" => "resources/",
            _ => return,
        };
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|(m, method), _| !(*m == key && method.starts_with(list)));
        }
    }

    /// The member and original name behind a merged tool or prompt name. Names not listed
    /// yet are resolved by their `SERVER--` prefix.
    fn resolve(&self, kind: Kind, merged: &str, subs: &[Sub]) -> Option<(Key, String)> {
        let known = self.names.lock().ok().and_then(|n| {
            match kind {
                Kind::Tool => n.tools.get(merged),
                Kind::Prompt => n.prompts.get(merged),
            }
            .cloned()
        });
        known
            .filter(|(k, _)| subs.iter().any(|s| s.member.key == *k))
            .or_else(|| {
                let (server, rest) = merged.split_once(&self.separator)?;
                let s = subs.iter().find(|s| s.member.name == server)?;
                Some((s.member.key, rest.to_owned()))
            })
    }

    /// The server and its own name behind a merged tool (`"tool"`), prompt (`"prompt"`) or
    /// resource URI (`"resource"`), as far as the merged lists made them known; tools and
    /// prompts not listed yet by their `SERVER--` prefix.
    pub fn locate(&self, kind: &str, merged: &str) -> Option<(String, String)> {
        let members = self.members();
        let name_of = |k: Key| members.iter().find(|m| m.key == k).map(|m| m.name.clone());
        let found = match kind {
            "tool" | "prompt" => {
                let n = self.names.lock().ok()?;
                let map = if kind == "tool" { &n.tools } else { &n.prompts };
                map.get(merged).cloned()
            }
            _ => {
                let n = self.names.lock().ok()?;
                n.resources.get(merged).cloned().or_else(|| {
                    n.templates
                        .iter()
                        .filter(|t| merged.starts_with(Template::prefix(&t.merged)))
                        .max_by_key(|t| Template::prefix(&t.merged).len())
                        .map(|t| {
                            let rest = &merged[Template::prefix(&t.merged).len()..];
                            (t.key, format!("{}{rest}", Template::prefix(&t.original)))
                        })
                })
            }
        };
        if let Some((k, original)) = found
            && let Some(name) = name_of(k)
        {
            return Some((name, original));
        }
        if kind == "resource" {
            return match members.as_slice() {
                [only] => Some((only.name.clone(), merged.to_owned())),
                _ => None,
            };
        }
        let (server, rest) = merged.split_once(&self.separator)?;
        members
            .iter()
            .any(|m| m.name == server)
            .then(|| (server.to_owned(), rest.to_owned()))
    }

    /// Log `what` once per process (merged lists are built again and again).
    fn tell_once(&self, server: &str, what: String) {
        let new = self
            .told
            .lock()
            .map(|mut t| t.insert(format!("{server}\u{0}{what}")))
            .unwrap_or(false);
        if new {
            tracing::warn!(server = %server, "{what}");
        }
    }

    /// The member that serves `uri` and the URI it knows it by: a listed resource, else a
    /// template (as written, or one whose fixed start the URI has), else the only member.
    fn owner_of(&self, uri: &str, subs: &[Sub]) -> Option<(Key, String)> {
        let live = |k: &Key| subs.iter().any(|s| s.member.key == *k);
        let names = self.names.lock().ok()?;
        if let Some((k, original)) = names.resources.get(uri).filter(|(k, _)| live(k)) {
            return Some((*k, original.clone()));
        }
        if let Some(t) = names
            .templates
            .iter()
            .find(|t| t.merged == uri && live(&t.key))
        {
            return Some((t.key, t.original.clone()));
        }
        names
            .templates
            .iter()
            .filter(|t| uri.starts_with(Template::prefix(&t.merged)) && live(&t.key))
            .max_by_key(|t| Template::prefix(&t.merged).len())
            .map(|t| {
                let rest = &uri[Template::prefix(&t.merged).len()..];
                (t.key, format!("{}{rest}", Template::prefix(&t.original)))
            })
            .or_else(|| match subs {
                [only] => Some((only.member.key, uri.to_owned())),
                _ => None,
            })
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

/// The URI under which server `server` offers `uri` when an earlier server (in config order)
/// offers the same one: `SERVER+URI` (the server's name as a URI scheme prefix: letters,
/// digits, `+ - .`), numbered when that is taken too.
pub fn aliased_uri(server: &str, uri: &str, taken: &HashSet<String>) -> String {
    let mut scheme: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
        scheme.insert_str(0, "s-");
    }
    let first = format!("{scheme}+{uri}");
    if !taken.contains(&first) {
        return first;
    }
    (2..)
        .map(|n| format!("{scheme}-{n}+{uri}"))
        .find(|c| !taken.contains(c))
        .unwrap_or(first)
}

/// One member as one client session sees it.
#[derive(Clone)]
struct Sub {
    member: Arc<Member>,
    /// `None` when the member could not be opened for this session.
    route: Option<Arc<Route>>,
}

struct Shared {
    client: SessionTx,
    state: Mutex<State>,
    /// The session's members, in configuration order.
    subs: Mutex<Vec<Sub>>,
    /// Held while the members change, and while the client initialises, so that every
    /// member is initialised once, the way the client initialised the merged view.
    syncing: tokio::sync::Mutex<()>,
    catalog: Weak<Catalog>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Members whose messages still reach the client.
    live: HashSet<Key>,
    /// Requests of the session's own (fan-outs), by member; their answers go to a waiter.
    waiting: HashMap<Id, (Key, oneshot::Sender<Message>)>,
    /// The client's requests in flight, by member.
    inflight: HashMap<Id, Key>,
    /// Requests members sent to the client: the id the client saw → (member, the member's id).
    server_requests: HashMap<Id, (Key, Id)>,
    /// Reads of a resource the client knows by another URI than its server: request id →
    /// (the server's URI, the client's), so that the answer names the client's.
    renamed_reads: HashMap<Id, (String, String)>,
    /// The client's `initialize` params, for members added later.
    init: Option<Value>,
    /// Whether the client has sent `notifications/initialized`.
    initialized: bool,
    /// The client's last `logging/setLevel` params, for members added later.
    log_level: Option<Value>,
    /// Merged lists served in pages: per list, the snapshot its cursors point into.
    pages: HashMap<String, (u64, Arc<Vec<Value>>)>,
}

/// A message from member `key` on its way to the client.
fn from_member(shared: &Weak<Shared>, key: Key, o: Outgoing) -> Filed {
    let Some(sh) = shared.upgrade() else {
        return Filed::Closed;
    };
    let Outgoing { mut msg, related } = o;
    {
        let Ok(mut st) = sh.state.lock() else {
            return Filed::Closed;
        };
        if !st.live.contains(&key) {
            // Removed from the merged view: nothing more of it reaches the client.
            return Filed::Closed;
        }
        if msg.is_response() {
            let Some(id) = msg.id() else {
                return Filed::Yes;
            };
            if let Some((_, w)) = st.waiting.remove(&id) {
                let _ = w.send(msg);
                return Filed::Yes;
            }
            if st.inflight.get(&id) != Some(&key) {
                // Answered already (the member was removed mid-call), or never asked.
                return Filed::Yes;
            }
            st.inflight.remove(&id);
            if let Some((original, merged)) = st.renamed_reads.remove(&id) {
                rename_contents(&mut msg, &original, &merged);
            } else if msg.result_mentions("\"uri\"")
                && let Some(c) = sh.catalog.upgrade()
                && let Ok(names) = c.names.lock()
                && names.renames(key)
            {
                rename_links(&mut msg, &names, key);
            }
        } else if msg.is_request() {
            let Some(id) = msg.id() else {
                return Filed::Yes;
            };
            st.next += 1;
            let mine = Id::string(&format!("mcp-proxy-s{key}-{}", st.next));
            st.server_requests.insert(mine.clone(), (key, id));
            msg.set_id(&mine);
        } else if let Some(m) = msg.method().filter(|m| m.ends_with("/list_changed")) {
            if let Some(c) = sh.catalog.upgrade() {
                c.invalidate(key, m);
            }
        } else if msg.method() == Some("notifications/resources/updated") {
            // Named as the client knows the resource.
            let uri = msg
                .params_as::<UriParam>()
                .map(|p| p.uri)
                .unwrap_or_default();
            let merged = sh
                .catalog
                .upgrade()
                .and_then(|c| c.names.lock().ok()?.merged_uri(key, &uri));
            if let Some(merged) = merged {
                msg.set_param("uri", to_raw(&merged));
            }
        } else if msg.method() == Some("notifications/cancelled")
            && let Some(theirs) = msg.cancelled_request_id()
        {
            // A member gave up on one of its requests: the client knows it by our id.
            let mine = st
                .server_requests
                .iter()
                .find(|(_, (m, t))| *m == key && *t == theirs)
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

/// In a `tools/call` or `prompts/get` answer of member `key`, name linked and embedded
/// resources as the client knows them.
fn rename_links(msg: &mut Message, names: &Names, key: Key) {
    let Some(mut result) = msg.result_as::<Value>() else {
        return;
    };
    let rename = |item: &mut Value| -> bool {
        let slot = match item.get("type").and_then(Value::as_str) {
            Some("resource_link") => item.get_mut("uri"),
            Some("resource") => item.get_mut("resource").and_then(|r| r.get_mut("uri")),
            _ => None,
        };
        let Some(slot) = slot else { return false };
        match slot.as_str().and_then(|u| names.merged_uri(key, u)) {
            Some(merged) => {
                *slot = merged.into();
                true
            }
            None => false,
        }
    };
    let mut changed = false;
    if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
        for item in content.iter_mut() {
            changed |= rename(item);
        }
        if changed && let Some(c) = result.get("content") {
            msg.set_result_member("content", to_raw(c));
        }
    }
    let mut changed = false;
    if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
        for m in messages.iter_mut() {
            if let Some(item) = m.get_mut("content") {
                changed |= rename(item);
            }
        }
        if changed && let Some(m) = result.get("messages") {
            msg.set_result_member("messages", to_raw(m));
        }
    }
}

#[derive(serde::Deserialize)]
struct UriParam {
    uri: String,
}

/// In a `resources/read` answer, name the resource `merged` where its server said `original`.
fn rename_contents(msg: &mut Message, original: &str, merged: &str) {
    let Some(mut result) = msg.result_as::<Value>() else {
        return;
    };
    let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) else {
        return;
    };
    for c in contents.iter_mut() {
        if c.get("uri").and_then(Value::as_str) == Some(original) {
            c["uri"] = merged.into();
        }
    }
    if let Some(c) = result.get("contents") {
        msg.set_result_member("contents", to_raw(c));
    }
}

impl Shared {
    fn subs(&self) -> Vec<Sub> {
        self.subs.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn reply(&self, msg: Message) {
        let related = msg.id();
        let _ = self.client.try_send(Outgoing::new(msg, related));
    }

    /// Bring this session's members in line with the catalog's; whether any changed.
    async fn sync(self: &Arc<Self>, catalog: &Catalog) -> bool {
        let _one = self.syncing.lock().await;
        let target = catalog.members();
        let want: HashSet<Key> = target.iter().map(|m| m.key).collect();
        let current = self.subs();
        let have: HashSet<Key> = current.iter().map(|s| s.member.key).collect();
        let removed: Vec<Sub> = current
            .iter()
            .filter(|s| !want.contains(&s.member.key))
            .cloned()
            .collect();
        let added: Vec<&Arc<Member>> = target.iter().filter(|m| !have.contains(&m.key)).collect();
        if removed.is_empty() && added.is_empty() {
            return false;
        }
        if let Ok(mut subs) = self.subs.lock() {
            subs.retain(|s| want.contains(&s.member.key));
        }
        for s in &removed {
            self.remove(s).await;
        }
        let opened = futures_util::future::join_all(added.iter().map(|m| self.open(m))).await;
        let mut opened: HashMap<Key, Option<Arc<Route>>> =
            added.iter().map(|m| m.key).zip(opened).collect();
        let subs = target
            .iter()
            .map(|m| {
                current
                    .iter()
                    .find(|s| s.member.key == m.key)
                    .cloned()
                    .unwrap_or_else(|| Sub {
                        member: m.clone(),
                        route: opened.remove(&m.key).flatten(),
                    })
            })
            .collect();
        if let Ok(mut s) = self.subs.lock() {
            *s = subs;
        }
        true
    }

    /// End the session with a member that left the merged view: its calls in flight get an
    /// error, and its requests to the client are withdrawn.
    async fn remove(&self, s: &Sub) {
        let key = s.member.key;
        let (failed, withdrawn) = match self.state.lock() {
            Ok(mut st) => {
                st.live.remove(&key);
                st.waiting.retain(|_, (k, _)| *k != key);
                let failed: Vec<Id> = st
                    .inflight
                    .iter()
                    .filter(|(_, k)| **k == key)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &failed {
                    st.inflight.remove(id);
                    st.renamed_reads.remove(id);
                }
                let withdrawn: Vec<Id> = st
                    .server_requests
                    .iter()
                    .filter(|(_, (k, _))| *k == key)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &withdrawn {
                    st.server_requests.remove(id);
                }
                (failed, withdrawn)
            }
            Err(_) => (vec![], vec![]),
        };
        let why = format!(
            "server `{}` was removed from the merged view (configuration reloaded)",
            s.member.name
        );
        for id in failed {
            self.reply(Message::error(id, code::UPSTREAM_UNAVAILABLE, &why, None));
        }
        for id in withdrawn {
            let mut m = Message::notification(
                "notifications/cancelled",
                Some(to_raw(&json!({ "reason": why }))),
            );
            m.set_param("requestId", id.to_raw());
            let _ = self.client.try_send(Outgoing::new(m, None));
        }
        if let Some(r) = &s.route {
            r.close().await;
        }
    }

    /// Open a session with member `m`; when the client has initialised the merged view
    /// already, the member is initialised the same way (and given the client's log level).
    async fn open(self: &Arc<Self>, m: &Arc<Member>) -> Option<Arc<Route>> {
        if let Ok(mut st) = self.state.lock() {
            st.live.insert(m.key);
        }
        let weak = Arc::downgrade(self);
        let key = m.key;
        let tx = SessionTx::direct(move |o| from_member(&weak, key, o));
        let meter = crate::telemetry::get().map(|_| crate::telemetry::Meter::towards(&m.name));
        let route = match m
            .backend
            .open_gated(tx, m.curation.as_ref(), None, meter)
            .await
        {
            Ok(r) => Arc::new(r),
            Err(e) => {
                crate::warn_throttled!(
                    format!("left-out-open:{}", m.name),
                    "server {}: left out of this session: {e}",
                    m.name
                );
                if let Ok(mut st) = self.state.lock() {
                    st.live.remove(&m.key);
                }
                return None;
            }
        };
        let (init, initialized, level) = match self.state.lock() {
            Ok(st) => (st.init.clone(), st.initialized, st.log_level.clone()),
            Err(_) => (None, false, None),
        };
        if let Some(params) = init {
            let answer = self.ask(m, &route, "initialize", &params).await;
            if answer.as_ref().and_then(Message::result).is_none() {
                crate::warn_throttled!(
                    format!("left-out-init:{}", m.name),
                    "server {}: did not answer initialize; its lists stay empty",
                    m.name
                );
            }
            if initialized {
                route
                    .send(Message::notification("notifications/initialized", None))
                    .await;
            }
            if let Some(level) = level {
                let _ = self.ask(m, &route, "logging/setLevel", &level).await;
            }
        }
        Some(route)
    }

    /// Ask one member a request of the session's own; its answer, or `None` within the
    /// member's time.
    async fn ask(
        &self,
        m: &Member,
        route: &Route,
        method: &str,
        params: &Value,
    ) -> Option<Message> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.state.lock().ok()?;
            st.next += 1;
            let id = Id::string(&format!("mcp-proxy-c{}", st.next));
            st.waiting.insert(id.clone(), (m.key, tx));
            id
        };
        route
            .send(Message::request(id.clone(), method, Some(to_raw(params))))
            .await;
        let answer = tokio::time::timeout(m.list_timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        if answer.is_none() {
            if let Ok(mut st) = self.state.lock() {
                st.waiting.remove(&id);
            }
            crate::warn_throttled!(
                format!("left-out:{}:{method}", m.name),
                "server {}: no answer to {method} within {}s; left out",
                m.name,
                m.list_timeout.as_secs_f32()
            );
        }
        answer
    }

    /// Tell the client that the merged lists changed (once it has initialised).
    fn lists_changed(&self) {
        if !self.state.lock().map(|s| s.initialized).unwrap_or(false) {
            return;
        }
        for list in LISTS {
            let m = Message::notification(&format!("notifications/{list}/list_changed"), None);
            let _ = self.client.try_send(Outgoing::new(m, None));
        }
    }
}

/// An opaque cursor into a paged merged list.
fn cursor(field: &str, generation: u64, offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{field}:{generation}:{offset}"))
}

/// The generation and offset a cursor of `field` names.
fn read_cursor(field: &str, cursor: &str) -> Option<(u64, usize)> {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(text).ok()?;
    let mut parts = text.split(':');
    if parts.next()? != field {
        return None;
    }
    let generation = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((generation, offset))
}

/// One client session over the merged view.
pub struct CatalogSession {
    catalog: Arc<Catalog>,
    shared: Arc<Shared>,
}

impl CatalogSession {
    fn reply(&self, msg: Message) {
        self.shared.reply(msg);
    }

    fn route_of(&self, key: Key) -> Option<Sub> {
        let subs = self.shared.subs.lock().ok()?;
        subs.iter().find(|s| s.member.key == key).cloned()
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
                if let Some(Sub { route: Some(r), .. }) = member.and_then(|k| self.route_of(k)) {
                    r.send(msg).await;
                }
                return;
            }
            let _one = if msg.method() == Some("notifications/initialized") {
                let guard = self.shared.syncing.lock().await;
                if let Ok(mut st) = self.shared.state.lock() {
                    st.initialized = true;
                }
                Some(guard)
            } else {
                None
            };
            for r in self.shared.subs().into_iter().filter_map(|s| s.route) {
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
        if let Some((key, theirs)) = target
            && let Some(Sub { route: Some(r), .. }) = self.route_of(key)
        {
            let mut m = msg;
            m.set_id(&theirs);
            r.send(m).await;
        }
    }

    /// Send `msg` to member `key` as the client's own request.
    async fn forward(&self, key: Key, msg: Message) {
        let Some(id) = msg.id() else { return };
        let sub = self.route_of(key);
        let Some(Sub {
            route: Some(r),
            member,
        }) = sub
        else {
            let name = sub.map(|s| s.member.name.clone()).unwrap_or_default();
            if let Ok(mut st) = self.shared.state.lock() {
                st.renamed_reads.remove(&id);
            }
            return self.reply(Message::error(
                id,
                code::UPSTREAM_UNAVAILABLE,
                &format!("server `{name}` is not available"),
                None,
            ));
        };
        if let Ok(mut st) = self.shared.state.lock() {
            st.inflight.insert(id, member.key);
        }
        r.send(msg).await;
    }

    /// Ask every member at once; each answer (or `None`: no answer in its time).
    async fn fan_out(&self, subs: &[Sub], method: &str, params: &Value) -> Vec<Option<Message>> {
        let open = vec![true; subs.len()];
        self.fan_out_some(subs, method, &open, |_| params.clone())
            .await
    }

    /// Every page of a list from every member: per member, its items.
    async fn gather(&self, subs: &[Sub], method: &str, field: &str) -> Vec<Vec<Value>> {
        let mut items: Vec<Vec<Value>> = vec![vec![]; subs.len()];
        let mut cursors: Vec<Option<Value>> = vec![None; subs.len()];
        let mut open: Vec<bool> = subs.iter().map(|s| s.route.is_some()).collect();
        // Lists a member has not said changed come from the cache.
        if let Ok(cache) = self.catalog.cache.lock() {
            for (i, slot) in items.iter_mut().enumerate() {
                if let Some(cached) = cache.get(&(subs[i].member.key, method.to_owned())) {
                    *slot = cached.clone();
                    open[i] = false;
                }
            }
        }
        for _ in 0..crate::limits::get().max_list_pages {
            if !open.iter().any(|o| *o) {
                break;
            }
            // One round: the next page of every member that has one.
            let answers = self
                .fan_out_some(subs, method, &open, |i| match &cursors[i] {
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
                    cache.insert((subs[i].member.key, method.to_owned()), items[i].clone());
                }
            }
        }
        for (i, o) in open.iter().enumerate() {
            if *o {
                crate::warn_throttled!(
                    format!("pages:{}:{method}", subs[i].member.name),
                    "server {}: {method} has more than {} pages (--max-list-pages); the rest is left out",
                    subs[i].member.name,
                    crate::limits::get().max_list_pages
                );
            }
        }
        items
    }

    /// Ask the members marked open at once, each with its own params.
    async fn fan_out_some(
        &self,
        subs: &[Sub],
        method: &str,
        open: &[bool],
        params_for: impl Fn(usize) -> Value,
    ) -> Vec<Option<Message>> {
        let asks = subs.iter().enumerate().map(|(i, s)| {
            let params = params_for(i);
            async move {
                if !open[i] {
                    return None;
                }
                let r = s.route.as_ref()?;
                self.shared.ask(&s.member, r, method, &params).await
            }
        });
        futures_util::future::join_all(asks).await
    }

    async fn request(&self, msg: Message) {
        let Some(id) = msg.id() else { return };
        let method = msg.method().unwrap_or("").to_owned();
        let params = msg.params_as::<Value>().unwrap_or(Value::Null);
        let subs = self.shared.subs();
        match method.as_str() {
            "initialize" => self.initialize(id, &params).await,
            "ping" => self.reply(Message::response(id, to_raw(&json!({})))),
            "logging/setLevel" => {
                if let Ok(mut st) = self.shared.state.lock() {
                    st.log_level = Some(params.clone());
                }
                let _ = self.fan_out(&subs, "logging/setLevel", &params).await;
                self.reply(Message::response(id, to_raw(&json!({}))));
            }
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                self.list(id, &method, &params, &subs).await
            }
            "tools/call" | "prompts/get" => {
                let kind = if method == "tools/call" {
                    Kind::Tool
                } else {
                    Kind::Prompt
                };
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                match self.catalog.resolve(kind, name, &subs) {
                    Some((key, original)) => {
                        let mut m = msg;
                        m.set_param("name", to_raw(&original));
                        self.forward(key, m).await;
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
                let mut owner = self.catalog.owner_of(uri, &subs);
                if owner.is_none() {
                    // Not listed yet in this process: learn the owners, then look again.
                    self.learn_resources(&subs).await;
                    owner = self.catalog.owner_of(uri, &subs);
                }
                match owner {
                    Some((key, original)) => {
                        let mut m = msg;
                        if original != uri {
                            m.set_param("uri", to_raw(&original));
                            if method == "resources/read"
                                && let Ok(mut st) = self.shared.state.lock()
                            {
                                st.renamed_reads
                                    .insert(id.clone(), (original, uri.to_owned()));
                            }
                        }
                        self.forward(key, m).await
                    }
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
                        .and_then(|n| self.catalog.resolve(Kind::Prompt, n, &subs))
                        .map(|(k, original)| (k, Some(original))),
                    _ => r.get("uri").and_then(Value::as_str).and_then(|u| {
                        let (k, original) = self.catalog.owner_of(u, &subs)?;
                        Some((k, (original != u).then_some(original)))
                    }),
                };
                match target {
                    Some((key, original)) => {
                        let mut m = msg;
                        if let Some(name) = original {
                            let field =
                                if r.get("type").and_then(Value::as_str) == Some("ref/prompt") {
                                    "name"
                                } else {
                                    "uri"
                                };
                            let mut r = r;
                            r[field] = name.into();
                            m.set_param("ref", to_raw(&r));
                        }
                        self.forward(key, m).await;
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
        let _one = self.shared.syncing.lock().await;
        if let Ok(mut st) = self.shared.state.lock() {
            st.init = Some(params.clone());
        }
        let subs = self.shared.subs();
        let answers = self.fan_out(&subs, "initialize", params).await;
        let mut caps = Map::new();
        let mut instructions = vec![];
        for (s, a) in subs.iter().zip(&answers) {
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
                instructions.push(format!("## {}\n{text}", s.member.name));
            }
        }
        // The merged lists change whenever a member's do, or a member comes or goes on a
        // reload: all three are offered, and said to change.
        for list in LISTS {
            match caps.get_mut(*list) {
                Some(Value::Object(c)) => {
                    c.insert("listChanged".into(), true.into());
                }
                _ => {
                    caps.insert((*list).into(), json!({ "listChanged": true }));
                }
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

    /// Answer a list: gathered and merged, or the next page of one merged before.
    async fn list(&self, id: Id, method: &str, params: &Value, subs: &[Sub]) {
        let field = match method {
            "tools/list" => "tools",
            "prompts/list" => "prompts",
            "resources/list" => "resources",
            _ => "resourceTemplates",
        };
        if let Some(c) = params.get("cursor").filter(|c| !c.is_null()) {
            return self.next_page(id, field, c);
        }
        let merged = match method {
            "tools/list" => self.merge_names(subs, Kind::Tool).await,
            "prompts/list" => self.merge_names(subs, Kind::Prompt).await,
            _ => self.gather_resources(subs, method, field).await,
        };
        let Some(size) = self.catalog.page_size.filter(|n| merged.len() > *n) else {
            return self.reply(Message::response(id, to_raw(&json!({ field: merged }))));
        };
        let generation = match self.shared.state.lock() {
            Ok(mut st) => {
                st.next += 1;
                let generation = st.next;
                st.pages
                    .insert(field.to_owned(), (generation, Arc::new(merged.clone())));
                generation
            }
            Err(_) => 0,
        };
        let page = &merged[..size];
        self.reply(Message::response(
            id,
            to_raw(&json!({ field: page, "nextCursor": cursor(field, generation, size) })),
        ));
    }

    /// The page of a paged merged list that `cursor` names.
    fn next_page(&self, id: Id, field: &str, c: &Value) {
        let snapshot = c
            .as_str()
            .and_then(|c| read_cursor(field, c))
            .and_then(|(g, at)| {
                let st = self.shared.state.lock().ok()?;
                let (have, list) = st.pages.get(field)?;
                (*have == g && at <= list.len()).then(|| (g, at, list.clone()))
            });
        let Some((generation, at, list)) = snapshot else {
            return self.reply(Message::error(
                id,
                code::INVALID_PARAMS,
                "invalid or expired cursor: list again without one",
                None,
            ));
        };
        let size = self.catalog.page_size.unwrap_or(list.len()).max(1);
        let end = (at + size).min(list.len());
        let mut result = json!({ field: &list[at..end] });
        if end < list.len() {
            result["nextCursor"] = cursor(field, generation, end).into();
        }
        self.reply(Message::response(id, to_raw(&result)));
    }

    /// Tools or prompts of every member under their merged names, noted for routing.
    async fn merge_names(&self, subs: &[Sub], kind: Kind) -> Vec<Value> {
        let (method, field) = match kind {
            Kind::Tool => ("tools/list", "tools"),
            Kind::Prompt => ("prompts/list", "prompts"),
        };
        let per_member = self.gather(subs, method, field).await;
        let sep = &self.catalog.separator;
        let mut taken = HashSet::new();
        let mut table = HashMap::new();
        let mut merged = vec![];
        for (s, items) in subs.iter().zip(per_member) {
            let server = &s.member.name;
            for mut item in items {
                let Some(original) = item.get("name").and_then(Value::as_str).map(str::to_owned)
                else {
                    continue;
                };
                let name = merged_name(server, &original, sep, &taken);
                let plain = merged_name(server, &original, sep, &HashSet::new());
                if name != plain {
                    self.catalog.tell_once(
                        server,
                        format!(
                            "{field} name `{plain}` is taken; `{original}` is offered as `{name}`"
                        ),
                    );
                }
                taken.insert(name.clone());
                table.insert(name.clone(), (s.member.key, original));
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
        merged
    }

    /// Gather resources (or templates) from every member, noting who owns what. A URI (or
    /// template) that an earlier server in config order offers already is offered under
    /// `SERVER+URI`, so that every one stays reachable and none is listed twice.
    async fn gather_resources(&self, subs: &[Sub], method: &str, field: &str) -> Vec<Value> {
        let per_member = self.gather(subs, method, field).await;
        let member = if field == "resources" {
            "uri"
        } else {
            "uriTemplate"
        };
        let mut merged = vec![];
        let mut taken: HashSet<String> = HashSet::new();
        let mut owners = HashMap::new();
        let mut templates = vec![];
        for (s, items) in subs.iter().zip(per_member) {
            for mut item in items {
                let Some(original) = item.get(member).and_then(Value::as_str).map(str::to_owned)
                else {
                    merged.push(item);
                    continue;
                };
                let uri = if taken.contains(&original) {
                    let alias = aliased_uri(&s.member.name, &original, &taken);
                    self.catalog.tell_once(
                        &s.member.name,
                        format!(
                            "resource{} `{original}` is offered by an earlier server too; this \
                             server's is offered as `{alias}`",
                            if field == "resources" {
                                ""
                            } else {
                                " template"
                            }
                        ),
                    );
                    item[member] = alias.clone().into();
                    alias
                } else {
                    original.clone()
                };
                taken.insert(uri.clone());
                if field == "resources" {
                    owners.insert(uri, (s.member.key, original));
                } else {
                    templates.push(Template {
                        key: s.member.key,
                        merged: uri,
                        original,
                    });
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
    async fn learn_resources(&self, subs: &[Sub]) {
        self.gather_resources(subs, "resources/list", "resources")
            .await;
        self.gather_resources(subs, "resources/templates/list", "resourceTemplates")
            .await;
    }

    /// End the session with every member.
    pub async fn close(&self) {
        for r in self.shared.subs().into_iter().filter_map(|s| s.route) {
            Box::pin(r.close()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_their_list_and_nothing_else() {
        let c = cursor("tools", 7, 100);
        assert!(!c.contains("tools"));
        assert_eq!(read_cursor("tools", &c), Some((7, 100)));
        assert_eq!(read_cursor("prompts", &c), None);
        assert_eq!(read_cursor("tools", "not base64!"), None);
        let extra = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("tools:1:2:3");
        assert_eq!(read_cursor("tools", &extra), None);
    }

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
