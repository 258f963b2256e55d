//! Metrics for Prometheus (`/metrics`), named after the OpenTelemetry semantic conventions for
//! MCP where they define one, recorded where every request and its answer pass once: the
//! [`Meter`] in front of each client session's route (see `Route::Gated`).

pub mod meter;
pub mod trace;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use meter::Meter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    pub server: String,
    pub method: String,
    pub tool: String,
    /// `ok`, `tool_error`, `error`, `timeout`, `refused`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorCode {
    pub server: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub server: String,
    pub mcp_method_name: String,
    pub gen_ai_tool_name: String,
    pub error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Server {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Sessions {
    pub server: String,
    pub transport: String,
    /// `session-based` (2025-11-25 and before); 2026-07-28 clients open no sessions.
    pub era: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Bytes {
    pub server: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerState {
    pub server: String,
    pub state: String,
}

/// The semantic conventions' advice for MCP durations, in seconds (and +Inf).
const BOUNDS: [f64; 17] = [
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    f64::MAX,
];

/// A histogram of atomics: observing takes no lock, so calls of many sessions that land in
/// one series do not wait for each other (the crate's own histogram takes a write lock).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug, Default)]
struct HistogramInner {
    counts: [std::sync::atomic::AtomicU64; 17],
    sum: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl Histogram {
    /// The upper bound of the bucket that holds quantile `q` (0–1) of what was observed.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        use std::sync::atomic::Ordering::Relaxed;
        let count = self.inner.count.load(Relaxed);
        if count == 0 {
            return None;
        }
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in BOUNDS.iter().zip(self.inner.counts.iter()) {
            seen += c.load(Relaxed);
            if seen >= rank {
                return Some(*b);
            }
        }
        BOUNDS.last().copied()
    }

    pub fn observe(&self, v: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = BOUNDS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BOUNDS.len() - 1);
        self.inner.counts[i].fetch_add(1, Relaxed);
        self.inner.count.fetch_add(1, Relaxed);
        let _ = self.inner.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }
}

impl prometheus_client::metrics::TypedMetric for Histogram {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for Histogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .zip(self.inner.counts.iter())
            .map(|(b, c)| (*b, c.load(Relaxed)))
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            f64::from_bits(self.inner.sum.load(Relaxed)),
            self.inner.count.load(Relaxed),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

#[derive(Clone)]
pub struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::default()
    }
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<Request, Counter>,
    pub errors: Family<ErrorCode, Counter>,
    pub server_duration: Family<Operation, Histogram, Buckets>,
    pub client_duration: Family<Operation, Histogram, Buckets>,
    pub in_flight: Family<Server, Gauge>,
    pub bytes: Family<Bytes, Counter>,
    pub auth_refusals: Family<Reason, Counter>,
    pub oauth_refreshes: Family<Server, Counter>,
    pub replay_drops: Counter,
    // Read when scraped.
    pub sessions: Family<Sessions, Gauge>,
    pub parked: Family<Server, Gauge>,
    pub state: Family<ServerState, Gauge>,
    pub restarts: Family<Server, Gauge>,
    pub process_memory: Gauge,
    pub process_open_files: Gauge,
    pub process_cpu: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Tool names seen in `tools/list` answers (the only ones used as label values).
    tools: RwLock<HashSet<String>>,
    /// Per server, calls, errors and durations in one place (for the admin console), once
    /// [`Metrics::keep_summaries`] was called.
    summaries: RwLock<Option<HashMap<String, Arc<Summary>>>>,
}

/// One server's calls, errors and durations since the start.
#[derive(Debug, Default)]
pub struct Summary {
    pub calls: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    pub duration: Histogram,
}

static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();

/// The metrics, when they are on.
pub fn get() -> Option<&'static Arc<Metrics>> {
    METRICS.get()
}

/// Turn metrics on (once per process).
pub fn enable() -> &'static Arc<Metrics> {
    METRICS.get_or_init(|| Arc::new(Metrics::new()))
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            errors: Family::default(),
            server_duration: Family::new_with_constructor(Buckets),
            client_duration: Family::new_with_constructor(Buckets),
            in_flight: Family::default(),
            bytes: Family::default(),
            auth_refusals: Family::default(),
            oauth_refreshes: Family::default(),
            replay_drops: Counter::default(),
            sessions: Family::default(),
            parked: Family::default(),
            state: Family::default(),
            restarts: Family::default(),
            process_memory: Gauge::default(),
            process_open_files: Gauge::default(),
            process_cpu: Gauge::default(),
            tools: Default::default(),
            summaries: Default::default(),
            registry: Registry::default(),
        };
        r.register(
            "mcp_proxy_requests",
            "Requests from clients, by server, MCP method, tool and outcome (ok, tool_error, error, timeout, refused)",
            m.requests.clone(),
        );
        r.register(
            "mcp_proxy_errors",
            "JSON-RPC errors answered to clients, by server, method and code",
            m.errors.clone(),
        );
        r.register_with_unit(
            "mcp_server_operation_duration",
            "mcp.server.operation.duration: from a client's request to its answer, as the proxy serves it",
            Unit::Seconds,
            m.server_duration.clone(),
        );
        r.register_with_unit(
            "mcp_client_operation_duration",
            "mcp.client.operation.duration: from the proxy's request to a server to its answer",
            Unit::Seconds,
            m.client_duration.clone(),
        );
        r.register(
            "mcp_proxy_calls_in_flight",
            "Client requests waiting for their answers",
            m.in_flight.clone(),
        );
        r.register(
            "mcp_proxy_message_bytes",
            "Bytes of JSON-RPC messages: in (from clients) and out (to clients)",
            m.bytes.clone(),
        );
        r.register(
            "mcp_proxy_auth_refusals",
            "Requests refused by inbound auth, by reason",
            m.auth_refusals.clone(),
        );
        r.register(
            "mcp_proxy_oauth_refreshes",
            "OAuth token refreshes towards remote servers",
            m.oauth_refreshes.clone(),
        );
        r.register(
            "mcp_proxy_replay_drops",
            "Messages dropped from a stream's replay buffer before its client read them (--replay-buffer)",
            m.replay_drops.clone(),
        );
        r.register(
            "mcp_proxy_sessions",
            "Client sessions open, by server, transport (streamable-http, sse) and era",
            m.sessions.clone(),
        );
        r.register(
            "mcp_proxy_parked_calls",
            "2026-07-28 calls waiting for their clients' input",
            m.parked.clone(),
        );
        r.register(
            "mcp_proxy_server_state",
            "1 for the state each server is in (ready, failed, starting, needs-authorization, …)",
            m.state.clone(),
        );
        r.register(
            "mcp_proxy_server_restarts",
            "Starts of a server after its first",
            m.restarts.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the proxy",
            Unit::Bytes,
            m.process_memory.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors of the proxy",
            m.process_open_files.clone(),
        );
        r.register_with_unit(
            "process_cpu",
            "CPU time the proxy used (user and system)",
            Unit::Seconds,
            m.process_cpu.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The label value for a tool: its name if a server listed it, else `other`.
    pub fn tool_label(&self, name: &str) -> String {
        if self.tools.read().is_ok_and(|t| t.contains(name)) {
            name.to_owned()
        } else {
            "other".into()
        }
    }

    /// Keep a [`Summary`] per server from now on.
    pub fn keep_summaries(&self) {
        if let Ok(mut s) = self.summaries.write()
            && s.is_none()
        {
            *s = Some(HashMap::new());
        }
    }

    /// The summary of `server`, when summaries are kept.
    pub fn summary(&self, server: &str) -> Option<Arc<Summary>> {
        if let Some(s) = self.summaries.read().ok()?.as_ref()?.get(server) {
            return Some(s.clone());
        }
        let mut all = self.summaries.write().ok()?;
        let all = all.as_mut()?;
        Some(all.entry(server.to_owned()).or_default().clone())
    }

    /// Learn the tool names of a `tools/list` answer.
    pub fn learn_tools(&self, names: impl Iterator<Item = String>) {
        if let Ok(mut t) = self.tools.write() {
            let max = crate::limits::get().metrics_max_tools;
            for n in names {
                if t.len() >= max {
                    break;
                }
                t.insert(n);
            }
        }
    }

    pub fn auth_refused(&self, reason: &str) {
        self.auth_refusals
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The process's own figures, read now (Linux; elsewhere they stay 0).
    fn read_process(&self) {
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
        {
            self.process_memory.set(pages * 4096);
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            self.process_open_files.set(d.count() as i64);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 (utime, stime), counted from the state at index 0 here = 3.
            if let (Some(u), Some(s)) = (
                f.get(11).and_then(|x| x.parse::<f64>().ok()),
                f.get(12).and_then(|x| x.parse::<f64>().ok()),
            ) {
                self.process_cpu.set((u + s) / 100.0);
            }
        }
    }

    /// The text of a scrape: OpenMetrics, or the Prometheus text format (the same without
    /// its `# EOF` line).
    pub fn render(&self, openmetrics: bool) -> String {
        self.read_process();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        if !openmetrics {
            out = out.replace("# EOF\n", "");
        }
        out
    }
}

/// `/metrics`: the figures; scrape-time ones (sessions, states) from `update` first.
pub fn respond(
    headers: &http::HeaderMap,
    update: impl FnOnce(&Metrics),
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(m) = get() else {
        return (http::StatusCode::NOT_FOUND, "metrics are off\n").into_response();
    };
    update(m);
    let openmetrics = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let ctype = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(http::header::CONTENT_TYPE, ctype)], m.render(openmetrics)).into_response()
}
