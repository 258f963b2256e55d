//! OAuth towards remote servers, against a real authorization server (`oidc-provider`, in
//! tests/servers/oauth_as.mjs) and an MCP server on the official TypeScript SDK that checks
//! its tokens (tests/servers/protected_server.mjs); the browser is tests/clients/browser.py.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

/// The authorization server and the protected MCP server, with their logs.
#[allow(dead_code)] // the peers are held to keep them running
pub struct AuthPeers {
    pub auth: Running,
    pub server: Running,
    pub auth_port: u16,
    pub mcp_port: u16,
    pub auth_log: PathBuf,
    pub server_log: PathBuf,
}

impl AuthPeers {
    pub fn start(tag: &str, auth_args: &[&str], server_args: &[&str]) -> AuthPeers {
        AuthPeers::start_on(tag, 0, 0, auth_args, server_args)
    }

    /// On the given ports (0: any free one). The authorization server issues tokens for any
    /// resource; the MCP server checks that they are for it.
    pub fn start_on(
        tag: &str,
        auth_port: u16,
        mcp_port: u16,
        auth_args: &[&str],
        server_args: &[&str],
    ) -> AuthPeers {
        let dir = std::env::temp_dir();
        let auth_log = dir.join(format!("mcp-proxy-as-{tag}-{}.log", std::process::id()));
        let server_log = dir.join(format!("mcp-proxy-ps-{tag}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&auth_log);
        let _ = std::fs::remove_file(&server_log);
        let mut args = vec![
            repo_file("tests/servers/oauth_as.mjs"),
            "--port".into(),
            auth_port.to_string(),
            "--resource".into(),
            "*".into(),
            "--log".into(),
            auth_log.display().to_string(),
        ];
        args.extend(auth_args.iter().map(|s| s.to_string()));
        let (auth, auth_port) = Running::spawn_listening(&node(), &args);
        let mut args = vec![
            repo_file("tests/servers/protected_server.mjs"),
            "--port".into(),
            mcp_port.to_string(),
            "--issuer".into(),
            format!("http://127.0.0.1:{auth_port}"),
            "--log".into(),
            server_log.display().to_string(),
        ];
        args.extend(server_args.iter().map(|s| s.to_string()));
        let (server, mcp_port) = Running::spawn_listening(&node(), &args);
        AuthPeers {
            auth,
            server,
            auth_port,
            mcp_port,
            auth_log,
            server_log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.mcp_port)
    }

    /// Token grants the authorization server gave, of `grant` type.
    pub fn grants(&self, grant: &str) -> usize {
        std::fs::read_to_string(&self.auth_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains(r#""event":"token""#) && l.contains(&format!(r#""grant":"{grant}""#))
            })
            .count()
    }
}

/// A fresh token cache and browser log for one test.
pub struct SignIn {
    pub cache: PathBuf,
    pub browser_log: PathBuf,
}

impl SignIn {
    pub fn new(tag: &str) -> SignIn {
        let base =
            std::env::temp_dir().join(format!("mcp-proxy-oauth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("temp dir");
        SignIn {
            cache: base.join("cache"),
            browser_log: base.join("browser.log"),
        }
    }

    /// The environment of a proxy that signs in with the test browser.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("XDG_CACHE_HOME", self.cache.display().to_string()),
            ("BROWSER", repo_file("tests/clients/browser.py")),
            ("BROWSER_LOG", self.browser_log.display().to_string()),
        ]
    }

    /// How often a browser was opened.
    pub fn browsers(&self) -> usize {
        std::fs::read_to_string(&self.browser_log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port`; the whole reply.
fn raw_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn whoami(id: u64) -> String {
    call(id, "whoami", json!({}))
}

/// Initialise a stdio client and call `whoami`; the answer.
fn stdio_whoami(c: &mut LineClient, id: u64) -> Value {
    c.send(INIT);
    c.until_answer(json!(0), Duration::from_secs(60));
    c.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    c.send(&whoami(id));
    c.until_answer(json!(id), Duration::from_secs(60))
        .pop()
        .expect("an answer")
}

#[test]
fn a_stdio_client_signs_in_once_and_stays_signed_in() {
    let peers = AuthPeers::start("stdio", &["--access-ttl", "4"], &[]);
    let sign = SignIn::new("stdio");
    let mut c = LineClient::start_env(&[peers.url()], &sign.env());
    let a = stdio_whoami(&mut c, 1);
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 1);
    let log = c.run.log_text();
    assert!(
        log.contains("mcp-proxy: sign in to http://127.0.0.1:"),
        "{log}"
    );
    drop(c);
    // Tokens are kept privately.
    let kept = sign.cache.join("mcp-proxy");
    let files: Vec<_> = std::fs::read_dir(&kept).expect("cache").flatten().collect();
    assert!(!files.is_empty());
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in &files {
            assert_eq!(
                f.metadata().unwrap().permissions().mode() & 0o777,
                0o600,
                "{:?}",
                f.path()
            );
        }
    }
    // A restart needs no sign-in.
    let mut c = LineClient::start_env(&[peers.url()], &sign.env());
    let a = stdio_whoami(&mut c, 2);
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 1, "a browser opened again after a restart");
    assert_eq!(peers.grants("authorization_code"), 1);
    // The token expires: it is refreshed, without the browser.
    std::thread::sleep(Duration::from_secs(5));
    c.send(&whoami(3));
    let a = c
        .until_answer(json!(3), Duration::from_secs(30))
        .pop()
        .expect("answer");
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 1);
    assert!(peers.grants("refresh_token") >= 1, "no refresh");
    // No token, code or verifier in any log.
    let all = format!(
        "{}\n{}",
        c.run.log_text(),
        std::fs::read_to_string(&peers.auth_log).unwrap_or_default()
    );
    for f in std::fs::read_dir(&kept).expect("cache").flatten() {
        let entry: Value =
            serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap_or_default())
                .unwrap_or(Value::Null);
        for secret in [
            &entry["tokens"]["access_token"],
            &entry["tokens"]["refresh_token"],
        ] {
            if let Some(s) = secret.as_str() {
                assert!(!c.run.log_text().contains(s), "a token reached the log");
            }
        }
    }
    assert!(!all.contains("code_verifier"), "{all}");
}

#[test]
fn two_proxies_started_together_open_one_browser() {
    let peers = AuthPeers::start("two", &[], &[]);
    let sign = SignIn::new("two");
    let mut one = LineClient::start_env(&[peers.url()], &sign.env());
    let mut two = LineClient::start_env(&[peers.url()], &sign.env());
    one.send(INIT);
    two.send(INIT);
    let a = one
        .until_answer(json!(0), Duration::from_secs(60))
        .pop()
        .expect("answer");
    let b = two
        .until_answer(json!(0), Duration::from_secs(60))
        .pop()
        .expect("answer");
    assert!(
        a.get("result").is_some() && b.get("result").is_some(),
        "{a} {b}"
    );
    assert_eq!(
        sign.browsers(),
        1,
        "one browser window between them:\n{}\n---\n{}",
        one.run.log_text(),
        two.run.log_text()
    );
    assert_eq!(peers.grants("authorization_code"), 1);
}

#[tokio::test]
async fn the_http_front_signs_in_too() {
    let peers = AuthPeers::start("http", &[], &[]);
    let sign = SignIn::new("http");
    let mut args = vec!["--port".to_owned(), "0".to_owned(), peers.url()];
    args.push("--log-level".into());
    args.push("info".into());
    let proxy = Proxy::start_env(&args, &sign.env());
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let a = call_tool(&url, &sid, 1, "whoami", json!({})).await;
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 1);
}

#[tokio::test]
async fn a_gateway_waits_for_nobody_and_offers_the_server_once_signed_in() {
    let peers = AuthPeers::start("gateway", &[], &[]);
    let sign = SignIn::new("gateway");
    let config = temp_file(
        "oauth-gateway",
        &json!({ "mcpServers": {
            "demo": { "command": BIN, "args": ["--demo-server"] },
            "remote": { "url": peers.url() },
        } })
        .to_string(),
    );
    let mut env = sign.env();
    // The user takes a moment to sign in.
    env.push(("BROWSER_DELAY", "6".into()));
    let proxy = Proxy::start_env(
        &[
            "--port".into(),
            "0".into(),
            "--config".into(),
            config.clone(),
            "--health-interval".into(),
            "1".into(),
        ],
        &env,
    );
    let url = proxy.url("/mcp");
    // Meanwhile: /status names the page to open, and the demo server is served.
    let start = Instant::now();
    let waiting = loop {
        let s = proxy.servers().await;
        if s["remote"]["state"] == "needs-authorization" {
            break s["remote"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never needs-authorization: {:?}",
            s.get("remote")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        waiting["authorizationUrl"]
            .as_str()
            .is_some_and(|u| u.contains("code_challenge")),
        "{waiting}"
    );
    let sid = session(&url).await;
    let a = call_tool(&url, &sid, 1, "demo--echo", json!({"message": "meanwhile"})).await;
    assert!(a.to_string().contains("meanwhile"), "{a}");
    // Once signed in, the server's tools are there for the same session.
    let start = Instant::now();
    loop {
        let tools = list_tools(&url, &sid).await.to_string();
        if tools.contains("remote--whoami") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never offered: {tools}\n{}",
            proxy.run.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let a = call_tool(&url, &sid, 2, "remote--whoami", json!({})).await;
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(proxy.servers().await["remote"]["state"], "ready");
    assert_eq!(sign.browsers(), 1);
}

#[tokio::test]
async fn signing_in_ahead_of_time_listing_and_signing_out() {
    let peers = AuthPeers::start("manage", &[], &[]);
    let sign = SignIn::new("manage");
    let env = sign.env();
    let (ok, out) = run_to_end_env(
        BIN,
        &["--oauth-login".into(), peers.url()],
        &env,
        Duration::from_secs(60),
    );
    assert!(ok, "{out}");
    assert!(out.contains("signed in to"), "{out}");
    let (ok, out) = run_to_end_env(BIN, &["--oauth-list".into()], &env, Duration::from_secs(10));
    assert!(
        ok && out.contains(&peers.url()) && out.contains("signed in ("),
        "{out}"
    );
    assert!(!out.contains("eyJ"), "a token was listed: {out}");
    // Signed in already: a proxy starts without the browser.
    let mut c = LineClient::start_env(&[peers.url()], &env);
    let a = stdio_whoami(&mut c, 1);
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 1);
    drop(c);
    let (ok, out) = run_to_end_env(
        BIN,
        &["--oauth-logout".into(), peers.url()],
        &env,
        Duration::from_secs(10),
    );
    assert!(ok && out.contains("signed out"), "{out}");
    let (_, out) = run_to_end_env(BIN, &["--oauth-list".into()], &env, Duration::from_secs(10));
    assert!(out.contains("no server signed in"), "{out}");
}

#[test]
fn sign_in_faults_end_with_a_clear_error_and_never_a_loop() {
    // The user never finishes: --auth-timeout.
    let peers = AuthPeers::start("faults", &[], &[]);
    let sign = SignIn::new("faults");
    let mut env = sign.env();
    env.retain(|(k, _)| *k != "BROWSER");
    env.push(("BROWSER", "true".into()));
    let mut c = LineClient::start_env(&["--auth-timeout".into(), "2".into(), peers.url()], &env);
    c.send(INIT);
    let a = c
        .until_answer(json!(0), Duration::from_secs(30))
        .pop()
        .expect("answer");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("within 2s"),
        "{a}"
    );
    drop(c);
    // The user denies.
    let denied = AuthPeers::start("denied", &["--deny"], &[]);
    let mut c = LineClient::start_env(&[denied.url()], &sign.env());
    c.send(INIT);
    let a = c
        .until_answer(json!(0), Duration::from_secs(30))
        .pop()
        .expect("answer");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("denied"),
        "{a}"
    );
    drop(c);
    // The callback port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let mut c = LineClient::start_env(
        &["--oauth-callback-port".into(), port.clone(), peers.url()],
        &sign.env(),
    );
    c.send(INIT);
    let a = c
        .until_answer(json!(0), Duration::from_secs(30))
        .pop()
        .expect("answer");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("127.0.0.1:{port}")),
        "{a}"
    );
    drop(c);
    // A callback with a wrong state changes nothing; the right one signs in.
    let cb = free_port();
    let mut env = sign.env();
    env.push(("BROWSER_DELAY", "2".into()));
    let mut c = LineClient::start_env(
        &["--oauth-callback-port".into(), cb.to_string(), peers.url()],
        &env,
    );
    c.send(INIT);
    wait_port(cb, Duration::from_secs(30));
    let forged = raw_get(cb, "/callback?code=forged&state=wrong");
    assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
    let a = c
        .until_answer(json!(0), Duration::from_secs(60))
        .pop()
        .expect("answer");
    assert!(a.get("result").is_some(), "{a}");
    drop(c);
    // The server refuses every token (issued for another resource): bounded, then an error.
    let wrong = AuthPeers::start("wrong-aud", &["--resource", "*"], &[]);
    let sign = SignIn::new("wrong-aud");
    let mut c = LineClient::start_env(
        &[
            "--resource".into(),
            "http://elsewhere.example/mcp".into(),
            wrong.url(),
        ],
        &sign.env(),
    );
    c.send(INIT);
    let a = c
        .until_answer(json!(0), Duration::from_secs(60))
        .pop()
        .expect("answer");
    assert!(a["error"].is_object(), "{a}");
    assert!(sign.browsers() <= 3, "{} sign-ins", sign.browsers());
    // A corrupt token file is set aside, and a sign-in follows.
    let sign = SignIn::new("corrupt");
    let mut c = LineClient::start_env(&[peers.url()], &sign.env());
    stdio_whoami(&mut c, 1);
    drop(c);
    for f in std::fs::read_dir(sign.cache.join("mcp-proxy"))
        .expect("cache")
        .flatten()
    {
        if f.path().extension().is_some_and(|e| e == "json") {
            std::fs::write(f.path(), "{ not json").expect("corrupt it");
        }
    }
    let mut c = LineClient::start_env(&[peers.url()], &sign.env());
    let a = stdio_whoami(&mut c, 2);
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 2);
}

#[test]
fn a_revoked_refresh_token_costs_one_new_sign_in() {
    let peers = AuthPeers::start("revoked", &["--access-ttl", "2"], &[]);
    let (auth_port, mcp_port) = (peers.auth_port, peers.mcp_port);
    let sign = SignIn::new("revoked");
    let mut c = LineClient::start_env(&[peers.url()], &sign.env());
    stdio_whoami(&mut c, 1);
    assert_eq!(sign.browsers(), 1);
    // The authorization server forgets every grant (and its keys): the access token expires
    // and the refresh token is refused. (Both come back on the ports they had.)
    drop(peers);
    let peers = AuthPeers::start_on("revoked2", auth_port, mcp_port, &["--access-ttl", "2"], &[]);
    std::thread::sleep(Duration::from_secs(3));
    c.send(&whoami(2));
    let a = c
        .until_answer(json!(2), Duration::from_secs(60))
        .pop()
        .expect("answer");
    assert!(a.to_string().contains("user-1"), "{a}");
    assert_eq!(sign.browsers(), 2, "one new sign-in, no more");
    drop(peers);
}

#[tokio::test]
async fn unattended_client_credentials() {
    let client = json!({"client_id": "robot", "client_secret": "robot-secret", "grant_types": ["client_credentials"], "redirect_uris": [], "response_types": [], "token_endpoint_auth_method": "client_secret_basic"});
    let peers = AuthPeers::start("cc", &["--static-client", &client.to_string()], &[]);
    let sign = SignIn::new("cc");
    let info = json!({"client_id": "robot", "client_secret": "robot-secret", "grant_type": "client_credentials"});
    let mut env = sign.env();
    env.retain(|(k, _)| *k != "BROWSER");
    env.push(("BROWSER", "false".into()));
    let proxy = Proxy::start_env(
        &[
            "--port".into(),
            "0".into(),
            "--static-oauth-client-info".into(),
            info.to_string(),
            peers.url(),
        ],
        &env,
    );
    let url = proxy.url("/mcp");
    let sid = session(&url).await;
    let a = call_tool(&url, &sid, 1, "whoami", json!({})).await;
    assert!(a.to_string().contains("robot"), "{a}");
    assert_eq!(peers.grants("client_credentials"), 1);
    assert!(!proxy.run.log_text().contains("robot-secret"));
}

/// The first answer of a stdio proxy in front of `url` to `initialize`, and how long it took.
fn first_answer(args: &[String], env: &[(&'static str, String)]) -> (Value, Duration) {
    let t = Instant::now();
    let mut c = LineClient::start_env(args, env);
    c.send(INIT);
    let a = c
        .until_answer(json!(0), Duration::from_secs(60))
        .pop()
        .expect("an answer");
    (a, t.elapsed())
}

#[test]
fn an_authorization_server_down_or_silent_ends_in_a_clear_error() {
    // Down: the server names an authorization server that no longer answers.
    let mut peers = AuthPeers::start("as-down", &[], &[]);
    peers.auth.terminate();
    let sign = SignIn::new("as-down");
    let (a, _) = first_answer(&[peers.url()], &sign.env());
    let msg = a["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&format!("127.0.0.1:{}", peers.auth_port)),
        "the error names the authorization server: {a}"
    );
    assert_eq!(
        sign.browsers(),
        0,
        "no browser for a sign-in that cannot work"
    );
    // Silent: it accepts connections and never answers; --oauth-timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let (server, mcp_port) = Running::spawn_listening(
        &node(),
        &[
            repo_file("tests/servers/protected_server.mjs"),
            "--port".into(),
            "0".into(),
            "--issuer".into(),
            format!("http://127.0.0.1:{silent_port}"),
        ],
    );
    let sign = SignIn::new("as-silent");
    let (a, took) = first_answer(
        &[
            "--oauth-timeout".into(),
            "2".into(),
            format!("http://127.0.0.1:{mcp_port}/mcp"),
        ],
        &sign.env(),
    );
    let msg = a["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&format!("127.0.0.1:{silent_port}")),
        "the error names the authorization server: {a}"
    );
    // Each well-known URL gets its 2 s; then the client has its answer.
    assert!(took < Duration::from_secs(30), "{took:?}: {a}");
    assert_eq!(sign.browsers(), 0);
    drop(server);
}
