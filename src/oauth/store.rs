//! Tokens and client registrations on disk, so that a restart needs no new sign-in.
//!
//! One file per server URL (and `--resource`), under `$XDG_CACHE_HOME/mcp-proxy/` (by default
//! `~/.cache/mcp-proxy/`): the folder is 0700, the files 0600 and written atomically (a new
//! file renamed over the old). A file that does not read is set aside and replaced, never
//! fatal. Proxies of the same server share the file, and take turns at signing in through a
//! lock file next to it, so that several proxies started at once open one browser window.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::discovery::ServerMetadata;

/// A client identity at an authorization server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientInfo {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
    pub auth_method: String,
    /// The redirect URI it was registered with (a new one needs a new registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// How it came to be: `static`, `metadata-document` or `registered`.
    pub source: String,
}

/// Tokens for one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When it was issued (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The scopes asked for (the granted ones may be fewer).
    #[serde(default)]
    pub asked: Vec<String>,
}

impl Tokens {
    /// Whether the access token runs out within `margin`.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| now() + margin.as_secs() >= at)
    }

    /// Whether to refresh before using it: it can be refreshed and runs out within a minute,
    /// or within the last quarter of its life when it lives less than four minutes (a token
    /// of a few seconds is not refreshed on every request).
    pub fn needs_refresh(&self) -> bool {
        let life = match (self.issued_at, self.expires_at) {
            (Some(i), Some(e)) => e.saturating_sub(i),
            _ => 240,
        };
        self.refresh_token.is_some() && self.expires_within(Duration::from_secs((life / 4).min(60)))
    }
}

/// What is kept for one server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Entry {
    /// The server URL (its user info and query left out).
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ServerMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// The subject the tokens are for, when the server said (for listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The folder of everything kept.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// `$XDG_CACHE_HOME/mcp-proxy`, else `~/.cache/mcp-proxy`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("mcp-proxy");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        home.join(".cache").join("mcp-proxy")
    }

    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of a server's file: a digest of its URL and `--resource`.
    pub fn key(server: &str, resource: Option<&str>) -> String {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{server}\u{0}{}", resource.unwrap_or("")).as_bytes(),
        );
        d.as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }

    /// What is kept for `key`; a file that does not read is set aside (and so replaced by
    /// the next save).
    pub fn load(&self, key: &str) -> Option<Entry> {
        let path = self.path(key);
        let text = match crate::config::read_file(&path) {
            Ok(t) => t,
            Err(_) => return None,
        };
        match serde_json::from_str::<Entry>(&text) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(
                    "{}: not a token file ({e}); it is set aside and a new one will be written",
                    path.display()
                );
                let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                None
            }
        }
    }

    /// Keep `entry` for `key`: written to a new file (0600), then renamed over the old one.
    pub fn save(&self, key: &str, entry: &Entry) -> std::io::Result<()> {
        self.ensure_dir()?;
        let path = self.path(key);
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        let mut f = open.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)
    }

    /// Forget `key`.
    pub fn remove(&self, key: &str) -> bool {
        std::fs::remove_file(self.path(key)).is_ok()
    }

    /// Every server kept: (key, entry).
    pub fn list(&self) -> Vec<(String, Entry)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut out: Vec<(String, Entry)> = dir
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let key = name.strip_suffix(".json")?.to_owned();
                if key.starts_with('.') {
                    return None;
                }
                Some((key.clone(), self.load(&key)?))
            })
            .collect();
        out.sort_by(|a, b| a.1.server.cmp(&b.1.server));
        out
    }

    /// Take the sign-in lock of `key`, waiting (at most `wait`) while another proxy holds it.
    /// `Ok(true)`: taken at once; `Ok(false)`: taken after waiting (another proxy signed in
    /// meanwhile: look at the file again first).
    pub async fn lock(&self, key: &str, wait: Duration) -> Result<(Lock, bool), String> {
        self.ensure_dir()
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.dir.join(format!("{key}.lock"));
        let mut open = std::fs::OpenOptions::new();
        open.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        let file = open
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let end = tokio::time::Instant::now() + wait;
        let mut waited = false;
        loop {
            if try_lock(&file) {
                return Ok((Lock { _file: file }, !waited));
            }
            if tokio::time::Instant::now() >= end {
                return Err(format!(
                    "another mcp-proxy is signing in to this server and did not finish within {}s",
                    wait.as_secs()
                ));
            }
            waited = true;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The sign-in lock; released when dropped (or when the process ends, however it ends).
pub struct Lock {
    _file: std::fs::File,
}

#[cfg(unix)]
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    #[allow(unsafe_code)]
    // SAFETY: flock on a descriptor we own; the lock goes with the descriptor.
    unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_privately_replaced_atomically_and_a_corrupt_file_is_no_harm() {
        let dir = std::env::temp_dir().join(format!("mcp-proxy-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(dir.clone());
        let key = Store::key("https://s.example/mcp", None);
        assert_ne!(
            key,
            Store::key("https://s.example/mcp", Some("https://t1/"))
        );
        let entry = Entry {
            server: "https://s.example/mcp".into(),
            tokens: Some(Tokens {
                access_token: "a".into(),
                refresh_token: Some("r".into()),
                expires_at: Some(now() + 10),
                issued_at: Some(now()),
                scope: None,
                asked: vec![],
            }),
            ..Default::default()
        };
        store.save(&key, &entry).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(format!("{key}.json"))), 0o600);
        }
        let back = store.load(&key).unwrap();
        assert_eq!(back.tokens, entry.tokens);
        assert!(back.tokens.unwrap().expires_within(Duration::from_secs(60)));
        std::fs::write(dir.join(format!("{key}.json")), "{ not json").unwrap();
        assert!(store.load(&key).is_none());
        store.save(&key, &entry).unwrap();
        assert!(store.load(&key).is_some());
        assert_eq!(store.list().len(), 1);
        // One sign-in at a time.
        let (held, first) = store.lock(&key, Duration::from_secs(1)).await.unwrap();
        assert!(first);
        let other = Store::new(dir.clone());
        let blocked = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(other.dir().join(format!("{key}.lock")))
                .unwrap();
            try_lock(&f)
        });
        assert!(!blocked.join().unwrap());
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
