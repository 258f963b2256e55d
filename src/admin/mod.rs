//! The admin console: a page at `/admin` (assets embedded in the binary) and its JSON API at
//! `/admin/api/`. It drives the same gateway as a hand edit: a change is written to the config
//! file (or tool_config.json) atomically and applied by the gateway's reload.
//!
//! Rooms: [`auth`] (sign-in, signed cookies, cross-site checks), [`files`] (reading, checking
//! and writing the config files), [`api`] (the endpoints), [`install`] (installCommands with
//! their output streamed), [`terminal`] (a shell on a pseudo-terminal, opt-in), [`assets`]
//! (the embedded page), [`ask`] (one-off MCP requests to a server, for lists and the
//! playground). The one seam with the rest of the proxy is [`router`], merged into the HTTP
//! listener (or served on a listener of its own).

mod api;
mod ask;
mod assets;
mod auth;
mod files;
pub mod install;
mod terminal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use tokio::sync::broadcast;

use crate::gateway::Gateway;
use crate::server::Mounts;

/// The password seed 001 ships as its default, refused beyond loopback.
const DEFAULT_PASSWORD: &str = "password";

/// How the console is set up.
#[derive(Clone)]
pub struct Settings {
    /// `--admin-port`: the address of the console's own listener.
    pub listen: Option<String>,
    pub username: String,
    password: String,
    secret: Vec<u8>,
    pub terminal: bool,
    pub terminals: usize,
    pub session_timeout: Duration,
    pub sign_in_attempts: u32,
    pub identities: Vec<String>,
    pub tools_folder: PathBuf,
    pub output_lines: usize,
    pub config_file: PathBuf,
    pub tool_config: PathBuf,
    /// Host names the console's own listener answers to.
    guard: crate::server::guard::Guard,
    /// `--audit-log`, for a proxy without inbound auth (which would write it otherwise).
    pub audit_log: Option<(String, bool)>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("password", &"***")
            .field("terminal", &self.terminal)
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

/// Whether the console is asked for (`--admin` or `ENABLE_ADMIN_UI=true`).
pub fn enabled(cli: &crate::cli::Cli) -> bool {
    cli.admin
        || std::env::var("ENABLE_ADMIN_UI")
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

impl Settings {
    /// The console's settings from the command line and the environment (`ENABLE_ADMIN_UI`,
    /// `ADMIN_USERNAME`, `ADMIN_PASSWORD`, `SESSION_SECRET`, `TOOLS_FOLDER`); `None` when it
    /// is off. Creates the config file (empty) and tool_config.json when they do not exist,
    /// and the session secret file when no `SESSION_SECRET` is given.
    pub fn from_cli(cli: &crate::cli::Cli) -> Result<Option<Settings>, String> {
        if !enabled(cli) {
            return Ok(None);
        }
        // Servers' stderr is kept for the console from their first line.
        crate::transport::stdio::tail::enable();
        let Some(config_file) = cli.config.clone() else {
            return Err("the admin console edits a servers file: give --config FILE (it is created if it does not exist)".into());
        };
        if cli.port.is_none() {
            return Err(
                "the admin console is served over HTTP: give --port (and --admin-port for a listener of its own)"
                    .into(),
            );
        }
        let host = cli.admin_host.clone().unwrap_or_else(|| cli.host.clone());
        let username = std::env::var("ADMIN_USERNAME")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "admin".into());
        let password = std::env::var("ADMIN_PASSWORD").unwrap_or_default();
        let by_identity = !cli.admin_identity.is_empty();
        if !crate::server::guard::is_loopback_name(&host) {
            if (password.is_empty() || password == DEFAULT_PASSWORD) && !by_identity {
                return Err(format!(
                    "the admin console on {host} (beyond loopback) needs ADMIN_PASSWORD set to a password of your own (not empty, not `{DEFAULT_PASSWORD}`), or --admin-identity"
                ));
            }
            if password == DEFAULT_PASSWORD {
                return Err(format!(
                    "ADMIN_PASSWORD is the default `{DEFAULT_PASSWORD}`: choose another one for a console on {host}"
                ));
            }
        }
        let password = if password.is_empty() && !by_identity {
            tracing::warn!(
                "admin console: ADMIN_PASSWORD is not set, so the password is `{DEFAULT_PASSWORD}` (allowed on loopback only); set ADMIN_PASSWORD"
            );
            DEFAULT_PASSWORD.to_owned()
        } else {
            password
        };
        let dir = config_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if !config_file.exists() {
            files::write_atomic(&config_file, "{\n  \"mcpServers\": {}\n}\n").map_err(|e| {
                format!(
                    "cannot create the config file {}: {e}",
                    config_file.display()
                )
            })?;
            tracing::info!("admin console: created {}", config_file.display());
        }
        let tool_config = cli
            .tool_config
            .clone()
            .unwrap_or_else(|| dir.join("tool_config.json"));
        if !tool_config.exists() {
            files::write_atomic(&tool_config, "{\n  \"tools\": {}\n}\n")
                .map_err(|e| format!("cannot create {}: {e}", tool_config.display()))?;
        }
        let secret = match std::env::var("SESSION_SECRET") {
            Ok(s) if !s.is_empty() => s.into_bytes(),
            _ => auth::stored_secret(&dir.join(".session_secret"))?,
        };
        let listen = cli
            .admin_port
            .map(|p| crate::config::socket_address(&host, p));
        Ok(Some(Settings {
            listen,
            username,
            password,
            secret,
            terminal: cli.admin_terminal,
            terminals: cli.admin_terminals.max(1),
            session_timeout: Duration::from_secs(cli.admin_session_timeout),
            sign_in_attempts: cli.admin_sign_in_attempts,
            identities: cli.admin_identity.clone(),
            tools_folder: install::base_folder(cli.tools_folder.as_deref()),
            output_lines: cli.install_output_lines.max(10),
            config_file,
            tool_config,
            guard: crate::server::guard::Guard::for_bind(&host, &cli.allow_host, vec![]),
            audit_log: cli.audit_log.clone().map(|t| (t, cli.audit_payloads)),
        }))
    }
}

/// Something the page is told about over `/admin/api/events`.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: &'static str,
    pub data: String,
}

/// A server's process and restarts when its tools were counted, and the count.
type ToolCount = ((u64, u64), Option<usize>);

/// The console's state.
pub struct Admin {
    settings: Settings,
    gateway: Arc<Gateway>,
    mounts: Arc<Mounts>,
    /// Where MCP clients reach the proxy (the main listener).
    mcp_address: std::net::SocketAddr,
    events: broadcast::Sender<Event>,
    auth: auth::Auth,
    installs: install::Installs,
    /// The last version of the config file the console wrote (to tell hand edits apart).
    written: Mutex<Option<String>>,
    /// Per server: its process (or 0) and restarts when its tools were counted, and the
    /// count (`None` while counting), for servers no client has listed yet.
    tool_counts: Mutex<HashMap<String, ToolCount>>,
    /// Per server: when calls were last counted, how many, and the rate then.
    rates: Mutex<HashMap<String, (Instant, u64, f64)>>,
    audit: Option<Arc<crate::access::audit::Audit>>,
    access: Option<Arc<crate::access::Access>>,
    /// One change of the files at a time.
    saving: tokio::sync::Mutex<()>,
    terminals: Arc<tokio::sync::Semaphore>,
    /// Itself, for work it leaves running in the background.
    me: std::sync::Weak<Admin>,
}

impl Admin {
    pub fn new(
        settings: Settings,
        gateway: Arc<Gateway>,
        mounts: Arc<Mounts>,
        mcp_address: std::net::SocketAddr,
        audit: Option<Arc<crate::access::audit::Audit>>,
    ) -> Arc<Admin> {
        let (events, _) = broadcast::channel(1024);
        crate::transport::stdio::tail::enable();
        if let Some(m) = crate::telemetry::get() {
            m.keep_summaries();
        }
        let access = gateway.config().access.clone();
        Arc::new_cyclic(|me| Admin {
            me: me.clone(),
            auth: auth::Auth::new(&settings),
            installs: install::Installs::new(events.clone(), settings.output_lines),
            terminals: Arc::new(tokio::sync::Semaphore::new(settings.terminals)),
            settings,
            gateway,
            mounts,
            mcp_address,
            events,
            written: Mutex::new(None),
            rates: Default::default(),
            tool_counts: Default::default(),
            audit,
            access,
            saving: Default::default(),
        })
    }

    /// Whether a key's or token's identity is one of `--admin-identity` (by name or subject).
    fn is_admin(&self, id: &crate::access::Identity) -> bool {
        self.settings
            .identities
            .iter()
            .any(|n| *n == id.name || id.sub.as_deref() == Some(n.as_str()))
    }

    /// Tell every open page.
    fn tell(&self, kind: &'static str, data: serde_json::Value) {
        let _ = self.events.send(Event {
            kind,
            data: data.to_string(),
        });
    }

    /// Write to the audit log (when there is one) and to the log.
    fn audit(&self, event: &str, user: &str, fields: serde_json::Value) {
        tracing::info!(target: "mcp_proxy::admin", user, "{event} {fields}");
        if let Some(a) = &self.audit {
            a.admin(event, user, fields);
        }
    }

    /// Install what servers of the file need and have not got yet, then start them: at
    /// start-up, in the background.
    pub fn install_missing(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(snap) = files::read(&me.settings.config_file) else {
                return;
            };
            for (name, entry) in files::entries(&snap.root) {
                if let Ok(plan) = install::plan(&name, &entry, &me.settings.tools_folder)
                    && !plan.directory.exists()
                {
                    tracing::info!(server = %name, "installing into {}", plan.directory.display());
                    let _ = api::start_install(&me, &name, plan, "start-up").await;
                }
            }
        });
    }
}

/// The console's routes: the page at `/admin`, its API under `/admin/api/`.
pub fn router(admin: Arc<Admin>) -> Router {
    api::routes(admin)
}

/// Serve the console on its own listener (`--admin-port`).
pub async fn serve_alone(
    admin: Arc<Admin>,
    addr: &str,
    options: &crate::server::HttpOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--admin-port): {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!("admin console at http://{local}/admin");
    let guard = admin.settings.guard.clone();
    let app = router(admin).layer(axum::middleware::from_fn_with_state(
        Arc::new(guard),
        crate::server::guard::check,
    ));
    let options = options.clone();
    tokio::spawn(async move {
        crate::server::serve_app(listener, app, &options, shutdown).await;
    });
    Ok(())
}
