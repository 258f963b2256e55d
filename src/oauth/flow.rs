//! The grants: authorization code with PKCE (the browser step and its loopback callback),
//! refresh, and client credentials; and getting a client identity (registration).
//!
//! The OAuth mechanics (PKCE, `state`, token requests and responses) are the `oauth2`
//! crate's; client assertions for `private_key_jwt` are signed with `jsonwebtoken`.

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    RedirectUrl, RefreshToken, Scope, TokenResponse, TokenUrl,
};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::OAuthError;
use super::discovery::ServerMetadata;
use super::store::{ClientInfo, Tokens, now};

/// What the client credentials grant signs with, for `private_key_jwt`.
#[derive(Clone)]
pub struct SigningKey {
    pub pem: String,
    /// `RS256`, `ES256`, …
    pub alg: jsonwebtoken::Algorithm,
    pub kid: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

fn token_url(meta: &ServerMetadata) -> Result<TokenUrl, OAuthError> {
    let t = meta.token_endpoint.clone().ok_or_else(|| {
        OAuthError::Refused(format!(
            "the authorization server {} has no token endpoint",
            meta.issuer
        ))
    })?;
    TokenUrl::new(t).map_err(|e| OAuthError::Refused(format!("invalid token endpoint: {e}")))
}

/// A token request's client authentication, from how the client was registered.
fn client_parts(client: &ClientInfo) -> (ClientId, Option<ClientSecret>, AuthType) {
    let id = ClientId::new(client.client_id.clone());
    match (client.auth_method.as_str(), &client.client_secret) {
        ("client_secret_basic", Some(s)) => {
            (id, Some(ClientSecret::new(s.clone())), AuthType::BasicAuth)
        }
        ("client_secret_post", Some(s)) => (
            id,
            Some(ClientSecret::new(s.clone())),
            AuthType::RequestBody,
        ),
        _ => (id, None, AuthType::RequestBody),
    }
}

/// What a token endpoint said, as kept.
fn tokens_of(
    r: &oauth2::basic::BasicTokenResponse,
    asked: &[String],
    old_refresh: Option<&str>,
) -> Tokens {
    Tokens {
        access_token: r.access_token().secret().clone(),
        refresh_token: r
            .refresh_token()
            .map(|t| t.secret().clone())
            .or_else(|| old_refresh.map(str::to_owned)),
        expires_at: r.expires_in().map(|d| now() + d.as_secs()),
        issued_at: Some(now()),
        scope: r.scopes().map(|s| {
            s.iter()
                .map(|x| x.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        }),
        asked: asked.to_vec(),
    }
}

fn token_error(
    e: oauth2::RequestTokenError<
        oauth2::HttpClientError<reqwest::Error>,
        oauth2::basic::BasicErrorResponse,
    >,
) -> OAuthError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            let code = r.error().to_string();
            let why = match r.error_description() {
                Some(d) => format!("{code}: {d}"),
                None => code.clone(),
            };
            if code == "invalid_grant" || code == "invalid_client" {
                OAuthError::Rejected(why)
            } else {
                OAuthError::Refused(format!("the token endpoint refused: {why}"))
            }
        }
        oauth2::RequestTokenError::Request(e) => {
            OAuthError::Unreachable(format!("the token endpoint could not be reached: {e}"))
        }
        oauth2::RequestTokenError::Parse(e, _) => OAuthError::Refused(format!(
            "the token endpoint answered something that is not a token: {e}"
        )),
        oauth2::RequestTokenError::Other(e) => {
            OAuthError::Refused(format!("token request failed: {e}"))
        }
    }
}

/// A signed client assertion (RFC 7523) for `private_key_jwt`.
fn client_assertion(
    client_id: &str,
    audience: &str,
    key: &SigningKey,
) -> Result<String, OAuthError> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iss: &'a str,
        sub: &'a str,
        aud: &'a str,
        iat: u64,
        exp: u64,
        jti: String,
    }
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = key.kid.clone();
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat: now(),
        exp: now() + 300,
        jti: format!("{:032x}", rand::random::<u128>()),
    };
    let encoding = match key.alg {
        jsonwebtoken::Algorithm::RS256
        | jsonwebtoken::Algorithm::RS384
        | jsonwebtoken::Algorithm::RS512
        | jsonwebtoken::Algorithm::PS256
        | jsonwebtoken::Algorithm::PS384
        | jsonwebtoken::Algorithm::PS512 => {
            jsonwebtoken::EncodingKey::from_rsa_pem(key.pem.as_bytes())
        }
        jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => {
            jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes())
        }
        jsonwebtoken::Algorithm::EdDSA => {
            jsonwebtoken::EncodingKey::from_ed_pem(key.pem.as_bytes())
        }
        _ => {
            return Err(OAuthError::Config(
                "private_key_jwt needs an asymmetric algorithm (RS256, ES256, EdDSA, …)".into(),
            ));
        }
    }
    .map_err(|e| {
        let hint = if key.pem.contains("BEGIN EC PRIVATE KEY") {
            " (EC keys are read as PKCS#8: convert with `openssl pkcs8 -topk8 -nocrypt -in KEY.pem`)"
        } else {
            ""
        };
        OAuthError::Config(format!(
            "the private key does not read as PEM for {:?}: {e}{hint}",
            key.alg
        ))
    })?;
    jsonwebtoken::encode(&header, &claims, &encoding)
        .map_err(|e| OAuthError::Config(format!("cannot sign the client assertion: {e}")))
}

/// The algorithm a private key signs with when the settings name none: ES256 for an EC key
/// (SEC1 or PKCS#8), EdDSA for an Ed25519 key, else RS256.
pub fn key_algorithm(pem: &str) -> jsonwebtoken::Algorithm {
    if pem.contains("BEGIN EC PRIVATE KEY")
        || jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).is_ok()
    {
        jsonwebtoken::Algorithm::ES256
    } else if jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).is_ok() {
        jsonwebtoken::Algorithm::EdDSA
    } else {
        jsonwebtoken::Algorithm::RS256
    }
}

/// An HTTP client for the authorization server: no redirects (RFC 6749 §3.1.2 and the
/// `oauth2` crate's advice), the usual timeouts.
pub fn http_client(enable_proxy: bool, timeout: Duration) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout);
    if !enable_proxy {
        b = b.no_proxy();
    }
    b.build().unwrap_or_default()
}

/// An authorization code as the callback brought it, with what proves it is ours.
pub struct Code {
    pub code: String,
    pub verifier: oauth2::PkceCodeVerifier,
    pub redirect: String,
}

/// Exchange an authorization code.
pub async fn exchange_code(
    http: &reqwest::Client,
    meta: &ServerMetadata,
    client: &ClientInfo,
    answer: Code,
    resource: Option<&str>,
    asked: &[String],
) -> Result<Tokens, OAuthError> {
    let Code {
        code,
        verifier,
        redirect,
    } = answer;
    let (id, secret, auth) = client_parts(client);
    let mut c = BasicClient::new(id)
        .set_auth_type(auth)
        .set_token_uri(token_url(meta)?)
        .set_redirect_uri(
            RedirectUrl::new(redirect)
                .map_err(|e| OAuthError::Config(format!("invalid redirect URI: {e}")))?,
        );
    if let Some(s) = secret {
        c = c.set_client_secret(s);
    }
    let mut req = c
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier);
    if let Some(r) = resource {
        req = req.add_extra_param("resource", r.to_owned());
    }
    let r = req.request_async(http).await.map_err(token_error)?;
    Ok(tokens_of(&r, asked, None))
}

/// Refresh tokens.
pub async fn refresh(
    http: &reqwest::Client,
    meta: &ServerMetadata,
    client: &ClientInfo,
    refresh_token: &str,
    resource: Option<&str>,
    asked: &[String],
) -> Result<Tokens, OAuthError> {
    let (id, secret, auth) = client_parts(client);
    let mut c = BasicClient::new(id)
        .set_auth_type(auth)
        .set_token_uri(token_url(meta)?);
    if let Some(s) = secret {
        c = c.set_client_secret(s);
    }
    let token = RefreshToken::new(refresh_token.to_owned());
    let mut req = c.exchange_refresh_token(&token);
    if let Some(r) = resource {
        req = req.add_extra_param("resource", r.to_owned());
    }
    let r = req.request_async(http).await.map_err(token_error)?;
    Ok(tokens_of(&r, asked, Some(refresh_token)))
}

/// The client credentials grant.
pub async fn client_credentials(
    http: &reqwest::Client,
    meta: &ServerMetadata,
    client: &ClientInfo,
    key: Option<&SigningKey>,
    scopes: &[String],
    resource: Option<&str>,
) -> Result<Tokens, OAuthError> {
    let token_endpoint = token_url(meta)?;
    let (id, secret, auth) = client_parts(client);
    let mut c = BasicClient::new(id)
        .set_auth_type(auth)
        .set_token_uri(token_endpoint.clone());
    if let Some(s) = secret {
        c = c.set_client_secret(s);
    }
    let mut req = c.exchange_client_credentials();
    for s in scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    if let Some(r) = resource {
        req = req.add_extra_param("resource", r.to_owned());
    }
    if client.auth_method == "private_key_jwt" {
        let key = key.ok_or_else(|| {
            OAuthError::Config(
                "private_key_jwt needs a private key (`private_key` in --static-oauth-client-info)"
                    .into(),
            )
        })?;
        // The audience is the authorization server's issuer (RFC 7523 allows the token
        // endpoint as well; issuers are what current servers expect).
        let assertion = client_assertion(&client.client_id, &meta.issuer, key)?;
        req = req
            .add_extra_param(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .add_extra_param("client_assertion", assertion);
    }
    let r = req.request_async(http).await.map_err(token_error)?;
    Ok(tokens_of(&r, scopes, None))
}

/// Dynamic client registration (RFC 7591): a public client for the authorization code grant
/// at `redirect`, with `extra` members added (`--static-oauth-client-metadata`).
pub async fn register(
    http: &reqwest::Client,
    meta: &ServerMetadata,
    redirect: &str,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> Result<ClientInfo, OAuthError> {
    let endpoint = meta.registration_endpoint.clone().ok_or_else(|| {
        OAuthError::Refused(format!(
            "the authorization server {} offers no dynamic client registration; give a client with --static-oauth-client-info",
            meta.issuer
        ))
    })?;
    let mut body = serde_json::json!({
        "client_name": "mcp-proxy",
        "application_type": "native",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    if let serde_json::Value::Object(b) = &mut body {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    let resp = http
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| OAuthError::Unreachable(format!("client registration: {}", super::why(&e))))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(OAuthError::Refused(format!(
            "client registration answered HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Registered {
        client_id: String,
        client_secret: Option<String>,
        token_endpoint_auth_method: Option<String>,
    }
    let r: Registered = serde_json::from_str(&text)
        .map_err(|e| OAuthError::Refused(format!("client registration answered no client: {e}")))?;
    let method = r.token_endpoint_auth_method.unwrap_or_else(|| {
        if r.client_secret.is_some() {
            "client_secret_basic".into()
        } else {
            "none".into()
        }
    });
    Ok(ClientInfo {
        client_id: r.client_id,
        client_secret: r.client_secret,
        auth_method: method,
        redirect_uri: Some(redirect.to_owned()),
        source: "registered".into(),
    })
}

/// The loopback listener the authorization server redirects the browser to.
pub struct Callback {
    listener: tokio::net::TcpListener,
    pub redirect_uri: String,
}

impl Callback {
    /// Listen on 127.0.0.1:`port` (0: any free port).
    pub async fn bind(port: u16) -> Result<Callback, OAuthError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| {
                OAuthError::Config(format!(
                    "cannot listen for the sign-in callback on 127.0.0.1:{port}: {e} (choose another with --oauth-callback-port)"
                ))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| OAuthError::Config(format!("callback listener: {e}")))?
            .port();
        Ok(Callback {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
        })
    }

    /// Wait for the one redirect with `state`; every other request gets an error page and
    /// changes nothing. The authorization code, and the `iss` the response named.
    pub async fn wait(self, state: &str) -> Result<(String, Option<String>), OAuthError> {
        loop {
            let (mut conn, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| OAuthError::Config(format!("callback listener: {e}")))?;
            let mut buf = vec![0u8; 16 * 1024];
            let mut got = 0;
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let n = conn.read(&mut buf[got..]).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got += n;
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") || got == buf.len() {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                continue;
            }
            let head = String::from_utf8_lossy(&buf[..got]).to_string();
            let target = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/");
            let url = Url::parse(&format!("http://127.0.0.1{target}")).ok();
            let params: std::collections::HashMap<String, String> = url
                .as_ref()
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
            let path_ok = url.as_ref().is_some_and(|u| u.path() == "/callback");
            let state_ok = path_ok
                && params
                    .get("state")
                    .is_some_and(|s| constant_time_eq(s.as_bytes(), state.as_bytes()));
            if !state_ok {
                respond(
                    &mut conn,
                    400,
                    "This is not the sign-in this proxy is waiting for. Nothing was changed.",
                )
                .await;
                continue;
            }
            if let Some(err) = params.get("error") {
                let text = match params.get("error_description") {
                    Some(d) => format!("{err}: {d}"),
                    None => err.clone(),
                };
                respond(
                    &mut conn,
                    200,
                    &format!("Sign-in did not complete ({text}). You can close this window."),
                )
                .await;
                return Err(if err == "access_denied" {
                    OAuthError::Denied(text)
                } else {
                    OAuthError::Refused(format!("the authorization server answered {text}"))
                });
            }
            let Some(code) = params.get("code").cloned() else {
                respond(&mut conn, 400, "The sign-in answer has no code.").await;
                return Err(OAuthError::Refused("the sign-in answer had no code".into()));
            };
            respond(
                &mut conn,
                200,
                "Signed in. You can close this window and return to your MCP client.",
            )
            .await;
            return Ok((code, params.get("iss").cloned()));
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn respond(conn: &mut tokio::net::TcpStream, status: u16, text: &str) {
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mcp-proxy</title></head><body><p>{}</p></body></html>",
        text.replace('&', "&amp;").replace('<', "&lt;")
    );
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// The authorization URL for a sign-in, and what the callback must bring back.
pub struct Authorization {
    pub url: Url,
    pub state: String,
    pub verifier: oauth2::PkceCodeVerifier,
}

/// Build the authorization request: PKCE S256, `state`, scopes, `resource`.
pub fn authorization(
    meta: &ServerMetadata,
    client: &ClientInfo,
    redirect: &str,
    scopes: &[String],
    resource: Option<&str>,
) -> Result<Authorization, OAuthError> {
    let auth = meta.authorization_endpoint.clone().ok_or_else(|| {
        OAuthError::Refused(format!(
            "the authorization server {} has no authorization endpoint",
            meta.issuer
        ))
    })?;
    let c = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(auth)
                .map_err(|e| OAuthError::Refused(format!("invalid authorization endpoint: {e}")))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect.to_owned())
                .map_err(|e| OAuthError::Config(format!("invalid redirect URI: {e}")))?,
        );
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = c
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge);
    for s in scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    if let Some(r) = resource {
        req = req.add_extra_param("resource", r.to_owned());
    }
    let (url, state) = req.url();
    Ok(Authorization {
        url,
        state: state.secret().clone(),
        verifier,
    })
}

/// Open `url` in the user's browser: `$BROWSER` (a command that takes the URL last), else the
/// platform's opener. Whether one was started.
pub fn open_browser(url: &str) -> bool {
    let command = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let (program, mut args) = match command {
        Some(b) => {
            let mut words = shlex::split(&b).unwrap_or_else(|| vec![b.clone()]);
            if words.is_empty() {
                return false;
            }
            let p = words.remove(0);
            (p, words)
        }
        None if cfg!(target_os = "macos") => ("open".to_owned(), vec![]),
        None => ("xdg-open".to_owned(), vec![]),
    };
    args.push(url.to_owned());
    std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reap it whenever it ends.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys made for this test only.
    const EC_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRcfn1H3VJcFFaHG0
KykMcbf5W7l70k+9koob0NLIIUihRANCAARDVnn/Qg8xnK0GjcWXY8lZoA0xnhS1
QZwwev1XVpVrBF/kcseWRc8eFG20y9o/UiowjHE0ivcjDBsevPSOqmNu
-----END PRIVATE KEY-----
";
    const EC_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEXH59R91SXBRWhxtCspDHG3+Vu5e9JPvZKKG9DSyCFIoAoGCCqGSM49
AwEHoUQDQgAEQ1Z5/0IPMZytBo3Fl2PJWaANMZ4UtUGcMHr9V1aVawRf5HLHlkXP
HhRttMvaP1IqMIxxNIr3IwwbHrz0jqpjbg==
-----END EC PRIVATE KEY-----
";
    const ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIJJNUWwMMTHKCSgUTCKonuSRIyJ//7GtX3hWp0kmSG9
-----END PRIVATE KEY-----
";
    const RSA: &str = "-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQC4EDBOjr8oHrxB
GhjFzcrFCUHV/x8QCStv2UnJWhAmXIBc5TsrAPpIw+0CfkNeknFtLFCVuXuANWHX
UCPmeijFQOo4GulC5P/+XHL7XKC6N6/pdNVRNGxDcLr0sUIFqVwcj8rDpu0ywfiY
zZN1szVaChNrAy2r18LeRp4HkuVkZ+j/yPDRGz15YspD9lCObkLa2C3V1W31Bv9k
ODOdlf9QO2nhLbmkZi2oxK5sh1yST8vtvTuyuG0C+BolhLv1vg9ykJgMFFWHH+YZ
jJkkTpgYVNsurLmSihZ2SI7cqr15uyd0lMUdTv6SSsNGF5WGjikiODyZOywd1qLs
J+aV1gzBAgMBAAECggEADbymkExaw6CkmeK719JjqFgoJdOWIsUebOjtdvWt6CEF
8vjoNS3L4B+gOgwIlN+uz7ArnPsEdrV1NYOthDtYfN07BcAracLLwLTvX2ditvcm
PbEKpRZ5oIBisZWjmObSgS6xmi/EeuHrXuMT1uhOqmc/WwCYGV+/U0W3sFbEID24
/BAsr3xHCS/uGSeEcvRmMsM/OqbujLJiRu68yd5reKqtRHtd2WmToMhA+TAjy/Rd
Ea3QqxU/GV/spCmvK9RONfbQdhGDaQScIXJeX5AZEpeRfbrpTPkCEetmFxviGbv1
sjPggejs4iu7Xg9cXW0SRZc8TNkN7kRtrw9GTzBnuQKBgQDw5lZd87MNcRgtXSUx
3kEeOyxx3URB8hin2jbbkSjk3Fd7UDrn7fNddTOkwPkEQaEGXhG41ihKWbkKtGsU
IGsODku+MPkWxckYmNHjDPxN4JP8AHCGmYWq4NsnZnQOrTr1OH7S0lsx3DCLHOks
2D6lSgbzv1H6xsopgMu2g2BGSQKBgQDDmc8SMvBDX65PxlB9Wj/BQT8QfDga+YUY
QBgjrwPc9KALUY00Nug1iCxeXYf/5TiOA3ORatcBxAywZsQGATmydLIdMMSpztJw
4oGoSJZy4DOLMUalU/RUgXRxfa+9d6lYbXo86gd/KkBSF84+xJj5/IC3POE6o8Dd
mSIjB0EyuQKBgQDaOU5zvZetzY2BSqevDQ8gO6p/W1nCA3WiWGLpdA3/hDsbUgqK
n1uehdVKoiTyXiFoiz6ymg3VjIG72MRHbzaLfRfQKrz6jCEnTwiTDehhA9gKqLtG
szwLF7Zvcrgfs319NrhscnJ6MGUpH/96yEm3od+6Xs38xqfMAQiJRWmpQQKBgQCS
nKBEkN/ccER00T4Vp2bwURqXHbTkKzFi6u/tF0r6/HVV5ovDnoBRV7+B//NnkIXi
lJ20WvPMBApK0syNf6+inqu/C4XtjfPY3z62R6pVcs3PwGCmnZYfHWWNh9sJVj8d
4/li3Tw/SgkqP2O9Upkjj+te7YgY7xMqRpT60n5BKQKBgQC10pQ28/pc8BolyPYN
LuVvXqp3MhpqyZAAPlI9Q23h/doMzPcVbnzV0rHOfPCcXSuNovYl6l/g9lvjmG3h
qWKM6jbFFt0gkGGGPKYZfsKtJMgp6sQCLLTbPhknU+x/m8wT6l2DHniXzXiM/19K
d79ja1gx2XaItkih9za415RZ/w==
-----END PRIVATE KEY-----
";

    #[test]
    fn a_key_signs_with_the_algorithm_of_its_kind() {
        use jsonwebtoken::Algorithm::*;
        assert_eq!(key_algorithm(EC_SEC1), ES256);
        let sec1 = SigningKey {
            pem: EC_SEC1.to_owned(),
            alg: ES256,
            kid: None,
        };
        let err = client_assertion("c", "https://as.example/token", &sec1).unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
        for (pem, alg) in [(EC_PKCS8, ES256), (ED25519, EdDSA), (RSA, RS256)] {
            assert_eq!(key_algorithm(pem), alg, "{pem}");
            let key = SigningKey {
                pem: pem.to_owned(),
                alg,
                kid: None,
            };
            let jwt = client_assertion("c", "https://as.example/token", &key).expect("signed");
            assert_eq!(jwt.split('.').count(), 3);
        }
    }
}
