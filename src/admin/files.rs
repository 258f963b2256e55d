//! The console's reads and writes of the config files.
//!
//! A file is read whole, parsed as JSON5 (as the gateway reads it) into a tree that keeps its
//! keys in order, and named by a version: the SHA-256 of its bytes. A change is made to that
//! tree (so keys the console does not know stay), checked with the gateway's own parser, and
//! written atomically (a new file beside it, synced, then renamed over it), only if the file
//! still has the version the change was made against: a hand edit made meanwhile is not lost.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

/// A file as read.
pub struct Snapshot {
    pub root: Value,
    pub version: String,
}

/// The version of a file's bytes.
pub fn version_of(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn read(path: &Path) -> Result<Snapshot, String> {
    let text = crate::config::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let root: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        json5::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?
    };
    if !root.is_object() {
        return Err(format!("{}: must hold a JSON object", path.display()));
    }
    Ok(Snapshot {
        version: version_of(text.as_bytes()),
        root,
    })
}

/// The servers of a servers file, by name, in file order.
pub fn entries(root: &Value) -> Vec<(String, Value)> {
    root.get("mcpServers")
        .or_else(|| root.get("servers"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The servers object of a servers file, made when absent.
pub fn servers_mut(root: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = root.as_object_mut()?;
    let key = if obj.contains_key("mcpServers") || !obj.contains_key("servers") {
        "mcpServers"
    } else {
        "servers"
    };
    obj.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// Write `text` to `path` atomically, keeping the file's permissions. A symbolic link is
/// followed: the file it points to is replaced, and the link stays.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let resolved = std::fs::canonicalize(path).ok();
    let path = resolved.as_deref().unwrap_or(path);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", rand::random::<u32>()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A change refused: what is wrong, and the form field it is about.
#[derive(Debug)]
pub struct Refusal {
    pub status: http::StatusCode,
    pub error: String,
    pub field: Option<String>,
}

impl Refusal {
    pub fn bad(field: Option<&str>, error: impl Into<String>) -> Refusal {
        Refusal {
            status: http::StatusCode::BAD_REQUEST,
            error: error.into(),
            field: field.map(str::to_owned),
        }
    }
    pub fn conflict() -> Refusal {
        Refusal {
            status: http::StatusCode::CONFLICT,
            error: "The config file was changed since this page read it (by hand, or from another page), so your change was not saved.".into(),
            field: None,
        }
    }
    pub fn status(status: http::StatusCode, error: impl Into<String>) -> Refusal {
        Refusal {
            status,
            error: error.into(),
            field: None,
        }
    }
}

/// Check a servers file's text as the gateway will read it; a refusal names the field.
pub fn check_servers(
    text: &str,
    file: &str,
    defaults: &crate::servers::Defaults,
) -> Result<(), Refusal> {
    crate::servers::parse(text, file, defaults, |k| std::env::var(k).ok())
        .map(|_| ())
        .map_err(|e| {
            let (field, what) = field_of(&e.what);
            Refusal::bad(field.as_deref(), what)
        })
}

/// `mcpServers.NAME.FIELD: what` → (FIELD, `FIELD: what`); `mcpServers.NAME: …` names the
/// field it is about when it is clear.
fn field_of(what: &str) -> (Option<String>, String) {
    let Some(rest) = what.strip_prefix("mcpServers.") else {
        return (None, what.to_owned());
    };
    let Some((path, msg)) = rest.split_once(": ") else {
        return (None, what.to_owned());
    };
    // NAME may hold dots; the field is the part after the last one that the entry has.
    let field = path.rsplit_once('.').map(|(_, f)| f.to_owned());
    match field {
        // The entry's `name` is its display name: the form's `title`.
        Some(f) if f == "name" => (Some("title".into()), format!("name: {msg}")),
        Some(f) if is_field(&f) => (Some(f.clone()), format!("{f}: {msg}")),
        _ => {
            let guess = if msg.contains("needs a `command`") {
                Some("command")
            } else if msg.contains("`command` or `url`") {
                Some("url")
            } else if msg.contains("server name") {
                Some("name")
            } else {
                None
            };
            (guess.map(str::to_owned), msg.to_owned())
        }
    }
}

/// The fields of an `mcpServers` entry the gateway reads.
pub const FIELDS: &[&str] = &[
    "type",
    "name",
    "active",
    "disabled",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "apiKey",
    "bearerToken",
    "timeout",
    "required",
    "tools",
    "oauth",
    "installDirectory",
    "installCommands",
];

fn is_field(f: &str) -> bool {
    FIELDS.contains(&f)
}

/// The JSON text the console writes.
pub fn render(root: &Value) -> String {
    let mut s = serde_json::to_string_pretty(root).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_field() {
        assert_eq!(
            field_of("mcpServers.my.server.url: `x` is not an http(s) URL").0,
            Some("url".into())
        );
        assert_eq!(
            field_of("mcpServers.demo: needs a `command` (stdio) or a `url` (remote)").0,
            Some("command".into())
        );
        assert_eq!(field_of("something else").0, None);
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_keeps_its_mode() {
        let dir = std::env::temp_dir().join(format!("mcp-proxy-files-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("servers.json");
        std::fs::write(&f, "{}").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        }
        write_atomic(&f, "{\"mcpServers\":{}}").expect("atomic write");
        assert_eq!(
            std::fs::read_to_string(&f).unwrap_or_default(),
            "{\"mcpServers\":{}}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o640);
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(left.len(), 1, "{left:?}");
        // Through a symbolic link: the target changes, the link stays a link.
        #[cfg(unix)]
        {
            let link = dir.join("link.json");
            std::os::unix::fs::symlink(&f, &link).expect("symlink");
            write_atomic(&link, "{\"linked\":true}").expect("write through the link");
            assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()));
            assert_eq!(
                std::fs::read_to_string(&f).unwrap_or_default(),
                "{\"linked\":true}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
