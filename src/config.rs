//! The validated configuration the rest of the program trusts.

use std::time::Duration;

use crate::cli::Cli;
use crate::route::RouteOptions;
use crate::server::guard::Guard;
use crate::transport::{CommandSpec, Limits, Target, UrlSpec};

/// Where the client side of the proxy is.
#[derive(Debug, Clone)]
pub enum Front {
    Stdio,
    Http { host: String, port: u16 },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The server at `/mcp` and `/sse` (or on stdio), if one was given.
    pub target: Option<Target>,
    /// Named servers, each at `/servers/NAME/`.
    pub servers: Vec<crate::servers::ServerEntry>,
    /// Which tools clients see.
    pub tools: std::sync::Arc<crate::curation::Policy>,
    /// Joins server and tool names in the merged view.
    pub separator: String,
    /// Merged lists longer than this are served in pages.
    pub page_size: Option<usize>,
    /// Whether the config files are watched for changes (SIGHUP reloads them either way).
    pub watch: bool,
    /// Where `servers` and `tools` come from, read again on a reload.
    pub sources: Sources,
    pub front: Front,
    pub per_client: bool,
    pub stateless: bool,
    pub route: RouteOptions,
    pub session_timeout: Duration,
    pub replay_events: usize,
    pub guard: Guard,
    pub era: EraOptions,
    /// Most bytes waiting for one client.
    pub client_buffer: usize,
    /// How long sessions get to finish when the proxy stops.
    pub shutdown_timeout: Duration,
    /// How often a remote server is checked when no client reaches it.
    pub health_interval: Option<Duration>,
    pub max_connections: usize,
    /// Most client sessions per server, and most per-client server processes.
    pub max_sessions: usize,
    pub max_processes: usize,
    /// Most 2026-07-28 calls parked at once, per server.
    pub max_parked: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Who may use the HTTP front (keys, tokens, OAuth), its policy, limits and audit log.
    pub access: Option<std::sync::Arc<crate::access::Access>>,
    /// Whether metrics are collected, and the address of their own listener, if any.
    pub metrics: bool,
    pub metrics_listen: Option<String>,
    /// `--otlp-endpoint`.
    pub otlp_endpoint: Option<String>,
    /// The admin console, when it is on.
    pub admin: Option<crate::admin::Settings>,
}

/// Where the named servers and the tool rules come from: files read at start and again on
/// every reload, and the command line's own servers and patterns.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The `mcpServers` file.
    pub file: Option<std::path::PathBuf>,
    /// The `tool_config.json` file.
    pub tool_config: Option<std::path::PathBuf>,
    ignore: Vec<String>,
    /// `--named-server`s.
    named: Vec<crate::servers::ServerEntry>,
    defaults: crate::servers::Defaults,
}

impl Sources {
    /// Read the servers and the tool rules, and check them.
    pub fn read(
        &self,
    ) -> Result<(Vec<crate::servers::ServerEntry>, crate::curation::Policy), ConfigError> {
        let mut servers = match &self.file {
            Some(path) => crate::servers::load(path, &self.defaults)?,
            None => vec![],
        };
        servers.extend(self.named.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        for s in &servers {
            if !seen.insert(s.name.clone()) {
                return Err(ConfigError::DuplicateName(s.name.clone()));
            }
        }
        let tools = crate::curation::Policy::load(&self.ignore, self.tool_config.as_deref())
            .map_err(ConfigError::ToolConfig)?;
        Ok((servers, tools))
    }

    /// What entries of the servers file inherit from the command line.
    pub fn defaults(&self) -> &crate::servers::Defaults {
        &self.defaults
    }

    /// The files a reload reads.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.file.iter().chain(&self.tool_config).cloned().collect()
    }
}

/// How the proxy bridges protocol eras.
#[derive(Debug, Clone)]
pub struct EraOptions {
    /// How long a parked call waits for a modern client's retry.
    pub input_timeout: Duration,
    pub state_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no server given: pass a command or a URL (see --help)")]
    NoTarget,
    #[error("invalid URL `{0}`: {1}")]
    BadUrl(String, String),
    #[error("invalid --max-message-size `{0}`: use a number of bytes, e.g. 1048576, 512K or 64MiB")]
    BadSize(String),
    #[error("invalid --client-buffer `{0}`: use a number of bytes, e.g. 1048576, 512K or 32MiB")]
    BadBuffer(String),
    #[error("invalid --{0} `{1}`: use a number of bytes, e.g. 1048576, 512K or 4MiB")]
    BadBound(&'static str, String),
    #[error("{0}")]
    Admin(String),
    #[error("invalid --connect-timeout: must be a positive number of seconds")]
    BadTimeout,
    #[error("--per-client needs a command to start, not a URL")]
    PerClientUrl,
    #[error("{0}")]
    ServersFile(#[from] crate::servers::FileError),
    #[error("{0}")]
    NamedServer(String),
    #[error(
        "named servers are served over HTTP: add --port (on stdio only one server can be served)"
    )]
    NamedServersNeedPort,
    #[error("two servers are named `{0}`")]
    DuplicateName(String),
    #[error("{0}")]
    ToolConfig(String),
    #[error("invalid --separator `{0}`: use 1 to 4 of the characters A-Z a-z 0-9 _ -")]
    BadSeparator(String),
    #[error("{0}")]
    OAuth(String),
    #[error("{0}")]
    Access(String),
}

/// Read a config file: a regular file (not a FIFO, a device or a directory) of at most
/// `--max-config-size` bytes, in UTF-8. The error says what is wrong, for `FILE: …` messages.
pub fn read_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO for reading would wait for a writer: never wait.
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open
        .open(path)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let max = crate::limits::get().max_config_size;
    if !meta.is_file() {
        return Err("not a regular file (a config file must be a plain file)".into());
    }
    if meta.len() > max {
        return Err(format!(
            "the file is {} bytes, more than a config file may be ({max}, --max-config-size)",
            meta.len()
        ));
    }
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if text.len() as u64 > max {
        return Err(format!(
            "the file grew past what a config file may be ({max} bytes, --max-config-size)"
        ));
    }
    Ok(text)
}

pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

fn pairs(flat: &[String]) -> Vec<(String, String)> {
    flat.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// `HOST:PORT` to bind, with an IPv6 host in brackets (given with or without them).
pub fn socket_address(host: &str, port: u16) -> String {
    let h = host.trim_matches(['[', ']']);
    if h.contains(':') {
        format!("[{h}]:{port}")
    } else {
        format!("{h}:{port}")
    }
}

pub fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

impl Config {
    /// The process-wide bounds the command line sets (see [`crate::limits`]).
    pub fn bounds(cli: &Cli) -> Result<crate::limits::Bounds, ConfigError> {
        let max_config_size = parse_size(&cli.max_config_size)
            .ok_or_else(|| ConfigError::BadBound("max-config-size", cli.max_config_size.clone()))?;
        let pipe_size = if cli.pipe_size.trim() == "0" {
            0
        } else {
            parse_size(&cli.pipe_size)
                .ok_or_else(|| ConfigError::BadBound("pipe-size", cli.pipe_size.clone()))?
        };
        Ok(crate::limits::Bounds {
            client_queue: cli.client_queue as usize,
            max_config_size: max_config_size as u64,
            log_repeat: cli.log_repeat,
            stderr_lines: cli.stderr_lines,
            max_streams: cli.max_streams as usize,
            pipe_size,
            metrics_max_tools: cli.metrics_max_tools,
            max_input_rounds: cli.max_input_rounds as usize,
            max_list_pages: cli.max_list_pages as usize,
        })
    }

    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let max = parse_size(&cli.max_message_size)
            .ok_or_else(|| ConfigError::BadSize(cli.max_message_size.clone()))?;
        let client_buffer = parse_size(&cli.client_buffer)
            .ok_or_else(|| ConfigError::BadBuffer(cli.client_buffer.clone()))?;
        if !(cli.connect_timeout.is_finite() && cli.connect_timeout > 0.0) {
            return Err(ConfigError::BadTimeout);
        }
        let limits = Limits {
            max_message_size: max,
            use_proxy: cli.enable_proxy,
        };
        let oauth = (!cli.no_oauth)
            .then(|| Self::oauth_settings(cli))
            .transpose()?;
        let defaults = crate::servers::Defaults {
            pass_environment: cli.pass_environment && !cli.no_pass_environment,
            connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
            oauth: oauth.clone(),
        };
        let mut named = vec![];
        for pair in cli.named_server.chunks(2) {
            if let [name, command] = pair {
                named.push(
                    crate::servers::named(
                        name,
                        command,
                        &defaults,
                        &pairs(&cli.env),
                        cli.cwd.as_deref(),
                    )
                    .map_err(ConfigError::NamedServer)?,
                );
            }
        }
        // The console makes its files before they are read (and names tool_config.json).
        let admin = crate::admin::Settings::from_cli(cli).map_err(ConfigError::Admin)?;
        let sources = Sources {
            file: cli.config.clone(),
            tool_config: cli
                .tool_config
                .clone()
                .or_else(|| admin.as_ref().map(|a| a.tool_config.clone())),
            ignore: cli.ignore_tool.clone(),
            named,
            defaults,
        };
        let (servers, tools) = sources.read()?;
        if !servers.is_empty() && cli.port.is_none() && cli.command_or_url.is_some() {
            return Err(ConfigError::NamedServersNeedPort);
        }
        let target = match cli.command_or_url.clone() {
            Some(t) => Some(Self::target(cli, t)?),
            // A config file may list no server yet: a reload can add them.
            None if !servers.is_empty() || cli.config.is_some() => None,
            None => return Err(ConfigError::NoTarget),
        };
        let front = match (&target, cli.port) {
            (Some(Target::Url(_)) | None, None) => Front::Stdio,
            (_, port) => Front::Http {
                host: cli.host.clone(),
                port: port.unwrap_or(0),
            },
        };
        let guard = Guard::for_bind(&cli.host, &cli.allow_host, cli.allow_origin.clone());
        let sep = &cli.separator;
        if sep.is_empty()
            || sep.len() > 4
            || !sep
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::BadSeparator(sep.clone()));
        }
        let access = {
            let access = crate::access::from_cli(cli).map_err(ConfigError::Access)?;
            // The default audience is the URL clients reach the proxy at, read from `Host`;
            // beyond loopback a client chooses `Host`, so the audience must be named.
            let loopback = matches!(&front, Front::Http { host, .. }
                if crate::server::guard::is_loopback_name(host));
            if let Some(a) = &access
                && a.verifier.as_ref().is_some_and(|v| v.audiences.is_empty())
                && a.resource.is_none()
                && matches!(front, Front::Http { .. })
                && !loopback
            {
                return Err(ConfigError::Access(
                    "--auth-issuer on an address beyond loopback needs --auth-resource URL (the proxy's public URL) or --auth-audience AUD, so that tokens for other services are not taken for this one".into(),
                ));
            }
            access
        };
        Ok(Config {
            target,
            servers,
            tools: std::sync::Arc::new(tools),
            separator: cli.separator.clone(),
            page_size: (cli.page_size > 0).then_some(cli.page_size),
            watch: !cli.no_watch,
            sources,
            front,
            per_client: cli.per_client,
            stateless: cli.stateless,
            route: RouteOptions {
                limits,
                request_timeout: (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout)),
                server_era: cli.server_era,
            },
            session_timeout: Duration::from_secs(cli.session_timeout.max(1)),
            replay_events: cli.replay_buffer,
            guard,
            era: EraOptions {
                input_timeout: Duration::from_secs(cli.input_timeout.max(1)),
                state_secret: cli.state_secret.clone().filter(|s| !s.is_empty()),
            },
            client_buffer,
            shutdown_timeout: Duration::from_secs(cli.shutdown_timeout),
            health_interval: (cli.health_interval > 0)
                .then(|| Duration::from_secs(cli.health_interval)),
            max_connections: cli.max_connections.max(1),
            max_sessions: cli.max_sessions.max(1),
            max_processes: cli.max_processes.max(1),
            max_parked: cli.max_parked.max(1),
            header_timeout: Duration::from_secs(cli.header_timeout.max(1)),
            body_timeout: Duration::from_secs(cli.body_timeout.max(1)),
            access,
            metrics: !cli.no_metrics,
            otlp_endpoint: cli.otlp_endpoint.clone(),
            admin,
            metrics_listen: cli
                .metrics_port
                .map(|p| socket_address(&cli.metrics_host, p)),
        })
    }

    /// Every remote server that signs in with OAuth: (what to call it, its credentials).
    pub fn oauth_servers(&self) -> Vec<(String, std::sync::Arc<crate::oauth::OAuth>)> {
        let mut out = vec![];
        if let Some(Target::Url(u)) = &self.target
            && let Some(a) = &u.auth.0
        {
            out.push((crate::transport::redact_url(&u.url), a.clone()));
        }
        for s in &self.servers {
            if let Target::Url(u) = &s.target
                && let Some(a) = &u.auth.0
            {
                out.push((s.name.clone(), a.clone()));
            }
        }
        out
    }

    /// How remote servers are signed in to, from the command line.
    fn oauth_settings(cli: &Cli) -> Result<crate::oauth::Settings, ConfigError> {
        let json = |flag: &str, v: &str| {
            crate::oauth::Settings::json_arg(v)
                .map_err(|e| ConfigError::OAuth(format!("{flag}: {e}")))
        };
        let static_client = match &cli.static_oauth_client_info {
            Some(v) => Some(
                crate::oauth::StaticClient::parse(&json("--static-oauth-client-info", v)?)
                    .map_err(|e| ConfigError::OAuth(format!("--static-oauth-client-info: {e}")))?,
            ),
            None => None,
        };
        let client_metadata = match &cli.static_oauth_client_metadata {
            Some(v) => match serde_json::from_str::<serde_json::Value>(&json(
                "--static-oauth-client-metadata",
                v,
            )?) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => {
                    return Err(ConfigError::OAuth(
                        "--static-oauth-client-metadata: must be a JSON object".into(),
                    ));
                }
            },
            None => Default::default(),
        };
        Ok(crate::oauth::Settings {
            static_client,
            client_metadata,
            metadata_url: cli.oauth_client_metadata_url.clone(),
            resource: cli.resource.clone(),
            no_resource: cli.oauth_no_resource,
            scopes: cli
                .oauth_scope
                .as_ref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect()),
            callback_port: cli.oauth_callback_port,
            auth_timeout: Duration::from_secs(cli.auth_timeout.max(1)),
            request_timeout: Duration::from_secs(cli.oauth_timeout.max(1)),
            allow_http: cli.allow_http,
            enable_proxy: cli.enable_proxy,
            store_dir: None,
        })
    }

    /// `--metrics-port` with `--no-metrics`.
    pub fn no_metrics_listener_conflict(&self) -> bool {
        !self.metrics && self.metrics_listen.is_some()
    }

    /// The server given on the command line.
    fn target(cli: &Cli, target_text: String) -> Result<Target, ConfigError> {
        let target = if is_url(&target_text) {
            if cli.per_client {
                return Err(ConfigError::PerClientUrl);
            }
            let url = reqwest::Url::parse(&target_text).map_err(|e| {
                ConfigError::BadUrl(crate::transport::redact_text(&target_text), e.to_string())
            })?;
            let mut headers = pairs(&cli.headers);
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                && let Ok(token) = std::env::var("API_ACCESS_TOKEN")
                && !token.is_empty()
            {
                headers.push(("Authorization".into(), format!("Bearer {token}")));
            }
            let explicit = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
            let auth = if cli.no_oauth || explicit {
                crate::oauth::Slot(None)
            } else {
                crate::oauth::Slot(Some(crate::oauth::OAuth::new(
                    &url,
                    Self::oauth_settings(cli)?,
                    true,
                )))
            };
            Target::Url(UrlSpec {
                url,
                transport: cli.transport,
                headers,
                connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
                health: Default::default(),
                auth,
            })
        } else {
            let name = std::path::Path::new(&target_text)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| target_text.clone());
            Target::Command(CommandSpec {
                program: target_text.clone(),
                args: cli.args.clone(),
                env: pairs(&cli.env),
                pass_environment: cli.pass_environment && !cli.no_pass_environment,
                cwd: cli.cwd.clone(),
                name,
            })
        };
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["mcp-proxy"];
        v.extend_from_slice(args);
        Config::from_cli(&Cli::try_parse_from(v).expect("flags parse"))
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn url_alone_serves_stdio() {
        let c = cfg(&["https://example.com/mcp"]).unwrap();
        assert!(matches!(c.front, Front::Stdio));
        let c = cfg(&["--port", "8080", "https://example.com/mcp"]).unwrap();
        assert!(matches!(c.front, Front::Http { port: 8080, .. }));
    }

    #[test]
    fn command_serves_http_with_python_compatible_flags() {
        let c = cfg(&[
            "--sse-port",
            "9000",
            "--sse-host",
            "0.0.0.0",
            "-e",
            "K",
            "V",
            "--",
            "uvx",
            "mcp-server-fetch",
            "--user-agent=x",
        ])
        .unwrap();
        match (&c.front, &c.target) {
            (Front::Http { host, port }, Some(Target::Command(cmd))) => {
                assert_eq!((host.as_str(), *port), ("0.0.0.0", 9000));
                assert_eq!(cmd.program, "uvx");
                assert_eq!(cmd.args, vec!["mcp-server-fetch", "--user-agent=x"]);
                assert_eq!(cmd.env, vec![("K".to_owned(), "V".to_owned())]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Flags after the command, as the Python mcp-proxy allows.
        let c = cfg(&["your-command", "--port", "8080", "-e", "A", "B"]).unwrap();
        assert!(matches!(c.front, Front::Http { port: 8080, .. }));
    }

    #[test]
    fn headers_pair_up() {
        let c = cfg(&[
            "-H",
            "Authorization",
            "Bearer x",
            "--headers",
            "X-A",
            "1",
            "http://h/sse",
        ])
        .unwrap();
        let Some(Target::Url(u)) = c.target else {
            panic!()
        };
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.headers[0], ("Authorization".into(), "Bearer x".into()));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(cfg(&[]), Err(ConfigError::NoTarget)));
        assert!(matches!(
            cfg(&["--max-message-size", "huge", "x"]),
            Err(ConfigError::BadSize(_))
        ));
        assert!(matches!(
            cfg(&["--per-client", "http://h/mcp"]),
            Err(ConfigError::PerClientUrl)
        ));
    }
}
