//! Wires a validated [`Config`] into a running proxy and runs it until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Front};
use crate::route::Backend;
use crate::route::hub::Hub;
use crate::server::{self, HttpOptions};
use crate::transport::Target;

/// How long the merged lists wait for a server that has no `timeout` of its own.
const LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Run the proxy until `shutdown` fires (or, on stdio, the client's input ends).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut mounts = vec![];
    if let Some(target) = &config.target {
        mounts.push(mount(&config, None, target, config.route, (&[], &[])).await?);
    }
    for s in config.servers.iter().filter(|s| s.active) {
        let mut route = config.route;
        if let Some(t) = s.timeout {
            route.request_timeout = Some(t);
        }
        let own = (s.allow_tools.as_slice(), s.deny_tools.as_slice());
        match mount(&config, Some(s.name.clone()), &s.target, route, own).await {
            Ok(m) => mounts.push(m),
            // One server that cannot start does not stop the others; its clients, and
            // /status, are told why.
            Err(e) => {
                tracing::error!(server = %s.name, "{e:#}");
                let backend = Backend::Shared(Hub::failed(format!("{e:#}"), route));
                mounts.push(bare_mount(&config, Some(s.name.clone()), backend));
            }
        }
    }
    for s in config.servers.iter().filter(|s| !s.active) {
        tracing::info!(server = %s.name, "not started: inactive in the config file");
    }
    // Without a server of its own, the root serves every named server merged.
    if config.target.is_none() && !mounts.is_empty() {
        let members = config
            .servers
            .iter()
            .filter(|s| s.active)
            .zip(mounts.iter())
            .map(|(s, m)| crate::route::catalog::Member {
                name: s.name.clone(),
                backend: m.backend.clone(),
                curation: m.curation.clone(),
                list_timeout: s.timeout.unwrap_or(LIST_WAIT),
            })
            .collect();
        let backend = Backend::Catalog(crate::route::catalog::Catalog::new(
            members,
            &config.separator,
        ));
        mounts.push(bare_mount(&config, None, backend));
    }
    match &config.front {
        Front::Stdio => {
            let Some(m) = mounts.pop() else {
                anyhow::bail!("no server to serve");
            };
            server::stdio::serve(
                m.backend.clone(),
                m.curation.clone(),
                m.modern.clone(),
                config.route.limits.max_message_size,
                shutdown.clone(),
            )
            .await;
            mounts.push(m);
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
            for m in &mounts {
                if let Some(name) = &m.name {
                    tracing::info!(
                        server = %name,
                        "at http://{local}/servers/{name}/mcp and http://{local}/servers/{name}/sse"
                    );
                }
            }
            let options = HttpOptions {
                max_message_size: config.route.limits.max_message_size,
                stateless: config.stateless,
                session_timeout: config.session_timeout,
                replay_events: config.replay_events,
                guard: config.guard.clone(),
                base_path: String::new(),
            };
            server::serve_http(listener, mounts.clone(), options, shutdown.clone()).await?;
        }
    }
    for m in mounts {
        m.modern.shutdown().await;
        m.backend.shutdown().await;
    }
    Ok(())
}

/// A mount with no tool curation of its own (a failed server, the merged view).
fn bare_mount(config: &Config, name: Option<String>, backend: Backend) -> server::Mount {
    let modern =
        crate::era::front::ModernFront::new(backend.clone(), None, config.era.input_timeout, None);
    server::Mount {
        name,
        backend,
        curation: None,
        modern,
    }
}

/// A server's backend, shared or per session, and its 2026-07-28 front.
async fn mount(
    config: &Config,
    name: Option<String>,
    target: &Target,
    route: crate::route::RouteOptions,
    (allow, deny): (&[String], &[String]),
) -> anyhow::Result<server::Mount> {
    let shared = match (target, &config.front) {
        (Target::Command(_), _) => !config.per_client,
        (Target::Url(_), Front::Http { .. }) => config.stateless,
        (Target::Url(_), Front::Stdio) => false,
    };
    let backend = if shared {
        Backend::Shared(
            Hub::start(target, route)
                .await
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        if let Target::Command(spec) = target {
            check_command(&spec.program, &spec.env)?;
        }
        Backend::PerSession {
            target: Arc::new(target.clone()),
            options: route,
        }
    };
    let curation = config.tools.for_server(name.as_deref(), allow, deny);
    let modern = crate::era::front::ModernFront::new(
        backend.clone(),
        config.era.state_secret.as_deref().map(str::as_bytes),
        config.era.input_timeout,
        curation.clone(),
    );
    Ok(server::Mount {
        name,
        backend,
        curation,
        modern,
    })
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
