//! Server-sent events as response bodies: event formatting and keep-alive comments.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;

/// Keep-alive comments keep idle streams open through proxies and load balancers.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event as wire text. `data` is JSON on one line, so it needs one `data:` field.
pub fn event(name: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    if let Some(name) = name {
        s.push_str("event: ");
        s.push_str(name);
        s.push('\n');
    }
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line.strip_suffix('\r').unwrap_or(line));
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

pub const PING: &[u8] = b": keep-alive\n\n";

/// The answers to a batch as one event: one JSON array.
pub fn batch_event(out: &mut crate::jsonrpc::Pieces, all: &[crate::jsonrpc::Message]) {
    out.text("event: message\ndata: [");
    for (i, m) in all.iter().enumerate() {
        if i > 0 {
            out.text(",");
        }
        out.message(m);
    }
    out.text("]\n\n");
}

/// A message as one event, added to `out`: its JSON text is one `data:` line (the message is
/// written as one line), and large payloads are not copied.
pub fn message_event(
    out: &mut crate::jsonrpc::Pieces,
    id: Option<&str>,
    msg: &crate::jsonrpc::Message,
) {
    if let Some(id) = id {
        out.text("id: ");
        out.text(id);
        out.text("\n");
    }
    out.text("event: message\ndata: ");
    out.message(msg);
    out.text("\n\n");
}

/// An SSE response over a stream of ready-made events.
pub fn response<S>(stream: S, extra: &[(&str, String)]) -> Response
where
    S: Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    let mut resp = (
        [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-cache, no-transform"),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    for (k, v) in extra {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.insert(name, value);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn events_are_framed() {
        assert_eq!(
            super::event(Some("message"), Some("3-1"), "{\"a\":1}"),
            "id: 3-1\nevent: message\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(super::event(None, None, "a\nb"), "data: a\ndata: b\n\n");
    }
}
