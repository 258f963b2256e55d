//! The client-facing side: our stdin/stdout, or one HTTP listener serving Streamable HTTP at
//! `/mcp` and HTTP+SSE at `/sse` (+ `/messages`) at the same time.

pub mod guard;
pub mod sse;
pub mod sse_body;
pub mod stdio;
pub mod streamable;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
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
}

/// Everything a request handler needs.
pub struct AppState {
    pub backend: Backend,
    /// Which tools this server's clients see.
    pub curation: Option<crate::curation::Curation>,
    /// Serves 2026-07-28 clients.
    pub modern: Arc<crate::era::front::ModernFront>,
    pub options: HttpOptions,
    pub streamable: streamable::Sessions,
    pub sse: sse::Sessions,
    pub shutdown: CancellationToken,
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
    pub backend: Backend,
    pub curation: Option<crate::curation::Curation>,
    pub modern: Arc<crate::era::front::ModernFront>,
}

/// Serve until `shutdown` fires; then end every session and return.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    mounts: Vec<Mount>,
    options: HttpOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut app = Router::new();
    let mut states = vec![];
    for m in mounts {
        let mut opts = options.clone();
        if let Some(name) = &m.name {
            opts.base_path = format!("/servers/{name}");
        }
        let state = Arc::new(AppState {
            backend: m.backend,
            curation: m.curation,
            modern: m.modern,
            options: opts,
            streamable: Default::default(),
            sse: Default::default(),
            shutdown: shutdown.clone(),
        });
        streamable::spawn_reaper(state.clone());
        app = match &m.name {
            None => app.merge(router(state.clone())),
            Some(name) => app.nest(&format!("/servers/{name}"), router(state.clone())),
        };
        states.push((m.name, state));
    }
    let states = Arc::new(states);
    let guard = options.guard.clone();
    let app = app
        .route("/healthz", get(|| async { "ok" }))
        .route("/status", get(status).with_state(states.clone()))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ));
    let stop = shutdown.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.cancelled().await;
        // Open streams would hold graceful shutdown forever: end sessions first.
    })
    .await?;
    for (_, state) in states.iter() {
        state.streamable.close_all().await;
        state.sse.close_all().await;
    }
    Ok(())
}

type Mounted = Arc<Vec<(Option<String>, Arc<AppState>)>>;

/// `/status`: every server's state, as JSON.
async fn status(
    axum::extract::State(states): axum::extract::State<Mounted>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let servers: Vec<serde_json::Value> = states
        .iter()
        .map(|(name, state)| {
            let (link, detail) = match &state.backend {
                Backend::Shared(hub) => match hub.status() {
                    crate::route::hub::Status::Starting => ("starting", None),
                    crate::route::hub::Status::Ready(_) => ("ready", None),
                    crate::route::hub::Status::Failed(why) => ("failed", Some(why)),
                },
                Backend::PerSession { .. } => ("per-session", None),
                Backend::Catalog(_) => ("merged", None),
            };
            let protocol = match &state.backend {
                Backend::Shared(hub) if hub.upstream_modern() => Some(crate::era::MODERN),
                Backend::Shared(hub) => match hub.status() {
                    crate::route::hub::Status::Ready(_) => Some("session-based"),
                    _ => None,
                },
                Backend::PerSession { .. } | Backend::Catalog(_) => None,
            };
            serde_json::json!({
                "name": name,
                "path": if state.options.base_path.is_empty() { "/" } else { state.options.base_path.as_str() },
                "state": link,
                "lastError": detail,
                "protocol": protocol,
                "sessions": state.streamable.len() + state.sse.len(),
                "restarts": match &state.backend {
                    Backend::Shared(hub) => hub.restarts(),
                    Backend::PerSession { .. } | Backend::Catalog(_) => 0,
                },
                "parkedCalls": state.modern.parked_calls(),
            })
        })
        .collect();
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "servers": servers }).to_string(),
    )
        .into_response()
}

/// A new random session id (128 bits, hex).
pub fn new_session_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}
