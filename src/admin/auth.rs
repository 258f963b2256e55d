//! Who may use the console: a user name and password (`ADMIN_USERNAME`, `ADMIN_PASSWORD`) that
//! gives a signed session cookie, or a key or token of an identity named by
//! `--admin-identity`.
//!
//! The cookie holds the user, an expiry and a random nonce, signed with HMAC-SHA256 under the
//! session secret; it is HttpOnly and SameSite=Strict, so that no script and no other site can
//! use it. Every change must also carry `X-CSRF-Token`, a value derived from the nonce that
//! only the page's own script can read (from the sign-in answer or `/admin/api/session`), and
//! a request whose `Origin` is another site is refused. Signing out revokes the nonce.
//! Failed sign-ins are answered after a second, and beyond `--admin-sign-in-attempts` per
//! address per 10 minutes with HTTP 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::Settings;

pub const COOKIE: &str = "mcp_proxy_admin";
/// The window failed sign-ins are counted in.
const WINDOW: Duration = Duration::from_secs(600);
/// How long a failed sign-in waits before it is answered.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    nonce: String,
    expires: u64,
    /// Signed in with a key or token: no cookie, so no cross-site risk and no CSRF token.
    pub by_header: bool,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    u: String,
    e: u64,
    n: String,
}

pub struct Auth {
    key: hmac::Key,
    timeout: Duration,
    username: String,
    /// SHA-256 of the password (compared in constant time); `None`: no password sign-in
    /// (only identities of `--admin-identity`).
    password: Option<[u8; 32]>,
    attempts: u32,
    /// How long a failed sign-in waits before it is answered.
    delay: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Nonces signed out, until they would have expired anyway.
    revoked: Mutex<HashMap<String, u64>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn digest(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The secret kept in `path` (made once: 32 random bytes, hex, mode 0600).
pub fn stored_secret(path: &Path) -> Result<Vec<u8>, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let t = text.trim();
        if t.len() >= 32 {
            return Ok(t.as_bytes().to_vec());
        }
    }
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| {
        format!(
            "cannot store the session secret in {}: {e} (or set SESSION_SECRET)",
            path.display()
        )
    })?;
    std::io::Write::write_all(&mut f, format!("{hex}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    tracing::info!("admin console: made a session secret in {}", path.display());
    Ok(hex.into_bytes())
}

pub enum SignIn {
    Ok { cookie: String, session: Session },
    Wrong,
    TooMany { retry_after: u64 },
}

impl Auth {
    pub fn new(s: &Settings) -> Auth {
        Auth {
            key: hmac::Key::new(hmac::HMAC_SHA256, &s.secret),
            timeout: s.session_timeout,
            username: s.username.clone(),
            password: (!s.password.is_empty()).then(|| digest(&s.password)),
            attempts: s.sign_in_attempts,
            delay: FAILURE_DELAY,
            failures: Default::default(),
            revoked: Default::default(),
        }
    }

    fn csrf_of(&self, nonce: &str) -> String {
        let tag = hmac::sign(&self.key, format!("csrf:{nonce}").as_bytes());
        B64.encode(&tag.as_ref()[..18])
    }

    /// Check a user name and password from `from`.
    pub async fn sign_in(&self, from: IpAddr, user: &str, password: &str) -> SignIn {
        if let Some(retry_after) = self.blocked(from) {
            return SignIn::TooMany { retry_after };
        }
        use subtle::ConstantTimeEq;
        let user_ok = digest(user).ct_eq(&digest(&self.username));
        let right = match &self.password {
            Some(p) => bool::from(user_ok & digest(password).ct_eq(p)),
            None => false,
        };
        self.settle(from, right.then_some(user)).await
    }

    /// Sign in as an identity the caller proved with a key or token (`None`: it did not).
    pub async fn sign_in_as(&self, from: IpAddr, proved: Option<&str>) -> SignIn {
        if let Some(retry_after) = self.blocked(from) {
            return SignIn::TooMany { retry_after };
        }
        self.settle(from, proved).await
    }

    /// Seconds until `from` may try again, when it failed too often.
    fn blocked(&self, from: IpAddr) -> Option<u64> {
        let t = Instant::now();
        let mut f = self.failures.lock().ok()?;
        f.retain(|_, (since, _)| t.duration_since(*since) < WINDOW);
        let (since, n) = f.get(&from)?;
        (*n >= self.attempts).then(|| WINDOW.saturating_sub(t.duration_since(*since)).as_secs() + 1)
    }

    /// A session for `user` when the attempt was right; else count it and answer late.
    async fn settle(&self, from: IpAddr, user: Option<&str>) -> SignIn {
        if let Some(user) = user {
            if let Ok(mut f) = self.failures.lock() {
                f.remove(&from);
            }
            let (cookie, session) = self.issue(user);
            return SignIn::Ok { cookie, session };
        }
        if let Ok(mut f) = self.failures.lock() {
            let e = f.entry(from).or_insert((Instant::now(), 0));
            e.1 += 1;
        }
        tokio::time::sleep(self.delay).await;
        SignIn::Wrong
    }

    /// A new session for `user`: the cookie's value, and the session.
    fn issue(&self, user: &str) -> (String, Session) {
        let nonce = B64.encode(rand::random::<[u8; 18]>());
        let expires = now() + self.timeout.as_secs();
        let claims = Claims {
            u: user.to_owned(),
            e: expires,
            n: nonce.clone(),
        };
        let body = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let tag = hmac::sign(&self.key, body.as_bytes());
        let value = format!("{body}.{}", B64.encode(tag.as_ref()));
        let session = Session {
            user: user.to_owned(),
            csrf: self.csrf_of(&nonce),
            nonce,
            expires,
            by_header: false,
        };
        (value, session)
    }

    /// The session a cookie value stands for, if it is genuine, current and not signed out.
    pub fn session(&self, value: &str) -> Option<Session> {
        let (body, tag) = value.split_once('.')?;
        let tag = B64.decode(tag).ok()?;
        hmac::verify(&self.key, body.as_bytes(), &tag).ok()?;
        let claims: Claims = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        if claims.e <= now() {
            return None;
        }
        if self
            .revoked
            .lock()
            .ok()
            .is_some_and(|r| r.contains_key(&claims.n))
        {
            return None;
        }
        Some(Session {
            user: claims.u,
            csrf: self.csrf_of(&claims.n),
            nonce: claims.n,
            expires: claims.e,
            by_header: false,
        })
    }

    /// End a session: its cookie is no longer taken, even by someone who kept a copy.
    pub fn sign_out(&self, s: &Session) {
        if let Ok(mut r) = self.revoked.lock() {
            let t = now();
            r.retain(|_, e| *e > t);
            r.insert(s.nonce.clone(), s.expires);
        }
    }

    /// `Set-Cookie` for a new session.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}",
            self.timeout.as_secs()
        )
    }

    /// `Set-Cookie` that removes it.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// A session for a key's or token's identity.
    pub fn by_identity(name: &str) -> Session {
        Session {
            user: name.to_owned(),
            csrf: String::new(),
            nonce: String::new(),
            expires: 0,
            by_header: true,
        }
    }
}

/// The cookie's value in `headers`.
pub fn cookie_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Whether the request comes from the console's own page: an `Origin` (or, without one, a
/// `Sec-Fetch-Site`) that says another site sent it is refused.
pub fn same_origin(headers: &http::HeaderMap) -> bool {
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let Ok(o) = origin.to_str() else { return false };
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"));
        return rest.is_some_and(|r| r.eq_ignore_ascii_case(host));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => matches!(site, "same-origin" | "none"),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(timeout: u64) -> Auth {
        Auth {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef"),
            timeout: Duration::from_secs(timeout),
            username: "admin".into(),
            password: Some(digest("s3cret!")),
            attempts: 3,
            delay: Duration::from_millis(50),
            failures: Default::default(),
            revoked: Default::default(),
        }
    }

    #[test]
    fn a_cookie_is_taken_only_as_signed_and_until_signed_out() {
        let a = auth(60);
        let (value, s) = a.issue("admin");
        let back = a.session(&value).expect("genuine");
        assert_eq!(back.user, "admin");
        assert_eq!(back.csrf, s.csrf);
        // Changed by one character: refused.
        let mut forged = value.clone();
        let last = forged.pop().unwrap_or('A');
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(a.session(&forged).is_none());
        // Another user's claims under the old signature: refused.
        let (body, tag) = value.split_once('.').unwrap_or_default();
        let mut claims: Claims =
            serde_json::from_slice(&B64.decode(body).unwrap_or_default()).expect("claims");
        claims.u = "root".into();
        let other = format!(
            "{}.{tag}",
            B64.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        assert!(a.session(&other).is_none());
        // Signed with another secret: refused.
        let b = Auth {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"another secret, also 32 bytes..."),
            ..auth(60)
        };
        assert!(b.session(&value).is_none());
        a.sign_out(&back);
        assert!(a.session(&value).is_none());
    }

    #[test]
    fn an_expired_cookie_is_refused() {
        let a = auth(0);
        let (value, _) = a.issue("admin");
        assert!(a.session(&value).is_none());
    }

    #[tokio::test]
    async fn wrong_passwords_are_slowed_and_then_refused() {
        let a = auth(60);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let t = Instant::now();
        assert!(matches!(
            a.sign_in(ip, "admin", "nope").await,
            SignIn::Wrong
        ));
        assert!(t.elapsed() >= a.delay);
        assert!(matches!(
            a.sign_in(ip, "root", "s3cret!").await,
            SignIn::Wrong
        ));
        assert!(matches!(a.sign_in(ip, "admin", "").await, SignIn::Wrong));
        // The right password no longer helps from that address.
        assert!(matches!(
            a.sign_in(ip, "admin", "s3cret!").await,
            SignIn::TooMany { .. }
        ));
        // Without a password, no password signs in, not even an empty one.
        let none = Auth {
            password: None,
            ..auth(60)
        };
        let third = IpAddr::from([127, 0, 0, 3]);
        assert!(matches!(
            none.sign_in(third, "admin", "").await,
            SignIn::Wrong
        ));
        let other: IpAddr = IpAddr::from([127, 0, 0, 2]);
        assert!(matches!(
            a.sign_in(other, "admin", "s3cret!").await,
            SignIn::Ok { .. }
        ));
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_static("127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(http::header::ORIGIN);
        h.insert(
            "sec-fetch-site",
            http::HeaderValue::from_static("cross-site"),
        );
        assert!(!same_origin(&h));
    }
}
