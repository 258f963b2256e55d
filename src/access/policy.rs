//! Which identity may see and use which servers, tools, prompts and resources (`--policy
//! FILE`, reloaded when it changes):
//!
//! ```json5
//! { "rules": [
//!     { "who": { "key": "alice" }, "servers": ["*"] },
//!     { "who": { "scope": "mcp:tools" }, "servers": ["time", "fs"], "tools": ["get_*", "fs--read_*"],
//!       "deny": { "tools": ["*--delete_*"] }, "limits": { "rate": 10, "concurrency": 2 } } ],
//!   "default": { "servers": [] } }
//! ```
//!
//! `who` matches a key or token name (`key`), or a token's `sub`, `client_id`, one of its
//! scopes (`scope`) or groups (`group`); every field given must match (wildcards `*`, `?`);
//! `{}` matches anyone. An identity may use what any of its rules allows (`servers`, and
//! within them `tools`, `prompts`, `resources`, each `["*"]` when left out) and nothing that
//! any of them denies. Names are matched as `NAME` and as `SERVER--NAME` (a resource by its
//! URI). An identity that no rule matches gets `default`; without `default`, nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use wildmatch::WildMatch;

use super::Identity;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhoFile {
    key: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsFile {
    tools: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
    resources: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per second.
    pub rate: Option<u32>,
    /// Requests waiting for an answer at once.
    pub concurrency: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    who: WhoFile,
    servers: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    #[serde(default)]
    deny: ItemsFile,
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: Vec<RuleFile>,
    default: Option<RuleFile>,
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
        }
    }
}

#[derive(Debug)]
struct Who {
    key: Option<WildMatch>,
    sub: Option<WildMatch>,
    client_id: Option<WildMatch>,
    scope: Option<(String, WildMatch)>,
    group: Option<WildMatch>,
}

#[derive(Debug)]
struct Rule {
    who: Who,
    servers: Vec<WildMatch>,
    allow: [Option<Vec<WildMatch>>; 3],
    deny: [Vec<WildMatch>; 3],
    limits: Limits,
}

fn pats(v: &[String]) -> Vec<WildMatch> {
    v.iter().map(|p| WildMatch::new(p)).collect()
}

fn idx(k: Kind) -> usize {
    match k {
        Kind::Tool => 0,
        Kind::Prompt => 1,
        Kind::Resource => 2,
    }
}

impl Rule {
    fn from_file(r: RuleFile) -> Rule {
        let w = |o: Option<String>| o.map(|p| WildMatch::new(&p));
        Rule {
            who: Who {
                key: w(r.who.key),
                sub: w(r.who.sub),
                client_id: w(r.who.client_id),
                scope: r.who.scope.map(|s| (s.clone(), WildMatch::new(&s))),
                group: w(r.who.group),
            },
            servers: pats(r.servers.as_deref().unwrap_or(&["*".to_owned()])),
            allow: [
                r.tools.as_deref().map(pats),
                r.prompts.as_deref().map(pats),
                r.resources.as_deref().map(pats),
            ],
            deny: [
                pats(r.deny.tools.as_deref().unwrap_or(&[])),
                pats(r.deny.prompts.as_deref().unwrap_or(&[])),
                pats(r.deny.resources.as_deref().unwrap_or(&[])),
            ],
            limits: r.limits,
        }
    }

    /// Whether the rule is about `id`; `ignore_scope` leaves its scope condition out.
    fn matches(&self, id: &Identity, ignore_scope: bool) -> bool {
        let one = |p: &Option<WildMatch>, v: Option<&str>| match p {
            None => true,
            Some(p) => v.is_some_and(|v| p.matches(v)),
        };
        let key = (id.via == "key" || id.via == "token").then_some(id.name.as_str());
        one(&self.who.key, key)
            && one(&self.who.sub, id.sub.as_deref())
            && one(&self.who.client_id, id.client_id.as_deref())
            && (ignore_scope
                || self
                    .who
                    .scope
                    .as_ref()
                    .is_none_or(|(_, p)| id.scopes.iter().any(|s| p.matches(s))))
            && self
                .who
                .group
                .as_ref()
                .is_none_or(|p| id.groups.iter().any(|g| p.matches(g)))
    }

    fn server_ok(&self, server: &str) -> bool {
        self.servers.iter().any(|p| p.matches(server))
    }

    fn hit(list: &[WildMatch], server: &str, name: &str) -> bool {
        let key = format!("{server}{}{name}", crate::curation::SEPARATOR);
        list.iter().any(|p| p.matches(name) || p.matches(&key))
    }

    fn allows(&self, kind: Kind, server: &str, name: &str) -> bool {
        self.server_ok(server)
            && self.allow[idx(kind)]
                .as_ref()
                .is_none_or(|l| Self::hit(l, server, name))
    }

    fn denies(&self, kind: Kind, server: &str, name: &str) -> bool {
        Self::hit(&self.deny[idx(kind)], server, name)
    }
}

/// The rules in force.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Option<Rule>,
    /// Whether a policy file is in force at all (without one, everything is allowed).
    pub present: bool,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let f: PolicyFile = json5::from_str(text).map_err(|e| e.to_string())?;
        Ok(Policy {
            rules: f.rules.into_iter().map(Rule::from_file).collect(),
            default: f.default.map(Rule::from_file),
            present: true,
        })
    }

    /// The rules about `id`.
    fn rules_for<'a>(&'a self, id: &Identity) -> Vec<&'a Rule> {
        let mine: Vec<&Rule> = self.rules.iter().filter(|r| r.matches(id, false)).collect();
        if mine.is_empty() {
            self.default.iter().collect()
        } else {
            mine
        }
    }

    /// Whether `id` may use server `server` at all (`""`: the proxy's only server).
    pub fn server_allowed(&self, id: &Identity, server: &str) -> bool {
        !self.present || self.rules_for(id).iter().any(|r| r.server_ok(server))
    }

    /// Whether `id` may see and use `name` of `server`.
    pub fn allowed(&self, id: &Identity, kind: Kind, server: &str, name: &str) -> bool {
        if !self.present {
            return true;
        }
        let rules = self.rules_for(id);
        rules.iter().any(|r| r.allows(kind, server, name))
            && !rules.iter().any(|r| r.denies(kind, server, name))
    }

    /// A scope that would let `id` use `name`: a rule that asks for that scope (which `id`
    /// lacks) and would otherwise allow it. For `403 insufficient_scope`.
    pub fn scope_needed(
        &self,
        id: &Identity,
        kind: Kind,
        server: &str,
        name: &str,
    ) -> Option<String> {
        self.rules
            .iter()
            .filter(|r| {
                r.who
                    .scope
                    .as_ref()
                    .is_some_and(|(s, _)| !s.contains(['*', '?']) && !id.scopes.contains(s))
            })
            .filter(|r| {
                r.matches(id, true) && r.allows(kind, server, name) && !r.denies(kind, server, name)
            })
            .find_map(|r| r.who.scope.as_ref().map(|(s, _)| s.clone()))
    }

    /// The limits of `id`'s rules (the highest of each, when several say).
    pub fn limits(&self, id: &Identity) -> Limits {
        let mut out = Limits::default();
        for r in self.rules_for(id) {
            if let Some(x) = r.limits.rate {
                out.rate = Some(out.rate.map_or(x, |y| y.max(x)));
            }
            if let Some(x) = r.limits.concurrency {
                out.concurrency = Some(out.concurrency.map_or(x, |y| y.max(x)));
            }
        }
        out
    }
}

/// The policy file, read again when it changes.
pub struct Store {
    path: Option<PathBuf>,
    current: RwLock<Arc<Policy>>,
    /// Bumped at every reload that took.
    pub changed: tokio::sync::watch::Sender<u64>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Store {
    pub fn load(path: Option<&Path>) -> Result<Arc<Store>, String> {
        let policy = match path {
            None => Policy::default(),
            Some(p) => {
                let text =
                    crate::config::read_file(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Policy::parse(&text).map_err(|e| format!("{}: not a policy: {e}", p.display()))?
            }
        };
        let (changed, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(Store {
            path: path.map(Path::to_path_buf),
            current: RwLock::new(Arc::new(policy)),
            changed,
        }))
    }

    pub fn get(&self) -> Arc<Policy> {
        self.current.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Watch the file (every second): a valid new version takes effect at once; an
    /// invalid one is logged and the old one stays.
    pub fn watch(self: &Arc<Self>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = modified(&path);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(store) = me.upgrade() else { return };
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match crate::config::read_file(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Policy::parse(&t))
                {
                    Ok(p) => {
                        if let Ok(mut c) = store.current.write() {
                            *c = Arc::new(p);
                        }
                        store.changed.send_modify(|n| *n += 1);
                        tracing::info!("policy reloaded from {}", path.display());
                    }
                    Err(e) => tracing::warn!(
                        "the policy in {} is not valid; the previous one stays: {e}",
                        path.display()
                    ),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, via: &'static str, scopes: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            via,
            sub: (via == "jwt").then(|| name.to_owned()),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
        }
    }

    #[test]
    fn rules_allow_and_deny() {
        let p = Policy::parse(
            r#"{ rules: [
                { who: { key: "alice" } },
                { who: { key: "bob" }, servers: ["time"], tools: ["get_*"], deny: { tools: ["time--get_secret"] } },
                { who: { scope: "mcp:admin" }, tools: ["*"] },
              ],
              default: { servers: [] } }"#,
        )
        .unwrap();
        let alice = who("alice", "key", &[]);
        let bob = who("bob", "key", &[]);
        let eve = who("eve", "jwt", &["mcp:read"]);
        assert!(p.allowed(&alice, Kind::Tool, "fs", "delete"));
        assert!(p.allowed(&bob, Kind::Tool, "time", "get_time"));
        assert!(!p.allowed(&bob, Kind::Tool, "time", "get_secret"));
        assert!(!p.allowed(&bob, Kind::Tool, "time", "set_time"));
        assert!(!p.allowed(&bob, Kind::Tool, "fs", "get_file"));
        assert!(p.allowed(&bob, Kind::Prompt, "time", "any"));
        assert!(!p.server_allowed(&bob, "fs"));
        assert!(!p.allowed(&eve, Kind::Tool, "time", "get_time"));
        assert!(!p.server_allowed(&eve, "time"));
        assert_eq!(
            p.scope_needed(&eve, Kind::Tool, "time", "x").as_deref(),
            Some("mcp:admin")
        );
        // A JWT's sub is not a key name.
        let jwt_alice = who("alice", "jwt", &[]);
        assert!(!p.allowed(&jwt_alice, Kind::Tool, "fs", "x"));
        assert!(Policy::parse("{ rules: [ { who: { nobody: 1 } } ] }").is_err());
    }

    #[test]
    fn no_policy_allows_everything() {
        let p = Policy::default();
        assert!(p.allowed(&who("x", "key", &[]), Kind::Tool, "s", "t"));
    }
}
