//! The audit log: one JSON line per `tools/call`, `prompts/get` and `resources/read`, and
//! per refused attempt, to stderr or appended to a file (`--audit-log`). Arguments and
//! results only with `--audit-payloads`; credentials never.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::Identity;

pub struct Audit {
    out: Mutex<Box<dyn Write + Send>>,
    pub payloads: bool,
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

pub fn who(id: &Identity) -> Value {
    let mut v = json!({ "name": id.name, "via": id.via });
    if let Some(s) = &id.sub {
        v["sub"] = s.clone().into();
    }
    if let Some(c) = &id.client_id {
        v["client_id"] = c.clone().into();
    }
    v
}

/// One answered (or refused) call, for [`Audit::call`].
pub struct Entry<'a> {
    pub identity: &'a Identity,
    pub session: &'a str,
    pub server: Option<&'a str>,
    pub method: &'a str,
    pub name: Option<&'a str>,
    /// `ok`, `tool_error`, `error`, `denied`, `limited`, `cancelled`.
    pub outcome: &'a str,
    pub error: Option<String>,
    pub duration_ms: f64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    pub arguments: Option<Value>,
    pub result: Option<Value>,
}

impl Audit {
    /// `-` for stderr, else a file appended to (created 0600).
    pub fn open(target: &str, payloads: bool) -> Result<Audit, String> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stderr())
        } else {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            let f = o
                .open(target)
                .map_err(|e| format!("--audit-log {target}: {e}"))?;
            Box::new(std::io::LineWriter::new(f))
        };
        Ok(Audit {
            out: Mutex::new(out),
            payloads,
        })
    }

    fn write(&self, mut v: Value) {
        v["time"] = now().into();
        let mut line = v.to_string();
        line.push('\n');
        if let Ok(mut o) = self.out.lock()
            && let Err(e) = o.write_all(line.as_bytes())
        {
            crate::warn_throttled!("audit", "cannot write the audit log: {e}");
        }
    }

    pub fn call(&self, e: Entry) {
        let mut v = json!({
            "event": "call",
            "identity": who(e.identity),
            "session": e.session,
            "server": e.server,
            "method": e.method,
            "name": e.name,
            "outcome": e.outcome,
            "durationMs": (e.duration_ms * 1000.0).round() / 1000.0,
            "requestBytes": e.request_bytes,
            "responseBytes": e.response_bytes,
        });
        if let Some(err) = e.error {
            v["error"] = err.into();
        }
        if self.payloads {
            if let Some(a) = e.arguments {
                v["arguments"] = a;
            }
            if let Some(r) = e.result {
                v["result"] = r;
            }
        }
        self.write(v);
    }

    /// A request refused before anyone was identified.
    pub fn refused(&self, path: &str, address: Option<IpAddr>, why: &str) {
        self.write(json!({
            "event": "refused",
            "outcome": "unauthenticated",
            "path": path,
            "address": address.map(|a| a.to_string()),
            "reason": why,
        }));
    }

    /// An event of the admin console: `event` names it, `fields` say the rest (never a
    /// secret).
    pub fn admin(&self, event: &str, user: &str, mut fields: Value) {
        if !fields.is_object() {
            fields = json!({});
        }
        fields["event"] = event.into();
        fields["user"] = user.into();
        self.write(fields);
    }

    pub fn denied_server(&self, id: &Identity, server: &str) {
        self.write(json!({
            "event": "refused",
            "outcome": "denied",
            "identity": who(id),
            "server": server,
        }));
    }

    pub fn limited(&self, id: &Identity, path: &str) {
        self.write(json!({
            "event": "refused",
            "outcome": "limited",
            "identity": who(id),
            "path": path,
        }));
    }
}
