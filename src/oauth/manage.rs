//! Managing sign-ins without an MCP client: `--oauth-login`, `--oauth-list`,
//! `--oauth-logout`.

use std::sync::Arc;

use super::OAuth;
use super::store::{Store, now};

/// What is kept, one line per server (never a token).
pub fn list(store: &Store) -> String {
    let all = store.list();
    if all.is_empty() {
        return format!("no server signed in to (in {})\n", store.dir().display());
    }
    let mut out = String::new();
    for (_, e) in all {
        let client = e
            .client
            .as_ref()
            .map(|c| format!("{} client", c.source))
            .unwrap_or_else(|| "no client".into());
        let tokens = match &e.tokens {
            None => "not signed in".to_owned(),
            Some(t) => {
                let expiry = match t.expires_at {
                    Some(at) if at > now() => format!("expires in {}s", at - now()),
                    Some(_) => "expired".to_owned(),
                    None => "no expiry".to_owned(),
                };
                format!(
                    "signed in ({expiry}{}; scopes: {})",
                    if t.refresh_token.is_some() {
                        ", can refresh"
                    } else {
                        ""
                    },
                    t.scope
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "-".into())
                )
            }
        };
        out.push_str(&format!(
            "{}{}  issuer: {}  {client}  {tokens}{}\n",
            e.server,
            e.resource
                .as_deref()
                .map(|r| format!(" (resource {r})"))
                .unwrap_or_default(),
            e.issuer.as_deref().unwrap_or("-"),
            e.subject
                .as_deref()
                .map(|s| format!("  subject: {s}"))
                .unwrap_or_default(),
        ));
    }
    out
}

/// Forget `server` (its URL as given), or everything with `all`.
pub fn logout(store: &Store, server: &str, resource: Option<&str>) -> Result<String, String> {
    if server == "all" {
        let all = store.list();
        for (key, _) in &all {
            store.remove(key);
        }
        return Ok(format!("signed out of {} server(s)\n", all.len()));
    }
    let url = reqwest::Url::parse(server).map_err(|e| format!("`{server}` is not a URL: {e}"))?;
    let shown = crate::transport::redact_url(&url);
    if store.remove(&Store::key(&shown, resource)) {
        Ok(format!("signed out of {shown}\n"))
    } else {
        Err(format!("not signed in to {shown}"))
    }
}

/// Sign in to each of `servers` now, one after the other.
pub async fn login(servers: Vec<(String, Arc<OAuth>)>) -> Result<String, String> {
    if servers.is_empty() {
        return Err(
            "no remote server to sign in to (give a URL, or a --config with remote servers)".into(),
        );
    }
    let mut out = String::new();
    let mut failed = false;
    for (name, auth) in servers {
        match auth.login().await {
            Ok(()) => out.push_str(&format!("signed in to {name}\n")),
            Err(e) => {
                failed = true;
                out.push_str(&format!("{name}: {e}\n"));
            }
        }
    }
    if failed { Err(out) } else { Ok(out) }
}
