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
}

/// Everything a request handler needs.
pub struct AppState {
    pub backend: Backend,
    /// Serves 2026-07-28 clients.
    pub modern: Arc<crate::era::front::ModernFront>,
    pub options: HttpOptions,
    pub streamable: streamable::Sessions,
    pub sse: sse::Sessions,
    pub shutdown: CancellationToken,
}

pub fn router(state: Arc<AppState>) -> Router {
    let guard = state.options.guard.clone();
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
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
}

/// Serve until `shutdown` fires; then end every session and return.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    backend: Backend,
    modern: Arc<crate::era::front::ModernFront>,
    options: HttpOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(AppState {
        backend: backend.clone(),
        modern,
        options,
        streamable: Default::default(),
        sse: Default::default(),
        shutdown: shutdown.clone(),
    });
    streamable::spawn_reaper(state.clone());
    let app = router(state.clone());
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
    state.streamable.close_all().await;
    state.sse.close_all().await;
    Ok(())
}

/// A new random session id (128 bits, hex).
pub fn new_session_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}
