//! `requestState` tokens: what a modern client echoes back to resume a parked call.
//!
//! A token names the parked call and the request it belongs to, and expires. It is signed
//! (HMAC-SHA256) so that it cannot be forged or moved to another request, and carries nothing
//! secret: the parked call itself stays in the proxy. Replicas that share the key
//! (`--state-secret`) accept each other's tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The parked call.
    pub call: String,
    /// The method and name (tool, prompt or URI) of the request it may resume.
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("requestState is malformed")]
    Malformed,
    #[error("requestState was not issued by this proxy (bad signature)")]
    Forged,
    #[error("requestState has expired")]
    Expired,
}

pub struct Seal {
    key: hmac::Key,
}

impl Seal {
    /// A seal keyed by `secret`, or by random bytes when there is none.
    pub fn new(secret: Option<&[u8]>) -> Seal {
        let key = match secret {
            Some(s) => hmac::Key::new(hmac::HMAC_SHA256, s),
            None => {
                let bytes: [u8; 32] = rand::random();
                hmac::Key::new(hmac::HMAC_SHA256, &bytes)
            }
        };
        Seal { key }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", B64.encode(tag.as_ref()))
    }

    /// The claims of a token this seal made, if it has not expired by `now` (Unix seconds).
    pub fn open(&self, token: &str, now: u64) -> Result<Claims, Refused> {
        let (body, tag) = token.split_once('.').ok_or(Refused::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| Refused::Malformed)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| Refused::Forged)?;
        let json = B64.decode(body).map_err(|_| Refused::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| Refused::Malformed)?;
        if claims.exp < now {
            return Err(Refused::Expired);
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            call: "c1".into(),
            method: "tools/call".into(),
            name: Some("ask".into()),
            exp: 100,
        }
    }

    #[test]
    fn tokens_round_trip() {
        let s = Seal::new(Some(b"k"));
        assert_eq!(s.open(&s.sign(&claims()), 50), Ok(claims()));
    }

    #[test]
    fn forged_tampered_and_stale_tokens_are_refused() {
        let s = Seal::new(Some(b"k"));
        let t = s.sign(&claims());
        assert_eq!(Seal::new(Some(b"other")).open(&t, 50), Err(Refused::Forged));
        let (body, tag) = t.split_once('.').expect("dot");
        let mut c = claims();
        c.name = Some("other".into());
        let swapped = format!(
            "{}.{tag}",
            B64.encode(serde_json::to_vec(&c).expect("json"))
        );
        assert_ne!(body, swapped.split_once('.').expect("dot").0);
        assert_eq!(s.open(&swapped, 50), Err(Refused::Forged));
        assert_eq!(s.open(&t, 101), Err(Refused::Expired));
        assert_eq!(s.open("nonsense", 0), Err(Refused::Malformed));
        assert_eq!(s.open("a.!!", 0), Err(Refused::Malformed));
    }

    #[test]
    fn a_shared_secret_works_across_replicas() {
        let a = Seal::new(Some(b"shared"));
        let b = Seal::new(Some(b"shared"));
        assert!(b.open(&a.sign(&claims()), 0).is_ok());
    }
}
