//! Wires a validated [`Config`] into a running proxy and runs it until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Front};
use crate::route::Backend;
use crate::route::hub::Hub;
use crate::server::{self, HttpOptions};
use crate::transport::Target;

/// Run the proxy until `shutdown` fires (or, on stdio, the client's input ends).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let shared = match (&config.target, &config.front) {
        (Target::Command(_), _) => !config.per_client,
        (Target::Url(_), Front::Http { .. }) => config.stateless,
        (Target::Url(_), Front::Stdio) => false,
    };
    let backend = if shared {
        Backend::Shared(
            Hub::start(&config.target, config.route)
                .await
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        if let Target::Command(spec) = &config.target {
            check_command(&spec.program, &spec.env)?;
        }
        Backend::PerSession {
            target: Arc::new(config.target.clone()),
            options: config.route,
        }
    };
    let modern = crate::era::front::ModernFront::new(
        backend.clone(),
        config.era.state_secret.as_deref().map(str::as_bytes),
        config.era.input_timeout,
    );
    match &config.front {
        Front::Stdio => {
            server::stdio::serve(
                backend.clone(),
                modern.clone(),
                config.route.limits.max_message_size,
                shutdown.clone(),
            )
            .await;
        }
        Front::Http { host, port } => {
            let addr = format!("{}:{port}", host.trim_matches(['[', ']']));
            let bind = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                addr
            };
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
            let local = listener.local_addr()?;
            tracing::info!(
                "listening on http://{local} (Streamable HTTP at http://{local}/mcp, SSE at http://{local}/sse)"
            );
            let options = HttpOptions {
                max_message_size: config.route.limits.max_message_size,
                stateless: config.stateless,
                session_timeout: config.session_timeout,
                replay_events: config.replay_events,
                guard: config.guard.clone(),
            };
            server::serve_http(
                listener,
                backend.clone(),
                modern.clone(),
                options,
                shutdown.clone(),
            )
            .await?;
        }
    }
    modern.shutdown().await;
    backend.shutdown().await;
    Ok(())
}

/// Fail early, in one line, when a per-client command cannot be found.
fn check_command(program: &str, env: &[(String, String)]) -> anyhow::Result<()> {
    if program.contains('/') {
        return Ok(());
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
    if found {
        Ok(())
    } else {
        anyhow::bail!("cannot start `{program}`: command not found (PATH={path})")
    }
}
