//! Several named servers from one `mcpServers` file, the format Claude Desktop, Cursor and
//! others use, read as is:
//!
//! ```json
//! { "mcpServers": {
//!     "fetch": { "command": "uvx", "args": ["mcp-server-fetch"], "env": { "K": "${HOME}" } },
//!     "remote": { "url": "https://host/mcp", "type": "http", "headers": { "X-Team": "a" } }
//! } }
//! ```
//!
//! Comments and trailing commas are accepted. `${VAR}` is replaced from the environment in
//! every string. Fields: `command`, `args`, `env`, `cwd`; `url`, `type` (`sse`, `http`,
//! `streamable-http`; probed when absent), `headers`, `apiKey` (sent as `X-Api-Key`),
//! `bearerToken` (sent as `Authorization: Bearer`); `active` (or `disabled`); ours: `timeout`
//! (seconds per request) and `tools` (`{"allow": [...], "deny": [...]}`, wildcard patterns on
//! the server's tool names). Unknown fields (other clients' settings) are ignored. A bad file
//! gives one error naming the file, the line and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::transport::{CommandSpec, HttpTransport, Target, UrlSpec};

/// One configured server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    pub name: String,
    /// `name` in the file: a display name (the key is the server's name).
    pub title: Option<String>,
    pub target: Target,
    pub active: bool,
    /// Per-request timeout for this server, overriding `--timeout`.
    pub timeout: Option<Duration>,
    /// `tools.allow` / `tools.deny`: wildcard patterns on this server's tool names.
    pub allow_tools: Vec<String>,
    pub deny_tools: Vec<String>,
    /// Whether `/readyz` waits for this server (`"required": false` leaves it out).
    pub required: bool,
}

/// What is wrong with a servers file, located as precisely as the file allows.
#[derive(Debug, PartialEq)]
pub struct FileError {
    pub file: String,
    /// 0 when the problem is the file as a whole.
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.what),
            n => write!(f, "{}:{n}: {}", self.file, self.what),
        }
    }
}

impl std::error::Error for FileError {}

/// Settings that entries inherit from the command line.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub pass_environment: bool,
    pub connect_timeout: Duration,
    /// How remote servers are signed in to, unless an entry says otherwise; `None`: never.
    pub oauth: Option<crate::oauth::Settings>,
}

/// Read and check a servers file.
pub fn load(path: &Path, defaults: &Defaults) -> Result<Vec<ServerEntry>, FileError> {
    let file = path.display().to_string();
    let text = crate::config::read_file(path).map_err(|what| FileError {
        file: file.clone(),
        line: 0,
        what,
    })?;
    parse(&text, &file, defaults, |k| std::env::var(k).ok())
}

/// Check the text of a servers file; `env` looks up `${VAR}`.
pub fn parse(
    text: &str,
    file: &str,
    defaults: &Defaults,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ServerEntry>, FileError> {
    let fail = |line: usize, what: String| FileError {
        file: file.to_owned(),
        line,
        what,
    };
    let root: Value = json5::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let line = msg
            .rsplit_once(" at line ")
            .and_then(|(_, r)| r.split(' ').next()?.parse().ok())
            .unwrap_or(1);
        fail(line, format!("not valid JSON: {msg}"))
    })?;
    let servers = root
        .get("mcpServers")
        .or_else(|| root.get("servers"))
        .ok_or_else(|| fail(1, "no `mcpServers` object".into()))?;
    let Value::Object(servers) = servers else {
        return Err(fail(
            line_of(text, "mcpServers", 0),
            "`mcpServers` must be an object of servers by name".into(),
        ));
    };
    let mut out = vec![];
    for (name, entry) in servers {
        let at = line_of(text, name, 0);
        let field_line = |field: &str| line_of(text, field, offset_of(text, name));
        if name.chars().all(|c| c == '.') {
            return Err(fail(
                at,
                format!(
                    "mcpServers.{name}: `{name}` cannot be a server name (it would be served at /servers/{name}/, which clients read as another path)"
                ),
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(fail(
                at,
                format!(
                    "mcpServers.{name}: a server name may hold letters, digits, `-`, `_` and `.` only (it becomes part of a URL)"
                ),
            ));
        }
        let Value::Object(entry) = entry else {
            return Err(fail(at, format!("mcpServers.{name}: must be an object")));
        };
        let field_err = |field: &str, what: String| {
            fail(
                field_line(field),
                format!("mcpServers.{name}.{field}: {what}"),
            )
        };
        let expand = |field: &str, s: &str| {
            expand_vars(s, &env)
                .map_err(|var| field_err(field, format!("environment variable `{var}` is not set")))
        };
        let string = |field: &str| -> Result<Option<String>, FileError> {
            match entry.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => expand(field, s).map(Some),
                Some(_) => Err(field_err(field, "must be a string".into())),
            }
        };
        let strings_map = |field: &str| -> Result<Vec<(String, String)>, FileError> {
            match entry.get(field) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), expand(field, s)?)),
                        Value::Number(n) => Ok((k.clone(), n.to_string())),
                        Value::Bool(b) => Ok((k.clone(), b.to_string())),
                        _ => Err(field_err(field, format!("`{k}` must be a string"))),
                    })
                    .collect(),
                Some(_) => Err(field_err(field, "must be an object of strings".into())),
            }
        };
        let active = match (entry.get("active"), entry.get("disabled")) {
            (Some(Value::Bool(a)), _) => *a,
            (Some(_), _) => return Err(field_err("active", "must be true or false".into())),
            (None, Some(Value::Bool(d))) => !*d,
            (None, Some(_)) => return Err(field_err("disabled", "must be true or false".into())),
            (None, None) => true,
        };
        let timeout = match entry.get("timeout") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
                _ => {
                    return Err(field_err(
                        "timeout",
                        "must be a positive number of seconds".into(),
                    ));
                }
            },
        };
        let patterns = |which: &str| -> Result<Vec<String>, FileError> {
            match entry.get("tools").and_then(|t| t.get(which)) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            field_err("tools", format!("`{which}` must be a list of patterns"))
                        })
                    })
                    .collect(),
                Some(_) => Err(field_err(
                    "tools",
                    format!("`{which}` must be a list of patterns"),
                )),
            }
        };
        if entry.get("tools").is_some_and(|t| !t.is_object()) {
            return Err(field_err(
                "tools",
                "must be an object with `allow` and/or `deny` lists".into(),
            ));
        }
        let allow_tools = patterns("allow")?;
        let deny_tools = patterns("deny")?;
        let command = string("command")?;
        let url = string("url")?;
        let target = match (command, url) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    at,
                    format!("mcpServers.{name}: give either `command` or `url`, not both"),
                ));
            }
            (None, None) => {
                return Err(fail(
                    at,
                    format!("mcpServers.{name}: needs a `command` (stdio) or a `url` (remote)"),
                ));
            }
            (Some(program), None) => {
                let args = match entry.get("args") {
                    None | Some(Value::Null) => vec![],
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => expand("args", s),
                            Value::Number(n) => Ok(n.to_string()),
                            _ => Err(field_err("args", "must be an array of strings".into())),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(field_err("args", "must be an array of strings".into())),
                };
                Target::Command(CommandSpec {
                    program,
                    args,
                    env: strings_map("env")?,
                    pass_environment: defaults.pass_environment,
                    cwd: string("cwd")?.map(PathBuf::from),
                    name: name.clone(),
                })
            }
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        field_err(
                            "url",
                            format!(
                                "`{}` is not an http(s) URL",
                                crate::transport::redact_text(&url)
                            ),
                        )
                    })?;
                let transport = match string("type")?.as_deref() {
                    None => HttpTransport::Auto,
                    Some("sse") => HttpTransport::Sse,
                    Some("http" | "streamable-http" | "streamableHttp" | "streamable_http") => {
                        HttpTransport::Streamablehttp
                    }
                    Some(other) => {
                        return Err(field_err(
                            "type",
                            format!("`{other}` is not one of sse, http, streamable-http"),
                        ));
                    }
                };
                let mut headers = strings_map("headers")?;
                if let Some(key) = string("apiKey")? {
                    headers.push(("X-Api-Key".into(), key));
                }
                if let Some(token) = string("bearerToken")? {
                    headers.push(("Authorization".into(), format!("Bearer {token}")));
                }
                // Credentials given explicitly mean no OAuth.
                let explicit = headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
                let auth = match (&defaults.oauth, explicit) {
                    (Some(base), false) => {
                        let settings = oauth_settings(base, entry.get("oauth"), &expand)
                            .map_err(|e| field_err("oauth", e))?;
                        crate::oauth::Slot(Some(crate::oauth::OAuth::new(&parsed, settings, false)))
                    }
                    _ => crate::oauth::Slot(None),
                };
                Target::Url(UrlSpec {
                    url: parsed,
                    transport,
                    headers,
                    connect_timeout: defaults.connect_timeout,
                    health: Default::default(),
                    auth,
                })
            }
        };
        let required = match entry.get("required") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(field_err("required", "must be true or false".into())),
        };
        out.push(ServerEntry {
            name: name.clone(),
            title: string("name")?,
            target,
            active,
            timeout,
            allow_tools,
            deny_tools,
            required,
        });
    }
    Ok(out)
}

/// A remote entry's `oauth` object over the command line's settings: `clientInfo`,
/// `clientMetadata`, `clientMetadataUrl`, `scopes`, `resource`, `noResource`,
/// `callbackPort`, `disabled`.
fn oauth_settings(
    base: &crate::oauth::Settings,
    v: Option<&Value>,
    expand: &impl Fn(&str, &str) -> Result<String, FileError>,
) -> Result<crate::oauth::Settings, String> {
    let mut s = base.clone();
    let Some(v) = v else { return Ok(s) };
    let Value::Object(o) = v else {
        return Err("must be an object".into());
    };
    let text = |k: &str| -> Result<Option<String>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(t)) => expand(k, t).map(Some).map_err(|e| e.what),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    if let Some(info) = o.get("clientInfo") {
        let json = match info {
            Value::String(t) => {
                crate::oauth::Settings::json_arg(&expand("clientInfo", t).map_err(|e| e.what)?)?
            }
            other => {
                // `${VAR}` in its strings.
                let mut other = other.clone();
                if let Value::Object(m) = &mut other {
                    for (k, x) in m.iter_mut() {
                        if let Value::String(t) = x {
                            *t = expand(k, t).map_err(|e| e.what)?;
                        }
                    }
                }
                other.to_string()
            }
        };
        s.static_client =
            Some(crate::oauth::StaticClient::parse(&json).map_err(|e| format!("clientInfo: {e}"))?);
    }
    if let Some(Value::Object(m)) = o.get("clientMetadata") {
        s.client_metadata = m.clone();
    }
    if let Some(u) = text("clientMetadataUrl")? {
        s.metadata_url = Some(u);
    }
    if let Some(r) = text("resource")? {
        s.resource = Some(r);
    }
    if o.get("noResource").and_then(Value::as_bool) == Some(true) {
        s.no_resource = true;
    }
    match o.get("scopes") {
        Some(Value::String(t)) => {
            s.scopes = Some(t.split_whitespace().map(str::to_owned).collect())
        }
        Some(Value::Array(a)) => {
            s.scopes = Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            )
        }
        _ => {}
    }
    if let Some(p) = o.get("callbackPort") {
        s.callback_port = Some(
            p.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("`callbackPort` must be a port number")?,
        );
    }
    Ok(s)
}

/// `--named-server NAME 'COMMAND ARGS'`: a stdio server from one command line, split as a
/// shell would (quotes keep spaces), with the command line's `-e` variables and `--cwd`.
pub fn named(
    name: &str,
    command_line: &str,
    defaults: &Defaults,
    env: &[(String, String)],
    cwd: Option<&Path>,
) -> Result<ServerEntry, String> {
    let text = serde_json::json!({ "mcpServers": { name: { "command": "" } } }).to_string();
    let words = shlex::split(command_line)
        .ok_or_else(|| format!("--named-server {name}: unbalanced quotes in `{command_line}`"))?;
    let mut words = words.into_iter();
    let program = words
        .next()
        .ok_or_else(|| format!("--named-server {name}: the command is empty"))?;
    let mut entry = parse(&text, "--named-server", defaults, |_| None).map_err(|e| e.what)?;
    let mut e = entry.pop().ok_or("no entry")?;
    e.target = Target::Command(CommandSpec {
        program,
        args: words.collect(),
        env: env.to_vec(),
        pass_environment: defaults.pass_environment,
        cwd: cwd.map(Path::to_path_buf),
        name: name.to_owned(),
    });
    Ok(e)
}

/// `s` with every `${VAR}` replaced; `Err(VAR)` for one that is not set.
fn expand_vars(s: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        out.push_str(&env(var).ok_or_else(|| var.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Byte offset of the first `"key"` used as an object key at or after `from`.
fn offset_of(text: &str, key: &str) -> usize {
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(i) = text[from..].find(&needle) {
        let at = from + i;
        let after = text[at + needle.len()..].trim_start();
        if after.starts_with(':') {
            return at;
        }
        from = at + needle.len();
    }
    0
}

/// Line (1-based) of the first `"key":` at or after byte `from`.
fn line_of(text: &str, key: &str, from: usize) -> usize {
    let from = from.min(text.len());
    let at = from + offset_of(&text[from..], key);
    text[..at].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            pass_environment: false,
            connect_timeout: Duration::from_secs(10),
            oauth: None,
        }
    }

    fn env(k: &str) -> Option<String> {
        (k == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn claude_desktop_files_are_read_as_they_are() {
        let text = r#"{
  // comments are fine
  "mcpServers": {
    "fetch": { "command": "uvx", "args": ["mcp-server-fetch", "--x=${TOKEN}",], "env": {"A": "1"} },
    "remote": { "url": "https://example.com/mcp", "type": "streamable-http", "bearerToken": "${TOKEN}", "apiKey": "k" },
    "old": { "url": "http://127.0.0.1:9/sse", "type": "sse", "disabled": true, "timeout": 5, "tools": { "allow": ["get_*"], "deny": ["get_secret"] } },
  },
}"#;
        let s = parse(text, "f.json", &defaults(), env).expect("valid");
        assert_eq!(s.len(), 3);
        let fetch = s.iter().find(|e| e.name == "fetch").expect("fetch");
        let Target::Command(c) = &fetch.target else {
            panic!("command")
        };
        assert_eq!(c.args, vec!["mcp-server-fetch", "--x=s3cret"]);
        let remote = s.iter().find(|e| e.name == "remote").expect("remote");
        let Target::Url(u) = &remote.target else {
            panic!("url")
        };
        assert_eq!(u.transport, HttpTransport::Streamablehttp);
        assert!(
            u.headers
                .contains(&("Authorization".into(), "Bearer s3cret".into()))
        );
        assert!(u.headers.contains(&("X-Api-Key".into(), "k".into())));
        let old = s.iter().find(|e| e.name == "old").expect("old");
        assert!(!old.active);
        assert_eq!(old.timeout, Some(Duration::from_secs(5)));
        assert_eq!(old.allow_tools, ["get_*"]);
        assert_eq!(old.deny_tools, ["get_secret"]);
    }

    /// The `config/mcp_server.json` of other proxies: `type` on every entry, a display
    /// `name`, install fields (ignored).
    #[test]
    fn other_proxies_files_are_read_as_they_are() {
        let text = r#"{ "mcpServers": {
  "unique-server-key1": { "type": "stdio", "name": "My Stdio Server", "active": true,
    "command": "/path/to/server", "args": ["--port", "1234"], "env": { "API_KEY": "k" },
    "installDirectory": "/custom", "installCommands": ["git clone x"] },
  "another-sse-server": { "type": "sse", "name": "My SSE Server", "active": false,
    "url": "http://localhost:8080/sse", "apiKey": "sse_key" }
} }"#;
        let s = parse(text, "mcp_server.json", &defaults(), env).expect("valid");
        let stdio = s
            .iter()
            .find(|e| e.name == "unique-server-key1")
            .expect("stdio");
        assert_eq!(stdio.title.as_deref(), Some("My Stdio Server"));
        assert!(stdio.active);
        let sse = s
            .iter()
            .find(|e| e.name == "another-sse-server")
            .expect("sse");
        assert!(!sse.active);
        let Target::Url(u) = &sse.target else {
            panic!("url")
        };
        assert_eq!(u.transport, HttpTransport::Sse);
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let text = "{\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" },\n    \"b\": {\n      \"url\": \"ftp://nope\"\n    }\n  }\n}";
        let e = parse(text, "f.json", &defaults(), env).unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e.what.contains("mcpServers.b.url"), "{e}");
        assert_eq!(e.to_string().split(':').next(), Some("f.json"));

        let e = parse("{\"mcpServers\": {\"c\": {}}}", "f.json", &defaults(), env).unwrap_err();
        assert!(e.what.contains("needs a `command`"), "{e}");

        let text = "{\"mcpServers\": {\"d\": {\"command\": \"${NOPE}\"}}}";
        let e = parse(text, "f.json", &defaults(), env).unwrap_err();
        assert!(e.what.contains("`NOPE` is not set"), "{e}");

        let e = parse(
            "{\n\"mcpServers\": {\n\"e\": [1,\n}",
            "f.json",
            &defaults(),
            env,
        )
        .unwrap_err();
        assert!(e.what.starts_with("not valid JSON"), "{e}");
        assert!(e.line >= 3, "{e:?}");

        let e = parse(
            "{\"mcpServers\": {\"a b\": {\"command\": \"x\"}}}",
            "f",
            &defaults(),
            env,
        )
        .unwrap_err();
        assert!(e.what.contains("server name"), "{e}");
    }

    #[test]
    fn named_servers_come_from_a_command_line() {
        let env = [("TZ".to_owned(), "UTC".to_owned())];
        let e = named(
            "time",
            r#"uvx mcp-server-time --local-timezone "Europe/Paris" 'a b'"#,
            &defaults(),
            &env,
            Some(Path::new("/tmp")),
        )
        .expect("valid");
        let Target::Command(c) = &e.target else {
            panic!("command")
        };
        assert_eq!(c.program, "uvx");
        assert_eq!(
            c.args,
            ["mcp-server-time", "--local-timezone", "Europe/Paris", "a b"]
        );
        assert_eq!(c.env, env);
        assert_eq!(c.cwd.as_deref(), Some(Path::new("/tmp")));
        assert!(named("bad name", "x", &defaults(), &[], None).is_err());
        assert!(named("empty", "  ", &defaults(), &[], None).is_err());
        assert!(named("quotes", "x 'y", &defaults(), &[], None).is_err());
    }
}
