//! Traces over OTLP/HTTP, per the OpenTelemetry semantic conventions for MCP: one server span
//! per client request (`{mcp.method.name} {target}`), a client span towards the server as its
//! child, and the W3C trace context carried in `params._meta` (`traceparent`, `tracestate`),
//! so that a client's trace continues through the proxy into the server.
//!
//! On when `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`); the
//! other standard variables (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, …) apply.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// The provider's sampler, asked before any span of a new trace is made.
    sampler: opentelemetry_sdk::trace::Sampler,
}

/// The sampler the standard variables describe (`OTEL_TRACES_SAMPLER`, `…_ARG`).
fn sampler_from_env() -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler;
    let ratio = std::env::var("OTEL_TRACES_SAMPLER_ARG")
        .ok()
        .and_then(|a| a.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite())
        .map(|r| r.clamp(0.0, 1.0))
        .unwrap_or(1.0);
    match std::env::var("OTEL_TRACES_SAMPLER")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    }
}

/// Whether a request that brings no trace context starts a sampled trace. When it does not,
/// the proxy makes no span for it and passes it on untouched (nothing to propagate).
pub fn samples_new() -> bool {
    use opentelemetry::trace::{SamplingDecision, TraceId};
    use opentelemetry_sdk::trace::ShouldSample;
    let Some(t) = TRACING.get() else {
        return false;
    };
    let id = TraceId::from_bytes(rand::random::<[u8; 16]>());
    t.sampler
        .should_sample(None, id, "", &SpanKind::Server, &[], &[])
        .decision
        != SamplingDecision::Drop
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// Turn tracing on when an endpoint is configured; `Ok(true)` when it is on.
pub fn init(endpoint: Option<&str>) -> Result<bool, String> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let from_env = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty()));
    if endpoint.is_none() && !from_env {
        return Ok(false);
    }
    use opentelemetry_otlp::WithExportConfig;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(e) = endpoint {
        let e = e.trim_end_matches('/');
        let url = if e.ends_with("/v1/traces") {
            e.to_owned()
        } else {
            format!("{e}/v1/traces")
        };
        builder = builder.with_endpoint(url);
    }
    let exporter = builder
        .build()
        .map_err(|e| format!("the OTLP exporter cannot start: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("mcp-proxy");
    }
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler_from_env())
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("mcp-proxy");
    let _ = TRACING.set(Tracing {
        provider,
        tracer,
        propagator: TraceContextPropagator::new(),
        sampler: sampler_from_env(),
    });
    Ok(true)
}

/// Whether spans are made.
pub fn on() -> bool {
    TRACING.get().is_some()
}

/// Send what is left (at shutdown).
pub fn flush() {
    if let Some(t) = TRACING.get() {
        let _ = t.provider.force_flush();
    }
}

struct Meta<'a>(&'a HashMap<String, String>);

impl Extractor for Meta<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct Out(HashMap<String, String>);

impl Injector for Out {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// What a request's spans are about.
pub struct About<'a> {
    pub method: &'a str,
    /// The tool's or prompt's name, or the resource's URI.
    pub target: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub session: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub request_id: &'a str,
    /// `tcp` (HTTP) or `pipe` (stdio).
    pub transport: &'static str,
    pub server: &'a str,
}

/// The spans of one request in flight.
pub struct Spans {
    server: Context,
    client: Context,
}

/// Start the server span (child of the client's context in `meta`: `traceparent`,
/// `tracestate`) and the client span towards the server; the context to send on in the
/// request's `_meta`.
pub fn start(
    about: &About,
    meta: &HashMap<String, String>,
) -> Option<(Spans, HashMap<String, String>)> {
    let t = TRACING.get()?;
    let parent = t.propagator.extract(&Meta(meta));
    let name = match about.target {
        Some(x) => format!("{} {x}", about.method),
        None => about.method.to_owned(),
    };
    // Built only for spans that are recorded (not at a sampling ratio of 0).
    let attrs = || {
        let mut attrs = vec![
            KeyValue::new("mcp.method.name", about.method.to_owned()),
            KeyValue::new("jsonrpc.request.id", about.request_id.to_owned()),
            KeyValue::new("network.transport", about.transport),
            KeyValue::new("mcp.server.name", about.server.to_owned()),
        ];
        if let Some(tool) = about.tool {
            attrs.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
            attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if about.method == "prompts/get"
            && let Some(p) = about.target
        {
            attrs.push(KeyValue::new("gen_ai.prompt.name", p.to_owned()));
        }
        if about.method.starts_with("resources/")
            && let Some(u) = about.target
        {
            attrs.push(KeyValue::new("mcp.resource.uri", u.to_owned()));
        }
        if let Some(s) = about.session {
            attrs.push(KeyValue::new("mcp.session.id", s.to_owned()));
        }
        if let Some(p) = about.protocol {
            attrs.push(KeyValue::new("mcp.protocol.version", p.to_owned()));
        }
        attrs
    };
    let mut server_span = t
        .tracer
        .span_builder(name.clone())
        .with_kind(SpanKind::Server)
        .start_with_context(&t.tracer, &parent);
    let recording = server_span.is_recording();
    if recording {
        server_span.set_attributes(attrs());
    }
    let server = parent.with_span(server_span);
    let mut client_span = t
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .start_with_context(&t.tracer, &server);
    if recording {
        client_span.set_attributes(attrs());
    }
    let client = server.with_span(client_span);
    let mut out = Out(HashMap::new());
    t.propagator.inject_context(&client, &mut out);
    Some((Spans { server, client }, out.0))
}

impl Spans {
    /// The trace and span ids of the server span (for log lines).
    pub fn ids(&self) -> (String, String) {
        let c = self.server.span().span_context().clone();
        (c.trace_id().to_string(), c.span_id().to_string())
    }

    /// End both spans; `error` is `error.type` (a JSON-RPC code, `tool_error`, …) when the
    /// request failed. `towards_server` is false when the proxy answered it itself.
    pub fn end(self, error: Option<&str>, message: Option<&str>, towards_server: bool) {
        for (cx, is_client) in [(&self.client, true), (&self.server, false)] {
            let span = cx.span();
            if let Some(e) = error {
                span.set_attribute(KeyValue::new("error.type", e.to_owned()));
                span.set_status(Status::error(message.unwrap_or(e).to_owned()));
            }
            if is_client && !towards_server {
                span.set_attribute(KeyValue::new("mcp.proxy.answered_locally", true));
            }
            span.end();
        }
    }
}

/// A W3C `traceparent`'s trace and parent ids, for tests of the propagation.
pub fn parse_traceparent(tp: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = tp.split('-').collect();
    match parts.as_slice() {
        [_, trace, span, _] if trace.len() == 32 && span.len() == 16 => {
            Some(((*trace).to_owned(), (*span).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parts() {
        assert_eq!(
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some((
                "0af7651916cd43dd8448eb211c80319c".into(),
                "b7ad6b7169203331".into()
            ))
        );
        assert_eq!(parse_traceparent("garbage"), None);
    }
}
