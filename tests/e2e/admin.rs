//! The admin console: its API endpoint by endpoint (with the attacks and faults), and the
//! whole page in Debian's chromium driven by playwright-core (tests/clients/admin_browser.mjs).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

const PASSWORD: &str = "correct horse battery";

/// A proxy with the console on, in a folder of its own.
struct Console {
    proxy: Proxy,
    dir: PathBuf,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

fn folder(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mcp-proxy-admin-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test folder");
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(0)
}

fn demo_entry() -> Value {
    json!({ "command": BIN, "args": ["--demo-server"] })
}

impl Console {
    /// Start with `servers` as the config file (none: the console creates it).
    fn start(name: &str, servers: Option<Value>, extra: &[&str]) -> Console {
        Self::start_env(name, servers, extra, &[])
    }

    fn start_env(
        name: &str,
        servers: Option<Value>,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Console {
        let dir = folder(name);
        let config = dir.join("servers.json");
        if let Some(s) = servers {
            std::fs::write(
                &config,
                serde_json::to_string_pretty(&s).unwrap_or_default(),
            )
            .expect("config");
        }
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--config".into(),
            config.display().to_string(),
            "--admin".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut all_env: Vec<(&str, String)> = vec![
            ("ADMIN_PASSWORD", PASSWORD.into()),
            ("TOOLS_FOLDER", dir.join("tools").display().to_string()),
        ];
        all_env.extend(env.iter().cloned());
        let proxy = Proxy::start_env(&args, &all_env);
        Console {
            proxy,
            dir,
            http: reqwest::Client::new(),
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("servers.json")
    }

    fn config(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.config_path()).unwrap_or_default())
            .unwrap_or(Value::Null)
    }

    async fn login_with(&self, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/admin/api/login"))
            .json(&json!({ "username": user, "password": password }))
            .send()
            .await
            .expect("login")
    }

    async fn sign_in(&mut self) {
        let r = self.login_with("admin", PASSWORD).await;
        assert_eq!(r.status(), 200);
        let set = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            set.contains("HttpOnly")
                && set.contains("SameSite=Strict")
                && set.contains("Path=/admin"),
            "{set}"
        );
        self.cookie = set.split(';').next().unwrap_or("").to_owned();
        let body: Value = r.json().await.expect("login answer");
        self.csrf = body["csrf"].as_str().unwrap_or("").to_owned();
        assert!(!self.csrf.is_empty(), "{body}");
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A change, as the page sends it.
    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .http
            .request(m, self.url(path))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header("origin", self.url(""))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn version(&self) -> String {
        let (s, v) = self.get("/admin/api/servers").await;
        assert_eq!(s, 200, "{v}");
        v["version"].as_str().unwrap_or("").to_owned()
    }

    async fn server(&self, name: &str) -> Value {
        let (_, v) = self.get("/admin/api/servers").await;
        v["servers"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    async fn wait_state(&self, name: &str, state: &str, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            let s = self.server(name).await;
            if s["status"]["state"] == state {
                return s;
            }
            assert!(Instant::now() < end, "{name} is not {state}: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn add(&self, name: &str, entry: Value) -> (u16, Value) {
        let version = self.version().await;
        self.send(
            "POST",
            "/admin/api/servers",
            json!({ "name": name, "entry": entry, "version": version }),
        )
        .await
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_console_is_off_unless_asked() {
    let config = temp_file("admin-off", r#"{ "mcpServers": {} }"#);
    let proxy = Proxy::start(&["--config", &config]);
    let r = reqwest::get(proxy.url("/admin")).await.expect("GET /admin");
    assert_eq!(r.status(), 404);
    let r = reqwest::get(proxy.url("/admin/api/servers"))
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
    drop(proxy);
    // ENABLE_ADMIN_UI=true turns it on, as seed 001's variable does.
    let dir = folder("env-on");
    let config = dir.join("servers.json");
    let proxy = Proxy::start_env(
        &[
            "--port".into(),
            "0".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[
            ("ENABLE_ADMIN_UI", "true".into()),
            ("ADMIN_PASSWORD", PASSWORD.into()),
        ],
    );
    let t = Instant::now();
    let r = reqwest::get(proxy.url("/admin")).await.expect("GET /admin");
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let page = r.text().await.unwrap_or_default();
    assert!(page.contains("/admin/assets/app.js"), "{page}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Every asset is in the binary: nothing comes from elsewhere.
    for asset in [
        "/admin/assets/app.js",
        "/admin/assets/app.css",
        "/admin/assets/vendor/xterm.js",
        "/admin/assets/vendor/xterm.css",
        "/admin/assets/vendor/addon-fit.js",
    ] {
        let r = reqwest::get(proxy.url(asset)).await.expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        let text = r.text().await.unwrap_or_default();
        if asset.contains("/vendor/") {
            assert!(
                !text.contains("MCP_PROXY_VENDOR_MISSING"),
                "{asset} was not built"
            );
        }
        assert!(!text.contains("https://cdn"), "{asset}");
    }
    // The console made the config file it was pointed at, and the tool config beside it.
    assert!(config.exists());
    assert!(dir.join("tool_config.json").exists());
    let secret = dir.join(".session_secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn beyond_loopback_the_console_needs_a_password_of_its_own() {
    let dir = folder("loopback");
    let config = dir.join("servers.json").display().to_string();
    for (password, says) in [
        (None, "needs ADMIN_PASSWORD"),
        (Some("password"), "not `password`"),
        (Some(""), "needs ADMIN_PASSWORD"),
    ] {
        let mut env: Vec<(&str, String)> = vec![];
        if let Some(p) = password {
            env.push(("ADMIN_PASSWORD", p.into()));
        }
        let (ok, out) = run_to_end_env(
            BIN,
            &[
                "--port".into(),
                "0".into(),
                "--host".into(),
                "0.0.0.0".into(),
                "--config".into(),
                config.clone(),
                "--admin".into(),
            ],
            &env,
            Duration::from_secs(10),
        );
        assert!(!ok, "{password:?}: {out}");
        assert!(out.contains(says), "{password:?}: {out}");
    }
    // Without --config there is nothing to edit.
    let (ok, out) = run_to_end(
        BIN,
        &[
            "--port".into(),
            "0".into(),
            "--admin".into(),
            "--".into(),
            BIN.into(),
            "--demo-server".into(),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok && out.contains("--config"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sign_in_wrong_passwords_expiry_and_sign_out() {
    let c = Console::start(
        "signin",
        None,
        &[
            "--admin-sign-in-attempts",
            "3",
            "--admin-session-timeout",
            "2",
        ],
    );
    // Not signed in: every endpoint says 401.
    let (s, v) = c.get("/admin/api/servers").await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("sign in")),
        "{v}"
    );
    // A wrong password is answered after a second.
    let t = Instant::now();
    let r = c.login_with("admin", "guess").await;
    assert_eq!(r.status(), 401);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(r.headers().get("set-cookie").is_none());
    let r = c.login_with("root", PASSWORD).await;
    assert_eq!(r.status(), 401);
    let r = c.login_with("admin", "").await;
    assert_eq!(r.status(), 401);
    // Beyond the attempts allowed, even the right password waits out the window.
    let r = c.login_with("admin", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    drop(c);

    let mut c = Console::start("signout", None, &["--admin-session-timeout", "2"]);
    c.sign_in().await;
    let (s, v) = c.get("/admin/api/session").await;
    assert_eq!(s, 200);
    assert_eq!(v["user"], "admin");
    assert_eq!(v["terminal"], false);
    // A forged cookie is refused.
    let forged = c.cookie.replace('A', "B");
    let r = c
        .http
        .get(c.url("/admin/api/session"))
        .header("cookie", format!("{forged}x"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401);
    // Signing out ends the session, also for a copy of its cookie.
    let old = c.cookie.clone();
    let (s, _) = c.send("POST", "/admin/api/logout", json!({})).await;
    assert_eq!(s, 204);
    let r = c
        .http
        .get(c.url("/admin/api/session"))
        .header("cookie", &old)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401);
    // A session ends by itself after --admin-session-timeout.
    c.sign_in().await;
    assert_eq!(c.get("/admin/api/session").await.0, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(c.get("/admin/api/session").await.0, 401);
}

#[tokio::test]
async fn changes_need_the_page_s_token_and_origin() {
    let mut c = Console::start("csrf", None, &[]);
    c.sign_in().await;
    let version = c.version().await;
    let body = json!({ "name": "demo", "entry": demo_entry(), "version": version });
    // The cookie alone (what a cross-site form would carry) is not enough.
    let r = c
        .http
        .post(c.url("/admin/api/servers"))
        .header("cookie", &c.cookie)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    // Another site's page, even with a token it guessed.
    let r = c
        .http
        .post(c.url("/admin/api/servers"))
        .header("cookie", &c.cookie)
        .header("x-csrf-token", &c.csrf)
        .header("origin", "http://evil.example")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    let r = c
        .http
        .post(c.url("/admin/api/servers"))
        .header("cookie", &c.cookie)
        .header("x-csrf-token", "not-the-token")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    // A cross-site sign-in attempt.
    let r = c
        .http
        .post(c.url("/admin/api/login"))
        .header("origin", "http://evil.example")
        .json(&json!({ "username": "admin", "password": PASSWORD }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    // Nothing was written.
    assert_eq!(c.config()["mcpServers"], json!({}));
    // The page itself.
    let (s, v) = c.send("POST", "/admin/api/servers", body).await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn servers_are_added_edited_disabled_and_deleted_in_the_file() {
    // A file as a user wrote it: with a key the console does not know, and another client's.
    let mut c = Console::start(
        "servers",
        Some(json!({
            "mcpServers": {
                "first": { "command": BIN, "args": ["--demo-server"], "autoApprove": ["echo"], "x-note": "kept" }
            },
            "otherClientSetting": { "keep": true }
        })),
        &[],
    );
    c.sign_in().await;
    c.wait_state("first", "ready", Duration::from_secs(20))
        .await;

    // Add: the server starts, and the page sees it become ready.
    let (s, v) = c.add("demo", demo_entry()).await;
    assert_eq!(s, 201, "{v}");
    let demo = c.wait_state("demo", "ready", Duration::from_secs(20)).await;
    assert!(demo["status"]["pid"].as_u64().is_some(), "{demo}");
    assert_eq!(demo["status"]["transport"], "stdio");
    assert!(c.proxy.servers().await.contains_key("demo"));

    // Bad forms are refused, naming the field, and change nothing.
    let before = std::fs::read_to_string(c.config_path()).unwrap_or_default();
    for (name, entry, field) in [
        (
            "nocmd",
            json!({ "type": "stdio", "command": "" }),
            "command",
        ),
        ("badurl", json!({ "url": "ftp://example.com/mcp" }), "url"),
        ("nourl", json!({ "type": "http" }), "url"),
        ("demo", demo_entry(), "name"),
        ("../up", demo_entry(), "name"),
        (
            "args",
            json!({ "command": BIN, "args": "--demo-server" }),
            "args",
        ),
        ("env", json!({ "command": BIN, "env": ["A=1"] }), "env"),
        (
            "timeout",
            json!({ "command": BIN, "timeout": -1 }),
            "timeout",
        ),
        (
            "escape",
            json!({ "command": BIN, "installCommands": ["true"], "installDirectory": "../../elsewhere" }),
            "installDirectory",
        ),
    ] {
        let (s, v) = c.add(name, entry.clone()).await;
        assert_eq!(s, 400, "{name} {entry}: {v}");
        assert_eq!(v["field"], field, "{name} {entry}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    assert_eq!(
        std::fs::read_to_string(c.config_path()).unwrap_or_default(),
        before
    );

    // Edit: keys the console does not know are kept; a rename moves the server.
    let version = c.version().await;
    let mut entry = c.config()["mcpServers"]["first"].clone();
    entry["args"] = json!(["--demo-server"]);
    entry["name"] = json!("The first one");
    let (s, v) = c
        .send(
            "PUT",
            "/admin/api/servers/first",
            json!({ "entry": entry, "version": version, "name": "renamed" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let file = c.config();
    assert_eq!(file["otherClientSetting"], json!({ "keep": true }));
    assert_eq!(file["mcpServers"]["renamed"]["x-note"], "kept");
    assert_eq!(
        file["mcpServers"]["renamed"]["autoApprove"],
        json!(["echo"])
    );
    assert!(file["mcpServers"].get("first").is_none());
    c.wait_state("renamed", "ready", Duration::from_secs(20))
        .await;
    assert!(!c.proxy.servers().await.contains_key("first"));

    // Disable and enable: `active` in the file, the server stops and starts.
    let version = c.version().await;
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/servers/demo/active",
            json!({ "active": false, "version": version }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.config()["mcpServers"]["demo"]["active"], false);
    c.wait_state("demo", "inactive", Duration::from_secs(5))
        .await;
    assert!(!c.proxy.servers().await.contains_key("demo"));
    let version = c.version().await;
    let (s, _) = c
        .send(
            "POST",
            "/admin/api/servers/demo/active",
            json!({ "active": true, "version": version }),
        )
        .await;
    assert_eq!(s, 200);
    c.wait_state("demo", "ready", Duration::from_secs(20)).await;

    // A hand edit meanwhile: a save made against the old version is refused, not lost.
    let stale = c.version().await;
    let mut text = std::fs::read_to_string(c.config_path()).unwrap_or_default();
    text = text.replace("\"renamed\"", "\"byhand\"");
    std::fs::write(c.config_path(), &text).expect("hand edit");
    let (s, v) = c
        .send(
            "DELETE",
            "/admin/api/servers/demo",
            json!({ "version": stale }),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(c.config()["mcpServers"].get("demo").is_some());
    assert!(c.config()["mcpServers"].get("byhand").is_some());
    // The page sees the file as it is now (and the hand edit is applied by the reload).
    let end = Instant::now() + Duration::from_secs(10);
    while c.server("byhand").await.is_null() {
        assert!(Instant::now() < end, "the hand edit does not show");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without a version: refused, naming it.
    let (s, v) = c.send("DELETE", "/admin/api/servers/demo", json!({})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "version");
    // Delete: gone from the file and from the proxy.
    let version = c.version().await;
    let (s, v) = c
        .send(
            "DELETE",
            "/admin/api/servers/demo",
            json!({ "version": version }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(c.config()["mcpServers"].get("demo").is_none());
    assert!(!c.proxy.servers().await.contains_key("demo"));
    let version = c.version().await;
    let (s, _) = c
        .send(
            "DELETE",
            "/admin/api/servers/nosuch",
            json!({ "version": version }),
        )
        .await;
    assert_eq!(s, 404);
    // The file stays valid JSON with its other keys after all of it.
    assert_eq!(c.config()["otherClientSetting"], json!({ "keep": true }));
}

/// Read SSE events from `r` for up to `within`, until `stop` says enough.
async fn read_events(
    r: &mut reqwest::Response,
    within: Duration,
    stop: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let end = Instant::now() + within;
    let mut buf = String::new();
    let mut out = vec![];
    while Instant::now() < end && !stop(&out) {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(200), r.chunk()).await
        else {
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if !kind.is_empty() {
                out.push((kind, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    out
}

#[tokio::test]
async fn events_carry_server_states_and_hand_edits() {
    let mut c = Console::start(
        "events",
        Some(json!({ "mcpServers": { "demo": demo_entry() } })),
        &[],
    );
    c.sign_in().await;
    let mut r = c
        .http
        .get(c.url("/admin/api/events"))
        .header("cookie", &c.cookie)
        .send()
        .await
        .expect("events");
    assert_eq!(r.status(), 200);
    // The servers as they are, then again when something changes (demo becomes ready).
    let got = read_events(&mut r, Duration::from_secs(20), |evs| {
        evs.iter()
            .any(|(k, v)| k == "servers" && v["servers"][0]["status"]["state"] == "ready")
    })
    .await;
    assert!(got.iter().any(|(k, _)| k == "servers"), "{got:?}");
    // A hand edit of the file: told as such, and the new contents follow.
    let mut file = c.config();
    file["mcpServers"]["second"] = demo_entry();
    std::fs::write(c.config_path(), file.to_string()).expect("hand edit");
    let got = read_events(&mut r, Duration::from_secs(10), |evs| {
        evs.iter()
            .any(|(k, v)| k == "config" && v["byHand"] == true)
            && evs.iter().any(|(k, v)| {
                k == "servers"
                    && v["servers"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s["name"] == "second"))
            })
    })
    .await;
    assert!(
        got.iter()
            .any(|(k, v)| k == "config" && v["byHand"] == true),
        "{got:?}"
    );
    // A change from the console is not a hand edit.
    let (s, _) = c.add("third", demo_entry()).await;
    assert_eq!(s, 201);
    let got = read_events(&mut r, Duration::from_secs(10), |evs| {
        evs.iter().any(|(k, _)| k == "config")
    })
    .await;
    let configs: Vec<&Value> = got
        .iter()
        .filter(|(k, _)| k == "config")
        .map(|(_, v)| v)
        .collect();
    assert!(
        !configs.is_empty() && configs.iter().all(|v| v["byHand"] == false),
        "{got:?}"
    );
    // Without a session: 401.
    let r = reqwest::get(c.url("/admin/api/events")).await.expect("GET");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn restart_logs_and_figures_of_a_server() {
    let script = format!("echo hello-from-stderr >&2; exec {BIN} --demo-server");
    let mut c = Console::start(
        "restart",
        Some(json!({ "mcpServers": { "talky": { "command": "sh", "args": ["-c", script] } } })),
        &[],
    );
    c.sign_in().await;
    let before = c
        .wait_state("talky", "ready", Duration::from_secs(20))
        .await;
    // Some client traffic: the figures count it.
    let url = c.url("/servers/talky/mcp");
    let sid = session(&url).await;
    for i in 0..5 {
        let r = post(
            &url,
            Some(&sid),
            &call(10 + i, "echo", json!({ "message": "x" })),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = post(&url, Some(&sid), &call(20, "nosuchtool", json!({})), &[]).await;
    assert_eq!(r.status, 200);
    let s = c.server("talky").await;
    assert!(s["status"]["calls"].as_u64().unwrap_or(0) >= 6, "{s}");
    assert!(s["status"]["errors"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(s["status"]["p50Ms"].as_f64().is_some(), "{s}");
    assert!(s["status"]["p99Ms"].as_f64().is_some(), "{s}");
    assert!(s["status"]["sessions"].as_u64().unwrap_or(0) >= 1, "{s}");
    // Its tool count, though no client of the merged view listed its tools.
    let end = Instant::now() + Duration::from_secs(10);
    while c.server("talky").await["status"]["tools"]
        .as_u64()
        .is_none_or(|n| n < 2)
    {
        assert!(Instant::now() < end, "{}", c.server("talky").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its stderr.
    let (st, logs) = c.get("/admin/api/servers/talky/logs").await;
    assert_eq!(st, 200);
    assert!(
        logs["lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["text"] == "hello-from-stderr")),
        "{logs}"
    );
    // Restart: another process.
    let (st, v) = c
        .send("POST", "/admin/api/servers/talky/restart", json!({}))
        .await;
    assert_eq!(st, 202, "{v}");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.server("talky").await;
        if s["status"]["state"] == "ready" && s["status"]["pid"] != before["status"]["pid"] {
            break;
        }
        assert!(Instant::now() < end, "not restarted: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = c
        .send("POST", "/admin/api/servers/nosuch/restart", json!({}))
        .await;
    assert_eq!(st, 404);
    // A server that does not use OAuth has no sign-in.
    let (st, v) = c
        .send("POST", "/admin/api/servers/talky/oauth", json!({}))
        .await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn tools_are_curated_into_tool_config_and_clients_hear_it() {
    let mut c = Console::start(
        "tools",
        Some(json!({ "mcpServers": { "demo": demo_entry() } })),
        &[],
    );
    c.sign_in().await;
    c.wait_state("demo", "ready", Duration::from_secs(20)).await;
    // A client of the merged view that stays connected.
    let url = c.url("/mcp");
    let sid = session(&url).await;
    // In the merged view, the demo server's tools are `demo--NAME`.
    let names = |tools: &Value| -> Vec<String> {
        tools
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str())
                    .map(|n| n.strip_prefix("demo--").unwrap_or(n).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(names(&list_tools(&url, &sid).await).contains(&"echo".to_owned()));
    let mut stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET stream");

    let (s, v) = c.get("/admin/api/tools").await;
    assert_eq!(s, 200, "{v}");
    let echo = v["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["key"] == "demo--echo").cloned())
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(echo["enabled"], true);
    assert!(
        echo["inputSchema"]["properties"]["message"].is_object(),
        "{echo}"
    );

    // Disable one and rename another, at once.
    let (s, v) = c
        .send(
            "PATCH",
            "/admin/api/tools",
            json!({ "changes": [
                { "key": "demo--echo", "enabled": false },
                { "key": "demo--add", "displayName": "Sum", "description": "Adds two numbers, nicely" }
            ] }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(c.dir.join("tool_config.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    assert_eq!(file["tools"]["demo--echo"]["enabled"], false, "{file}");
    assert_eq!(file["tools"]["demo--add"]["displayName"], "Sum", "{file}");
    // The connected client is told, and no longer sees the tool.
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("notifications/tools/list_changed") {
        assert!(Instant::now() < end, "no list_changed: {seen}");
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(200), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let tools = list_tools(&url, &sid).await;
    assert!(!names(&tools).contains(&"echo".to_owned()), "{tools}");
    let add = tools
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "demo--add").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(add["title"], "Sum", "{tools}");
    assert_eq!(add["description"], "Adds two numbers, nicely", "{tools}");
    // The console still lists it, switched off.
    let (_, v) = c.get("/admin/api/tools").await;
    let echo = v["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["key"] == "demo--echo").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(echo["enabled"], false, "{v}");
    // On again; a cleared name goes back to the server's.
    let (s, _) = c
        .send(
            "PATCH",
            "/admin/api/tools",
            json!({ "changes": [
                { "key": "demo--echo", "enabled": true },
                { "key": "demo--add", "displayName": null, "description": null }
            ] }),
        )
        .await;
    assert_eq!(s, 200);
    let end = Instant::now() + Duration::from_secs(10);
    while !names(&list_tools(&url, &sid).await).contains(&"echo".to_owned()) {
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(c.dir.join("tool_config.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    assert_eq!(file["tools"], json!({}), "{file}");
    // Keys that name nothing are refused.
    for key in ["nosuch--echo", "demo", "demo--"] {
        let (s, v) = c
            .send(
                "PATCH",
                "/admin/api/tools",
                json!({ "changes": [{ "key": key, "enabled": false }] }),
            )
            .await;
        assert_eq!(s, 400, "{key}: {v}");
        assert_eq!(v["field"], "key");
    }
    let (s, _) = c
        .send("PATCH", "/admin/api/tools", json!({ "nothing": 1 }))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn the_playground_calls_tools_prompts_and_resources() {
    let mut c = Console::start(
        "playground",
        Some(json!({ "mcpServers": { "demo": demo_entry() } })),
        &[],
    );
    c.sign_in().await;
    c.wait_state("demo", "ready", Duration::from_secs(20)).await;
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "demo", "method": "tools/call", "params": { "name": "echo", "arguments": { "message": "from the playground" } } }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "from the playground");
    // A tool's own error is its result.
    let (_, v) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "demo", "method": "tools/call", "params": { "name": "echo", "arguments": { "message": "x", "isError": true } } }),
        )
        .await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    // A JSON-RPC error of the server's.
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "demo", "method": "tools/call", "params": { "name": "nosuch" } }),
        )
        .await;
    assert_eq!(s, 200);
    assert!(v["error"]["code"].is_i64(), "{v}");
    // Prompts and resources: listed, then fetched.
    let (s, v) = c.get("/admin/api/servers/demo/prompts").await;
    assert_eq!(s, 200);
    let prompt = v["prompts"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "demo", "method": "prompts/get", "params": { "name": prompt, "arguments": {} } }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["result"]["messages"].is_array() || v["error"].is_object(),
        "{v}"
    );
    let (s, v) = c.get("/admin/api/servers/demo/resources").await;
    assert_eq!(s, 200);
    assert!(v["resourceTemplates"].is_array(), "{v}");
    let uri = v["resources"][0]["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "demo", "method": "resources/read", "params": { "uri": uri } }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["result"]["contents"][0]["uri"], json!(uri), "{v}");
    // What the playground does not do.
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "demo", "method": "tools/list", "params": {} }),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["field"], "method");
    let (s, _) = c
        .send(
            "POST",
            "/admin/api/call",
            json!({ "server": "nosuch", "method": "tools/call", "params": {} }),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = c.get("/admin/api/servers/nosuch/prompts").await;
    assert_eq!(s, 404);
}

async fn wait_install(c: &Console, name: &str, within: Duration) -> Value {
    let end = Instant::now() + within;
    loop {
        let (_, v) = c.get(&format!("/admin/api/servers/{name}/install")).await;
        if v["state"] != "running" {
            return v;
        }
        assert!(Instant::now() < end, "install of {name} still running: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lines_of(v: &Value) -> Vec<String> {
    v["lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["stream"] != "status")
                .filter_map(|l| l["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn installs_run_fail_cancel_and_stay_inside_their_base() {
    let ok_cmds = json!(["mkdir -p ok && echo made-$((40+2))", "echo to-stderr >&2"]);
    let mut c = Console::start(
        "installs",
        Some(json!({ "mcpServers": {
            "ok": { "command": BIN, "args": ["--demo-server"], "installCommands": ok_cmds },
            "fails": { "command": BIN, "args": ["--demo-server"], "installDirectory": "fails-dir", "installCommands": ["echo before", "exit 3", "echo never"] },
            "hangs": { "command": BIN, "args": ["--demo-server"], "installCommands": ["echo waiting; sleep 300"] }
        } })),
        &[],
    );
    c.sign_in().await;
    // At start, servers whose install directory is missing are installed (in the
    // background): `ok` succeeds, `fails` fails, and `hangs` hangs.
    let v = wait_install(&c, "ok", Duration::from_secs(20)).await;
    assert_eq!(v["state"], "succeeded", "{v}");
    let lines = lines_of(&v);
    assert!(
        lines.contains(&"made-42".to_owned()) && lines.contains(&"to-stderr".to_owned()),
        "{v}"
    );
    assert!(c.dir.join("tools").join("ok").is_dir());
    let v = wait_install(&c, "fails", Duration::from_secs(20)).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["exitCode"], 3, "{v}");
    let lines = lines_of(&v);
    assert!(
        lines.contains(&"before".to_owned()) && !lines.contains(&"never".to_owned()),
        "{v}"
    );
    // One install at a time per server.
    let (_, v) = c.get("/admin/api/servers/hangs/install").await;
    assert_eq!(v["state"], "running", "{v}");
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/servers/hangs/install",
            json!({ "force": true }),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    // Cancel: ends within seconds, its output kept.
    let t = Instant::now();
    let (s, _) = c
        .send("DELETE", "/admin/api/servers/hangs/install", json!({}))
        .await;
    assert_eq!(s, 202);
    let v = wait_install(&c, "hangs", Duration::from_secs(10)).await;
    assert_eq!(v["state"], "cancelled", "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(lines_of(&v).contains(&"waiting".to_owned()), "{v}");
    let out = std::process::Command::new("pgrep")
        .args(["-f", "sleep 300"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        out.trim().is_empty(),
        "the install's processes live on: {out}"
    );
    // Again, when asked: an existing directory needs force.
    let (s, _) = c
        .send("POST", "/admin/api/servers/ok/install", json!({}))
        .await;
    assert_eq!(s, 409);
    let (s, v) = c
        .send(
            "POST",
            "/admin/api/servers/ok/install",
            json!({ "force": true }),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        wait_install(&c, "ok", Duration::from_secs(20)).await["state"],
        "succeeded"
    );
    // A server without commands, and one that does not exist.
    let (s, v) = c.add("plain", demo_entry()).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .send("POST", "/admin/api/servers/plain/install", json!({}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "installCommands");
    let (s, _) = c
        .send("POST", "/admin/api/servers/nosuch/install", json!({}))
        .await;
    assert_eq!(s, 404);
    // A path that escapes the base, written by hand: refused when asked to install.
    let mut file = c.config();
    file["mcpServers"]["escape"] = json!({ "command": BIN, "args": ["--demo-server"], "installDirectory": "/tmp/../etc/evil", "installCommands": ["touch pwned"] });
    std::fs::write(c.config_path(), file.to_string()).expect("hand edit");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, v) = c
        .send("POST", "/admin/api/servers/escape/install", json!({}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "installDirectory");
    assert!(!Path::new("/etc/pwned").exists() && !Path::new("/etc/evil").exists());
}

#[test]
fn installs_from_the_command_line() {
    let dir = folder("install-cli");
    let config = dir.join("servers.json");
    std::fs::write(
        &config,
        json!({ "mcpServers": {
            "one": { "command": "x", "installCommands": ["mkdir -p one && echo first-line", "echo second-line >&2"] },
            "bad": { "command": "x", "installCommands": ["exit 7"] },
        } })
        .to_string(),
    )
    .expect("config");
    let tools = dir.join("tools").display().to_string();
    let env = [("TOOLS_FOLDER", tools.clone())];
    let args = |which: &str| -> Vec<String> {
        vec![
            "--config".into(),
            config.display().to_string(),
            "--install".into(),
            which.into(),
        ]
    };
    let (ok, out) = run_to_end_env(BIN, &args("one"), &env, Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(
        out.contains("[one] first-line") && out.contains("[one] second-line"),
        "{out}"
    );
    // Installed already: nothing to do, unless --reinstall.
    let (ok, out) = run_to_end_env(BIN, &args("one"), &env, Duration::from_secs(20));
    assert!(ok && out.contains("exists"), "{out}");
    let mut again = args("one");
    again.push("--reinstall".into());
    let (ok, out) = run_to_end_env(BIN, &again, &env, Duration::from_secs(20));
    assert!(ok && out.contains("first-line"), "{out}");
    let (ok, out) = run_to_end_env(BIN, &args("bad"), &env, Duration::from_secs(20));
    assert!(!ok, "{out}");
    assert!(
        out.contains("exit 7") && out.contains("install failed: bad"),
        "{out}"
    );
    let (ok, out) = run_to_end_env(BIN, &args("nosuch"), &env, Duration::from_secs(20));
    assert!(!ok && out.contains("no server named `nosuch`"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WebSocket handshake and text frames by hand (the test has no WebSocket client).
fn ws_connect(port: u16, cookie: &str, origin: Option<&str>) -> (std::net::TcpStream, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!(
        "GET /admin/api/terminal?cols=100&rows=30 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n"
    );
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("handshake");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn ws_send_text(s: &mut std::net::TcpStream, text: &str) {
    let payload = text.as_bytes();
    let mut frame = vec![0x81u8];
    let mask = [1u8, 2, 3, 4];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).expect("frame");
}

/// Read frames until their payloads hold `needle`.
fn ws_read_until(s: &mut std::net::TcpStream, needle: &str, within: Duration) -> String {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !String::from_utf8_lossy(&seen).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn the_terminal_is_opt_in_signed_in_same_site_and_audited() {
    // Off: 404, signed in or not.
    let mut c = Console::start("term-off", None, &[]);
    c.sign_in().await;
    let r = c
        .http
        .get(c.url("/admin/api/terminal"))
        .header("cookie", &c.cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
    assert_eq!(
        reqwest::get(c.url("/admin/api/terminal"))
            .await
            .expect("GET")
            .status(),
        404
    );
    drop(c);

    let audit_dir = folder("term-audit");
    let audit = audit_dir.join("audit.log");
    let mut c = Console::start(
        "term-on",
        None,
        &[
            "--admin-terminal",
            "--audit-log",
            audit.to_str().unwrap_or(""),
        ],
    );
    // On, not signed in: 401.
    assert_eq!(
        reqwest::get(c.url("/admin/api/terminal"))
            .await
            .expect("GET")
            .status(),
        401
    );
    c.sign_in().await;
    let (_, v) = c.get("/admin/api/session").await;
    assert_eq!(v["terminal"], true);
    let port = c.proxy.port;
    // Another site's page may not open one with the admin's cookie.
    let (_, head) = ws_connect(port, &c.cookie, Some("http://evil.example"));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (_, head) = ws_connect(port, &c.cookie, None);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // The page: a real shell.
    let origin = c.url("");
    let cookie = c.cookie.clone();
    // A job of this run's own (one left by an earlier, failed run is not this one).
    let job = format!("sleep {}", 30000 + std::process::id() % 20000);
    let typed = job.clone();
    let out = tokio::task::spawn_blocking(move || {
        let (mut s, head) = ws_connect(port, &cookie, Some(&origin));
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        ws_send_text(&mut s, r#"{"type":"resize","cols":120,"rows":40}"#);
        ws_send_text(
            &mut s,
            r#"{"type":"input","data":"stty size; echo shell-$((6*7))\r"}"#,
        );
        let out = ws_read_until(&mut s, "shell-42", Duration::from_secs(10));
        // A job left running, then the page goes away: the terminal hangs up.
        let line = json!({ "type": "input", "data": format!("{typed} & echo started-$((1+1))\r") });
        ws_send_text(&mut s, &line.to_string());
        let started = ws_read_until(&mut s, "started-2", Duration::from_secs(10));
        assert!(started.contains("started-2"), "{started}");
        drop(s);
        out
    })
    .await
    .expect("terminal");
    assert!(out.contains("shell-42"), "{out}");
    assert!(
        out.contains("40 120"),
        "the resize did not reach the terminal: {out}"
    );
    // Each session is in the audit log, start and end, with who.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&audit).unwrap_or_default();
        if log.contains("terminal-end") {
            assert!(
                log.contains("terminal-start") && log.contains("\"user\":\"admin\""),
                "{log}"
            );
            assert!(
                !log.contains("shell-"),
                "what was typed is not logged: {log}"
            );
            assert!(log.contains("\"event\":\"sign-in\""), "{log}");
            assert!(log.contains("the page"), "{log}");
            break;
        }
        assert!(Instant::now() < end, "no terminal-end in {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The job went with the session.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &job])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if out.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < end, "the terminal's job lives on: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&audit_dir);
}

#[tokio::test]
async fn connect_snippets_point_at_this_proxy() {
    let mut c = Console::start("connect", None, &["--api-key", "ops:sekret-key-1"]);
    c.sign_in().await;
    let (s, v) = c.get("/admin/api/connect").await;
    assert_eq!(s, 200, "{v}");
    let mcp = c.url("/mcp");
    assert_eq!(v["mcp"], json!(mcp));
    let text = |client: &str| {
        v["snippets"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["client"] == client))
            .and_then(|x| x["text"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        text("claude-code")
            .starts_with(&format!("claude mcp add --transport http mcp-proxy {mcp}")),
        "{v}"
    );
    assert!(text("claude-code").contains("X-Api-Key"), "{v}");
    for client in ["claude-desktop", "cursor", "vscode", "windsurf"] {
        let t = text(client);
        assert!(t.contains(&mcp), "{client}: {t}");
        let parsed: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
        assert!(parsed.is_object(), "{client}: not JSON: {t}");
        // The key is asked for, never shown.
        assert!(!t.contains("sekret"), "{client}: {t}");
    }
    // The console itself is not behind the MCP key: it signs its users in.
    assert_eq!(
        reqwest::get(c.url("/admin")).await.expect("GET").status(),
        200
    );
}

#[tokio::test]
async fn an_admin_identity_uses_the_api_with_its_key() {
    // No ADMIN_PASSWORD: only the identity signs in.
    let c = Console::start_env(
        "identity",
        None,
        &[
            "--api-key",
            "ops:ops-key-123456",
            "--api-key",
            "user:user-key-123456",
            "--admin-identity",
            "ops",
        ],
        &[("ADMIN_PASSWORD", String::new())],
    );
    let get = |key: &'static str| {
        let http = c.http.clone();
        let url = c.url("/admin/api/servers");
        async move {
            http.get(url)
                .header("x-api-key", key)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(get("ops-key-123456").await, 200);
    assert_eq!(get("user-key-123456").await, 401);
    assert_eq!(get("wrong-key-123456").await, 401);
    // A script with the key changes things without a cookie or a CSRF token.
    let (_, v) = {
        let r = c
            .http
            .get(c.url("/admin/api/servers"))
            .header("x-api-key", "ops-key-123456")
            .send()
            .await
            .expect("GET");
        (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let r = c
        .http
        .post(c.url("/admin/api/servers"))
        .header("x-api-key", "ops-key-123456")
        .json(&json!({ "name": "scripted", "entry": demo_entry(), "version": v["version"] }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    assert!(c.config()["mcpServers"]["scripted"].is_object());
    // The page signs in with the key too (a cookie for that identity), and only with an
    // admin identity's.
    let login = |token: &'static str| {
        let http = c.http.clone();
        let url = c.url("/admin/api/login");
        async move {
            http.post(url)
                .json(&json!({ "token": token }))
                .send()
                .await
                .expect("login")
        }
    };
    let r = login("ops-key-123456").await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .to_owned();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(v["user"], "ops", "{v}");
    let r = c
        .http
        .get(c.url("/admin/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(login("user-key-123456").await.status(), 401);
    assert_eq!(login("not-a-key-at-all").await.status(), 401);
    // No ADMIN_PASSWORD was needed here, and no password signs in (not even an empty one).
    let r = c
        .http
        .post(c.url("/admin/api/login"))
        .json(&json!({ "username": "admin", "password": "" }))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_console_on_a_listener_of_its_own() {
    let port = free_port();
    let p = port.to_string();
    let mut c = Console::start("own-port", None, &["--admin-port", &p]);
    // Not on the main listener.
    assert_eq!(
        reqwest::get(c.url("/admin")).await.expect("GET").status(),
        404
    );
    wait_port(port, Duration::from_secs(10));
    let r = reqwest::get(format!("http://127.0.0.1:{port}/admin"))
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    // Host names other than loopback's are refused there too (DNS rebinding).
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/admin"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 403);
    // Signed in there, the snippets point at the MCP listener.
    let main = c.proxy.port;
    c.proxy.port = port;
    c.sign_in().await;
    let (_, v) = c.get("/admin/api/connect").await;
    assert_eq!(
        v["mcp"],
        json!(format!("http://127.0.0.1:{main}/mcp")),
        "{v}"
    );
}

#[test]
fn the_page_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Debian's chromium is needed at {chromium} (scripts/install-peers installs it)"
    );
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-output")
        .join("admin");
    let _ = std::fs::create_dir_all(&out_dir);
    let c = Console::start("browser", None, &["--admin-terminal"]);
    let env = vec![
        ("ADMIN_URL", c.url("/admin/")),
        ("MCP_URL", c.url("/mcp")),
        ("ADMIN_USERNAME", "admin".to_owned()),
        ("ADMIN_PASSWORD", PASSWORD.to_owned()),
        ("DEMO_COMMAND", BIN.to_owned()),
        (
            "INSTALL_COMMANDS",
            json!(["for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"]).to_string(),
        ),
        ("TERMINAL", "1".to_owned()),
        ("OUT_DIR", out_dir.display().to_string()),
        ("CHROMIUM", chromium),
        ("CONFIG_FILE", c.config_path().display().to_string()),
    ];
    let (ok, out) = run_to_end_env(
        &node(),
        &[repo_file("tests/clients/admin_browser.mjs")],
        &env,
        Duration::from_secs(240),
    );
    assert!(ok, "{out}\n--- proxy log ---\n{}", c.proxy.run.log_text());
    assert!(out.contains(r#"{"step":"done","ok":true}"#), "{out}");
    for shot in [
        "signin",
        "servers",
        "server-form",
        "tools",
        "playground",
        "install",
        "hand-edit",
        "conflict",
        "terminal",
        "connect",
    ] {
        assert!(
            out_dir.join(format!("{shot}.png")).exists(),
            "no {shot}.png"
        );
    }
    // The load time of the page, for the note (not a timed assertion).
    if let Some(line) = out.lines().find(|l| l.contains(r#""step":"load""#)) {
        eprintln!("admin page: {line}");
    }
}

#[tokio::test]
async fn a_server_that_needs_oauth_is_signed_in_to_from_the_console() {
    use crate::oauth::{AuthPeers, SignIn};
    let peers = AuthPeers::start("admin-oauth", &[], &[]);
    let sign = SignIn::new("admin-oauth");
    // No browser opens by itself: the user signs in from the console.
    let env: Vec<(&str, String)> = vec![
        ("XDG_CACHE_HOME", sign.cache.display().to_string()),
        ("BROWSER", "true".into()),
    ];
    let mut c = Console::start_env(
        "oauth",
        Some(json!({ "mcpServers": { "remote": { "url": peers.url() } } })),
        &[],
        &env,
    );
    c.sign_in().await;
    c.wait_state("remote", "needs-authorization", Duration::from_secs(20))
        .await;
    let (s, v) = c
        .send("POST", "/admin/api/servers/remote/oauth", json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert!(url.contains("code_challenge"), "{url}");
    // The page opens it in a new tab; here, the test browser follows it to the callback.
    let (ok, out) = run_to_end_env(
        &python(),
        &[repo_file("tests/clients/browser.py"), url],
        &[("BROWSER_LOG", sign.browser_log.display().to_string())],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    c.wait_state("remote", "ready", Duration::from_secs(30))
        .await;
    let (s, v) = c
        .send("POST", "/admin/api/servers/remote/oauth", json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["signedIn"], true, "{v}");
}
