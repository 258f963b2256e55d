//! Who may use the proxy: API keys and static tokens, OAuth 2.1 access tokens (the proxy as
//! a resource server), a per-identity policy, per-identity limits and an audit log.
//!
//! Entered at two seams: [`check`], a layer on the HTTP router that turns a request into an
//! [`Identity`] (or refuses it with the right status and `WWW-Authenticate`), and [`Gate`],
//! which stands between one client session and its route: it leaves out of lists what the
//! identity may not see, refuses what it may not use, counts its requests against its limits
//! and writes the audit line when a call is answered.

pub mod audit;
pub mod gate;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod policy;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

pub use gate::Gate;

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The key's or token's name, else the token's `sub` (else its client).
    pub name: String,
    /// How it was proven: `key`, `token`, `jwt`, `introspection`.
    pub via: &'static str,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
}

/// The identity of a request, and what it is checked against (a request extension).
#[derive(Clone)]
pub struct Caller {
    pub identity: Arc<Identity>,
    pub access: Arc<Access>,
}

/// Everything inbound auth needs.
pub struct Access {
    pub keys: keys::Secrets,
    pub tokens: keys::Secrets,
    pub verifier: Option<jwt::Verifier>,
    /// Scopes every token must have; offered in the metadata and the challenges.
    pub scopes: Vec<String>,
    /// The proxy's public base URL (else `http://HOST`).
    pub resource: Option<String>,
    pub policy: Arc<policy::Store>,
    pub limits: limits::Limits,
    pub audit: Option<Arc<audit::Audit>>,
    /// Failed attempts per address in the current minute.
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    pub max_failures: u32,
}

/// Where a request was refused, said to the client.
fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": -32001, "message": text }
        })
        .to_string(),
    )
        .into_response()
}

impl Access {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        keys: keys::Secrets,
        tokens: keys::Secrets,
        verifier: Option<jwt::Verifier>,
        scopes: Vec<String>,
        resource: Option<String>,
        policy: Arc<policy::Store>,
        limits: limits::Limits,
        audit: Option<Arc<audit::Audit>>,
        max_failures: u32,
    ) -> Arc<Access> {
        Arc::new(Access {
            keys,
            tokens,
            verifier,
            scopes,
            resource,
            policy,
            limits,
            audit,
            failures: Default::default(),
            max_failures,
        })
    }

    /// Whether clients must prove who they are.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || !self.tokens.is_empty() || self.verifier.is_some()
    }

    /// The base URL clients reach the proxy at.
    pub fn base(&self, headers: &http::HeaderMap) -> String {
        if let Some(r) = &self.resource {
            return r.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!("http://{host}")
    }

    /// The resource (RFC 8707/9728) that `path` belongs to: `/mcp`, `/sse`, or a named
    /// server's `/servers/NAME/mcp` …
    fn resource_path(path: &str) -> String {
        let p = path.trim_end_matches('/');
        match p {
            "/messages" => "/sse".into(),
            _ => match p.strip_prefix("/servers/") {
                Some(rest) => match rest.split_once('/') {
                    Some((name, "messages")) => format!("/servers/{name}/sse"),
                    Some((name, tail)) => format!("/servers/{name}/{tail}"),
                    None => format!("/servers/{rest}"),
                },
                None => p.to_owned(),
            },
        }
    }

    fn challenge(&self, base: &str, path: &str, error: Option<(&str, &str)>) -> String {
        let mut c = String::from("Bearer");
        let mut parts = vec![];
        if self.verifier.is_some() {
            parts.push(format!(
                "resource_metadata=\"{base}/.well-known/oauth-protected-resource{}\"",
                Self::resource_path(path)
            ));
            if !self.scopes.is_empty() {
                parts.push(format!("scope=\"{}\"", self.scopes.join(" ")));
            }
        } else {
            parts.push("realm=\"mcp-proxy\"".into());
        }
        if let Some((e, d)) = error {
            parts.push(format!("error=\"{e}\""));
            parts.push(format!("error_description=\"{d}\""));
        }
        c.push(' ');
        c.push_str(&parts.join(", "));
        c
    }

    /// 401 with the challenge.
    fn unauthorized(&self, base: &str, path: &str, error: Option<(&str, &str)>) -> Response {
        let text = match error {
            Some((_, d)) => format!("Unauthorized: {d}"),
            None => "Unauthorized: send an API key (X-Api-Key) or a bearer token".into(),
        };
        let mut r = plain(StatusCode::UNAUTHORIZED, &text);
        if let Ok(v) = HeaderValue::from_str(&self.challenge(base, path, error)) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }

    /// 403 `insufficient_scope`, naming the scopes that would do.
    pub fn insufficient(&self, base: &str, path: &str, have: &[String], need: &str) -> Response {
        let mut scopes: Vec<String> = have.to_vec();
        if !scopes.iter().any(|s| s == need) {
            scopes.push(need.to_owned());
        }
        let mut r = plain(
            StatusCode::FORBIDDEN,
            &format!("Forbidden: this needs the scope {need}"),
        );
        let c = format!(
            "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource{}\", scope=\"{}\", error=\"insufficient_scope\"",
            Self::resource_path(path),
            scopes.join(" ")
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }

    /// Whether `ip` has failed too often this minute; how long until it may try again.
    fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let f = self.failures.lock().ok()?;
        let (since, n) = f.get(&ip)?;
        let left = Duration::from_secs(60).checked_sub(since.elapsed())?;
        (*n >= self.max_failures && self.max_failures > 0).then_some(left.as_secs().max(1))
    }

    fn failed(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            if f.len() > 100_000 {
                f.retain(|_, (t, _)| t.elapsed() < Duration::from_secs(60));
            }
            let e = f.entry(ip).or_insert((Instant::now(), 0));
            if e.0.elapsed() >= Duration::from_secs(60) {
                *e = (Instant::now(), 0);
            }
            e.1 += 1;
        }
    }

    /// Who sent `headers` (a key, a static token or an access token), if anyone proved it.
    pub async fn identity_of(&self, headers: &http::HeaderMap) -> Option<Identity> {
        let base = self.base(headers);
        self.identify(headers, None, &base).await.ok()
    }

    /// Prove who sent `headers` (and `query`): a key, a static token, or an access token.
    async fn identify(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
        base: &str,
    ) -> Result<Identity, Refusal> {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                query.and_then(|q| {
                    let u = reqwest::Url::parse(&format!("http://x/?{q}")).ok()?;
                    u.query_pairs()
                        .find(|(k, _)| k == "key")
                        .map(|(_, v)| v.into_owned())
                })
            });
        if let Some(k) = key {
            return match self.keys.find(&k) {
                Some(name) => Ok(Identity {
                    name: name.to_owned(),
                    via: "key",
                    sub: None,
                    client_id: None,
                    scopes: vec![],
                    groups: vec![],
                }),
                None => Err(Refusal::Invalid(
                    "the API key is not valid",
                    "an unknown API key".into(),
                )),
            };
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_owned())
            });
        let Some(token) = bearer else {
            return Err(Refusal::Missing);
        };
        if let Some(name) = self.tokens.find(&token) {
            return Ok(Identity {
                name: name.to_owned(),
                via: "token",
                sub: None,
                client_id: None,
                scopes: vec![],
                groups: vec![],
            });
        }
        let Some(v) = &self.verifier else {
            return Err(Refusal::Invalid(
                "the token is not valid",
                "an unknown static token".into(),
            ));
        };
        let id = v.verify(&token, base).await.map_err(|b| match b {
            jwt::Bad::Invalid(said, why) => Refusal::Invalid(said, why),
            jwt::Bad::Unavailable(why) => Refusal::Unavailable(why),
        })?;
        if let Some(missing) = self.scopes.iter().find(|s| !id.scopes.contains(s)) {
            return Err(Refusal::Scope(missing.clone(), id.scopes.clone()));
        }
        Ok(id)
    }

    /// Protected Resource Metadata (RFC 9728) for the resource at `path`.
    fn metadata(&self, base: &str, path: &str) -> Option<serde_json::Value> {
        let v = self.verifier.as_ref()?;
        let resource = if path.is_empty() || path == "/" {
            base.to_owned()
        } else {
            format!("{base}{path}")
        };
        let mut m = serde_json::json!({
            "resource": resource,
            "authorization_servers": [v.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-proxy",
        });
        if !self.scopes.is_empty() {
            m["scopes_supported"] = self.scopes.clone().into();
        }
        Some(m)
    }
}

enum Refusal {
    Missing,
    Invalid(&'static str, String),
    Unavailable(String),
    Scope(String, Vec<String>),
}

/// The layer: `/healthz` and the resource metadata stay open; every other request must
/// prove who sent it.
pub async fn check(State(access): State<Arc<Access>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let count = |reason: &str| {
        if let Some(m) = crate::telemetry::get() {
            m.auth_refused(reason);
        }
    };
    let base = access.base(req.headers());
    if let Some(rest) = path.strip_prefix("/.well-known/oauth-protected-resource") {
        return match access.metadata(&base, rest) {
            Some(m) => (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "max-age=3600"),
                ],
                m.to_string(),
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let ip = req
        .extensions()
        .get::<crate::server::listen::Peer>()
        .map(|p| p.0.ip());
    if let Some(ip) = ip
        && let Some(wait) = access.blocked(ip)
    {
        count("blocked");
        let mut r = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: too many failed attempts from this address",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let query = req.uri().query().map(str::to_owned);
    let identity = match access
        .identify(req.headers(), query.as_deref(), &base)
        .await
    {
        Ok(id) => Arc::new(id),
        Err(refusal) => {
            count(match &refusal {
                Refusal::Missing => "missing",
                Refusal::Invalid(..) => "invalid",
                Refusal::Unavailable(_) => "unavailable",
                Refusal::Scope(..) => "scope",
            });
            let (response, why) = match refusal {
                Refusal::Missing => (
                    access.unauthorized(&base, &path, None),
                    "no credentials".to_owned(),
                ),
                Refusal::Invalid(said, why) => (
                    access.unauthorized(&base, &path, Some(("invalid_token", said))),
                    why,
                ),
                Refusal::Unavailable(why) => (
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service Unavailable: tokens cannot be checked now (the identity provider cannot be reached)",
                    ),
                    why,
                ),
                Refusal::Scope(need, have) => (
                    access.insufficient(&base, &path, &have, &need),
                    format!("the token lacks the scope {need}"),
                ),
            };
            if let Some(ip) = ip
                && response.status() == StatusCode::UNAUTHORIZED
                && !matches!(why.as_str(), "no credentials")
            {
                access.failed(ip);
            }
            crate::warn_throttled!(
                "auth:refused",
                "refused a request to {path} from {}: {why}",
                ip.map(|i| i.to_string()).unwrap_or_default()
            );
            if let Some(a) = &access.audit {
                a.refused(&path, ip, &why);
            }
            return response;
        }
    };
    // A named server the identity may not use does not exist for it.
    if let Some(rest) = path.strip_prefix("/servers/") {
        let name = rest.split('/').next().unwrap_or("");
        if !access.policy.get().server_allowed(&identity, name) {
            count("server");
            if let Some(a) = &access.audit {
                a.denied_server(&identity, name);
            }
            return plain(
                StatusCode::FORBIDDEN,
                &format!("Forbidden: no access to the server `{name}`"),
            );
        }
    }
    if let Err(wait) = access.limits.rate(&identity, &access.policy.get()) {
        count("rate");
        if let Some(a) = &access.audit {
            a.limited(&identity, &path);
        }
        let mut r = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: slow down",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    req.extensions_mut().insert(Caller {
        identity,
        access: access.clone(),
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths() {
        assert_eq!(Access::resource_path("/mcp"), "/mcp");
        assert_eq!(Access::resource_path("/messages"), "/sse");
        assert_eq!(Access::resource_path("/servers/a/mcp"), "/servers/a/mcp");
        assert_eq!(
            Access::resource_path("/servers/a/messages"),
            "/servers/a/sse"
        );
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("keys", &self.keys)
            .field("tokens", &self.tokens)
            .field("oauth", &self.verifier.as_ref().map(|v| v.issuer.clone()))
            .finish()
    }
}

/// The auth file (`--auth-file`): the flags' meaning, with secrets out of `ps`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    keys: Option<serde_json::Value>,
    tokens: Option<serde_json::Value>,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    jwks: Option<String>,
    algorithms: Option<String>,
    introspection: Option<IntrospectionFile>,
    scopes: Option<String>,
    resource: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IntrospectionFile {
    url: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `{"name": "secret"}` or `["name:secret", "secret"]`.
fn add_secrets(to: &mut keys::Secrets, v: &serde_json::Value, what: &str) -> Result<(), String> {
    match v {
        serde_json::Value::Object(m) => {
            for (name, secret) in m {
                let s = secret
                    .as_str()
                    .ok_or_else(|| format!("{what} `{name}` must be a string"))?;
                to.add(&format!("{name}:{s}"), what)?;
            }
            Ok(())
        }
        serde_json::Value::Array(a) => {
            for e in a {
                to.add(
                    e.as_str()
                        .ok_or_else(|| format!("each {what} must be a string"))?,
                    what,
                )?;
            }
            Ok(())
        }
        _ => Err(format!("`{what}s` must be an object or an array")),
    }
}

/// Build inbound auth from the command line, the environment (`ALLOWED_KEYS`,
/// `ALLOWED_TOKENS`, `MCP_PROXY_AUTH_CLIENT_SECRET`) and `--auth-file`; `None` when none of
/// it is asked for.
pub fn from_cli(cli: &crate::cli::Cli) -> Result<Option<Arc<Access>>, String> {
    let file: AuthFile = match &cli.auth_file {
        None => AuthFile::default(),
        Some(p) => {
            let text = crate::config::read_file(p).map_err(|e| format!("{}: {e}", p.display()))?;
            json5::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
    };
    let mut keys = keys::Secrets::default();
    let mut tokens = keys::Secrets::default();
    if let Ok(list) = std::env::var("ALLOWED_KEYS") {
        keys.add_list(&list, "key")
            .map_err(|e| format!("ALLOWED_KEYS: {e}"))?;
    }
    if let Ok(list) = std::env::var("ALLOWED_TOKENS") {
        tokens
            .add_list(&list, "token")
            .map_err(|e| format!("ALLOWED_TOKENS: {e}"))?;
    }
    for k in &cli.api_keys {
        keys.add(k, "key").map_err(|e| format!("--api-key: {e}"))?;
    }
    for t in &cli.api_tokens {
        tokens
            .add(t, "token")
            .map_err(|e| format!("--api-token: {e}"))?;
    }
    if let Some(v) = &file.keys {
        add_secrets(&mut keys, v, "key").map_err(|e| format!("--auth-file: {e}"))?;
    }
    if let Some(v) = &file.tokens {
        add_secrets(&mut tokens, v, "token").map_err(|e| format!("--auth-file: {e}"))?;
    }
    let issuer = cli.auth_issuer.clone().or(file.issuer);
    let introspection = match (&cli.auth_introspection, file.introspection) {
        (Some(url), _) => Some(jwt::Introspection {
            url: url.clone(),
            client_id: cli.auth_client_id.clone(),
            client_secret: std::env::var("MCP_PROXY_AUTH_CLIENT_SECRET").ok(),
        }),
        (None, Some(i)) => Some(jwt::Introspection {
            url: i.url,
            client_id: i.client_id,
            client_secret: i.client_secret,
        }),
        (None, None) => None,
    };
    let algorithms =
        jwt::parse_algorithms(file.algorithms.as_deref().unwrap_or(&cli.auth_algorithms))
            .map_err(|e| format!("--auth-algorithms: {e}"))?;
    let mut audiences = cli.auth_audience.clone();
    audiences.extend(file.audiences.unwrap_or_default());
    let jwks = cli.auth_jwks.clone().or(file.jwks);
    let verifier = if issuer.is_some() || introspection.is_some() {
        let source = match jwks {
            Some(j) if j.starts_with("http://") || j.starts_with("https://") => {
                jwt::JwksSource::Url(j)
            }
            Some(f) => jwt::JwksSource::File(f.into()),
            None => jwt::JwksSource::Issuer,
        };
        if let Some(i) = &issuer {
            reqwest::Url::parse(i).map_err(|e| format!("--auth-issuer `{i}`: {e}"))?;
        }
        Some(jwt::Verifier::new(
            issuer.unwrap_or_default(),
            audiences,
            algorithms,
            source,
            introspection,
        ))
    } else {
        None
    };
    let scopes: Vec<String> = cli
        .auth_scope
        .clone()
        .or(file.scopes)
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let resource = cli.auth_resource.clone().or(file.resource);
    let policy = policy::Store::load(cli.policy.as_deref())?;
    let audit = match &cli.audit_log {
        Some(t) => Some(Arc::new(audit::Audit::open(t, cli.audit_payloads)?)),
        None => None,
    };
    let on = !keys.is_empty() || !tokens.is_empty() || verifier.is_some();
    // The console writes to the audit log on its own.
    if !on && (cli.policy.is_some() || (audit.is_some() && !crate::admin::enabled(cli))) {
        return Err(
            "--policy and --audit-log need to know who calls: add --api-key, --api-token or --auth-issuer (or --admin, whose events the audit log records)"
                .into(),
        );
    }
    if !on {
        return Ok(None);
    }
    Ok(Some(Access::new(
        keys,
        tokens,
        verifier,
        scopes,
        resource,
        policy,
        limits::Limits::new(cli.identity_rate, cli.identity_concurrency),
        audit,
        cli.auth_failures,
    )))
}
