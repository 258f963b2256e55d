//! The client-facing side: our stdin/stdout, or one HTTP listener serving Streamable HTTP at
//! `/mcp` and HTTP+SSE at `/sse` (+ `/messages`) at the same time.

pub mod guard;
pub mod listen;
pub mod sse;
pub mod sse_body;
pub mod stdio;
pub mod streamable;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use tokio_util::sync::CancellationToken;

use crate::route::Backend;

/// Settings of the HTTP front end.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub max_message_size: usize,
    pub stateless: bool,
    pub session_timeout: Duration,
    /// Events kept per stream for clients that reconnect with `Last-Event-ID`.
    pub replay_events: usize,
    pub guard: guard::Guard,
    /// Where this server's endpoints are mounted (`""`, or `/servers/NAME`).
    pub base_path: String,
    /// Most bytes waiting for one client.
    pub client_buffer: usize,
    /// How long sessions get to finish when the proxy stops.
    pub shutdown_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most sessions at once (per server), and most per-client server processes.
    pub max_sessions: usize,
    pub max_processes: usize,
    /// How long a request's headers may take to arrive (and a kept-alive connection may idle).
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// Who may use the listener, when the proxy checks.
    pub access: Option<Arc<crate::access::Access>>,
}

/// Everything a request handler needs.
pub struct AppState {
    pub backend: Backend,
    /// A display name, from the config file.
    pub title: Option<String>,
    /// Which tools this server's clients see.
    pub curation: Option<crate::curation::Curation>,
    /// Serves 2026-07-28 clients.
    pub modern: Arc<crate::era::front::ModernFront>,
    /// Whether the server can be reached (a remote or shared server).
    pub health: Option<Arc<crate::health::Health>>,
    /// How the server is signed in to, when it wants OAuth.
    pub auth: Option<Arc<crate::oauth::OAuth>>,
    pub options: HttpOptions,
    pub streamable: streamable::Sessions,
    pub sse: sse::Sessions,
    pub shutdown: CancellationToken,
    /// Whether `/readyz` waits for this server.
    pub required: bool,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/mcp",
            post(streamable::post)
                .get(streamable::get)
                .delete(streamable::delete),
        )
        .route("/sse", get(sse::connect))
        .route("/messages", post(sse::message))
        .route("/messages/", post(sse::message))
        .with_state(state)
}

/// One server as the HTTP listener offers it: at the root (`/mcp`, `/sse`), or as a named
/// server under `/servers/NAME/`.
#[derive(Clone)]
pub struct Mount {
    pub name: Option<String>,
    /// A display name, from the config file.
    pub title: Option<String>,
    pub backend: Backend,
    pub curation: Option<crate::curation::Curation>,
    pub modern: Arc<crate::era::front::ModernFront>,
    /// Whether the server can be reached (a remote or shared server).
    pub health: Option<Arc<crate::health::Health>>,
    /// How the server is signed in to, when it wants OAuth.
    pub auth: Option<Arc<crate::oauth::OAuth>>,
    /// Keeps a remote server's health checks going while the mount lives.
    pub watch: Option<Arc<tokio_util::sync::DropGuard>>,
    /// Whether `/readyz` waits for it.
    pub required: bool,
}

/// The servers the HTTP listener offers: one at the root (fixed), and named servers under
/// `/servers/NAME/`, which a reload may add, replace and remove while the listener runs.
pub struct Mounts {
    root: Option<Arc<AppState>>,
    named: RwLock<Vec<(String, Arc<AppState>, Router)>>,
    options: HttpOptions,
    shutdown: CancellationToken,
}

impl Mounts {
    pub fn new(options: HttpOptions, shutdown: CancellationToken) -> Mounts {
        Mounts {
            root: None,
            named: Default::default(),
            options,
            shutdown,
        }
    }

    fn state(&self, m: Mount) -> Arc<AppState> {
        let mut options = self.options.clone();
        if let Some(name) = &m.name {
            options.base_path = format!("/servers/{name}");
        }
        let state = Arc::new(AppState {
            backend: m.backend,
            title: m.title,
            curation: m.curation,
            modern: m.modern,
            health: m.health,
            auth: m.auth,
            options,
            streamable: Default::default(),
            sse: Default::default(),
            // Its own, so that one server's sessions can end without the listener's.
            shutdown: self.shutdown.child_token(),
            required: m.required,
        });
        streamable::spawn_reaper(state.clone());
        state
    }

    /// Serve `m` at `/mcp` and `/sse`.
    pub fn set_root(&mut self, m: Mount) {
        self.root = Some(self.state(m));
    }

    /// Serve `m` at `/servers/NAME/`, in place of the server of that name if there is one;
    /// that server's sessions end (their clients get 404 and open new sessions).
    pub async fn put(&self, m: Mount) {
        let Some(name) = m.name.clone() else {
            return;
        };
        let state = self.state(m);
        let router = router(state.clone());
        let old = match self.named.write() {
            Ok(mut named) => match named.iter_mut().find(|(n, _, _)| *n == name) {
                Some(slot) => Some(std::mem::replace(slot, (name, state, router)).1),
                None => {
                    named.push((name, state, router));
                    None
                }
            },
            Err(_) => None,
        };
        if let Some(old) = old {
            retire(&old).await;
        }
    }

    /// Stop serving the server `name`; its sessions end.
    pub async fn remove(&self, name: &str) {
        let old = self.named.write().ok().and_then(|mut named| {
            let at = named.iter().position(|(n, _, _)| n == name)?;
            Some(named.remove(at).1)
        });
        if let Some(old) = old {
            retire(&old).await;
        }
    }

    fn find(&self, name: &str) -> Option<Router> {
        let named = self.named.read().ok()?;
        named
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, r)| r.clone())
    }

    /// Every server offered, the root last.
    fn all(&self) -> Vec<(Option<String>, Arc<AppState>)> {
        let mut all: Vec<_> = match self.named.read() {
            Ok(named) => named
                .iter()
                .map(|(n, s, _)| (Some(n.clone()), s.clone()))
                .collect(),
            Err(_) => vec![],
        };
        all.extend(self.root.iter().map(|s| (None, s.clone())));
        all
    }
}

/// End a server's sessions and streams.
async fn retire(state: &AppState) {
    state.shutdown.cancel();
    state.streamable.close_all().await;
    state.sse.close_all().await;
}

/// `/servers/NAME/...`: the named server's own endpoints.
async fn to_named(
    axum::extract::State(mounts): axum::extract::State<Arc<Mounts>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let path = req.uri().path();
    let rest = path.strip_prefix("/servers/").unwrap_or("");
    let (name, inner) = match rest.split_once('/') {
        Some((name, inner)) => (name, format!("/{inner}")),
        None => (rest, "/".to_owned()),
    };
    let Some(router) = mounts.find(name) else {
        return (
            http::StatusCode::NOT_FOUND,
            format!("no server named `{name}` is configured\n"),
        )
            .into_response();
    };
    let target = match req.uri().query() {
        Some(q) => format!("{inner}?{q}"),
        None => inner,
    };
    let (mut parts, body) = req.into_parts();
    match target.parse::<http::Uri>() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return http::StatusCode::BAD_REQUEST.into_response(),
    }
    match router
        .oneshot(axum::extract::Request::from_parts(parts, body))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Serve until `shutdown` fires; then end every session and return.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    mounts: Arc<Mounts>,
    admin: Option<Router>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut app = Router::new();
    if let Some(root) = &mounts.root {
        app = app.merge(router(root.clone()));
    }
    let guard = mounts.options.guard.clone();
    let mut app = app
        .route("/servers/{*rest}", any(to_named).with_state(mounts.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/status", get(status).with_state(mounts.clone()))
        .route("/readyz", get(readyz).with_state(mounts.clone()))
        .route("/metrics", get(metrics).with_state(mounts.clone()));
    if let Some(access) = &mounts.options.access {
        access.policy.watch();
        app = app.layer(axum::middleware::from_fn_with_state(
            access.clone(),
            crate::access::check,
        ));
    }
    // The console signs its own users in: it is outside the MCP endpoints' auth.
    if let Some(admin) = admin {
        app = app.merge(admin);
    }
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard),
        guard::check,
    ));
    serve_app(listener, app, &mounts.options, shutdown.clone()).await;
    for (_, state) in mounts.all() {
        state.streamable.close_all().await;
        state.sse.close_all().await;
    }
    Ok(())
}

/// Serve `app` on `listener` with the listener's limits, until `shutdown`.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    o: &HttpOptions,
    shutdown: CancellationToken,
) {
    let options = listen::ListenOptions {
        max_connections: o.max_connections,
        header_timeout: o.header_timeout,
        shutdown_timeout: o.shutdown_timeout,
    };
    listen::serve(listener, app, options, shutdown).await;
}

/// One meaning for every server: ready (it answers), failed (it does not; see lastError),
/// starting (not known yet), needs-authorization (waiting for its user to sign in); `merged`
/// for the merged view, `per-session` for a per-client command.
pub fn state_of(state: &AppState) -> &'static str {
    use crate::route::hub::Status;
    let hub = match &state.backend {
        Backend::Shared(hub) => Some(hub),
        Backend::PerSession { .. } | Backend::Catalog(_) => None,
    };
    if state
        .auth
        .as_ref()
        .is_some_and(|a| a.pending_url().is_some())
    {
        return "needs-authorization";
    }
    match (&state.backend, hub.map(|h| h.status()), &state.health) {
        (_, Some(Status::Starting), _) => "starting",
        (_, Some(Status::Ready(_)), _) => "ready",
        (_, Some(Status::Failed(_)), _) => "failed",
        (Backend::Catalog(_), None, _) => "merged",
        (_, None, Some(h)) => h.state().as_str(),
        _ => "per-session",
    }
}

/// `/readyz`: 200 when every server the config requires is ready (a per-client command and
/// the merged view itself count as ready), else 503 naming those that are not.
async fn readyz(
    axum::extract::State(mounts): axum::extract::State<Arc<Mounts>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let waiting: Vec<serde_json::Value> = mounts
        .all()
        .iter()
        .filter(|(_, s)| s.required)
        .filter_map(|(name, s)| {
            let st = state_of(s);
            (!matches!(st, "ready" | "merged" | "per-session"))
                .then(|| serde_json::json!({ "name": name, "state": st }))
        })
        .collect();
    let status = if waiting.is_empty() {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "ready": waiting.is_empty(), "waitingFor": waiting }).to_string(),
    )
        .into_response()
}

/// Set the scrape-time metrics (sessions, parked calls, server states, restarts) from the
/// servers offered.
pub fn update_metrics(mounts: &Mounts, m: &crate::telemetry::Metrics) {
    use crate::telemetry::{ServerState, Sessions};
    m.sessions.clear();
    m.parked.clear();
    m.state.clear();
    m.restarts.clear();
    for (name, s) in mounts.all() {
        let server = name.unwrap_or_else(|| match &s.backend {
            Backend::Catalog(_) => "merged".into(),
            _ => "default".into(),
        });
        for (transport, n) in [
            ("streamable-http", s.streamable.len()),
            ("sse", s.sse.len()),
        ] {
            m.sessions
                .get_or_create(&Sessions {
                    server: server.clone(),
                    transport: transport.into(),
                    era: "session-based".into(),
                })
                .set(n as i64);
        }
        let label = crate::telemetry::Server {
            server: server.clone(),
        };
        m.parked
            .get_or_create(&label)
            .set(s.modern.parked_calls() as i64);
        m.state
            .get_or_create(&ServerState {
                server: server.clone(),
                state: state_of(&s).into(),
            })
            .set(1);
        if let Backend::Shared(hub) = &s.backend {
            m.restarts.get_or_create(&label).set(hub.restarts() as i64);
        }
    }
}

/// The `--metrics-port` listener's routes; server figures when `mounts` are known.
pub fn metrics_router(mounts: Option<Arc<Mounts>>) -> Router {
    let r = Router::new().route("/healthz", get(|| async { "ok" }));
    match mounts {
        Some(m) => r
            .route("/metrics", get(metrics).with_state(m.clone()))
            .route("/readyz", get(readyz).with_state(m)),
        None => {
            r.route(
                "/metrics",
                get(|headers: http::HeaderMap| async move {
                    crate::telemetry::respond(&headers, |_| {})
                }),
            )
        }
    }
}

/// `/metrics`.
async fn metrics(
    axum::extract::State(mounts): axum::extract::State<Arc<Mounts>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    crate::telemetry::respond(&headers, |m| update_metrics(&mounts, m))
}

/// `/status`: every server's state, as JSON.
async fn status(
    axum::extract::State(mounts): axum::extract::State<Arc<Mounts>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "servers": statuses(&mounts) }).to_string(),
    )
        .into_response()
}

/// What `/status` says of each server offered, the root last.
pub fn statuses(mounts: &Mounts) -> Vec<serde_json::Value> {
    use crate::route::hub::Status;
    // Tool counts are known for the servers of the merged view, once it has listed them.
    let tools = match mounts.root.as_ref().map(|r| &r.backend) {
        Some(Backend::Catalog(c)) => c.tool_counts(),
        _ => Default::default(),
    };
    mounts
        .all()
        .iter()
        .map(|(name, state)| {
            let hub = match &state.backend {
                Backend::Shared(hub) => Some(hub),
                Backend::PerSession { .. } | Backend::Catalog(_) => None,
            };
            let link = state_of(state);
            let sign_in = state.auth.as_ref().and_then(|a| a.pending_url());
            let mut fields = state
                .health
                .as_ref()
                .map(|h| h.fields())
                .unwrap_or_default();
            if let Some(Status::Failed(why)) = hub.map(|h| h.status()) {
                fields.insert("lastError".into(), why.into());
            }
            let mut v = serde_json::json!({
                "name": name,
                "title": state.title,
                "path": if state.options.base_path.is_empty() { "/" } else { state.options.base_path.as_str() },
                "state": link,
                "pid": hub.and_then(|h| h.pid()),
                "uptimeSeconds": hub.and_then(|h| h.uptime()).map(|d| d.as_secs()),
                "restarts": hub.map(|h| h.restarts()).unwrap_or(0),
                "tools": name.as_ref().and_then(|n| tools.get(n)),
                "sessions": state.streamable.len() + state.sse.len(),
                "parkedCalls": state.modern.parked_calls(),
            });
            for key in ["transport", "protocol", "lastError", "lastErrorAt", "lastReached"] {
                v[key] = fields.remove(key).unwrap_or(serde_json::Value::Null);
            }
            if let Some(url) = sign_in {
                v["authorizationUrl"] = url.into();
            }
            v
        })
        .collect()
}

/// Make room for one more session of `state`'s server: under `--max-sessions` (and, for a
/// `--per-client` command, `--max-processes`) there is room; at the cap, the session idle the
/// longest is ended; when none is idle, the new one is refused with HTTP 503.
#[allow(clippy::result_large_err)] // the refusal is the response itself
pub fn make_room(state: &AppState) -> Result<(), axum::response::Response> {
    use axum::response::IntoResponse;
    let per_client = matches!(
        &state.backend,
        Backend::PerSession { target, .. } if matches!(**target, crate::transport::Target::Command(_))
    );
    let (cap, flag) = if per_client && state.options.max_processes < state.options.max_sessions {
        (state.options.max_processes, "--max-processes")
    } else {
        (state.options.max_sessions, "--max-sessions")
    };
    if state.streamable.len() + state.sse.len() < cap {
        return Ok(());
    }
    if let Some(old) = state.streamable.evict_idle() {
        crate::warn_throttled!(
            "session-cap",
            "{cap} sessions open ({flag}); the one idle the longest was ended to make room"
        );
        tokio::spawn(async move { old.close().await });
        return Ok(());
    }
    crate::warn_throttled!(
        "session-cap-full",
        "{cap} sessions open ({flag}) and all busy; a new session was refused"
    );
    let body = crate::jsonrpc::Message::error(
        crate::jsonrpc::Id::null(),
        crate::jsonrpc::code::UPSTREAM_UNAVAILABLE,
        &format!("too many sessions: {cap} are open and busy ({flag}); try again later"),
        None,
    );
    Err((
        http::StatusCode::SERVICE_UNAVAILABLE,
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::RETRY_AFTER, "5"),
        ],
        body.to_json(),
    )
        .into_response())
}

/// A new random session id (128 bits, hex).
pub fn new_session_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}
