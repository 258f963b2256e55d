//! The named servers of a running proxy, kept in line with the config files.
//!
//! At start every active server is started at once (a slow one holds up nobody). On a
//! reload (the config file or the tool config changed on disk, or SIGHUP) the files are read
//! again and only the difference is applied:
//!
//! - an added (or newly active) server is started and offered;
//! - a removed (or now inactive) server is stopped: its sessions end, its calls in flight get
//!   an error;
//! - a server whose command, URL, headers, environment or timeout changed is started anew
//!   and the old one stopped;
//! - a server whose tool rules changed (its `tools` patterns, `--tool-config`) keeps running:
//!   only its sessions' view of the tools is renewed;
//! - every other server, and every client session of the merged view, keeps running.
//!
//! Clients of the merged view are told that the lists changed. A file that does not read or
//! check is logged, and the running configuration stays.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::curation::{Curation, Policy};
use crate::route::Backend;
use crate::route::catalog::{Catalog, Member};
use crate::route::hub::Hub;
use crate::server::{Mount, Mounts};
use crate::servers::ServerEntry;

/// How long the merged lists wait for a server that has no `timeout` of its own.
pub const LIST_WAIT: Duration = Duration::from_secs(10);
/// Edits come in bursts (an editor writes, renames, touches): wait this long for quiet.
const SETTLE: Duration = Duration::from_millis(250);

/// One started server.
struct Served {
    entry: ServerEntry,
    mount: Mount,
    member: Arc<Member>,
}

impl Served {
    /// `mount` as server `entry`, in the merged view too.
    fn new(entry: ServerEntry, mut mount: Mount) -> Served {
        mount.title = entry.title.clone();
        let member = Member::new(
            entry.name.clone(),
            mount.backend.clone(),
            mount.curation.clone(),
            entry.timeout.unwrap_or(LIST_WAIT),
        );
        Served {
            entry,
            mount,
            member,
        }
    }
}

struct Running {
    servers: Vec<Served>,
    policy: Arc<Policy>,
    /// The files' contents when last read, so that a watch event without a change does
    /// nothing.
    seen: Vec<Option<Vec<u8>>>,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    /// Only the tool rules changed.
    pub recurated: Vec<String>,
    pub unchanged: usize,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && self.recurated.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![];
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
            ("new tool rules", &self.recurated),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        parts.push(format!("unchanged: {}", self.unchanged));
        write!(f, "{}", parts.join("; "))
    }
}

pub struct Gateway {
    config: Config,
    /// The merged view, when the proxy serves one.
    catalog: Option<Arc<Catalog>>,
    /// The HTTP listener's servers, when there is one.
    http: std::sync::OnceLock<Arc<Mounts>>,
    running: tokio::sync::Mutex<Running>,
}

impl Gateway {
    /// Start every active server of `config`, all at once; with `merged`, the merged view
    /// over them too.
    pub async fn start(config: Config, merged: bool) -> Arc<Gateway> {
        let seen = read_all(&config.sources.files());
        let policy = config.tools.clone();
        let active: Vec<&ServerEntry> = config.servers.iter().filter(|s| s.active).collect();
        for s in config.servers.iter().filter(|s| !s.active) {
            tracing::info!(server = %s.name, "not started: inactive in the config file");
        }
        let servers =
            futures_util::future::join_all(active.iter().map(|e| start(&config, e, &policy))).await;
        let catalog = merged.then(|| {
            Catalog::new(
                servers.iter().map(|s| s.member.clone()).collect(),
                &config.separator,
                config.page_size,
            )
        });
        if let Some(c) = &catalog {
            for s in &servers {
                revive_on_sign_in(c, s);
            }
        }
        Arc::new(Gateway {
            config,
            catalog,
            http: Default::default(),
            running: tokio::sync::Mutex::new(Running {
                servers,
                policy,
                seen,
            }),
        })
    }

    pub fn catalog(&self) -> Option<&Arc<Catalog>> {
        self.catalog.as_ref()
    }

    /// The named servers' mounts, in configuration order.
    pub async fn mounts(&self) -> Vec<Mount> {
        let run = self.running.lock().await;
        run.servers.iter().map(|s| s.mount.clone()).collect()
    }

    /// Keep the HTTP listener's `/servers/NAME/` in line from now on.
    pub fn serve_on(&self, mounts: Arc<Mounts>) {
        let _ = self.http.set(mounts);
    }

    /// Read the files again and apply the difference.
    pub async fn reload(&self) -> Result<Changes, String> {
        self.reload_forcing(None).await
    }

    /// The configuration the gateway was started with (its files are read again on reload).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The running servers' names and mounts, in configuration order.
    pub async fn served(&self) -> Vec<(String, Mount)> {
        let run = self.running.lock().await;
        run.servers
            .iter()
            .map(|s| (s.entry.name.clone(), s.mount.clone()))
            .collect()
    }

    /// Start server `name` again (with the files as they are now); an error when no active
    /// server has that name.
    pub async fn restart(&self, name: &str) -> Result<Changes, String> {
        {
            let run = self.running.lock().await;
            if !run.servers.iter().any(|s| s.entry.name == name) {
                return Err(format!("no running server is named `{name}`"));
            }
        }
        self.reload_forcing(Some(name)).await
    }

    /// Reload; `force` names a server to start again even if it did not change.
    async fn reload_forcing(&self, force: Option<&str>) -> Result<Changes, String> {
        let mut run = self.running.lock().await;
        run.seen = read_all(&self.config.sources.files());
        let (entries, policy) = self.config.sources.read().map_err(|e| e.to_string())?;
        let policy = Arc::new(policy);
        let new_rules = *policy != *run.policy;
        let mut old: HashMap<String, Served> = run
            .servers
            .drain(..)
            .map(|s| (s.entry.name.clone(), s))
            .collect();
        let mut changes = Changes::default();
        // Per server of the new file, in its order: what to keep, and what to start.
        enum Next {
            Keep(Served),
            Recurate(Served, ServerEntry),
            Start(ServerEntry, Option<Served>),
        }
        let mut plan = vec![];
        for e in entries.iter().filter(|e| e.active) {
            plan.push(match old.remove(&e.name) {
                None => {
                    changes.added.push(e.name.clone());
                    Next::Start(e.clone(), None)
                }
                Some(s)
                    if s.entry.target != e.target
                        || s.entry.timeout != e.timeout
                        || force == Some(e.name.as_str()) =>
                {
                    changes.restarted.push(e.name.clone());
                    Next::Start(e.clone(), Some(s))
                }
                Some(s)
                    if new_rules
                        || s.entry.title != e.title
                        || s.entry.allow_tools != e.allow_tools
                        || s.entry.deny_tools != e.deny_tools =>
                {
                    changes.recurated.push(e.name.clone());
                    Next::Recurate(s, e.clone())
                }
                Some(s) => {
                    changes.unchanged += 1;
                    Next::Keep(s)
                }
            });
        }
        let removed: Vec<Served> = old.into_values().collect();
        changes.removed = removed.iter().map(|s| s.entry.name.clone()).collect();
        changes.removed.sort();
        // Each server as it will run, and the one it replaces (with whether its backend
        // stops). New servers start all at once.
        let config = &self.config;
        let rules = &policy;
        let next = futures_util::future::join_all(plan.into_iter().map(|n| async move {
            match n {
                Next::Keep(s) => (s, None),
                Next::Recurate(s, e) => {
                    let backend = s.mount.backend.clone();
                    let mut mount = with_front(
                        config,
                        Some(e.name.clone()),
                        backend,
                        curation_of(&e, rules),
                    );
                    // The same server: its health, its sign-in and its checks go on.
                    mount.health = s.mount.health.clone();
                    mount.auth = s.mount.auth.clone();
                    mount.watch = s.mount.watch.clone();
                    // Its server keeps running; only its front for modern clients ends.
                    (Served::new(e, mount), Some((s, false)))
                }
                Next::Start(e, old) => (start(config, &e, rules).await, old.map(|s| (s, true))),
            }
        }))
        .await;
        let mut retired: Vec<(Served, bool)> = removed.into_iter().map(|s| (s, true)).collect();
        let mut servers = vec![];
        for (s, old) in next {
            servers.push(s);
            retired.extend(old);
        }
        if let Some(c) = &self.catalog {
            for s in &servers {
                if changes.added.contains(&s.entry.name)
                    || changes.restarted.contains(&s.entry.name)
                {
                    revive_on_sign_in(c, s);
                }
            }
        }
        // Clients move first, then the old servers stop.
        if let Some(c) = &self.catalog {
            c.replace(servers.iter().map(|s| s.member.clone()).collect())
                .await;
        }
        if let Some(http) = self.http.get() {
            for name in &changes.removed {
                http.remove(name).await;
            }
            for s in &servers {
                let name = &s.entry.name;
                if changes.added.contains(name)
                    || changes.restarted.contains(name)
                    || changes.recurated.contains(name)
                {
                    http.put(s.mount.clone()).await;
                }
            }
        }
        for (s, stop) in retired {
            s.mount.modern.shutdown().await;
            if stop {
                s.mount.backend.shutdown().await;
            }
        }
        run.servers = servers;
        run.policy = policy;
        Ok(changes)
    }

    /// Reload, and log what came of it.
    pub async fn reload_logged(&self, why: &str) {
        match self.reload().await {
            Ok(c) if c.is_empty() => tracing::info!("reload ({why}): nothing changed"),
            Ok(c) => tracing::info!("reloaded ({why}): {c}"),
            Err(e) => {
                tracing::error!("reload ({why}) failed, the running configuration stays: {e}")
            }
        }
    }

    /// Reload when a file's contents differ from what was read last.
    async fn reload_if_changed(&self) {
        let changed = {
            let run = self.running.lock().await;
            read_all(&self.config.sources.files()) != run.seen
        };
        if changed {
            self.reload_logged("a config file changed").await;
        }
    }

    /// Reload on SIGHUP, and (unless `--no-watch`) when a config file changes, until
    /// `shutdown`.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload by editing the config file");
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => me.reload_logged("SIGHUP").await,
                    _ = stop.cancelled() => return,
                }
            }
        });
        let files = self.config.sources.files();
        if !self.config.watch || files.is_empty() {
            return;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = watch_files(&files, tx);
        let me = self.clone();
        tokio::spawn(async move {
            // The watcher lives as long as this task.
            let _watcher = match watcher {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("cannot watch the config files ({e}); reload with SIGHUP");
                    return;
                }
            };
            loop {
                tokio::select! {
                    got = rx.recv() => if got.is_none() { return },
                    _ = shutdown.cancelled() => return,
                }
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                me.reload_if_changed().await;
            }
        });
    }

    /// Stop every server.
    pub async fn shutdown(&self) {
        let run = self.running.lock().await;
        for s in &run.servers {
            s.mount.modern.shutdown().await;
            s.mount.backend.shutdown().await;
        }
    }
}

/// When the user signs in to server `s`, the merged view's clients get it back.
fn revive_on_sign_in(catalog: &Arc<Catalog>, s: &Served) {
    let Some(auth) = &s.mount.auth else { return };
    let mut signed_in = auth.signed_in();
    let catalog = Arc::downgrade(catalog);
    let member = s.member.clone();
    tokio::spawn(async move {
        while signed_in.changed().await.is_ok() {
            let Some(c) = catalog.upgrade() else { return };
            tracing::info!(server = %member.name, "signed in; its tools are offered again");
            if !c.revive(&member).await {
                return;
            }
        }
    });
}

/// Watch the folders of `files` (editors often replace a file rather than write it).
fn watch_files(
    files: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        w.watch(&d, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(w)
}

fn read_all(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files
        .iter()
        .map(|f| crate::config::read_file(f).ok().map(String::into_bytes))
        .collect()
}

fn curation_of(e: &ServerEntry, policy: &Arc<Policy>) -> Option<Curation> {
    policy.for_server(Some(&e.name), &e.allow_tools, &e.deny_tools)
}

/// Start one named server. One that cannot start is still offered, failed: its clients and
/// `/status` are told why.
async fn start(config: &Config, e: &ServerEntry, policy: &Arc<Policy>) -> Served {
    let mut route = config.route;
    if let Some(t) = e.timeout {
        route.request_timeout = Some(t);
    }
    let curation = curation_of(e, policy);
    let name = Some(e.name.clone());
    let mount = match mount(config, name.clone(), &e.target, route, curation.clone()).await {
        Ok(m) => m,
        Err(err) => {
            tracing::error!(server = %e.name, "{err:#}");
            let backend = Backend::Shared(Hub::failed(format!("{err:#}"), route));
            with_front(config, name, backend, curation)
        }
    };
    let mut mount = mount;
    mount.required = e.required;
    Served::new(e.clone(), mount)
}

/// A server's backend, shared or per session, and its 2026-07-28 front. A remote server gets
/// a health of its own, checked now and then (`--health-interval`) while the mount lives.
pub async fn mount(
    config: &Config,
    name: Option<String>,
    target: &crate::transport::Target,
    route: crate::route::RouteOptions,
    curation: Option<Curation>,
) -> anyhow::Result<Mount> {
    use crate::config::Front;
    use crate::transport::Target;
    let target = &match target {
        Target::Url(u) => {
            let mut u = u.clone();
            u.health = crate::health::Slot(Some(crate::health::Health::new()));
            Target::Url(u)
        }
        t => t.clone(),
    };
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
    let mut mount = with_front(config, name, backend, curation);
    // Checks are for /status, which only an HTTP listener has.
    let http = matches!(config.front, Front::Http { .. });
    if let (Target::Url(_), Some(interval), false, true) =
        (target, config.health_interval, shared, http)
    {
        let stop = CancellationToken::new();
        tokio::spawn(crate::health::watch_remote(
            target.clone(),
            route,
            interval,
            stop.clone(),
        ));
        mount.watch = Some(Arc::new(stop.drop_guard()));
    }
    Ok(mount)
}

/// A mount of `backend`, with its front for 2026-07-28 clients.
pub fn with_front(
    config: &Config,
    name: Option<String>,
    backend: Backend,
    curation: Option<Curation>,
) -> Mount {
    let modern = crate::era::front::ModernFront::new(
        backend.clone(),
        config.era.state_secret.as_deref().map(str::as_bytes),
        config.era.input_timeout,
        curation.clone(),
        config.client_buffer,
        config.max_parked,
    );
    let health = match &backend {
        Backend::Shared(hub) => Some(hub.health()),
        Backend::PerSession { target, .. } => match &**target {
            crate::transport::Target::Url(u) => u.health.0.clone(),
            crate::transport::Target::Command(_) => None,
        },
        Backend::Catalog(_) => None,
    };
    let auth = match &backend {
        Backend::Shared(hub) => hub.auth(),
        Backend::PerSession { target, .. } => match &**target {
            crate::transport::Target::Url(u) => u.auth.0.clone(),
            crate::transport::Target::Command(_) => None,
        },
        Backend::Catalog(_) => None,
    };
    Mount {
        name,
        title: None,
        backend,
        curation,
        modern,
        health,
        auth,
        watch: None,
        required: true,
    }
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
