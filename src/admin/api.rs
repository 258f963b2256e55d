//! The console's JSON API under `/admin/api/` (documented in the README), and its routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ask::{Asker, Failed};
use super::auth::{self, Session, SignIn};
use super::files::{self, Refusal};
use super::{Admin, assets, install, terminal};
use crate::route::Backend;

/// How long a console request to a server may take.
const ASK_WITHIN: Duration = Duration::from_secs(30);

type Shared = State<Arc<Admin>>;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(f) = self.field {
            body["field"] = f.into();
        }
        json_response(self.status, body)
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    assets::harden(&mut r);
    r
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// What a handler answers: its response, or a refusal.
type Answer = Result<Response, Refusal>;

/// A JSON request body (an empty one reads as `{}`); one that is not what the endpoint takes
/// is refused with 400, saying why.
struct Form<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = Refusal;

    async fn from_request(req: Request, state: &S) -> Result<Self, Refusal> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| Refusal::bad(None, format!("cannot read the request body: {e}")))?;
        let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(text).map(Form).map_err(|e| {
            Refusal::bad(
                None,
                format!("the request body is not what this endpoint takes: {e}"),
            )
        })
    }
}

fn not_in_file(name: &str) -> Refusal {
    Refusal::status(
        StatusCode::NOT_FOUND,
        format!("no server named `{name}` in the file"),
    )
}

fn file_unreadable(e: String) -> Refusal {
    Refusal::status(StatusCode::INTERNAL_SERVER_ERROR, e)
}

pub fn routes(admin: Arc<Admin>) -> Router {
    let api = Router::new()
        .route("/admin/api/session", get(session))
        .route("/admin/api/logout", post(logout))
        .route("/admin/api/servers", get(servers).post(add_server))
        .route(
            "/admin/api/servers/{name}",
            axum::routing::put(edit_server).delete(delete_server),
        )
        .route("/admin/api/servers/{name}/active", post(set_active))
        .route("/admin/api/servers/{name}/restart", post(restart))
        .route("/admin/api/servers/{name}/logs", get(logs))
        .route("/admin/api/servers/{name}/oauth", post(oauth))
        .route(
            "/admin/api/servers/{name}/install",
            get(install_state).post(install_run).delete(install_cancel),
        )
        .route("/admin/api/servers/{name}/prompts", get(prompts))
        .route("/admin/api/servers/{name}/resources", get(resources))
        .route("/admin/api/tools", get(tools).patch(patch_tools))
        .route("/admin/api/call", post(call))
        .route("/admin/api/connect", get(connect))
        .route("/admin/api/events", get(events))
        .fallback(|| async {
            Refusal::status(StatusCode::NOT_FOUND, "no such endpoint of the admin API")
        })
        .layer(axum::middleware::from_fn_with_state(admin.clone(), require));
    Router::new()
        .route("/admin", get(assets::index))
        .route("/admin/", get(assets::index))
        .route("/admin/assets/{*path}", get(assets::asset))
        .route("/admin/api/login", post(login))
        .route("/admin/api/terminal", get(terminal_socket))
        .merge(api)
        .with_state(admin)
}

/// The session of a request: a genuine cookie, or a key or token of an admin identity.
async fn who(admin: &Admin, headers: &HeaderMap) -> Option<Session> {
    if let Some(c) = auth::cookie_of(headers)
        && let Some(s) = admin.auth.session(&c)
    {
        return Some(s);
    }
    let has_credentials =
        headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key");
    if has_credentials
        && !admin.settings.identities.is_empty()
        && let Some(access) = &admin.access
        && let Some(id) = access.identity_of(headers).await
        && admin.is_admin(&id)
    {
        return Some(auth::Auth::by_identity(&id.name));
    }
    None
}

/// Signed in, and for a change: from the console's own page, with its CSRF token.
async fn require(State(admin): Shared, mut req: Request, next: Next) -> Response {
    let Some(session) = who(&admin, req.headers()).await else {
        return Refusal::status(
            StatusCode::UNAUTHORIZED,
            "sign in first (or your session has ended)",
        )
        .into_response();
    };
    let changes = !matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    if changes && !session.by_header {
        if !auth::same_origin(req.headers()) {
            return Refusal::status(StatusCode::FORBIDDEN, "refused: sent from another site")
                .into_response();
        }
        let token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        use subtle::ConstantTimeEq;
        if token.is_empty() || !bool::from(token.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Refusal::status(
                StatusCode::FORBIDDEN,
                "refused: missing or wrong X-CSRF-Token (reload the page)",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// A key or token of an `--admin-identity`, instead of a user name and password.
    token: Option<String>,
}

/// The admin identity a key or token proves, if any.
async fn identity_by_token(admin: &Admin, token: &str) -> Option<String> {
    let access = admin.access.as_ref()?;
    if admin.settings.identities.is_empty() || token.is_empty() {
        return None;
    }
    let mut tries = vec![];
    if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v);
        tries.push(h);
    }
    if let Ok(v) = http::HeaderValue::from_str(token) {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", v);
        tries.push(h);
    }
    for h in tries {
        if let Some(id) = access.identity_of(&h).await {
            return admin.is_admin(&id).then_some(id.name);
        }
    }
    None
}

async fn login(
    State(admin): Shared,
    peer: Option<axum::Extension<crate::server::listen::Peer>>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Answer {
    if !auth::same_origin(&headers) {
        return Err(Refusal::status(
            StatusCode::FORBIDDEN,
            "refused: sent from another site",
        ));
    }
    let from = peer
        .map(|p| p.0.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let token = c.token.as_deref().filter(|t| !t.is_empty());
    let attempt = match token {
        Some(token) => {
            let proved = identity_by_token(&admin, token).await;
            admin.auth.sign_in_as(from, proved.as_deref()).await
        }
        None => admin.auth.sign_in(from, &c.username, &c.password).await,
    };
    match attempt {
        SignIn::Ok { cookie, session } => {
            admin.audit(
                "sign-in",
                &session.user,
                json!({ "from": from.to_string() }),
            );
            let mut r = ok(json!({
                "user": session.user,
                "csrf": session.csrf,
                "terminal": admin.settings.terminal,
            }));
            if let Ok(v) = http::HeaderValue::from_str(&admin.auth.set_cookie(&cookie)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        SignIn::Wrong => {
            admin.audit(
                "sign-in-failed",
                &c.username,
                json!({ "from": from.to_string() }),
            );
            let why = if token.is_some() {
                "that key or token does not sign in to the console (see --admin-identity)"
            } else {
                "wrong user name or password"
            };
            Err(Refusal::status(StatusCode::UNAUTHORIZED, why))
        }
        SignIn::TooMany { retry_after } => {
            let mut r = Refusal::status(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed sign-ins from this address: try again in {retry_after} s"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(retry_after));
            Ok(r)
        }
    }
}

async fn session(State(admin): Shared, axum::Extension(s): axum::Extension<Session>) -> Response {
    ok(json!({ "user": s.user, "csrf": s.csrf, "terminal": admin.settings.terminal }))
}

async fn logout(State(admin): Shared, axum::Extension(s): axum::Extension<Session>) -> Response {
    admin.auth.sign_out(&s);
    admin.audit("sign-out", &s.user, json!({}));
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = http::HeaderValue::from_str(&auth::Auth::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// === servers ===

fn active_of(entry: &Value) -> bool {
    entry.get("active").and_then(Value::as_bool) != Some(false)
        && entry.get("disabled").and_then(Value::as_bool) != Some(true)
}

/// Everything the servers view shows.
pub(super) async fn snapshot(admin: &Admin) -> Result<Value, Refusal> {
    let snap = files::read(&admin.settings.config_file).map_err(file_unreadable)?;
    let statuses = crate::server::statuses(&admin.mounts);
    let served = admin.gateway.served().await;
    let metrics = crate::telemetry::get();
    let mut out = vec![];
    let mut names: Vec<(String, Option<Value>)> = files::entries(&snap.root)
        .into_iter()
        .map(|(n, e)| (n, Some(e)))
        .collect();
    for (n, _) in &served {
        if !names.iter().any(|(m, _)| m == n) {
            names.push((n.clone(), None));
        }
    }
    for (name, entry) in names {
        let status = statuses
            .iter()
            .find(|s| s["name"].as_str() == Some(name.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let active = entry.as_ref().is_none_or(active_of);
        let mut st = json!({
            "state": if !active { "inactive" } else if status.is_null() { "stopped" } else { status["state"].as_str().unwrap_or("starting") },
            "transport": status["transport"],
            "protocol": status["protocol"],
            "pid": status["pid"],
            "uptimeSeconds": status["uptimeSeconds"],
            "restarts": status["restarts"].as_u64().unwrap_or(0),
            "lastError": status["lastError"],
            "lastErrorAt": status["lastErrorAt"],
            "tools": status["tools"],
            "sessions": status["sessions"].as_u64().unwrap_or(0),
            "callsPerSecond": 0.0,
            "errors": 0,
            "p50Ms": null,
            "p99Ms": null,
        });
        if let Some((_, mount)) = served.iter().find(|(n, _)| *n == name) {
            if let Backend::Shared(hub) = &mount.backend {
                st["sessions"] = hub.session_count().into();
            }
            if st["tools"].is_null() && st["state"] == "ready" {
                let at = (
                    st["pid"].as_u64().unwrap_or(0),
                    st["restarts"].as_u64().unwrap_or(0),
                );
                st["tools"] = json!(admin.tool_count(&name, at, mount));
            }
        }
        if let Some(url) = status.get("authorizationUrl") {
            st["authorizationUrl"] = url.clone();
        }
        if let Some(summary) = metrics.and_then(|m| m.summary(&name)) {
            use std::sync::atomic::Ordering::Relaxed;
            let calls = summary.calls.load(Relaxed);
            st["calls"] = calls.into();
            st["errors"] = summary.errors.load(Relaxed).into();
            st["p50Ms"] = json!(summary.duration.quantile(0.5).map(|s| s * 1000.0));
            st["p99Ms"] = json!(summary.duration.quantile(0.99).map(|s| s * 1000.0));
            st["callsPerSecond"] = json!(admin.rate(&name, calls));
        }
        let install = match admin.installs.get(&name) {
            Some(run) => run.json(false),
            None => {
                let commands = entry
                    .as_ref()
                    .and_then(|e| e.get("installCommands"))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let directory = entry.as_ref().and_then(|e| {
                    install::plan(&name, e, &admin.settings.tools_folder)
                        .ok()
                        .map(|p| p.directory)
                });
                json!({ "state": "none", "exitCode": null, "directory": directory, "commands": commands })
            }
        };
        out.push(json!({
            "name": name,
            "entry": entry,
            "active": active,
            "status": st,
            "install": install,
        }));
    }
    Ok(json!({
        "version": snap.version,
        "file": admin.settings.config_file,
        "servers": out,
    }))
}

impl Admin {
    /// How many tools clients see of `server` (counted once per process of it, in the
    /// background; `None` until known).
    fn tool_count(
        &self,
        server: &str,
        at: (u64, u64),
        mount: &crate::server::Mount,
    ) -> Option<usize> {
        let Ok(mut counts) = self.tool_counts.lock() else {
            return None;
        };
        if let Some((when, n)) = counts.get(server)
            && *when == at
        {
            return *n;
        }
        counts.insert(server.to_owned(), (at, None));
        let backend = mount.backend.clone();
        let curation = mount.curation.clone();
        let name = server.to_owned();
        let table = self.me.clone();
        tokio::spawn(async move {
            let got = Asker::list_once(&backend, ASK_WITHIN, "tools/list", "tools").await;
            if let Ok(list) = got {
                let n = list
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .filter(|t| curation.as_ref().is_none_or(|c| c.allows(t)))
                    .count();
                if let Some(table) = table.upgrade()
                    && let Ok(mut counts) = table.tool_counts.lock()
                    && counts.get(&name).is_some_and(|(w, _)| *w == at)
                {
                    counts.insert(name, (at, Some(n)));
                }
            }
        });
        None
    }

    /// Forget what tool counts are known (the tool rules changed).
    fn recount_tools(&self) {
        if let Ok(mut c) = self.tool_counts.lock() {
            c.clear();
        }
    }

    /// Calls per second of `server`, measured over at least a second.
    fn rate(&self, server: &str, calls: u64) -> f64 {
        let Ok(mut rates) = self.rates.lock() else {
            return 0.0;
        };
        let now = Instant::now();
        let e = rates.entry(server.to_owned()).or_insert((now, calls, 0.0));
        let took = now.duration_since(e.0).as_secs_f64();
        if took >= 1.0 {
            e.2 = (calls.saturating_sub(e.1)) as f64 / took;
            e.0 = now;
            e.1 = calls;
        }
        (e.2 * 10.0).round() / 10.0
    }
}

async fn servers(State(admin): Shared) -> Answer {
    Ok(ok(snapshot(&admin).await?))
}

/// Change the servers file: `f` edits its servers object; the result is checked, written if
/// the file is still at `version`, and applied.
async fn change_servers(
    admin: &Admin,
    who: &Session,
    what: &str,
    version: Option<&str>,
    f: impl FnOnce(&mut Map<String, Value>) -> Result<(), Refusal>,
) -> Result<String, Refusal> {
    let Some(version) = version else {
        return Err(Refusal::bad(
            Some("version"),
            "`version` is required: the version of the file the change was made against (from GET /admin/api/servers)",
        ));
    };
    let _one = admin.saving.lock().await;
    let file = &admin.settings.config_file;
    let snap = files::read(file).map_err(file_unreadable)?;
    if snap.version != version {
        return Err(Refusal::conflict());
    }
    let mut root = snap.root;
    let servers = files::servers_mut(&mut root)
        .ok_or_else(|| Refusal::bad(None, "the servers file has no servers object"))?;
    f(servers)?;
    let text = files::render(&root);
    files::check_servers(
        &text,
        &file.display().to_string(),
        admin.gateway.config().sources.defaults(),
    )?;
    files::write_atomic(file, &text).map_err(|e| {
        Refusal::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", file.display()),
        )
    })?;
    let v = files::version_of(text.as_bytes());
    if let Ok(mut w) = admin.written.lock() {
        *w = Some(v.clone());
    }
    admin.audit("config-change", &who.user, json!({ "change": what }));
    admin.gateway.reload_logged("admin console").await;
    admin.tell("config", json!({ "version": v, "byHand": false }));
    Ok(v)
}

fn check_name(name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.chars().all(|c| c == '.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Refusal::bad(
            Some("name"),
            "name: letters, digits, `-`, `_` and `.` only (not `.` or `..`), at most 64",
        ))
    }
}

/// What the console checks of an entry before the gateway's own check.
fn check_entry(admin: &Admin, name: &str, entry: &Value) -> Result<(), Refusal> {
    let Some(obj) = entry.as_object() else {
        return Err(Refusal::bad(None, "`entry` must be a JSON object"));
    };
    let stdio = obj.get("type").and_then(Value::as_str) == Some("stdio")
        || (obj.contains_key("command") && !obj.contains_key("url"));
    if stdio {
        if obj
            .get("command")
            .and_then(Value::as_str)
            .is_none_or(|c| c.trim().is_empty())
        {
            return Err(Refusal::bad(
                Some("command"),
                "command: a stdio server needs the command that starts it",
            ));
        }
    } else {
        let url = obj.get("url").and_then(Value::as_str).unwrap_or("");
        if url.trim().is_empty() {
            return Err(Refusal::bad(
                Some("url"),
                "url: a remote server needs its URL (or give a command for a stdio server)",
            ));
        }
    }
    if (obj.contains_key("installCommands") || obj.contains_key("installDirectory"))
        && let Err((field, why)) = install::plan(name, entry, &admin.settings.tools_folder)
    {
        return Err(Refusal::bad(Some(&field), why));
    }
    Ok(())
}

#[derive(Deserialize)]
struct AddServer {
    name: String,
    entry: Value,
    version: Option<String>,
}

async fn add_server(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Form(a): Form<AddServer>,
) -> Answer {
    check_name(&a.name)?;
    check_entry(&admin, &a.name, &a.entry)?;
    let name = a.name.clone();
    let what = format!("add {name}");
    let v = change_servers(&admin, &s, &what, a.version.as_deref(), |servers| {
        if servers.contains_key(&name) {
            return Err(Refusal::bad(
                Some("name"),
                format!("name: a server named `{name}` exists already"),
            ));
        }
        servers.insert(name, a.entry);
        Ok(())
    })
    .await?;
    Ok(json_response(StatusCode::CREATED, json!({ "version": v })))
}

#[derive(Deserialize)]
struct EditServer {
    entry: Value,
    version: Option<String>,
    name: Option<String>,
}

async fn edit_server(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(e): Form<EditServer>,
) -> Answer {
    let new_name = e.name.clone().unwrap_or_else(|| name.clone());
    check_name(&new_name)?;
    check_entry(&admin, &new_name, &e.entry)?;
    let what = format!("edit {name}");
    let v = change_servers(&admin, &s, &what, e.version.as_deref(), |servers| {
        if !servers.contains_key(&name) {
            return Err(not_in_file(&name));
        }
        if new_name != name && servers.contains_key(&new_name) {
            return Err(Refusal::bad(
                Some("name"),
                format!("name: a server named `{new_name}` exists already"),
            ));
        }
        // In place: the renamed entry keeps its position in the file.
        let old = std::mem::take(servers);
        for (k, v) in old {
            if k == name {
                servers.insert(new_name.clone(), e.entry.clone());
            } else {
                servers.insert(k, v);
            }
        }
        Ok(())
    })
    .await?;
    Ok(ok(json!({ "version": v })))
}

#[derive(Deserialize, Default)]
struct Versioned {
    version: Option<String>,
}

async fn delete_server(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(v): Form<Versioned>,
) -> Answer {
    let what = format!("delete {name}");
    let v = change_servers(&admin, &s, &what, v.version.as_deref(), |servers| {
        servers
            .shift_remove(&name)
            .map(|_| ())
            .ok_or_else(|| not_in_file(&name))
    })
    .await?;
    Ok(ok(json!({ "version": v })))
}

#[derive(Deserialize)]
struct SetActive {
    active: bool,
    version: Option<String>,
}

async fn set_active(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(a): Form<SetActive>,
) -> Answer {
    let what = format!("{} {name}", if a.active { "enable" } else { "disable" });
    let v = change_servers(&admin, &s, &what, a.version.as_deref(), |servers| {
        let entry = servers
            .get_mut(&name)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| not_in_file(&name))?;
        entry.shift_remove("disabled");
        entry.insert("active".into(), a.active.into());
        Ok(())
    })
    .await?;
    Ok(ok(json!({ "version": v })))
}

async fn restart(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
) -> Answer {
    admin
        .gateway
        .restart(&name)
        .await
        .map_err(|e| Refusal::status(StatusCode::NOT_FOUND, e))?;
    admin.audit("restart", &s.user, json!({ "server": name }));
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({ "restarted": name }),
    ))
}

async fn logs(Path(name): Path<String>) -> Response {
    let lines: Vec<Value> = crate::transport::stdio::tail::lines(&name)
        .into_iter()
        .map(|(at, text)| {
            json!({ "at": humantime::format_rfc3339_seconds(at).to_string(), "text": text })
        })
        .collect();
    ok(json!({ "lines": lines }))
}

async fn oauth(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
) -> Answer {
    let Some(auth) = mount_of(&admin, &name).await?.auth else {
        return Err(Refusal::bad(
            None,
            format!("server `{name}` does not sign in with OAuth"),
        ));
    };
    if let Some(url) = auth.pending_url() {
        return Ok(ok(json!({ "url": url })));
    }
    let state = crate::server::statuses(&admin.mounts)
        .into_iter()
        .find(|v| v["name"].as_str() == Some(name.as_str()))
        .and_then(|v| v["state"].as_str().map(str::to_owned));
    if state.as_deref() == Some("ready") {
        return Ok(ok(json!({ "signedIn": true })));
    }
    // Not waiting for the user (a sign-in failed or was given up): start the server again,
    // which signs in anew, and hand out the page to open.
    admin.audit("oauth-sign-in", &s.user, json!({ "server": name }));
    admin
        .gateway
        .restart(&name)
        .await
        .map_err(|e| Refusal::status(StatusCode::NOT_FOUND, e))?;
    for _ in 0..50 {
        if let Ok(m) = mount_of(&admin, &name).await
            && let Some(url) = m.auth.and_then(|a| a.pending_url())
        {
            return Ok(ok(json!({ "url": url })));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Refusal::status(
        StatusCode::BAD_GATEWAY,
        "the server did not ask for a sign-in; see its last error",
    ))
}

// === installs ===

/// Start an install of `name`; when it succeeds, the server starts (again) with it.
pub(super) async fn start_install(
    admin: &Arc<Admin>,
    name: &str,
    plan: install::Plan,
    user: &str,
) -> Result<Arc<install::Run>, Refusal> {
    let me = admin.clone();
    let server = name.to_owned();
    admin.audit(
        "install",
        user,
        json!({ "server": name, "directory": plan.directory, "commands": plan.commands.len() }),
    );
    admin
        .installs
        .start(name, plan, move |succeeded| {
            if succeeded {
                tokio::spawn(async move {
                    if me.gateway.restart(&server).await.is_err() {
                        me.gateway.reload_logged("an install finished").await;
                    }
                });
            }
        })
        .map_err(|e| Refusal::status(StatusCode::CONFLICT, e))
}

#[derive(Deserialize, Default)]
struct InstallAsk {
    #[serde(default)]
    force: bool,
}

async fn install_run(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(ask): Form<InstallAsk>,
) -> Answer {
    let snap = files::read(&admin.settings.config_file).map_err(file_unreadable)?;
    let (_, entry) = files::entries(&snap.root)
        .into_iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| not_in_file(&name))?;
    let plan = install::plan(&name, &entry, &admin.settings.tools_folder)
        .map_err(|(field, why)| Refusal::bad(Some(&field), why))?;
    if plan.directory.exists() && !ask.force {
        return Err(Refusal::status(
            StatusCode::CONFLICT,
            format!(
                "{} exists already: install again with {{\"force\": true}}",
                plan.directory.display()
            ),
        ));
    }
    let run = start_install(&admin, &name, plan, &s.user).await?;
    Ok(json_response(StatusCode::ACCEPTED, run.json(false)))
}

async fn install_state(State(admin): Shared, Path(name): Path<String>) -> Response {
    match admin.installs.get(&name) {
        Some(run) => ok(run.json(true)),
        None => ok(json!({ "state": "none", "exitCode": null, "lines": [] })),
    }
}

async fn install_cancel(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
) -> Answer {
    let run = admin
        .installs
        .get(&name)
        .filter(|run| run.state.lock().is_ok_and(|st| st.state == "running"))
        .ok_or_else(|| {
            Refusal::status(
                StatusCode::CONFLICT,
                format!("no install of `{name}` is running"),
            )
        })?;
    run.cancel();
    admin.audit("install-cancel", &s.user, json!({ "server": name }));
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({ "cancelling": name }),
    ))
}

// === tools, prompts, resources, calls ===

async fn mount_of(admin: &Admin, name: &str) -> Result<crate::server::Mount, Refusal> {
    admin
        .gateway
        .served()
        .await
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| m)
        .ok_or_else(|| {
            Refusal::status(
                StatusCode::NOT_FOUND,
                format!("no running server is named `{name}` (is it disabled?)"),
            )
        })
}

fn unreachable(name: &str, f: Failed) -> Refusal {
    Refusal::status(StatusCode::BAD_GATEWAY, format!("{name}: {}", f.text()))
}

async fn list_of(
    admin: &Admin,
    name: &str,
    lists: &[(&str, &str)],
) -> Result<Vec<Vec<Value>>, Refusal> {
    let mount = mount_of(admin, name).await?;
    let mut a = Asker::open(&mount.backend, ASK_WITHIN)
        .await
        .map_err(|f| unreachable(name, f))?;
    let mut out = vec![];
    for (method, field) in lists {
        // A server without the capability answers with an error: an empty list.
        out.push(a.list(method, field).await.unwrap_or_default());
    }
    a.close().await;
    Ok(out)
}

async fn tools(State(admin): Shared) -> Response {
    let overrides = files::read(&admin.settings.tool_config)
        .ok()
        .and_then(|s| s.root.get("tools").cloned())
        .unwrap_or(Value::Null);
    let served = admin.gateway.served().await;
    let lists = futures_util::future::join_all(served.iter().map(|(name, mount)| async move {
        let got = Asker::list_once(&mount.backend, ASK_WITHIN, "tools/list", "tools").await;
        (name.clone(), mount.curation.clone(), got)
    }))
    .await;
    let mut tools = vec![];
    let mut failures = vec![];
    for (server, curation, got) in lists {
        match got {
            Ok(list) => {
                for t in list {
                    let Some(tool) = t.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let key = format!("{server}{}{tool}", crate::curation::SEPARATOR);
                    let o = overrides.get(&key);
                    tools.push(json!({
                        "key": key,
                        "server": server,
                        "name": tool,
                        "enabled": curation.as_ref().is_none_or(|c| c.allows(tool)),
                        "displayName": o.and_then(|o| o.get("displayName")).cloned().unwrap_or(Value::Null),
                        "description": o.and_then(|o| o.get("description")).cloned().unwrap_or(Value::Null),
                        "title": t.get("title").cloned().unwrap_or(Value::Null),
                        "originalDescription": t.get("description").cloned().unwrap_or(Value::Null),
                        "inputSchema": t.get("inputSchema").cloned().unwrap_or(Value::Null),
                    }));
                }
            }
            Err(f) => failures.push(json!({ "server": server, "error": f.text() })),
        }
    }
    ok(json!({ "tools": tools, "failures": failures }))
}

#[derive(Deserialize)]
struct ToolChanges {
    changes: Vec<ToolChange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolChange {
    key: String,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "some_or_null")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "some_or_null")]
    description: Option<Option<String>>,
}

/// A member given as `null` is `Some(None)` (clear it); an absent one is `None` (keep it).
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

async fn patch_tools(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Form(c): Form<ToolChanges>,
) -> Answer {
    let changed = async {
        let _one = admin.saving.lock().await;
        let servers: Vec<String> = admin
            .gateway
            .served()
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let file = &admin.settings.tool_config;
        let snap = files::read(file).map_err(file_unreadable)?;
        let mut root = snap.root;
        let Some(obj) = root.as_object_mut() else {
            return Err(Refusal::bad(None, "tool_config.json must hold an object"));
        };
        let tools = obj
            .entry("tools")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(tools) = tools.as_object_mut() else {
            return Err(Refusal::bad(
                None,
                "tool_config.json: `tools` must be an object",
            ));
        };
        for ch in &c.changes {
            let known =
                ch.key
                    .split_once(crate::curation::SEPARATOR)
                    .is_some_and(|(server, tool)| {
                        !tool.is_empty() && servers.iter().any(|n| n == server)
                    });
            if !known {
                return Err(Refusal::bad(
                    Some("key"),
                    format!("key: `{}` is not SERVER--TOOL of a running server", ch.key),
                ));
            }
            let entry = tools
                .entry(ch.key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(e) = entry.as_object_mut() else {
                return Err(Refusal::bad(
                    Some("key"),
                    format!("tool_config.json: `{}` must be an object", ch.key),
                ));
            };
            if let Some(on) = ch.enabled {
                if on {
                    e.shift_remove("enabled");
                } else {
                    e.insert("enabled".into(), false.into());
                }
            }
            for (field, value) in [
                ("displayName", &ch.display_name),
                ("description", &ch.description),
            ] {
                match value {
                    Some(Some(v)) if !v.trim().is_empty() => {
                        if v.len() > 4096 {
                            return Err(Refusal::bad(
                                Some(field),
                                format!("{field}: at most 4096 bytes"),
                            ));
                        }
                        e.insert(field.into(), v.clone().into());
                    }
                    Some(_) => {
                        e.shift_remove(field);
                    }
                    None => {}
                }
            }
            if e.is_empty() {
                tools.shift_remove(&ch.key);
            }
        }
        let text = files::render(&root);
        crate::curation::Policy::check_text(&text).map_err(|e| Refusal::bad(None, e))?;
        files::write_atomic(file, &text).map_err(|e| {
            Refusal::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write {}: {e}", file.display()),
            )
        })?;
        admin.audit(
            "tools-change",
            &s.user,
            json!({ "changes": c.changes.len() }),
        );
        admin.gateway.reload_logged("admin console: tools").await;
        admin.recount_tools();
        admin.tell("tools", json!({}));
        Ok(c.changes.len())
    }
    .await?;
    Ok(ok(json!({ "changed": changed })))
}

async fn prompts(State(admin): Shared, Path(name): Path<String>) -> Answer {
    let mut l = list_of(&admin, &name, &[("prompts/list", "prompts")]).await?;
    Ok(ok(json!({ "prompts": l.pop().unwrap_or_default() })))
}

async fn resources(State(admin): Shared, Path(name): Path<String>) -> Answer {
    let lists = [
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
    ];
    let mut l = list_of(&admin, &name, &lists).await?;
    let templates = l.pop().unwrap_or_default();
    let resources = l.pop().unwrap_or_default();
    Ok(ok(
        json!({ "resources": resources, "resourceTemplates": templates }),
    ))
}

#[derive(Deserialize)]
struct Call {
    server: String,
    method: String,
    #[serde(default)]
    params: Value,
}

async fn call(
    State(admin): Shared,
    axum::Extension(s): axum::Extension<Session>,
    Form(c): Form<Call>,
) -> Answer {
    if !matches!(
        c.method.as_str(),
        "tools/call" | "prompts/get" | "resources/read"
    ) {
        return Err(Refusal::bad(
            Some("method"),
            "method: one of tools/call, prompts/get, resources/read",
        ));
    }
    if !c.params.is_object() {
        return Err(Refusal::bad(Some("params"), "params: must be an object"));
    }
    let mount = mount_of(&admin, &c.server).await?;
    admin.audit(
        "playground-call",
        &s.user,
        json!({ "server": c.server, "method": c.method, "name": c.params.get("name").or(c.params.get("uri")) }),
    );
    match Asker::request_once(&mount.backend, ASK_WITHIN, &c.method, c.params.clone()).await {
        Ok(r) => Ok(ok(json!({ "result": r }))),
        Err(Failed::Rpc(e)) => Ok(ok(json!({ "error": e }))),
        Err(f) => Err(unreachable(&c.server, f)),
    }
}

// === connect ===

async fn connect(State(admin): Shared, headers: HeaderMap) -> Response {
    let host_header = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    // The MCP endpoints are on the main listener: its port, under the name the page used.
    let host_name = match host_header.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_header,
    };
    let base = format!("http://{host_name}:{}", admin.mcp_address.port());
    let mcp = format!("{base}/mcp");
    let sse = format!("{base}/sse");
    let (header_name, header_value) = match &admin.access {
        Some(a) if !a.keys.is_empty() => (Some("X-Api-Key"), "YOUR_KEY"),
        Some(a) if a.enabled() => (Some("Authorization"), "Bearer YOUR_TOKEN"),
        _ => (None, ""),
    };
    let headers_obj = header_name
        .map(|h| json!({ h: header_value }))
        .unwrap_or(json!({}));
    let with_headers = |mut v: Value| {
        if header_name.is_some() {
            v["headers"] = headers_obj.clone();
        }
        v
    };
    let mut bridge_args = vec![json!(mcp)];
    if let Some(h) = header_name {
        bridge_args.splice(0..0, [json!("-H"), json!(h), json!(header_value)]);
    }
    let pretty = |v: Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    let claude_code = match header_name {
        Some(h) => format!(
            "claude mcp add --transport http mcp-proxy {mcp} --header \"{h}: {header_value}\""
        ),
        None => format!("claude mcp add --transport http mcp-proxy {mcp}"),
    };
    let mut snippets = vec![
        json!({
            "client": "claude-desktop",
            "title": "Claude Desktop (claude_desktop_config.json; bridged over stdio by mcp-proxy)",
            "language": "json",
            "text": pretty(json!({ "mcpServers": { "mcp-proxy": { "command": "mcp-proxy", "args": bridge_args } } })),
        }),
        json!({
            "client": "claude-code",
            "title": "Claude Code",
            "language": "shell",
            "text": claude_code,
        }),
        json!({
            "client": "cursor",
            "title": "Cursor (~/.cursor/mcp.json)",
            "language": "json",
            "text": pretty(json!({ "mcpServers": { "mcp-proxy": with_headers(json!({ "url": mcp })) } })),
        }),
        json!({
            "client": "vscode",
            "title": "VS Code (.vscode/mcp.json)",
            "language": "json",
            "text": pretty(json!({ "servers": { "mcp-proxy": with_headers(json!({ "type": "http", "url": mcp })) } })),
        }),
        json!({
            "client": "windsurf",
            "title": "Windsurf (~/.codeium/windsurf/mcp_config.json)",
            "language": "json",
            "text": pretty(json!({ "mcpServers": { "mcp-proxy": with_headers(json!({ "serverUrl": mcp })) } })),
        }),
        json!({
            "client": "sse",
            "title": "Clients that speak HTTP+SSE only",
            "language": "text",
            "text": sse,
        }),
    ];
    let servers: Vec<String> = admin
        .gateway
        .served()
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if !servers.is_empty() {
        let lines: Vec<String> = servers
            .iter()
            .map(|n| format!("{n}: {base}/servers/{n}/mcp  (SSE: {base}/servers/{n}/sse)"))
            .collect();
        snippets.push(json!({
            "client": "per-server",
            "title": "One server alone",
            "language": "text",
            "text": lines.join("\n"),
        }));
    }
    ok(json!({ "mcp": mcp, "sse": sse, "header": header_name, "snippets": snippets }))
}

// === live updates ===

async fn events(State(admin): Shared) -> Response {
    let rx = admin.events.subscribe();
    struct St {
        admin: Arc<Admin>,
        rx: tokio::sync::broadcast::Receiver<super::Event>,
        last: String,
        version: Option<String>,
        tick: tokio::time::Interval,
        queue: std::collections::VecDeque<String>,
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let st = St {
        admin,
        rx,
        last: String::new(),
        version: None,
        tick,
        queue: Default::default(),
    };
    let frame = |kind: &str, data: &str| format!("event: {kind}\ndata: {data}\n\n");
    let stream = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(f) = st.queue.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(Bytes::from(f)), st));
            }
            tokio::select! {
                ev = st.rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.kind == "config"
                            && let Ok(v) = serde_json::from_str::<Value>(&ev.data)
                        {
                            st.version = v["version"].as_str().map(str::to_owned);
                        }
                        st.queue.push_back(frame(ev.kind, &ev.data));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return None,
                },
                _ = st.tick.tick() => {
                    let Ok(snap) = snapshot(&st.admin).await else {
                        st.queue.push_back(": the config file cannot be read\n\n".into());
                        continue;
                    };
                    let version = snap["version"].as_str().map(str::to_owned);
                    if st.version.is_some() && version != st.version {
                        let by_hand = st
                            .admin
                            .written
                            .lock()
                            .map(|w| w.as_deref() != version.as_deref())
                            .unwrap_or(true);
                        st.queue.push_back(frame(
                            "config",
                            &json!({ "version": version, "byHand": by_hand }).to_string(),
                        ));
                    }
                    st.version = version;
                    let text = snap.to_string();
                    if text != st.last {
                        st.queue.push_back(frame("servers", &text));
                        st.last = text;
                    } else {
                        st.queue.push_back(": keep-alive\n\n".into());
                    }
                }
            }
        }
    })
    .boxed();
    let mut r = Response::new(axum::body::Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    r
}

// === terminal ===

#[derive(Deserialize)]
struct TermSize {
    cols: Option<u16>,
    rows: Option<u16>,
}

async fn terminal_socket(
    State(admin): Shared,
    Query(size): Query<TermSize>,
    headers: HeaderMap,
    ws: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    if !admin.settings.terminal {
        return Refusal::status(
            StatusCode::NOT_FOUND,
            "the terminal is off (start the proxy with --admin-terminal to offer it)",
        )
        .into_response();
    }
    let Some(who) = who(&admin, &headers).await else {
        return Refusal::status(StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    // A WebSocket is not bound by the same-origin rules: another site's page must not open one.
    if !headers.contains_key(header::ORIGIN) && !who.by_header || !auth::same_origin(&headers) {
        return Refusal::status(StatusCode::FORBIDDEN, "refused: sent from another site")
            .into_response();
    }
    let Ok(ws) = ws else {
        return Refusal::bad(None, "this endpoint takes a WebSocket").into_response();
    };
    let Ok(permit) = admin.terminals.clone().try_acquire_owned() else {
        return Refusal::status(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} terminals are open already (--admin-terminals)",
                admin.settings.terminals
            ),
        )
        .into_response();
    };
    let (cols, rows) = (size.cols.unwrap_or(80), size.rows.unwrap_or(24));
    ws.on_upgrade(move |socket| terminal::session(admin, who, socket, cols, rows, permit))
}
