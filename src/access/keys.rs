//! API keys and static bearer tokens (`ALLOWED_KEYS`, `ALLOWED_TOKENS`, `--api-key`,
//! `--api-token`, the auth file). Only their SHA-256 digests are kept, and a presented secret
//! is compared with every one of them in constant time.

use subtle::ConstantTimeEq;

/// One secret with the name the log and the policy use.
#[derive(Clone)]
struct Secret {
    name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.name)
    }
}

fn digest(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A set of named secrets.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    all: Vec<Secret>,
}

/// Whether `s` can be a secret's name (the part before `:` in `NAME:SECRET`).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

impl Secrets {
    /// Add `NAME:SECRET`, or a bare `SECRET` (named `PREFIX-N`).
    pub fn add(&mut self, entry: &str, prefix: &str) -> Result<(), String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Ok(());
        }
        let (name, secret) = match entry.split_once(':') {
            Some((n, s)) if is_name(n) && !s.is_empty() => (n.to_owned(), s),
            _ => (format!("{prefix}-{}", self.all.len() + 1), entry),
        };
        if secret.len() < 8 {
            return Err(format!(
                "the {prefix} named `{name}` is shorter than 8 characters"
            ));
        }
        if self.all.iter().any(|s| s.name == name) {
            return Err(format!("two {prefix}s are named `{name}`"));
        }
        self.add_named(&name, secret);
        Ok(())
    }

    pub fn add_named(&mut self, name: &str, secret: &str) {
        self.all.push(Secret {
            name: name.to_owned(),
            digest: digest(secret),
        });
    }

    /// Add a comma-separated list (`ALLOWED_KEYS`).
    pub fn add_list(&mut self, list: &str, prefix: &str) -> Result<(), String> {
        for e in list.split(',') {
            self.add(e, prefix)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The name of the secret `presented` is, looking at every one of them (the time taken
    /// says nothing about which one matched, or how much of it).
    pub fn find(&self, presented: &str) -> Option<&str> {
        let d = digest(presented);
        let mut found = None;
        for s in &self.all {
            if bool::from(s.digest.ct_eq(&d)) {
                found = Some(s.name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_bare_secrets() {
        let mut k = Secrets::default();
        k.add_list("alice:alice-secret-1, bare-secret-2", "key")
            .unwrap();
        assert_eq!(k.find("alice-secret-1"), Some("alice"));
        assert_eq!(k.find("bare-secret-2"), Some("key-2"));
        assert_eq!(k.find("alice-secret-"), None);
        assert_eq!(k.find(""), None);
        assert!(k.add("short", "key").is_err());
        assert!(k.add("alice:another-secret", "key").is_err());
    }
}
