//! OAuth 2.1 access tokens, as a resource server checks them: JWTs against the issuer's keys
//! (a JWKS from a URL, kept and fetched again when an unknown key id shows up, or from a
//! file), and other tokens through RFC 7662 introspection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::Identity;

/// Leeway for `exp` and `nbf`.
const LEEWAY: u64 = 30;
/// Least time between two fetches of the key set.
const REFETCH: Duration = Duration::from_secs(30);
/// Keys are fetched again after this long even when all key ids are known.
const MAX_AGE: Duration = Duration::from_secs(600);

/// Why a token was not accepted: the first part for the client (`error_description`), the
/// second for the log.
#[derive(Debug, Clone)]
pub enum Bad {
    /// The token is not valid (401 `invalid_token`).
    Invalid(&'static str, String),
    /// The keys or the introspection endpoint cannot be reached (503).
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
    /// `jwks_uri` from the issuer's metadata.
    Issuer,
}

#[derive(Default)]
struct Keys {
    set: Vec<Jwk>,
    fetched: Option<Instant>,
    tried: Option<Instant>,
    url: Option<String>,
}

/// What a token must be, and the keys to check it with.
pub struct Verifier {
    pub issuer: String,
    /// Audiences accepted; empty: any URL under the proxy's base URL.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub source: JwksSource,
    keys: tokio::sync::Mutex<Keys>,
    http: reqwest::Client,
    pub introspection: Option<Introspection>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Identity)>>,
}

#[derive(Debug, Clone)]
pub struct Introspection {
    pub url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// `RS256,ES256,…` → algorithms; HMAC and `none` are refused.
pub fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, String> {
    let mut out = vec![];
    for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let alg: Algorithm = a
            .parse()
            .map_err(|_| format!("`{a}` is not a signature algorithm"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "`{a}` is a shared-secret algorithm; only public-key algorithms are accepted"
            ));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err("no signature algorithm is accepted".into());
    }
    Ok(out)
}

fn sha(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Strings of a claim that is a string (space-separated when `split`) or an array.
fn strings(v: Option<&Value>, split: bool) -> Vec<String> {
    match v {
        Some(Value::String(s)) if split => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

/// The identity a token's claims describe.
pub fn identity_of(claims: &Value, via: &'static str) -> Identity {
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let sub = s("sub");
    let client_id = s("client_id").or_else(|| s("azp"));
    let mut scopes = strings(claims.get("scope"), true);
    scopes.extend(strings(claims.get("scp"), true));
    let mut groups = strings(claims.get("groups"), false);
    groups.extend(strings(claims.get("roles"), false));
    Identity {
        name: sub
            .clone()
            .or_else(|| client_id.clone())
            .unwrap_or_else(|| "token".into()),
        via,
        sub,
        client_id,
        scopes,
        groups,
    }
}

impl Verifier {
    pub fn new(
        issuer: String,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
        source: JwksSource,
        introspection: Option<Introspection>,
    ) -> Verifier {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Verifier {
            issuer,
            audiences,
            algorithms,
            source,
            keys: Default::default(),
            http,
            introspection,
            cache: Default::default(),
        }
    }

    /// Check `token`; `base` is the proxy's own base URL (for the default audience rule).
    pub async fn verify(&self, token: &str, base: &str) -> Result<Identity, Bad> {
        let looks_jwt = token.split('.').count() == 3;
        if looks_jwt && !self.issuer.is_empty() {
            return self.verify_jwt(token, base).await;
        }
        if self.introspection.is_some() {
            return self.introspect(token, base).await;
        }
        Err(Bad::Invalid(
            "the token is not a JWT",
            "a bearer token that is neither a known token nor a JWT".into(),
        ))
    }

    fn audience_ok(&self, aud: &[String], base: &str) -> bool {
        if self.audiences.is_empty() {
            let base = base.trim_end_matches('/');
            aud.iter().any(|a| {
                let a = a.trim_end_matches('/');
                a == base || a.starts_with(&format!("{base}/"))
            })
        } else {
            aud.iter().any(|a| self.audiences.contains(a))
        }
    }

    async fn verify_jwt(&self, token: &str, base: &str) -> Result<Identity, Bad> {
        // A token checked already (for this base URL) is known until its expiry, for a minute
        // at most: the signature is not verified again on every request.
        let key = sha(&format!("{base}\u{0}{token}"));
        if let Ok(c) = self.cache.lock()
            && let Some((until, id)) = c.get(&key)
            && *until > Instant::now()
        {
            return Ok(id.clone());
        }
        let id = self.check_jwt(token, base).await?;
        Ok(id)
    }

    /// Remember that `token` was good until `exp`, for a minute at most.
    fn remember(&self, key: [u8; 32], exp: Option<u64>, id: &Identity) {
        let keep = exp
            .map(|e| Duration::from_secs(e.saturating_sub(now())))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= 10_000 {
                c.retain(|_, (until, _)| *until > Instant::now());
            }
            if c.len() < 10_000 {
                c.insert(key, (Instant::now() + keep, id.clone()));
            }
        }
    }

    async fn check_jwt(&self, token: &str, base: &str) -> Result<Identity, Bad> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Bad::Invalid("the token is malformed", format!("JWT header: {e}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Bad::Invalid(
                "the token's algorithm is not accepted",
                format!("JWT signed with {:?}, not in --auth-algorithms", header.alg),
            ));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = LEEWAY;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let said = match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidIssuer => "the token is from another issuer",
                K::InvalidSignature => "the token's signature does not verify",
                K::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is not valid",
            };
            Bad::Invalid(said, format!("JWT: {e}"))
        })?;
        let aud = strings(data.claims.get("aud"), false);
        if !self.audience_ok(&aud, base) {
            return Err(Bad::Invalid(
                "the token is for another audience",
                format!("JWT audience {aud:?} is not this proxy"),
            ));
        }
        let id = identity_of(&data.claims, "jwt");
        self.remember(
            sha(&format!("{base}\u{0}{token}")),
            data.claims.get("exp").and_then(Value::as_u64),
            &id,
        );
        Ok(id)
    }

    /// The key that `kid` names, fetching the set again (at most every 30 s) when it is not
    /// known; without a `kid`, the only key of the algorithm's kind.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Bad> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|t| t.elapsed() > MAX_AGE);
        let mut found = pick(&keys.set, kid, alg);
        if (found.is_none() || stale) && keys.tried.is_none_or(|t| t.elapsed() > REFETCH) {
            keys.tried = Some(Instant::now());
            match self.fetch(&mut keys).await {
                Ok(set) => {
                    keys.set = set;
                    keys.fetched = Some(Instant::now());
                }
                Err(e) => {
                    crate::warn_throttled!("auth:jwks", "the issuer's keys cannot be fetched: {e}");
                    if keys.set.is_empty() {
                        return Err(Bad::Unavailable(format!(
                            "the issuer's keys cannot be fetched: {e}"
                        )));
                    }
                }
            }
            found = pick(&keys.set, kid, alg);
        }
        let jwk = found.ok_or_else(|| {
            Bad::Invalid(
                "the token's signing key is not known",
                format!(
                    "no key `{}` for {alg:?} in the issuer's set",
                    kid.unwrap_or("")
                ),
            )
        })?;
        DecodingKey::from_jwk(&jwk)
            .map_err(|e| Bad::Invalid("the token's signing key is not usable", format!("JWK: {e}")))
    }

    async fn fetch(&self, keys: &mut Keys) -> Result<Vec<Jwk>, String> {
        let text = match &self.source {
            JwksSource::File(p) => {
                crate::config::read_file(p).map_err(|e| format!("{}: {e}", p.display()))?
            }
            JwksSource::Url(u) => self.get(u).await?,
            JwksSource::Issuer => {
                let url = match &keys.url {
                    Some(u) => u.clone(),
                    None => {
                        let u = self.jwks_uri().await?;
                        keys.url = Some(u.clone());
                        u
                    }
                };
                self.get(&url).await?
            }
        };
        let set: JwkSet =
            serde_json::from_str(&text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
        // A public key set never yields a shared secret.
        Ok(set
            .keys
            .into_iter()
            .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
            .collect())
    }

    async fn get(&self, url: &str) -> Result<String, String> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {}", crate::oauth::why(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered HTTP {}", resp.status()));
        }
        resp.text().await.map_err(|e| format!("{url}: {e}"))
    }

    /// `jwks_uri` from the issuer's metadata (RFC 8414, then OpenID discovery).
    async fn jwks_uri(&self) -> Result<String, String> {
        let issuer = reqwest::Url::parse(&self.issuer)
            .map_err(|e| format!("--auth-issuer `{}`: {e}", self.issuer))?;
        let path = issuer.path().trim_end_matches('/');
        let origin = issuer.origin().ascii_serialization();
        let urls = if path.is_empty() {
            vec![
                format!("{origin}/.well-known/oauth-authorization-server"),
                format!("{origin}/.well-known/openid-configuration"),
            ]
        } else {
            vec![
                format!("{origin}/.well-known/oauth-authorization-server{path}"),
                format!("{origin}/.well-known/openid-configuration{path}"),
                format!("{origin}{path}/.well-known/openid-configuration"),
            ]
        };
        let mut last = String::new();
        for u in urls {
            match self.get(&u).await {
                Ok(text) => {
                    let v: Value =
                        serde_json::from_str(&text).map_err(|e| format!("{u} is not JSON: {e}"))?;
                    if v["issuer"].as_str() != Some(self.issuer.as_str()) {
                        return Err(format!(
                            "{u} names the issuer {}, not {}",
                            v["issuer"], self.issuer
                        ));
                    }
                    return v["jwks_uri"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{u} has no jwks_uri"));
                }
                Err(e) => last = e,
            }
        }
        Err(format!("no metadata for the issuer ({last})"))
    }

    /// RFC 7662: ask the authorization server whether the token is active (answers kept
    /// for at most a minute, and never past the token's expiry).
    async fn introspect(&self, token: &str, base: &str) -> Result<Identity, Bad> {
        let Some(i) = &self.introspection else {
            return Err(Bad::Invalid(
                "the token is not valid",
                "no introspection".into(),
            ));
        };
        let key = sha(token);
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|_, (until, _)| *until > Instant::now());
            if let Some((_, id)) = c.get(&key) {
                return Ok(id.clone());
            }
        }
        let mut req = self.http.post(&i.url).form(&[("token", token)]);
        if let Some(id) = &i.client_id {
            req = req.basic_auth(id, i.client_secret.as_deref());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Bad::Unavailable(format!("introspection: {}", crate::oauth::why(&e))))?;
        if !resp.status().is_success() {
            return Err(Bad::Unavailable(format!(
                "introspection answered HTTP {}",
                resp.status()
            )));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| Bad::Unavailable(format!("introspection answer: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Bad::Unavailable(format!("introspection answer: {e}")))?;
        if v["active"] != Value::Bool(true) {
            return Err(Bad::Invalid(
                "the token is not active",
                "introspection: not active".into(),
            ));
        }
        let exp = v["exp"].as_u64();
        if exp.is_some_and(|e| e + LEEWAY < now()) {
            return Err(Bad::Invalid(
                "the token has expired",
                "introspection: expired".into(),
            ));
        }
        if let Some(iss) = v["iss"].as_str()
            && !self.issuer.is_empty()
            && iss != self.issuer
        {
            return Err(Bad::Invalid(
                "the token is from another issuer",
                format!("introspection: issuer {iss}"),
            ));
        }
        // The token must say it is for this proxy (the MCP authorization specification).
        let aud = strings(v.get("aud"), false);
        if !self.audience_ok(&aud, base) {
            return Err(Bad::Invalid(
                "the token is for another audience",
                format!("introspection: audience {aud:?}"),
            ));
        }
        let id = identity_of(&v, "introspection");
        let keep = exp
            .map(|e| Duration::from_secs(e.saturating_sub(now())))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        if let Ok(mut c) = self.cache.lock()
            && c.len() < 10_000
        {
            c.insert(key, (Instant::now() + keep, id.clone()));
        }
        Ok(id)
    }
}

/// The key named `kid` (or, without one, the only key for `alg`'s family), if its declared
/// algorithm (when it has one) is `alg`.
fn pick(set: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let family_ok = |k: &Jwk| {
        let fam = match &k.algorithm {
            AlgorithmParameters::RSA(_) => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            AlgorithmParameters::EllipticCurve(_) => {
                matches!(alg, Algorithm::ES256 | Algorithm::ES384)
            }
            AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
            AlgorithmParameters::OctetKey(_) => false,
        };
        let declared = k
            .common
            .key_algorithm
            .map(|a| format!("{a:?}") == format!("{alg:?}"))
            .unwrap_or(true);
        fam && declared
    };
    match kid {
        Some(kid) => set
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid) && family_ok(k))
            .cloned(),
        None => {
            let mut c = set.iter().filter(|k| family_ok(k));
            match (c.next(), c.next()) {
                (Some(k), None) => Some(k.clone()),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secret_algorithms_are_refused() {
        assert!(parse_algorithms("HS256").is_err());
        assert!(parse_algorithms("none").is_err());
        assert!(parse_algorithms("").is_err());
        assert_eq!(
            parse_algorithms("RS256, ES256").unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
    }

    #[test]
    fn identity_from_claims() {
        let id = identity_of(
            &serde_json::json!({"sub": "u1", "azp": "app", "scope": "a b", "groups": ["ops"]}),
            "jwt",
        );
        assert_eq!(id.name, "u1");
        assert_eq!(id.client_id.as_deref(), Some("app"));
        assert_eq!(id.scopes, vec!["a", "b"]);
        assert_eq!(id.groups, vec!["ops"]);
    }

    #[test]
    fn audience_rule() {
        let v = Verifier::new(
            "https://as".into(),
            vec![],
            vec![Algorithm::RS256],
            JwksSource::Issuer,
            None,
        );
        assert!(v.audience_ok(&["http://h:1/mcp".into()], "http://h:1"));
        assert!(v.audience_ok(&["http://h:1/".into()], "http://h:1"));
        assert!(!v.audience_ok(&["http://h:10/mcp".into()], "http://h:1"));
        assert!(!v.audience_ok(&["http://evil/h:1".into()], "http://h:1"));
        assert!(!v.audience_ok(&[], "http://h:1"));
    }
}

#[cfg(test)]
mod attacks {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    const ISS: &str = "https://issuer.example";
    const BASE: &str = "http://127.0.0.1:8080";

    struct Key {
        pkcs8: Vec<u8>,
        jwk: Value,
    }

    fn key(kid: &str) -> Key {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let point = pair.public_key().as_ref();
        let b = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": b(&point[1..33]), "y": b(&point[33..65]),
        });
        Key { pkcs8, jwk }
    }

    fn verifier(keys: &[&Key], name: &str) -> Verifier {
        let path =
            std::env::temp_dir().join(format!("mcp-proxy-jwks-{name}-{}.json", std::process::id()));
        let set =
            serde_json::json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        std::fs::write(&path, set.to_string()).unwrap();
        Verifier::new(
            ISS.into(),
            vec![],
            vec![Algorithm::ES256, Algorithm::RS256],
            JwksSource::File(path),
            None,
        )
    }

    fn mint(k: &Key, kid: &str, claims: Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&k.pkcs8)).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = serde_json::json!({
            "iss": ISS, "sub": "user-1", "aud": format!("{BASE}/mcp"),
            "exp": now() + 300, "iat": now(), "scope": "mcp:read",
        });
        if let (Some(o), Value::Object(e)) = (c.as_object_mut(), extra) {
            for (k, v) in e {
                o.insert(k, v);
            }
        }
        c
    }

    fn rejected(r: Result<Identity, Bad>) -> String {
        match r {
            Err(Bad::Invalid(said, _)) => said.to_owned(),
            other => panic!("accepted or unavailable: {other:?}"),
        }
    }

    #[tokio::test]
    async fn tokens_are_refused_for_every_flaw() {
        let k = key("k1");
        let other = key("k2");
        let v = verifier(&[&k], "flaws");
        let good = mint(&k, "k1", claims(Value::Null));
        let id = v.verify(&good, BASE).await.expect("a good token");
        assert_eq!(
            (id.name.as_str(), id.scopes.clone()),
            ("user-1", vec!["mcp:read".to_owned()])
        );
        // Expired, not yet valid (beyond the leeway), another issuer, another audience.
        let t = mint(&k, "k1", claims(serde_json::json!({"exp": now() - 120})));
        assert_eq!(rejected(v.verify(&t, BASE).await), "the token has expired");
        let t = mint(&k, "k1", claims(serde_json::json!({"nbf": now() + 120})));
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token is not valid yet"
        );
        let t = mint(
            &k,
            "k1",
            claims(serde_json::json!({"iss": "https://evil.example"})),
        );
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token is from another issuer"
        );
        let t = mint(
            &k,
            "k1",
            claims(serde_json::json!({"aud": "http://127.0.0.1:9999/mcp"})),
        );
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token is for another audience"
        );
        let t = mint(&k, "k1", claims(serde_json::json!({"aud": null})));
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token is for another audience"
        );
        // Signed by another key under our key's id; an unknown key id.
        let t = mint(&other, "k1", claims(Value::Null));
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token's signature does not verify"
        );
        let t = mint(&other, "k2", claims(Value::Null));
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token's signing key is not known"
        );
        // A tampered payload.
        let parts: Vec<&str> = good.split('.').collect();
        let b = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let forged = b(claims(serde_json::json!({"sub": "admin"}))
            .to_string()
            .as_bytes());
        let t = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token's signature does not verify"
        );
        // alg none.
        let t = format!(
            "{}.{}.",
            b(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            b(claims(Value::Null).to_string().as_bytes())
        );
        assert_eq!(rejected(v.verify(&t, BASE).await), "the token is malformed");
        // HS256 with the public key's bytes as the secret (algorithm confusion).
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let secret = k.jwk["x"].as_str().unwrap().as_bytes().to_vec();
        let t = jsonwebtoken::encode(&h, &claims(Value::Null), &EncodingKey::from_secret(&secret))
            .unwrap();
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token's algorithm is not accepted"
        );
        // Not a JWT at all, and no introspection.
        assert_eq!(
            rejected(v.verify("opaque-token", BASE).await),
            "the token is not a JWT"
        );
    }

    #[tokio::test]
    async fn keys_are_kept_when_their_source_goes_away() {
        let k = key("k1");
        let v = verifier(&[&k], "kept");
        let good = mint(&k, "k1", claims(Value::Null));
        v.verify(&good, BASE).await.expect("good");
        if let JwksSource::File(p) = &v.source {
            std::fs::remove_file(p).unwrap();
        }
        // Known key: still accepted. Unknown key: refused (the fetch failed, keys remain).
        v.verify(&good, BASE).await.expect("still good");
        let other = key("k9");
        let t = mint(&other, "k9", claims(Value::Null));
        assert_eq!(
            rejected(v.verify(&t, BASE).await),
            "the token's signing key is not known"
        );
        // With no keys at all: unavailable, not invalid.
        let none = Verifier::new(
            ISS.into(),
            vec![],
            vec![Algorithm::ES256],
            JwksSource::File("/nonexistent/jwks.json".into()),
            None,
        );
        assert!(matches!(
            none.verify(&good, BASE).await,
            Err(Bad::Unavailable(_))
        ));
    }
}
