//! Command-line flags, compatible with the Python `mcp-proxy`. These are raw: [`crate::config`]
//! turns them into a validated [`crate::config::Config`].

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::transport::HttpTransport;

const EXAMPLES: &str = "\
Examples:
  Remote server for a stdio client (Claude Desktop, Cursor):
    mcp-proxy https://example.com/mcp
    mcp-proxy --headers Authorization 'Bearer TOKEN' https://example.com/sse
  Local stdio server on the network (Streamable HTTP at /mcp, SSE at /sse):
    mcp-proxy --port 8080 -- uvx mcp-server-fetch
    mcp-proxy --port 8080 -e KEY VALUE -- npx -y @modelcontextprotocol/server-everything
  Remote server re-served over HTTP:
    mcp-proxy --port 8080 https://example.com/mcp
  Several servers from a Claude Desktop / Cursor config file, each at /servers/NAME/mcp:
    mcp-proxy --port 8080 --config ~/.cursor/mcp.json
  Try it with the built-in demo server:
    mcp-proxy --port 8080 -- mcp-proxy --demo-server
";

#[derive(Debug, Parser)]
#[command(
    name = "mcp-proxy",
    version,
    about = "Connects any MCP client to any MCP server, over stdio, Streamable HTTP or HTTP+SSE.",
    long_about = "Connects any MCP client to any MCP server, over stdio, Streamable HTTP or HTTP+SSE.\n\n\
        Given a URL, serves it on stdio (or on HTTP with --port). Given a command, starts it and \
        serves it on HTTP: Streamable HTTP at /mcp and HTTP+SSE at /sse.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Command to start (stdio server) or URL to connect to (Streamable HTTP or SSE server).
    pub command_or_url: Option<String>,

    /// Arguments for the command; put them after `--` when they start with `-`.
    pub args: Vec<String>,

    // === towards a remote server ===
    /// Header sent with every request to the server. Repeatable.
    #[arg(short = 'H', long = "headers", alias = "header", num_args = 2, value_names = ["KEY", "VALUE"], action = ArgAction::Append, help_heading = "Remote server")]
    pub headers: Vec<String>,

    /// Transport towards a URL: auto probes Streamable HTTP, then falls back to SSE.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        help_heading = "Remote server"
    )]
    pub transport: HttpTransport,

    /// Sign in with this pre-registered OAuth client: JSON or @FILE with `client_id` and
    /// `client_secret` (or `private_key`/`private_key_file` for private_key_jwt; with
    /// `"grant_type": "client_credentials"` for unattended use).
    #[arg(long, value_name = "JSON|@FILE", help_heading = "OAuth")]
    pub static_oauth_client_info: Option<String>,

    /// Fields added to the client's dynamic registration (JSON or @FILE).
    #[arg(long, value_name = "JSON|@FILE", help_heading = "OAuth")]
    pub static_oauth_client_metadata: Option<String>,

    /// A Client ID Metadata Document URL to sign in with as the client id (when the
    /// authorization server supports it).
    #[arg(long, value_name = "URL", help_heading = "OAuth")]
    pub oauth_client_metadata_url: Option<String>,

    /// The OAuth `resource` to ask tokens for (default: the server's own).
    #[arg(long, value_name = "URL", help_heading = "OAuth")]
    pub resource: Option<String>,

    /// Send no `resource` parameter (for authorization servers that reject it).
    #[arg(long, help_heading = "OAuth")]
    pub oauth_no_resource: bool,

    /// Scopes to ask for (space-separated), instead of those the server names.
    #[arg(long, value_name = "SCOPES", help_heading = "OAuth")]
    pub oauth_scope: Option<String>,

    /// Port of the loopback sign-in callback (default: one derived from the server URL).
    #[arg(long, value_name = "PORT", help_heading = "OAuth")]
    pub oauth_callback_port: Option<u16>,

    /// Seconds a browser sign-in may take.
    #[arg(
        long,
        default_value_t = 120,
        value_name = "SECONDS",
        help_heading = "OAuth"
    )]
    pub auth_timeout: u64,

    /// Seconds one request to an authorization server (metadata, registration, token) may
    /// take.
    #[arg(
        long,
        default_value_t = 30,
        value_name = "SECONDS",
        help_heading = "OAuth"
    )]
    pub oauth_timeout: u64,

    /// Allow plain HTTP to an authorization server that is not on this machine.
    #[arg(long, help_heading = "OAuth")]
    pub allow_http: bool,

    /// Use HTTP_PROXY, HTTPS_PROXY and NO_PROXY for connections to servers.
    #[arg(long, help_heading = "OAuth")]
    pub enable_proxy: bool,

    /// Never sign in with OAuth (a server that wants it gets its 401 passed on).
    #[arg(long, help_heading = "OAuth")]
    pub no_oauth: bool,

    /// An API key clients may send (`X-Api-Key` header or `?key=`), as `NAME:KEY` or `KEY`.
    /// Repeatable; also `ALLOWED_KEYS` (comma-separated)
    #[arg(
        long = "api-key",
        value_name = "[NAME:]KEY",
        help_heading = "Who may use the proxy"
    )]
    pub api_keys: Vec<String>,

    /// A static bearer token clients may send (`Authorization: Bearer`), as `NAME:TOKEN` or
    /// `TOKEN`. Repeatable; also `ALLOWED_TOKENS` (comma-separated)
    #[arg(
        long = "api-token",
        value_name = "[NAME:]TOKEN",
        help_heading = "Who may use the proxy"
    )]
    pub api_tokens: Vec<String>,

    /// A file of keys, tokens and OAuth settings (JSON), so that secrets stay out of `ps`
    #[arg(long, value_name = "FILE", help_heading = "Who may use the proxy")]
    pub auth_file: Option<std::path::PathBuf>,

    /// Accept OAuth access tokens (JWTs) from this issuer (an authorization server)
    #[arg(long, value_name = "URL", help_heading = "Who may use the proxy")]
    pub auth_issuer: Option<String>,

    /// An audience a token must name (default: any URL of this proxy). Repeatable
    #[arg(long, value_name = "AUD", help_heading = "Who may use the proxy")]
    pub auth_audience: Vec<String>,

    /// The issuer's keys: a JWKS URL or file (default: `jwks_uri` from the issuer's metadata)
    #[arg(long, value_name = "URL|FILE", help_heading = "Who may use the proxy")]
    pub auth_jwks: Option<String>,

    /// Signature algorithms accepted, comma-separated (never `none` or HMAC)
    #[arg(
        long,
        value_name = "ALGS",
        default_value = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA",
        help_heading = "Who may use the proxy"
    )]
    pub auth_algorithms: String,

    /// RFC 7662 introspection endpoint for tokens that are not JWTs
    #[arg(long, value_name = "URL", help_heading = "Who may use the proxy")]
    pub auth_introspection: Option<String>,

    /// Client id (and `MCP_PROXY_AUTH_CLIENT_SECRET`) the proxy introspects tokens with
    #[arg(long, value_name = "ID", help_heading = "Who may use the proxy")]
    pub auth_client_id: Option<String>,

    /// Scopes a token must have to use the proxy at all (space-separated); offered in the
    /// resource metadata and in 401 challenges
    #[arg(long, value_name = "SCOPES", help_heading = "Who may use the proxy")]
    pub auth_scope: Option<String>,

    /// The proxy's public base URL, as clients reach it (default: http://HOST from the request)
    #[arg(long, value_name = "URL", help_heading = "Who may use the proxy")]
    pub auth_resource: Option<String>,

    /// Which identity may see and use which servers, tools, prompts and resources (JSON;
    /// reloaded when it changes)
    #[arg(long, value_name = "FILE", help_heading = "Who may use the proxy")]
    pub policy: Option<std::path::PathBuf>,

    /// Requests per second one identity may make (0: no limit)
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        help_heading = "Who may use the proxy"
    )]
    pub identity_rate: u32,

    /// Requests one identity may have waiting for an answer at once (0: no limit)
    #[arg(
        long,
        default_value_t = 32,
        value_name = "N",
        help_heading = "Who may use the proxy"
    )]
    pub identity_concurrency: u32,

    /// Failed sign-ins from one address per minute before it is refused for the rest of it
    #[arg(
        long,
        default_value_t = 20,
        value_name = "N",
        help_heading = "Who may use the proxy"
    )]
    pub auth_failures: u32,

    /// Write one JSON line per tool call, prompt, resource read and refusal: to FILE
    /// (appended), or `-` for stderr
    #[arg(long, value_name = "FILE|-", help_heading = "Who may use the proxy")]
    pub audit_log: Option<String>,

    /// Serve /metrics (with /healthz and /readyz) on a listener of its own; also with the
    /// stdio front
    #[arg(long, value_name = "PORT", help_heading = "Observability")]
    pub metrics_port: Option<u16>,

    /// Address of the --metrics-port listener
    #[arg(
        long,
        default_value = "127.0.0.1",
        value_name = "HOST",
        help_heading = "Observability"
    )]
    pub metrics_host: String,

    /// Send traces to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318); also
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and the other standard `OTEL_*` variables
    #[arg(long, value_name = "URL", help_heading = "Observability")]
    pub otlp_endpoint: Option<String>,

    /// Collect no metrics (and serve no /metrics)
    #[arg(long, help_heading = "Observability")]
    pub no_metrics: bool,

    /// Put arguments and results into the audit log too
    #[arg(long, help_heading = "Who may use the proxy")]
    pub audit_payloads: bool,

    /// Sign in to the URL (or, with --config, to every remote server that wants it) now,
    /// then exit.
    #[arg(long, help_heading = "OAuth")]
    pub oauth_login: bool,

    /// List the servers signed in to (never a token), then exit.
    #[arg(long, help_heading = "OAuth")]
    pub oauth_list: bool,

    /// Sign out of the URL, or of every server with `all`, then exit.
    #[arg(long, value_name = "URL|all", num_args = 0..=1, default_missing_value = "", help_heading = "OAuth")]
    pub oauth_logout: Option<String>,

    /// Seconds to wait for a connection to the server.
    #[arg(
        long,
        default_value_t = 10.0,
        value_name = "SECONDS",
        help_heading = "Remote server"
    )]
    pub connect_timeout: f64,

    // === local command ===
    /// Environment variable for the command. Repeatable.
    #[arg(short = 'e', long = "env", num_args = 2, value_names = ["KEY", "VALUE"], action = ArgAction::Append, help_heading = "Local command")]
    pub env: Vec<String>,

    /// Working directory for the command.
    #[arg(long, value_name = "DIR", help_heading = "Local command")]
    pub cwd: Option<PathBuf>,

    /// Pass our whole environment to the command (default: only PATH, HOME and a few more).
    #[arg(
        long,
        overrides_with = "no_pass_environment",
        help_heading = "Local command"
    )]
    pub pass_environment: bool,

    /// Pass only PATH, HOME and a few more to the command (the default).
    #[arg(long, help_heading = "Local command")]
    pub no_pass_environment: bool,

    /// Start one command per client session instead of sharing one between all clients.
    #[arg(long, help_heading = "Local command")]
    pub per_client: bool,

    // === HTTP server ===
    /// Port to serve HTTP on (0: any free port, printed at start).
    #[arg(
        long,
        alias = "sse-port",
        value_name = "PORT",
        help_heading = "HTTP server"
    )]
    pub port: Option<u16>,

    /// Address to serve HTTP on.
    #[arg(
        long,
        alias = "sse-host",
        default_value = "127.0.0.1",
        value_name = "HOST",
        help_heading = "HTTP server"
    )]
    pub host: String,

    /// Origin allowed to call us from a browser (CORS). Repeatable; `*` allows any.
    #[arg(long, value_name = "ORIGIN", num_args = 1.., action = ArgAction::Append, help_heading = "HTTP server")]
    pub allow_origin: Vec<String>,

    /// Extra host name allowed in the Host header. Repeatable; `*` allows any.
    #[arg(long, value_name = "HOST", action = ArgAction::Append, help_heading = "HTTP server")]
    pub allow_host: Vec<String>,

    /// No sessions: every request stands alone (no GET stream, no server requests).
    #[arg(long, help_heading = "HTTP server")]
    pub stateless: bool,

    /// Seconds of inactivity after which a client session ends.
    #[arg(
        long,
        default_value_t = 1800,
        value_name = "SECONDS",
        help_heading = "HTTP server"
    )]
    pub session_timeout: u64,

    /// Messages kept per stream for clients that reconnect with Last-Event-ID.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "N",
        help_heading = "HTTP server"
    )]
    pub replay_buffer: usize,

    /// Most bytes a client may have waiting for it (its SSE queue, its /mcp streams and
    /// replay buffers, stdout); a client that stops reading beyond it loses its session.
    #[arg(
        long,
        default_value = "32MiB",
        value_name = "SIZE",
        help_heading = "HTTP server"
    )]
    pub client_buffer: String,

    /// Most connections open at once; at the cap, a new one replaces the oldest connection
    /// that has not sent a request, else waits.
    #[arg(
        long,
        default_value_t = 1024,
        value_name = "N",
        help_heading = "HTTP server"
    )]
    pub max_connections: usize,

    /// Most client sessions open at once, per server; at the cap the session idle the longest
    /// makes room, else new ones get HTTP 503.
    #[arg(
        long,
        default_value_t = 10_000,
        value_name = "N",
        help_heading = "HTTP server"
    )]
    pub max_sessions: usize,

    /// With --per-client: most server processes at once, per server (one per session).
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        help_heading = "Local command"
    )]
    pub max_processes: usize,

    /// Seconds a request's headers may take to arrive (also the longest a kept-alive
    /// connection may sit idle).
    #[arg(
        long,
        default_value_t = 30,
        value_name = "SECONDS",
        help_heading = "HTTP server"
    )]
    pub header_timeout: u64,

    /// Seconds a request's body may take to arrive.
    #[arg(
        long,
        default_value_t = 30,
        value_name = "SECONDS",
        help_heading = "HTTP server"
    )]
    pub body_timeout: u64,

    /// Milliseconds between two list-changed notifications of the same list to one client
    /// (more that come meanwhile are sent as one when the time is up).
    #[arg(
        long,
        default_value_t = 250,
        value_name = "MS",
        help_heading = "HTTP server"
    )]
    pub list_changed_interval: u64,

    /// Seconds that open sessions get to finish when the proxy stops, before they are closed.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "SECONDS",
        help_heading = "HTTP server"
    )]
    pub shutdown_timeout: u64,

    /// Seconds between checks of a remote server that no client has reached lately (it is
    /// checked sooner while it fails); 0: never check, only watch clients' exchanges.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECONDS",
        help_heading = "Remote server"
    )]
    pub health_interval: u64,

    // === several servers ===
    /// An mcpServers file (as Claude Desktop and Cursor write it): each server at
    /// /servers/NAME/mcp and /servers/NAME/sse, all merged at /mcp and /sse (or on stdio
    /// without --port).
    #[arg(
        long,
        alias = "named-server-config",
        value_name = "FILE",
        help_heading = "Several servers"
    )]
    pub config: Option<PathBuf>,

    /// What joins a server's name and a tool's or prompt's name in the merged view.
    #[arg(
        long,
        default_value = "--",
        value_name = "SEP",
        help_heading = "Several servers"
    )]
    pub separator: String,

    /// Serve merged lists longer than N in pages of N, with opaque cursors (0: one page).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        help_heading = "Several servers"
    )]
    pub page_size: usize,

    /// Do not watch the config files; reload them on SIGHUP only.
    #[arg(long, help_heading = "Several servers")]
    pub no_watch: bool,

    /// A named stdio server: NAME and its command line in one argument. Repeatable.
    #[arg(long, num_args = 2, value_names = ["NAME", "COMMAND"], action = ArgAction::Append, help_heading = "Several servers")]
    pub named_server: Vec<String>,

    // === tools ===
    /// Hide tools whose name (or SERVER--NAME) matches this pattern (`*`, `?`). Repeatable.
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append, help_heading = "Tools")]
    pub ignore_tool: Vec<String>,

    /// A tool_config.json: per SERVER--TOOL, `enabled`, `displayName` and `description`.
    #[arg(long, value_name = "FILE", help_heading = "Tools")]
    pub tool_config: Option<PathBuf>,

    // === protocol eras ===
    /// Protocol era of the server: auto probes it once with server/discover (revision
    /// 2026-07-28) and falls back to initialize; legacy skips the probe.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        value_name = "ERA",
        help_heading = "Protocol eras"
    )]
    pub server_era: crate::era::upstream::ServerEra,

    /// Seconds a 2026-07-28 client has to answer an input_required result before the
    /// parked call is cancelled upstream.
    #[arg(
        long,
        default_value_t = 300,
        value_name = "SECONDS",
        help_heading = "Protocol eras"
    )]
    pub input_timeout: u64,

    /// Key that signs requestState tokens; give every replica behind a load balancer the
    /// same one (default: a random key per process).
    #[arg(
        long,
        env = "MCP_PROXY_STATE_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Protocol eras"
    )]
    pub state_secret: Option<String>,

    /// Most 2026-07-28 calls waiting for their clients' input at once, per server; at the
    /// cap the oldest is cancelled.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "N",
        help_heading = "Protocol eras"
    )]
    pub max_parked: usize,

    // === admin console ===
    /// Serve the admin console at /admin (also ENABLE_ADMIN_UI=true). Sign-in with
    /// ADMIN_USERNAME and ADMIN_PASSWORD; cookies signed with SESSION_SECRET.
    #[arg(long, help_heading = "Admin console")]
    pub admin: bool,

    /// Serve the console on a listener of its own, on this port (instead of the main one).
    #[arg(long, value_name = "PORT", help_heading = "Admin console")]
    pub admin_port: Option<u16>,

    /// Address of the console's own listener (default: --host).
    #[arg(long, value_name = "HOST", help_heading = "Admin console")]
    pub admin_host: Option<String>,

    /// Offer a shell on this host in the console (a pseudo-terminal, for signed-in admins
    /// only; every session is written to the audit log). Off unless given.
    #[arg(long, help_heading = "Admin console")]
    pub admin_terminal: bool,

    /// Most terminals open at once (with --admin-terminal).
    #[arg(
        long,
        default_value_t = 4,
        value_name = "N",
        help_heading = "Admin console"
    )]
    pub admin_terminals: usize,

    /// Seconds a console sign-in lasts.
    #[arg(long, default_value_t = 43200, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Admin console")]
    pub admin_session_timeout: u64,

    /// Failed console sign-ins allowed per address per 10 minutes; then HTTP 429 until
    /// the 10 minutes are over. Every failure is also answered only after 1 s.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Admin console")]
    pub admin_sign_in_attempts: u32,

    /// An identity of --api-key/--api-token/--auth-issuer (its name or token subject)
    /// that may use the console and its API with its key or token. Repeatable.
    #[arg(long, value_name = "NAME", action = ArgAction::Append, help_heading = "Admin console")]
    pub admin_identity: Vec<String>,

    /// Base folder of server installs (installDirectory must be inside it; a server
    /// without one is installed in BASE/NAME). Default: ./tools.
    #[arg(
        long,
        env = "TOOLS_FOLDER",
        value_name = "DIR",
        help_heading = "Admin console"
    )]
    pub tools_folder: Option<PathBuf>,

    /// Run the installCommands of the named server of --config (or `all`) whose install
    /// directory does not exist yet, printing their output, then exit.
    #[arg(long, value_name = "NAME|all", help_heading = "Admin console")]
    pub install: Option<String>,

    /// With --install: run the commands even if the install directory exists.
    #[arg(long, requires = "install", help_heading = "Admin console")]
    pub reinstall: bool,

    /// Most lines of an install's output kept (the first ones are dropped beyond it).
    #[arg(
        long,
        default_value_t = 5000,
        value_name = "N",
        help_heading = "Admin console"
    )]
    pub install_output_lines: usize,

    /// Threads that run the proxy (0: one fewer than the machine's cores, at least one, so
    /// that servers and clients on the same machine keep a core).
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Limits")]
    pub threads: usize,

    // === limits ===
    /// Most messages waiting for one client (next to the byte bound of --client-buffer);
    /// beyond it the client counts as stuck and loses its session.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub client_queue: u32,

    /// Largest config file or tool_config.json read (K, M, G, KiB, MiB, GiB suffixes).
    #[arg(
        long,
        default_value = "4MiB",
        value_name = "SIZE",
        help_heading = "Limits"
    )]
    pub max_config_size: String,

    /// Log lines of one kind that peers can cause (a client falling behind, a remote
    /// that is down) logged per ten seconds; the rest are counted in the next one.
    #[arg(long, default_value_t = 5, value_name = "N", help_heading = "Limits")]
    pub log_repeat: u32,

    /// Lines of one server's stderr logged per ten seconds; the rest are counted.
    #[arg(long, default_value_t = 200, value_name = "N", help_heading = "Limits")]
    pub stderr_lines: u32,

    /// Streams of one /mcp session kept for resumption; beyond it the oldest finished one
    /// is forgotten.
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub max_streams: u32,

    /// Size asked for the pipes to and from stdio servers (0: the system's default).
    #[arg(
        long,
        default_value = "1MiB",
        value_name = "SIZE",
        help_heading = "Limits"
    )]
    pub pipe_size: String,

    /// Distinct tool names used as metric labels; later ones are counted as `other`.
    #[arg(
        long,
        default_value_t = 2000,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub metrics_max_tools: usize,

    /// Rounds of input (elicitation, sampling, roots) one request may take before the
    /// proxy gives up on it.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub max_input_rounds: u32,

    /// Pages fetched from one server for one merged list.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub max_list_pages: u32,

    // === general ===
    /// Largest message accepted in either direction (bytes; K, M, G, KiB, MiB, GiB suffixes).
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub max_message_size: String,

    /// Seconds a request may wait for the server without any sign of progress (0: no limit).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,

    /// Log debug output (same as --log-level debug).
    #[arg(long, overrides_with = "no_debug")]
    pub debug: bool,

    #[arg(long, hide = true)]
    pub no_debug: bool,

    /// Log level: error, warn, info, debug, trace (or a RUST_LOG-style filter).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Act as the built-in demo MCP server on stdio (tools, resources, prompts; for trying
    /// things out and for benchmarks).
    #[arg(long)]
    pub demo_server: bool,

    /// With --demo-server: that many extra tools (for benchmarks of large lists).
    #[arg(long, default_value_t = 0, hide = true)]
    pub demo_tools: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
