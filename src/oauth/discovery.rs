//! Finding a protected server's authorization server, as the MCP authorization
//! specification orders it (revisions 2025-03-26 to 2026-07-28):
//!
//! 1. the 401's `WWW-Authenticate` challenge: `resource_metadata`, `scope`, `error`;
//! 2. Protected Resource Metadata (RFC 9728): the challenge's URL, else the well-known URL
//!    with the server's path inserted, else the root one;
//! 3. authorization server metadata (RFC 8414, OpenID Connect Discovery): for an issuer
//!    with a path, the path-inserted OAuth URL, the path-inserted OpenID URL, then the
//!    path-appended OpenID URL; without a path, the OAuth URL then the OpenID one;
//! 4. without Protected Resource Metadata (servers of 2025-03-26): the server's origin is the
//!    authorization server, and its default endpoints (`/authorize`, `/token`, `/register`)
//!    stand in when it has no metadata either.
//!
//! Documents that contradict what was asked are refused, naming the document: an `issuer`
//! other than the one asked, a `resource` that is not this server, an authorization server
//! that does not offer PKCE with S256.

use reqwest::Url;
use serde::Deserialize;

use super::OAuthError;

/// What a `WWW-Authenticate: Bearer …` challenge says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// Read the `Bearer` challenge of a `WWW-Authenticate` header (auth-params, quoted or not).
pub fn parse_challenge(header: &str) -> Challenge {
    let mut c = Challenge::default();
    let Some(at) = header.to_ascii_lowercase().find("bearer") else {
        return c;
    };
    let mut rest = &header[at + "bearer".len()..];
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.contains(' ') {
            // Another scheme begins.
            break;
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            out.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => out.push(ch),
                }
            }
            value = out;
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        match name.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value),
            "scope" => c.scope = Some(value),
            "error" => c.error = Some(value),
            _ => {}
        }
    }
    c
}

/// Protected Resource Metadata (RFC 9728), the members used here.
#[derive(Debug, Clone, Deserialize)]
pub struct ResourceMetadata {
    pub resource: Option<String>,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Option<Vec<String>>,
}

/// Authorization server metadata (RFC 8414 / OpenID Connect Discovery), the members used.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub registration_endpoint: Option<String>,
    pub scopes_supported: Option<Vec<String>>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// The default endpoints of a 2025-03-26 server without metadata (nothing was fetched).
    #[serde(skip)]
    pub defaulted: bool,
}

/// Where a server's authorization comes from.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resource to ask tokens for (RFC 8707).
    pub resource: String,
    pub server: ServerMetadata,
    /// The scopes to ask for, in the specification's order: the challenge's, else the
    /// resource's `scopes_supported`, else none.
    pub scopes: Vec<String>,
}

/// The canonical URI of an MCP server: no fragment, scheme and host in lower case (the
/// `resource` of RFC 8707).
pub fn canonical(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    let s = u.to_string();
    // `Url` keeps a lone "/" path of an origin; servers name their resource without it.
    if u.path() == "/" && u.query().is_none() {
        s.trim_end_matches('/').to_owned()
    } else {
        s
    }
}

/// The well-known URLs of Protected Resource Metadata for `server`, in order.
pub fn resource_metadata_urls(server: &Url, challenge: Option<&str>) -> Vec<Url> {
    let mut out = vec![];
    if let Some(u) = challenge.and_then(|c| server.join(c).ok()) {
        out.push(u);
    }
    let path = server.path().trim_end_matches('/');
    let mut base = server.clone();
    base.set_query(None);
    base.set_fragment(None);
    if !path.is_empty() {
        let mut u = base.clone();
        u.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
        out.push(u);
    }
    let mut root = base;
    root.set_path("/.well-known/oauth-protected-resource");
    out.push(root);
    out.dedup();
    out
}

/// The well-known URLs of an issuer's metadata, in the specification's order.
pub fn server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut base = issuer.clone();
    base.set_query(None);
    base.set_fragment(None);
    let at = |p: String| {
        let mut u = base.clone();
        u.set_path(&p);
        u
    };
    if path.is_empty() {
        vec![
            at("/.well-known/oauth-authorization-server".into()),
            at("/.well-known/openid-configuration".into()),
        ]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

/// Whether `resource` (from a server's metadata) names `server`: the same origin, and a path
/// that is the server's or one above it.
pub fn resource_matches(resource: &str, server: &Url) -> bool {
    let Ok(r) = Url::parse(resource) else {
        return false;
    };
    if r.origin() != server.origin() {
        return false;
    }
    let rp = r.path().trim_end_matches('/');
    let sp = server.path().trim_end_matches('/');
    sp == rp || sp.starts_with(&format!("{rp}/")) || rp.is_empty()
}

/// Whether two issuer identifiers are the same (RFC 8414: identical; a trailing slash is
/// forgiven, as many servers add one).
fn same_issuer(a: &str, b: &str) -> bool {
    a == b || a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Fetch a JSON document; `Ok(None)` when it is not there (4xx).
async fn fetch<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    what: &str,
) -> Result<Option<T>, OAuthError> {
    let resp = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .header("mcp-protocol-version", crate::route::hub::LATEST_LEGACY)
        .send()
        .await
        .map_err(|e| {
            OAuthError::Unreachable(format!(
                "{what} at {}: {}",
                crate::transport::redact_url(url),
                super::why(&e)
            ))
        })?;
    if resp.status().is_client_error() {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(OAuthError::Unreachable(format!(
            "{what} at {} answered HTTP {}",
            crate::transport::redact_url(url),
            resp.status()
        )));
    }
    let text = resp
        .text()
        .await
        .map_err(|e| OAuthError::Unreachable(format!("{what}: {}", super::why(&e))))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        OAuthError::Refused(format!(
            "{what} at {} is not valid metadata: {e}",
            crate::transport::redact_url(url)
        ))
    })
}

/// Find the authorization server of `server` after a 401 with `challenge`.
pub async fn discover(
    http: &reqwest::Client,
    server: &Url,
    challenge: &Challenge,
    resource_override: Option<&str>,
) -> Result<Discovered, OAuthError> {
    let mut prm: Option<ResourceMetadata> = None;
    for url in resource_metadata_urls(server, challenge.resource_metadata.as_deref()) {
        if let Some(doc) =
            fetch::<ResourceMetadata>(http, &url, "protected resource metadata").await?
        {
            if let Some(r) = &doc.resource
                && !resource_matches(r, server)
            {
                return Err(OAuthError::Refused(format!(
                    "the protected resource metadata at {} names the resource {r}, which is not this server ({})",
                    crate::transport::redact_url(&url),
                    crate::transport::redact_url(server)
                )));
            }
            prm = Some(doc);
            break;
        }
    }
    let (issuer, resource) = match &prm {
        Some(doc) => {
            let issuer = doc.authorization_servers.first().cloned().ok_or_else(|| {
                OAuthError::Refused(
                    "the protected resource metadata names no authorization server".into(),
                )
            })?;
            let resource = doc.resource.clone().unwrap_or_else(|| canonical(server));
            (issuer, resource)
        }
        // 2025-03-26: the server's origin is its authorization server.
        None => (server.origin().ascii_serialization(), canonical(server)),
    };
    let issuer_url = Url::parse(&issuer).map_err(|e| {
        OAuthError::Refused(format!(
            "the authorization server `{issuer}` is not a URL: {e}"
        ))
    })?;
    let mut meta: Option<ServerMetadata> = None;
    for url in server_metadata_urls(&issuer_url) {
        if let Some(doc) =
            fetch::<ServerMetadata>(http, &url, "authorization server metadata").await?
        {
            if !same_issuer(&doc.issuer, &issuer) {
                return Err(OAuthError::Refused(format!(
                    "the authorization server metadata at {} says its issuer is {}, not {issuer} as asked",
                    crate::transport::redact_url(&url),
                    doc.issuer
                )));
            }
            meta = Some(doc);
            break;
        }
    }
    let server_meta = match meta {
        Some(m) => {
            let s256 = m
                .code_challenge_methods_supported
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x == "S256"));
            let cc_only = m
                .grant_types_supported
                .as_ref()
                .is_some_and(|g| !g.iter().any(|x| x == "authorization_code"));
            if !s256 && !cc_only {
                return Err(OAuthError::Refused(format!(
                    "the authorization server {issuer} does not offer PKCE with S256 (its metadata lists code_challenge_methods_supported: {:?}); signing in there is not safe",
                    m.code_challenge_methods_supported
                        .clone()
                        .unwrap_or_default()
                )));
            }
            m
        }
        None if prm.is_none() => {
            // 2025-03-26 without metadata: the default endpoints.
            let at = |p: &str| issuer_url.join(p).map(|u| u.to_string()).ok();
            ServerMetadata {
                issuer: issuer.clone(),
                authorization_endpoint: at("/authorize"),
                token_endpoint: at("/token"),
                registration_endpoint: at("/register"),
                code_challenge_methods_supported: Some(vec!["S256".into()]),
                defaulted: true,
                ..Default::default()
            }
        }
        None => {
            return Err(OAuthError::Refused(format!(
                "the authorization server {issuer} publishes no metadata (tried {})",
                server_metadata_urls(&issuer_url)
                    .iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let scopes = match &challenge.scope {
        Some(s) => s.split_whitespace().map(str::to_owned).collect(),
        None => prm
            .as_ref()
            .and_then(|p| p.scopes_supported.clone())
            .unwrap_or_default(),
    };
    Ok(Discovered {
        resource: resource_override.map(str::to_owned).unwrap_or(resource),
        server: server_meta,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_written() {
        let c = parse_challenge(
            r#"Bearer realm="mcp", resource_metadata="https://s.example/.well-known/oauth-protected-resource/mcp", scope="read write", error="insufficient_scope""#,
        );
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://s.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("read write"));
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        let c = parse_challenge(r#"Basic realm="x", Bearer error=invalid_token, scope="a\"b""#);
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(c.scope.as_deref(), Some("a\"b"));
        assert_eq!(parse_challenge("Basic realm=x"), Challenge::default());
    }

    #[test]
    fn well_known_urls_in_the_specifications_order() {
        let s = Url::parse("https://api.example/public/mcp").unwrap();
        let urls: Vec<String> = resource_metadata_urls(&s, None)
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://api.example/.well-known/oauth-protected-resource/public/mcp",
                "https://api.example/.well-known/oauth-protected-resource"
            ]
        );
        let i = Url::parse("https://auth.example/tenant1").unwrap();
        let urls: Vec<String> = server_metadata_urls(&i)
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://auth.example/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example/.well-known/openid-configuration/tenant1",
                "https://auth.example/tenant1/.well-known/openid-configuration"
            ]
        );
        let i = Url::parse("https://auth.example").unwrap();
        assert_eq!(server_metadata_urls(&i).len(), 2);
    }

    #[test]
    fn a_resource_must_name_this_server() {
        let s = Url::parse("https://api.example/v1/mcp").unwrap();
        assert!(resource_matches("https://api.example/v1/mcp", &s));
        assert!(resource_matches("https://api.example/v1", &s));
        assert!(resource_matches("https://api.example", &s));
        assert!(!resource_matches("https://evil.example/v1/mcp", &s));
        assert!(!resource_matches("https://api.example/v2/mcp", &s));
        assert_eq!(
            canonical(&Url::parse("HTTPS://API.example/mcp#x").unwrap()),
            "https://api.example/mcp"
        );
        assert_eq!(
            canonical(&Url::parse("https://api.example/").unwrap()),
            "https://api.example"
        );
    }
}
