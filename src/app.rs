//! Wires a validated [`Config`] into a running proxy and runs it until shutdown.

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Front};
use crate::gateway::{self, Gateway};
use crate::route::Backend;
use crate::server::{self, HttpOptions};

/// Run the proxy until `shutdown` fires (or, on stdio, the client's input ends).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Metrics, where there is somewhere to read them: the HTTP listener or --metrics-port.
    let http_front = matches!(config.front, Front::Http { .. });
    if config.metrics && (http_front || config.metrics_listen.is_some()) {
        crate::telemetry::enable();
    }
    if config.no_metrics_listener_conflict() {
        anyhow::bail!("--metrics-port needs metrics: drop --no-metrics");
    }
    if crate::telemetry::trace::init(config.otlp_endpoint.as_deref()).map_err(anyhow::Error::msg)? {
        tracing::info!("sending traces over OTLP");
    }
    // The server of the proxy's own (a command or URL), or else the merged view.
    let own = match &config.target {
        Some(target) => {
            let curation = config.tools.for_server(None, &[], &[]);
            Some(gateway::mount(&config, None, target, config.route, curation).await?)
        }
        None => None,
    };
    let named = !config.servers.is_empty() || config.sources.file.is_some();
    let gateway = if named {
        Some(Gateway::start(config.clone(), own.is_none()).await)
    } else {
        None
    };
    let root = match (own, gateway.as_ref().and_then(|g| g.catalog())) {
        (Some(m), _) => m,
        (None, Some(c)) => gateway::with_front(&config, None, Backend::Catalog(c.clone()), None),
        (None, None) => anyhow::bail!("no server to serve"),
    };
    match &config.front {
        Front::Stdio => {
            if config.access.is_some() {
                tracing::warn!(
                    "keys, tokens and --auth-issuer guard the HTTP listener; on stdio the client is the one that started this process, so they are not checked (add --port to serve HTTP)"
                );
            }
            if let Some(g) = &gateway {
                g.watch(shutdown.clone());
            }
            let options = server::stdio::StdioOptions {
                max_message_size: config.route.limits.max_message_size,
                request_timeout: config.route.request_timeout,
                client_buffer: config.client_buffer,
            };
            if let Some(addr) = &config.metrics_listen {
                serve_metrics(addr, None, shutdown.clone()).await?;
            }
            server::stdio::serve(
                root.backend.clone(),
                root.curation.clone(),
                root.modern.clone(),
                options,
                shutdown.clone(),
            )
            .await;
        }
        Front::Http { host, port } => {
            let bind = crate::config::socket_address(host, *port);
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
                base_path: String::new(),
                client_buffer: config.client_buffer,
                shutdown_timeout: config.shutdown_timeout,
                max_connections: config.max_connections,
                max_sessions: config.max_sessions,
                max_processes: config.max_processes,
                header_timeout: config.header_timeout,
                body_timeout: config.body_timeout,
                access: config.access.clone(),
            };
            let admin_options = options.clone();
            if config.access.is_none() && !local.ip().is_loopback() {
                tracing::warn!(
                    "listening on {} with no authentication: anyone who can reach this address can use every tool of every server; add --api-key (or ALLOWED_KEYS), --api-token or --auth-issuer",
                    local.ip()
                );
            }
            let mut mounts = server::Mounts::new(options, shutdown.clone());
            mounts.set_root(root.clone());
            let mounts = std::sync::Arc::new(mounts);
            if let Some(g) = &gateway {
                for m in g.mounts().await {
                    if let Some(name) = &m.name {
                        tracing::info!(
                            server = %name,
                            "at http://{local}/servers/{name}/mcp and http://{local}/servers/{name}/sse"
                        );
                    }
                    mounts.put(m).await;
                }
                g.serve_on(mounts.clone());
                g.watch(shutdown.clone());
            }
            if let Some(addr) = &config.metrics_listen {
                serve_metrics(addr, Some(mounts.clone()), shutdown.clone()).await?;
            }
            let admin = match (&config.admin, &gateway) {
                (Some(settings), Some(g)) => {
                    let audit = match (&config.access, &settings.audit_log) {
                        (Some(a), _) => a.audit.clone(),
                        (None, Some((target, payloads))) => Some(std::sync::Arc::new(
                            crate::access::audit::Audit::open(target, *payloads)
                                .map_err(anyhow::Error::msg)?,
                        )),
                        (None, None) => None,
                    };
                    let admin = crate::admin::Admin::new(
                        settings.clone(),
                        g.clone(),
                        mounts.clone(),
                        local,
                        audit,
                    );
                    admin.install_missing();
                    match &settings.listen {
                        Some(addr) => {
                            crate::admin::serve_alone(
                                admin,
                                addr,
                                &admin_options,
                                shutdown.clone(),
                            )
                            .await?;
                            None
                        }
                        None => {
                            tracing::info!("admin console at http://{local}/admin");
                            Some(crate::admin::router(admin))
                        }
                    }
                }
                _ => None,
            };
            server::serve_http(listener, mounts, admin, shutdown.clone()).await?;
        }
    }
    root.modern.shutdown().await;
    root.backend.shutdown().await;
    if let Some(g) = gateway {
        g.shutdown().await;
    }
    // The batch exporter's thread sends what is left; it blocks, so not on a runtime thread.
    let _ = tokio::task::spawn_blocking(crate::telemetry::trace::flush).await;
    Ok(())
}

/// `--metrics-port`: `/metrics`, `/healthz` and `/readyz` on a listener of their own.
async fn serve_metrics(
    addr: &str,
    mounts: Option<std::sync::Arc<server::Mounts>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--metrics-port): {e}"))?;
    tracing::info!("metrics at http://{}/metrics", listener.local_addr()?);
    let app = server::metrics_router(mounts);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(())
}
