//! Which tools clients see, and how: `--ignore-tool PATTERN` (wildcards `*` and `?`, matched
//! against the tool's name and against `server--tool`) and `--tool-config FILE`, the
//! `tool_config.json` format of other MCP proxies, read as is:
//!
//! ```json
//! { "tools": { "server--tool": { "enabled": false },
//!              "server--other": { "displayName": "Nicer name", "description": "Better text" } } }
//! ```
//!
//! A hidden tool is left out of `tools/list` and a call to it is refused. `displayName` becomes
//! the tool's `title` (what clients show); `description` replaces the description.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use wildmatch::WildMatch;

use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::{Filed, Outgoing, SessionTx};

/// Separator between a server's name and its tool's name in configuration keys.
pub const SEPARATOR: &str = "--";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ToolOverride {
    pub enabled: Option<bool>,
    #[serde(rename = "displayName")]
    pub display_name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolConfigFile {
    #[serde(default)]
    tools: HashMap<String, ToolOverride>,
}

/// The rules, for every server.
#[derive(Debug, Default, PartialEq)]
pub struct Policy {
    ignore: Vec<WildMatch>,
    overrides: HashMap<String, ToolOverride>,
}

impl Policy {
    /// Build from `--ignore-tool` patterns and an optional `--tool-config` file.
    pub fn load(ignore: &[String], tool_config: Option<&Path>) -> Result<Policy, String> {
        let overrides = match tool_config {
            None => HashMap::new(),
            Some(path) => {
                let text = crate::config::read_file(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let file: ToolConfigFile = json5::from_str(&text)
                    .map_err(|e| format!("{}: not a tool configuration: {e}", path.display()))?;
                file.tools
            }
        };
        Ok(Policy {
            ignore: ignore.iter().map(|p| WildMatch::new(p)).collect(),
            overrides,
        })
    }

    /// Check the text of a tool_config.json as [`Policy::load`] reads it.
    pub fn check_text(text: &str) -> Result<(), String> {
        json5::from_str::<ToolConfigFile>(text)
            .map(|_| ())
            .map_err(|e| format!("not a tool configuration: {e}"))
    }

    pub fn is_empty(&self) -> bool {
        self.ignore.is_empty() && self.overrides.is_empty()
    }

    /// The rules as one server sees them, with its own `allow` / `deny` patterns.
    pub fn for_server(
        self: &Arc<Self>,
        server: Option<&str>,
        allow: &[String],
        deny: &[String],
    ) -> Option<Curation> {
        (!self.is_empty() || !allow.is_empty() || !deny.is_empty()).then(|| Curation {
            policy: self.clone(),
            server: server.map(str::to_owned),
            allow: allow.iter().map(|p| WildMatch::new(p)).collect(),
            deny: deny.iter().map(|p| WildMatch::new(p)).collect(),
        })
    }
}

/// The rules for one server's tools.
#[derive(Debug, Clone)]
pub struct Curation {
    policy: Arc<Policy>,
    server: Option<String>,
    /// This server's own patterns: when `allow` is not empty, only matching tools are shown.
    allow: Vec<WildMatch>,
    deny: Vec<WildMatch>,
}

impl Curation {
    fn key(&self, tool: &str) -> String {
        match &self.server {
            Some(s) => format!("{s}{SEPARATOR}{tool}"),
            None => tool.to_owned(),
        }
    }

    fn override_of(&self, tool: &str) -> Option<&ToolOverride> {
        self.policy
            .overrides
            .get(&self.key(tool))
            .or_else(|| self.policy.overrides.get(tool))
    }

    /// Whether clients may see and call `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        let key = self.key(tool);
        let ignored = self
            .policy
            .ignore
            .iter()
            .any(|p| p.matches(tool) || p.matches(&key));
        let allowed = self.allow.is_empty() || self.allow.iter().any(|p| p.matches(tool));
        let denied = self.deny.iter().any(|p| p.matches(tool));
        !ignored
            && allowed
            && !denied
            && self.override_of(tool).and_then(|o| o.enabled) != Some(false)
    }

    /// A `tools/list` result as clients should see it.
    pub fn rewrite_tools(&self, result: &mut Value) {
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return;
        };
        tools.retain(|t| {
            t.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| self.allows(n))
        });
        for t in tools.iter_mut() {
            let Some(name) = t.get("name").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let Some(o) = self.override_of(&name).cloned() else {
                continue;
            };
            let Some(obj) = t.as_object_mut() else {
                continue;
            };
            if let Some(title) = o.display_name {
                obj.insert("title".into(), title.into());
            }
            if let Some(d) = o.description {
                obj.insert("description".into(), d.into());
            }
        }
    }

    /// The refusal of a call to a tool clients may not use, if `msg` is one.
    pub fn refuse(&self, msg: &Message) -> Option<Message> {
        if msg.method() != Some("tools/call") {
            return None;
        }
        let name = msg
            .params_as::<Value>()
            .and_then(|p| p.get("name")?.as_str().map(str::to_owned))?;
        if self.allows(&name) {
            return None;
        }
        Some(Message::error(
            msg.id()?,
            code::INVALID_PARAMS,
            &format!("tool `{name}` is not available (hidden by the proxy's tool configuration)"),
            Some(serde_json::json!({ "refusedBy": "mcp-proxy", "reason": "curation" })),
        ))
    }

    /// Rewrite a `tools/list` answer in place.
    pub fn rewrite_answer(&self, answer: &mut Message) {
        if let Some(mut r) = answer.result_as::<Value>() {
            self.rewrite_tools(&mut r);
            answer.set("result", to_raw(&r));
        }
    }

    /// A session's link to the client, rewriting the answers to its `tools/list` requests;
    /// and the set in which those requests are noted as they go out.
    pub fn wrap(&self, tx: SessionTx) -> (SessionTx, ListRequests) {
        let lists: ListRequests = Default::default();
        let seen = lists.clone();
        let me = self.clone();
        let wrapped = SessionTx::direct(move |mut o: Outgoing| {
            if o.msg.is_response()
                && let Some(id) = o.msg.id()
                && seen.lock().map(|mut s| s.remove(&id)).unwrap_or(false)
            {
                me.rewrite_answer(&mut o.msg);
            }
            match tx.try_send(o) {
                Ok(()) => Filed::Yes,
                Err(_) => Filed::Closed,
            }
        });
        (wrapped, lists)
    }
}

/// The ids of a session's `tools/list` requests in flight.
pub type ListRequests = Arc<Mutex<std::collections::HashSet<Id>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(ignore: &[&str], overrides: Value) -> Arc<Policy> {
        let file: ToolConfigFile =
            serde_json::from_value(json!({ "tools": overrides })).expect("file");
        Arc::new(Policy {
            ignore: ignore.iter().map(|p| WildMatch::new(p)).collect(),
            overrides: file.tools,
        })
    }

    #[test]
    fn tools_are_hidden_renamed_and_described() {
        let p = policy(
            &["delete_*", "fs--write?"],
            json!({
                "fs--read": { "displayName": "Read a file", "description": "Reads." },
                "fs--secret": { "enabled": false },
            }),
        );
        let c = p.for_server(Some("fs"), &[], &[]).expect("rules");
        assert!(c.allows("read"));
        assert!(!c.allows("delete_all"));
        assert!(!c.allows("writeX"));
        assert!(c.allows("write"));
        assert!(!c.allows("secret"));
        let mut list = json!({ "tools": [
            { "name": "read", "description": "old", "inputSchema": {} },
            { "name": "secret", "inputSchema": {} },
            { "name": "delete_all", "inputSchema": {} },
            { "name": "other", "inputSchema": {}, "x": 1 },
        ]});
        c.rewrite_tools(&mut list);
        let names: Vec<&str> = list["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["read", "other"]);
        assert_eq!(list["tools"][0]["title"], "Read a file");
        assert_eq!(list["tools"][0]["description"], "Reads.");
        assert_eq!(list["tools"][1]["x"], 1);
        // Another server's keys do not apply.
        let other = p.for_server(Some("db"), &[], &[]).expect("rules");
        assert!(other.allows("secret"));
        // A server's own patterns.
        let own = Arc::new(Policy::default())
            .for_server(Some("db"), &["get_*".into()], &["get_secret".into()])
            .expect("rules");
        assert!(own.allows("get_user") && !own.allows("get_secret") && !own.allows("drop"));
        assert!(
            Arc::new(Policy::default())
                .for_server(None, &[], &[])
                .is_none()
        );
    }

    #[test]
    fn calls_to_hidden_tools_are_refused() {
        let c = policy(&["danger"], json!({}))
            .for_server(None, &[], &[])
            .expect("rules");
        let call = Message::parse_one(
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"danger"}}"#,
        )
        .expect("msg");
        let r = c.refuse(&call).expect("refused");
        assert_eq!(r.id(), Some(Id::number(4)));
        let ok = Message::parse_one(
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"fine"}}"#,
        )
        .expect("msg");
        assert!(c.refuse(&ok).is_none());
    }
}
