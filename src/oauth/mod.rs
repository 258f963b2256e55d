//! OAuth 2.1 towards remote servers: the proxy as an MCP client that signs in.
//!
//! One [`OAuth`] per remote server. The HTTP links know nothing of OAuth beyond two calls:
//! [`OAuth::authorization`] gives the header to send (refreshed shortly before it expires),
//! and [`OAuth::rejected`] is told about a 401 or 403 and says whether to try again.
//!
//! On a 401 the proxy refreshes the token if it can; else it finds the server's
//! authorization server ([`discovery`]), gets a client identity (pre-registered, a Client ID
//! Metadata Document, or dynamic registration), and signs in: the authorization code grant
//! with PKCE S256, `state`, `resource` (RFC 8707) and the RFC 9207 `iss` check, in the user's
//! browser with a loopback callback ([`flow`]); or, configured for unattended use, the client
//! credentials grant. A 403 `insufficient_scope` signs in again with the union of scopes.
//! Tokens and registrations are kept on disk ([`store`]) and shared by every proxy of the
//! same server, which take turns at signing in: one browser window between them.

pub mod discovery;
pub mod flow;
pub mod manage;
pub mod store;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::watch;

use discovery::{Challenge, ServerMetadata};
use store::{ClientInfo, Entry, Store, Tokens};

/// What went wrong with a request to an authorization server, in a few words.
pub(crate) fn why(e: &reqwest::Error) -> String {
    let root = crate::transport::streamable_client::root_cause(e);
    if e.is_timeout() {
        "no answer in the time allowed (--oauth-timeout)".into()
    } else if e.is_connect() {
        format!("cannot connect: {root}")
    } else {
        format!("the request failed: {root}")
    }
}

/// Why a server could not be signed in to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
    /// The authorization server refused a grant (`invalid_grant`, `invalid_client`).
    #[error("{0}")]
    Rejected(String),
    #[error("sign-in was denied: {0}")]
    Denied(String),
    /// The user has to sign in; the URL to open.
    #[error("sign in to use this server: open {0}")]
    NeedsSignIn(String),
    #[error("{0}")]
    Gave(String),
}

/// A pre-registered client (`--static-oauth-client-info`, or `oauth.clientInfo` in the
/// servers file).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StaticClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    /// How it authenticates at the token endpoint (default: `client_secret_basic` with a
    /// secret, `private_key_jwt` with a key, else `none`).
    pub auth_method: Option<String>,
    /// PEM of the key for `private_key_jwt`, its algorithm and key id.
    pub private_key: Option<String>,
    pub algorithm: Option<String>,
    pub key_id: Option<String>,
    /// `authorization_code` (the default) or `client_credentials` (unattended).
    pub grant: Option<String>,
    /// Scopes for the client credentials grant.
    pub scope: Option<String>,
}

impl StaticClient {
    /// Read it from JSON text (`client_id`, `client_secret`, `token_endpoint_auth_method`,
    /// `private_key`, `private_key_file`, `algorithm`, `key_id`, `grant_type`, `scope`).
    pub fn parse(text: &str) -> Result<StaticClient, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let client_id = s("client_id").ok_or("`client_id` is missing")?;
        let private_key = match (s("private_key"), s("private_key_file")) {
            (Some(k), _) => Some(k),
            (None, Some(f)) => Some(
                crate::config::read_file(std::path::Path::new(&f))
                    .map_err(|e| format!("private_key_file {f}: {e}"))?,
            ),
            (None, None) => None,
        };
        Ok(StaticClient {
            client_id,
            client_secret: s("client_secret"),
            auth_method: s("token_endpoint_auth_method"),
            private_key,
            algorithm: s("algorithm").or_else(|| s("alg")),
            key_id: s("key_id").or_else(|| s("kid")),
            grant: s("grant_type"),
            scope: s("scope"),
        })
    }

    fn unattended(&self) -> bool {
        self.grant.as_deref() == Some("client_credentials")
    }

    fn info(&self) -> ClientInfo {
        let method = self.auth_method.clone().unwrap_or_else(|| {
            if self.private_key.is_some() {
                "private_key_jwt".into()
            } else if self.client_secret.is_some() {
                "client_secret_basic".into()
            } else {
                "none".into()
            }
        });
        ClientInfo {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            auth_method: method,
            redirect_uri: None,
            source: "static".into(),
        }
    }

    fn signing_key(&self) -> Option<flow::SigningKey> {
        let pem = self.private_key.clone()?;
        let alg = self
            .algorithm
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| flow::key_algorithm(&pem));
        Some(flow::SigningKey {
            pem,
            alg,
            kid: self.key_id.clone(),
        })
    }
}

/// How the proxy signs in to one server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub static_client: Option<StaticClient>,
    /// Members added to what dynamic registration sends.
    pub client_metadata: Map<String, Value>,
    /// A Client ID Metadata Document URL to use as the client id.
    pub metadata_url: Option<String>,
    /// `resource` to ask for instead of the server's own.
    pub resource: Option<String>,
    /// Leave `resource` out (for authorization servers that reject it).
    pub no_resource: bool,
    /// Scopes to ask for instead of those the server names.
    pub scopes: Option<Vec<String>>,
    pub callback_port: Option<u16>,
    pub auth_timeout: Duration,
    /// Time one request to an authorization server may take.
    pub request_timeout: Duration,
    /// Plain HTTP to an authorization server that is not on this machine.
    pub allow_http: bool,
    /// Use `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.
    pub enable_proxy: bool,
    /// Where tokens are kept (default: [`Store::default_dir`]).
    pub store_dir: Option<std::path::PathBuf>,
}

impl Settings {
    /// Read JSON given as text or as `@FILE`.
    pub fn json_arg(text: &str) -> Result<String, String> {
        match text.strip_prefix('@') {
            Some(path) => crate::config::read_file(std::path::Path::new(path))
                .map_err(|e| format!("{path}: {e}")),
            None => Ok(text.to_owned()),
        }
    }
}

/// A place for an [`OAuth`] in a server's settings; equal when the settings are.
#[derive(Clone, Default)]
pub struct Slot(pub Option<Arc<OAuth>>);

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => a.settings == b.settings && a.server == b.server,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "OAuth" } else { "NoAuth" })
    }
}

/// What one sign-in needs beyond the settings.
struct Attempt {
    /// Scopes added by a step-up.
    more_scopes: Vec<String>,
}

struct Inner {
    entry: Entry,
    /// Tokens issued in a row that the server refused at once.
    refused_fresh: u32,
    step_ups: u32,
}

/// Credentials for one remote server.
pub struct OAuth {
    server: Url,
    label: String,
    settings: Settings,
    store: Store,
    key: String,
    http: reqwest::Client,
    /// Whether requests wait for a sign-in (one server of its own) or are refused at once
    /// while it runs (a server among others in a gateway).
    waits: bool,
    inner: tokio::sync::Mutex<Inner>,
    /// The tokens requests use now (read without waiting for a sign-in or refresh).
    current: RwLock<Option<Tokens>>,
    /// A refresh ahead of expiry is running in the background.
    refreshing: std::sync::atomic::AtomicBool,
    /// The authorization URL waiting for the user.
    pending: Mutex<Option<String>>,
    /// Bumped at every sign-in.
    signed_in: watch::Sender<u64>,
    /// A sign-in running in the background (gateway mode).
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Why the last background sign-in failed (until the next one starts).
    failed: Mutex<Option<OAuthError>>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OAuth({})", self.label)
    }
}

impl OAuth {
    /// Credentials for `server`, with what is kept on disk loaded.
    pub fn new(server: &Url, settings: Settings, waits: bool) -> Arc<OAuth> {
        let store = Store::new(
            settings
                .store_dir
                .clone()
                .unwrap_or_else(Store::default_dir),
        );
        let shown = crate::transport::redact_url(server);
        let key = Store::key(&shown, settings.resource.as_deref());
        let entry = store.load(&key).unwrap_or_else(|| Entry {
            server: shown.clone(),
            resource: settings.resource.clone(),
            ..Default::default()
        });
        let current = entry.tokens.clone();
        let (signed_in, _) = watch::channel(0);
        Arc::new(OAuth {
            server: server.clone(),
            label: shown,
            http: flow::http_client(settings.enable_proxy, settings.request_timeout),
            settings,
            store,
            key,
            waits,
            inner: tokio::sync::Mutex::new(Inner {
                entry,
                refused_fresh: 0,
                step_ups: 0,
            }),
            current: RwLock::new(current),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            pending: Mutex::new(None),
            signed_in,
            background: Mutex::new(None),
            failed: Mutex::new(None),
        })
    }

    /// The authorization URL the user has to open, while a sign-in waits for them.
    pub fn pending_url(&self) -> Option<String> {
        self.pending.lock().ok()?.clone()
    }

    /// Fires (with a new number) whenever a sign-in completes.
    pub fn signed_in(&self) -> watch::Receiver<u64> {
        self.signed_in.subscribe()
    }

    /// The `Authorization` value to send now, if there is a token; one about to expire is
    /// refreshed first.
    /// The access token at hand, as it is: no refresh, no sign-in (for a last DELETE).
    pub fn current_token(&self) -> Option<String> {
        Some(self.current.read().ok()?.as_ref()?.access_token.clone())
    }

    /// The access token for the next request. A token close to its expiry is refreshed in
    /// the background while requests go on with it; only a request whose token has run out
    /// waits for the refresh.
    pub async fn authorization(self: &Arc<Self>) -> Option<String> {
        let tokens = self.current.read().ok()?.clone()?;
        if !tokens.needs_refresh() {
            return Some(tokens.access_token);
        }
        if tokens.expires_within(Duration::ZERO) {
            self.refresh_if_still(&tokens.access_token).await;
            return self.current_token();
        }
        if !self
            .refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let me = self.clone();
            let token = tokens.access_token.clone();
            tokio::spawn(async move {
                me.refresh_if_still(&token).await;
                me.refreshing
                    .store(false, std::sync::atomic::Ordering::Release);
            });
        }
        Some(tokens.access_token)
    }

    /// Refresh, unless another request got new tokens since `token` was read.
    async fn refresh_if_still(&self, token: &str) {
        let mut inner = self.inner.lock().await;
        let still = inner
            .entry
            .tokens
            .as_ref()
            .is_some_and(|t| t.access_token == token && t.needs_refresh());
        if still && let Err(e) = self.refresh(&mut inner).await {
            tracing::info!(server = %self.label, "refreshing the token before it expires failed: {e}");
        }
    }

    /// The server refused a request made with `sent` (`status` 401 or 403, with its
    /// `WWW-Authenticate`). `Ok`: a new token is there, try again; `Err`: why not.
    pub async fn rejected(
        self: &Arc<Self>,
        status: u16,
        www_authenticate: Option<&str>,
        sent: Option<&str>,
    ) -> Result<(), OAuthError> {
        let challenge = www_authenticate
            .map(discovery::parse_challenge)
            .unwrap_or_default();
        if status == 403 && challenge.error.as_deref() != Some("insufficient_scope") {
            return Err(OAuthError::Refused(
                "the server answered HTTP 403 Forbidden".into(),
            ));
        }
        let mut inner = self.inner.lock().await;
        let now = inner.entry.tokens.as_ref().map(|t| t.access_token.clone());
        if now.is_some() && now.as_deref() != sent {
            // Someone got a new token while this request was out.
            return Ok(());
        }
        if status == 403 {
            inner.step_ups += 1;
            if inner.step_ups > 2 {
                return Err(OAuthError::Refused(format!(
                    "the server still wants more scope ({}) after signing in again twice",
                    challenge.scope.as_deref().unwrap_or("unnamed")
                )));
            }
            let more: Vec<String> = challenge
                .scope
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            tracing::info!(server = %self.label, "the server wants more scope ({}); signing in again", more.join(" "));
            let got = self
                .get_tokens(&mut inner, &challenge, Attempt { more_scopes: more }, true)
                .await;
            drop(inner);
            return self.published(got).await;
        }
        if sent.is_some() {
            inner.refused_fresh += 1;
            if inner.refused_fresh > 2 {
                return Err(OAuthError::Refused(
                    "the server refused every new token it was given; check the server's authorization setup".into(),
                ));
            }
            // A refresh first, when there is a refresh token.
            match self.refresh(&mut inner).await {
                Ok(()) => return Ok(()),
                Err(OAuthError::Rejected(why)) => {
                    tracing::info!(server = %self.label, "the refresh token was refused ({why}); signing in again");
                    if let Some(t) = inner.entry.tokens.as_mut() {
                        t.refresh_token = None;
                    }
                    // An authorization server that forgot its registered client: register
                    // again rather than send the user to a page that cannot work.
                    if why.starts_with("invalid_client")
                        && inner
                            .entry
                            .client
                            .as_ref()
                            .is_some_and(|c| c.source == "registered")
                    {
                        inner.entry.client = None;
                    }
                }
                Err(_) => {}
            }
        }
        let got = self
            .get_tokens(
                &mut inner,
                &challenge,
                Attempt {
                    more_scopes: vec![],
                },
                false,
            )
            .await;
        drop(inner);
        self.published(got).await
    }

    /// A sign-in started in the background: wait a moment for the URL it publishes.
    async fn published(&self, got: Result<(), OAuthError>) -> Result<(), OAuthError> {
        match got {
            Err(OAuthError::NeedsSignIn(u)) if u.is_empty() => {
                for _ in 0..250 {
                    if let Some(url) = self.pending_url() {
                        return Err(OAuthError::NeedsSignIn(url));
                    }
                    // The sign-in ended before it had a page to open: say why.
                    if let Some(e) = self.failed.lock().ok().and_then(|f| f.clone()) {
                        return Err(OAuthError::Gave(format!(
                            "the server answered 401 Unauthorized and signing in failed: {e}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(OAuthError::NeedsSignIn(
                    "the sign-in page the proxy's log names".into(),
                ))
            }
            other => other,
        }
    }

    /// Refresh the tokens; `Err` when there is no refresh token or it was refused.
    async fn refresh(&self, inner: &mut Inner) -> Result<(), OAuthError> {
        let (Some(tokens), Some(meta), Some(client)) = (
            inner.entry.tokens.clone(),
            inner.entry.metadata.clone(),
            inner.entry.client.clone(),
        ) else {
            return Err(OAuthError::Refused("nothing to refresh with".into()));
        };
        let Some(rt) = tokens.refresh_token.clone() else {
            return Err(OAuthError::Refused("no refresh token".into()));
        };
        let resource = self.resource_of(&inner.entry);
        let fresh = flow::refresh(
            &self.http,
            &meta,
            &client,
            &rt,
            resource.as_deref(),
            &tokens.asked,
        )
        .await?;
        tracing::info!(server = %self.label, "token refreshed");
        if let Some(m) = crate::telemetry::get() {
            m.oauth_refreshes
                .get_or_create(&crate::telemetry::Server {
                    server: self.label.clone(),
                })
                .inc();
        }
        self.keep(inner, fresh);
        Ok(())
    }

    fn resource_of(&self, entry: &Entry) -> Option<String> {
        if self.settings.no_resource {
            None
        } else {
            self.settings
                .resource
                .clone()
                .or_else(|| entry.resource.clone())
        }
    }

    /// Keep new tokens: in memory, on disk, for the next request.
    fn keep(&self, inner: &mut Inner, tokens: Tokens) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(tokens.clone());
        }
        inner.entry.tokens = Some(tokens);
        if let Err(e) = self.store.save(&self.key, &inner.entry) {
            tracing::warn!(server = %self.label, "cannot keep the tokens in {}: {e}", self.store.dir().display());
        }
    }

    /// Get tokens without a refresh: the client credentials grant, or a sign-in.
    async fn get_tokens(
        self: &Arc<Self>,
        inner: &mut Inner,
        challenge: &Challenge,
        attempt: Attempt,
        step_up: bool,
    ) -> Result<(), OAuthError> {
        let unattended = self
            .settings
            .static_client
            .as_ref()
            .is_some_and(StaticClient::unattended);
        if unattended {
            return self.client_credentials(inner, challenge).await;
        }
        if !self.waits {
            // One server among others: it waits for its user in the background; nobody else
            // waits for it.
            let running = self
                .background
                .lock()
                .map(|b| b.as_ref().is_some_and(|t| !t.is_finished()))
                .unwrap_or(false);
            if !running {
                if let Ok(mut f) = self.failed.lock() {
                    *f = None;
                }
                let me = self.clone();
                let challenge = challenge.clone();
                let task = tokio::spawn(async move {
                    let mut inner = me.inner.lock().await;
                    if let Err(e) = me.sign_in(&mut inner, &challenge, attempt, step_up).await {
                        tracing::warn!(server = %me.label, "sign-in failed: {e}");
                        if let Ok(mut f) = me.failed.lock() {
                            *f = Some(e);
                        }
                    }
                });
                if let Ok(mut b) = self.background.lock() {
                    *b = Some(task);
                }
            }
            // The caller learns the URL once the background sign-in has published it.
            return Err(OAuthError::NeedsSignIn(String::new()));
        }
        self.sign_in(inner, challenge, attempt, step_up).await
    }

    async fn client_credentials(
        &self,
        inner: &mut Inner,
        challenge: &Challenge,
    ) -> Result<(), OAuthError> {
        let meta = self.metadata(inner, challenge).await?;
        let client = self.settings.static_client.clone().ok_or_else(|| {
            OAuthError::Config("the client credentials grant needs a client".into())
        })?;
        let scopes: Vec<String> = match &client.scope {
            Some(s) => s.split_whitespace().map(str::to_owned).collect(),
            None => self.scopes_for(inner, &meta.1, &[]),
        };
        let resource = self.resource_of(&inner.entry);
        let tokens = flow::client_credentials(
            &self.http,
            &meta.0,
            &client.info(),
            client.signing_key().as_ref(),
            &scopes,
            resource.as_deref(),
        )
        .await?;
        tracing::info!(server = %self.label, "got a token (client credentials)");
        inner.entry.client = Some(client.info());
        self.keep(inner, tokens);
        Ok(())
    }

    /// The authorization server's metadata (discovered now, or as kept), and the scopes the
    /// server named.
    async fn metadata(
        &self,
        inner: &mut Inner,
        challenge: &Challenge,
    ) -> Result<(ServerMetadata, Vec<String>), OAuthError> {
        let found = discovery::discover(
            &self.http,
            &self.server,
            challenge,
            self.settings.resource.as_deref(),
        )
        .await?;
        self.check_transport(&found.server)?;
        if inner.entry.issuer.as_deref() != Some(found.server.issuer.as_str()) {
            // Another authorization server: nothing of the old one's is used there.
            inner.entry.client = None;
            inner.entry.tokens = None;
        }
        inner.entry.issuer = Some(found.server.issuer.clone());
        inner.entry.metadata = Some(found.server.clone());
        inner.entry.resource = Some(found.resource.clone());
        Ok((found.server, found.scopes))
    }

    /// Plain HTTP only to this machine, unless `--allow-http`.
    fn check_transport(&self, meta: &ServerMetadata) -> Result<(), OAuthError> {
        if self.settings.allow_http {
            return Ok(());
        }
        for e in [
            Some(&meta.issuer),
            meta.authorization_endpoint.as_ref(),
            meta.token_endpoint.as_ref(),
            meta.registration_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(u) = Url::parse(e)
                && u.scheme() == "http"
                && !matches!(
                    u.host_str(),
                    Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
                )
            {
                return Err(OAuthError::Refused(format!(
                    "the authorization server uses plain HTTP ({e}); allow it with --allow-http"
                )));
            }
        }
        Ok(())
    }

    /// The scopes to ask for: configured, else the server's (challenge, then its metadata),
    /// plus step-up ones, plus `offline_access` when the authorization server offers it.
    fn scopes_for(&self, inner: &Inner, named: &[String], more: &[String]) -> Vec<String> {
        let mut scopes: Vec<String> = self
            .settings
            .scopes
            .clone()
            .unwrap_or_else(|| named.to_vec());
        let mut add = |s: &str| {
            if !s.is_empty() && !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_owned());
            }
        };
        if !more.is_empty() {
            // A step-up keeps what was asked and granted before.
            if let Some(t) = &inner.entry.tokens {
                for s in &t.asked {
                    add(s);
                }
                for s in t.scope.as_deref().unwrap_or("").split_whitespace() {
                    add(s);
                }
            }
            for s in more {
                add(s);
            }
        }
        let offline = inner
            .entry
            .metadata
            .as_ref()
            .and_then(|m| m.scopes_supported.as_ref())
            .is_some_and(|s| s.iter().any(|x| x == "offline_access"));
        if offline && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".into());
        }
        scopes
    }

    /// The callback port: configured, else one derived from the server (so that a
    /// registered redirect URI stays valid across restarts).
    fn callback_port(&self) -> u16 {
        if let Some(p) = self.settings.callback_port {
            return p;
        }
        let d = ring::digest::digest(&ring::digest::SHA256, self.label.as_bytes());
        let n = u16::from_be_bytes([d.as_ref()[0], d.as_ref()[1]]);
        33_000 + n % 20_000
    }

    /// Sign in with the user's browser.
    async fn sign_in(
        &self,
        inner: &mut Inner,
        challenge: &Challenge,
        attempt: Attempt,
        step_up: bool,
    ) -> Result<(), OAuthError> {
        // One sign-in for every proxy of this server: wait for a running one, then use its
        // tokens if it got some.
        let (_lock, first) = self
            .store
            .lock(
                &self.key,
                self.settings.auth_timeout + Duration::from_secs(30),
            )
            .await
            .map_err(OAuthError::Gave)?;
        if !first
            && !step_up
            && let Some(entry) = self.store.load(&self.key)
            && let Some(t) = entry.tokens.clone()
            && inner.entry.tokens.as_ref().map(|x| &x.access_token) != Some(&t.access_token)
        {
            tracing::info!(server = %self.label, "signed in by another mcp-proxy; using its tokens");
            inner.entry = entry;
            if let Ok(mut c) = self.current.write() {
                *c = Some(t);
            }
            self.signed_in.send_modify(|n| *n += 1);
            return Ok(());
        }
        let (meta, named) = self.metadata(inner, challenge).await?;
        // The loopback callback first: its port is in the redirect URI.
        let wanted = self.callback_port();
        let callback = match flow::Callback::bind(wanted).await {
            Ok(c) => c,
            Err(e) if self.settings.callback_port.is_some() => return Err(e),
            Err(_) => {
                tracing::info!(server = %self.label, "callback port {wanted} is taken; using another (the client registers again)");
                flow::Callback::bind(0).await?
            }
        };
        let redirect = callback.redirect_uri.clone();
        let client = self.client_for(inner, &meta, &redirect).await?;
        let scopes = self.scopes_for(inner, &named, &attempt.more_scopes);
        let resource = self.resource_of(&inner.entry);
        let auth = flow::authorization(&meta, &client, &redirect, &scopes, resource.as_deref())?;
        let url = auth.url.to_string();
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(url.clone());
        }
        eprintln!("mcp-proxy: sign in to {}: {url}", self.label);
        if !flow::open_browser(&url) {
            tracing::info!(server = %self.label, "no browser could be opened; open the URL above");
        }
        let answer =
            tokio::time::timeout(self.settings.auth_timeout, callback.wait(&auth.state)).await;
        if let Ok(mut p) = self.pending.lock() {
            *p = None;
        }
        let (code, iss) = match answer {
            Err(_) => {
                return Err(OAuthError::Gave(format!(
                    "nobody finished signing in within {}s (--auth-timeout); the next request starts again",
                    self.settings.auth_timeout.as_secs()
                )));
            }
            Ok(r) => r?,
        };
        // RFC 9207: the answer must come from the authorization server asked.
        match (&iss, meta.authorization_response_iss_parameter_supported) {
            (Some(i), _) if *i != meta.issuer => {
                return Err(OAuthError::Refused(format!(
                    "the sign-in answer names the issuer {i}, not {}; refused (a mix-up attack?)",
                    meta.issuer
                )));
            }
            (None, true) => {
                return Err(OAuthError::Refused(
                    "the sign-in answer has no `iss`, which its authorization server promises; refused".into(),
                ));
            }
            _ => {}
        }
        let answer = flow::Code {
            code,
            verifier: auth.verifier,
            redirect,
        };
        let tokens = flow::exchange_code(
            &self.http,
            &meta,
            &client,
            answer,
            resource.as_deref(),
            &scopes,
        )
        .await?;
        tracing::info!(server = %self.label, "signed in");
        inner.refused_fresh = 0;
        self.keep(inner, tokens);
        self.signed_in.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The client identity to sign in with, in the specification's order: pre-registered, a
    /// Client ID Metadata Document, dynamic registration (again when the redirect URI changed).
    async fn client_for(
        &self,
        inner: &mut Inner,
        meta: &ServerMetadata,
        redirect: &str,
    ) -> Result<ClientInfo, OAuthError> {
        if let Some(s) = &self.settings.static_client {
            let c = s.info();
            inner.entry.client = Some(c.clone());
            return Ok(c);
        }
        if let Some(url) = &self.settings.metadata_url
            && meta.client_id_metadata_document_supported
        {
            let c = ClientInfo {
                client_id: url.clone(),
                client_secret: None,
                auth_method: "none".into(),
                redirect_uri: None,
                source: "metadata-document".into(),
            };
            inner.entry.client = Some(c.clone());
            return Ok(c);
        }
        if let Some(c) = &inner.entry.client
            && c.source == "registered"
            && c.redirect_uri.as_deref() == Some(redirect)
        {
            return Ok(c.clone());
        }
        let c = flow::register(&self.http, meta, redirect, &self.settings.client_metadata).await?;
        tracing::info!(server = %self.label, "registered as a client of {}", meta.issuer);
        inner.entry.client = Some(c.clone());
        let _ = self.store.save(&self.key, &inner.entry);
        Ok(c)
    }

    /// Sign in now (ahead of time, from the command line): a 401 is provoked to learn how.
    pub async fn login(self: &Arc<Self>) -> Result<(), OAuthError> {
        let resp = self
            .http
            .post(self.server.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-proxy","version":"0"}}}"#)
            .send()
            .await
            .map_err(|e| OAuthError::Unreachable(format!("{}: {}", self.label, why(&e))))?;
        let www = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let challenge = www
            .as_deref()
            .map(discovery::parse_challenge)
            .unwrap_or_default();
        let mut inner = self.inner.lock().await;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED && inner.entry.tokens.is_none() {
            tracing::info!(server = %self.label, "the server did not ask for a sign-in (HTTP {}); signing in anyway", resp.status());
        }
        let unattended = self
            .settings
            .static_client
            .as_ref()
            .is_some_and(StaticClient::unattended);
        if unattended {
            return self.client_credentials(&mut inner, &challenge).await;
        }
        self.sign_in(
            &mut inner,
            &challenge,
            Attempt {
                more_scopes: vec![],
            },
            true,
        )
        .await
    }
}

/// The settings' store, for listing and signing out.
pub fn store_of(settings: &Settings) -> Store {
    Store::new(
        settings
            .store_dir
            .clone()
            .unwrap_or_else(Store::default_dir),
    )
}
