//! Host and Origin checks on every request (DNS-rebinding protection), and CORS for the
//! origins the operator opened with `--allow-origin`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Host names (without port) that may be named in `Host`; empty means any.
    pub allowed_hosts: Vec<String>,
    /// Origins opened for CORS (`*` for any).
    pub allowed_origins: Vec<String>,
}

const EXPOSED: &str = "mcp-session-id, mcp-protocol-version, www-authenticate";
const ALLOWED_HEADERS: &str = "content-type, accept, authorization, x-api-key, mcp-session-id, mcp-protocol-version, last-event-id, mcp-method, mcp-name";

impl Guard {
    /// The default for a listener on `bind`: loopback listeners accept loopback host names
    /// only; a listener on a specific address also accepts that address; one on every
    /// address accepts any host name (the Origin check still applies).
    pub fn for_bind(bind: &str, extra_hosts: &[String], allowed_origins: Vec<String>) -> Guard {
        let mut hosts: Vec<String> = vec![];
        let wildcard = matches!(bind, "0.0.0.0" | "::" | "[::]");
        if !wildcard || !extra_hosts.is_empty() {
            hosts.extend(["localhost", "127.0.0.1", "[::1]", "::1"].map(String::from));
            if !wildcard && !is_loopback_name(bind) {
                hosts.push(bind.trim_matches(['[', ']']).to_ascii_lowercase());
            }
            hosts.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        }
        if hosts.iter().any(|h| h == "*") {
            hosts.clear();
        }
        Guard {
            allowed_hosts: hosts,
            allowed_origins,
        }
    }

    fn host_ok(&self, host: Option<&str>) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let Some(host) = host else { return false };
        let name = strip_port(host).to_ascii_lowercase();
        self.allowed_hosts
            .iter()
            .any(|h| *h == name || h.trim_matches(['[', ']']) == name)
            || (name.starts_with("127.") && self.allowed_hosts.iter().any(|h| h == "127.0.0.1"))
    }

    fn cors_ok(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }

    /// Browsers send `Origin`; a page may only talk to us from a loopback origin or one the
    /// operator opened.
    fn origin_ok(&self, origin: &str) -> bool {
        if self.cors_ok(origin) {
            return true;
        }
        let Ok(url) = reqwest::Url::parse(origin) else {
            return false;
        };
        url.host_str().is_some_and(is_loopback_name)
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether a host name or address names this machine's loopback.
pub fn is_loopback_name(h: &str) -> bool {
    let h = h.trim_matches(['[', ']']);
    h.eq_ignore_ascii_case("localhost") || h == "::1" || h.starts_with("127.")
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain")],
        why.to_owned(),
    )
        .into_response()
}

pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if !guard.host_ok(host.as_deref()) {
        crate::warn_throttled!(
            "guard:host",
            "refused a request: Host `{}` not allowed (see --allow-host)",
            host.as_deref().unwrap_or("")
        );
        return forbidden("Host not allowed (see --allow-host)");
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(origin) = origin.filter(|o| o != "null" || guard.cors_ok("null")) else {
        if req.headers().get(header::ORIGIN).is_some() {
            return forbidden("Origin not allowed (see --allow-origin)");
        }
        return next.run(req).await;
    };
    if !guard.origin_ok(&origin) {
        crate::warn_throttled!(
            "guard:origin",
            "refused a request: Origin `{origin}` not allowed (see --allow-origin)"
        );
        return forbidden("Origin not allowed (see --allow-origin)");
    }
    let cors = guard.cors_ok(&origin);
    if req.method() == Method::OPTIONS {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        if cors {
            add_cors(&mut resp, &origin);
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    if cors {
        add_cors(&mut resp, &origin);
    }
    resp
}

fn add_cors(resp: &mut Response, origin: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener_refuses_foreign_hosts() {
        let g = Guard::for_bind("127.0.0.1", &[], vec![]);
        assert!(g.host_ok(Some("localhost:8080")));
        assert!(g.host_ok(Some("127.0.0.1:1")));
        assert!(g.host_ok(Some("[::1]:9")));
        assert!(!g.host_ok(Some("evil.example:8080")));
        assert!(!g.host_ok(None));
    }

    #[test]
    fn wildcard_listener_accepts_any_host() {
        let g = Guard::for_bind("0.0.0.0", &[], vec![]);
        assert!(g.host_ok(Some("my-machine:8080")));
    }

    #[test]
    fn origins() {
        let g = Guard::for_bind("127.0.0.1", &[], vec!["https://app.example".into()]);
        assert!(g.origin_ok("http://localhost:3000"));
        assert!(g.origin_ok("https://app.example"));
        assert!(!g.origin_ok("https://evil.example"));
        assert!(g.cors_ok("https://app.example"));
        assert!(!g.cors_ok("http://localhost:3000"));
        let any = Guard::for_bind("127.0.0.1", &[], vec!["*".into()]);
        assert!(any.origin_ok("https://evil.example"));
    }
}
