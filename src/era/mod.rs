//! Protocol eras: the stateless revision 2026-07-28 ("modern") and the session-based revisions
//! 2024-11-05 .. 2025-11-25 ("legacy"), and what it takes to translate between them.
//!
//! A modern request carries everything a legacy `initialize` said once per session: its
//! protocol version, the client's capabilities and info, in `params._meta`.
//! - [`front`]: modern clients in front of a session-based route (the proxy's own session with
//!   the server stands in for the handshake; server requests become `input_required`);
//! - [`upstream`]: modern servers behind a session-based route (the era probe, and an adapter
//!   that answers `initialize` from `server/discover` and turns `input_required` into server
//!   requests);
//! - [`seal`]: the signed `requestState` of parked calls.

use serde_json::Value;

use crate::jsonrpc::{Message, code, to_raw};

/// The stateless revision.
pub const MODERN: &str = "2026-07-28";
/// Modern revisions this proxy speaks.
pub const MODERN_VERSIONS: &[&str] = &[MODERN];

pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

pub mod front;
pub mod params;
pub mod seal;
pub mod upstream;

/// Header / body disagreement (HTTP 400).
pub const HEADER_MISMATCH: i64 = -32020;
/// A required client capability is missing.
pub const MISSING_CAPABILITY: i64 = -32021;
/// The requested protocol version is not supported (HTTP 400).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// Results that 2026-07-28 makes cacheable: they must carry `ttlMs` and `cacheScope`.
const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Whether a protocol version names the stateless era.
pub fn is_modern(version: &str) -> bool {
    version >= MODERN
}

/// What a modern request says about its client, from `params._meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    pub version: Option<String>,
    pub capabilities: Option<Value>,
    pub client_info: Option<Value>,
    pub log_level: Option<String>,
}

impl RequestMeta {
    pub fn of(msg: &Message) -> RequestMeta {
        // Only `_meta` is read: the rest of `params` (arguments of any size) is skipped over.
        #[derive(serde::Deserialize)]
        struct MetaOnly {
            #[serde(rename = "_meta")]
            meta: Option<Value>,
        }
        let meta = msg
            .params_mention("_meta")
            .then(|| msg.params_as::<MetaOnly>())
            .flatten()
            .and_then(|p| p.meta)
            .unwrap_or(Value::Null);
        RequestMeta {
            version: meta
                .get(META_VERSION)
                .and_then(Value::as_str)
                .map(str::to_owned),
            capabilities: meta.get(META_CAPABILITIES).cloned(),
            client_info: meta.get(META_CLIENT_INFO).cloned(),
            log_level: meta
                .get(META_LOG_LEVEL)
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// Why a modern request was refused before it went anywhere.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl Refusal {
    pub fn mismatch(message: String) -> Refusal {
        Refusal {
            code: HEADER_MISMATCH,
            message,
            data: None,
        }
    }

    pub fn to_message(&self, id: crate::jsonrpc::Id) -> Message {
        Message::error(id, self.code, &self.message, self.data.clone())
    }
}

/// The HTTP headers that 2026-07-28 mirrors from the body.
#[derive(Debug, Default)]
pub struct Headers<'a> {
    /// Whether the request came over HTTP, where the headers are required.
    pub http: bool,
    pub version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// What the `Mcp-Name` header mirrors: the tool or prompt name of `tools/call` and
/// `prompts/get`, the URI of `resources/read`.
pub fn mcp_name(msg: &Message) -> Option<String> {
    let p = msg.params_as::<Value>()?;
    let v = match msg.method()? {
        "resources/read" => p.get("uri"),
        "tools/call" | "prompts/get" => p.get("name"),
        _ => None,
    };
    v.and_then(Value::as_str).map(str::to_owned)
}

/// An `Mcp-Name` / `Mcp-Param-*` header value as text: the `=?base64?...?=` form decoded.
pub fn decode_header_value(v: &str) -> String {
    use base64::Engine;
    v.strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
        .and_then(|inner| base64::engine::general_purpose::STANDARD.decode(inner).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| v.to_owned())
}

/// A header value for `v`: as is when it is plain visible ASCII, else `=?base64?...?=`.
pub fn encode_header_value(v: &str) -> String {
    use base64::Engine;
    let sentinel = v.starts_with("=?base64?") && v.ends_with("?=");
    let unsafe_text = v.is_empty()
        || v.bytes().any(|b| !(0x20..0x7f).contains(&b))
        || v.starts_with(' ')
        || v.ends_with(' ');
    if sentinel || unsafe_text {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
        )
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod header_tests {
    #[test]
    fn header_values_round_trip() {
        for v in [
            "us-west1",
            "Hello, 世界",
            " padded ",
            "line1\nline2",
            "=?base64?literal?=",
        ] {
            let e = super::encode_header_value(v);
            assert!(e.is_ascii());
            assert_eq!(super::decode_header_value(&e), v);
        }
        assert_eq!(super::encode_header_value("us-west1"), "us-west1");
        assert_eq!(
            super::encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
    }
}

/// Check a modern request against its headers and the versions we speak.
pub fn validate(msg: &Message, headers: &Headers<'_>) -> Result<RequestMeta, Refusal> {
    let meta = RequestMeta::of(msg);
    let method = msg.method().unwrap_or("");
    let Some(version) = meta.version.as_deref() else {
        return Err(Refusal {
            code: code::INVALID_PARAMS,
            message: format!("params._meta[\"{META_VERSION}\"] is required"),
            data: None,
        });
    };
    if let (Some(h), Some(b)) = (headers.version, meta.version.as_deref())
        && h != b
    {
        return Err(Refusal::mismatch(format!(
            "MCP-Protocol-Version header ({h}) does not match params._meta[\"{META_VERSION}\"] ({b})"
        )));
    }
    if !MODERN_VERSIONS.contains(&version) {
        // What `server/discover` says too; the session-based revisions are reached through
        // `initialize`, not per request.
        let supported: Vec<&str> = MODERN_VERSIONS.to_vec();
        return Err(Refusal {
            code: UNSUPPORTED_VERSION,
            message: format!("unsupported protocol version {version}"),
            data: Some(serde_json::json!({ "requested": version, "supported": supported })),
        });
    }
    if let Some(h) = headers.method
        && h != method
    {
        return Err(Refusal::mismatch(format!(
            "Mcp-Method header ({h}) does not match the body's method ({method})"
        )));
    }
    if let Some(h) = headers.name {
        let body = mcp_name(msg);
        let body_name = body.as_deref();
        if body_name != Some(h) {
            return Err(Refusal::mismatch(format!(
                "Mcp-Name header ({h}) does not match the body ({})",
                body_name.unwrap_or("nothing")
            )));
        }
    }
    if headers.http {
        let needs_name = matches!(method, "tools/call" | "resources/read" | "prompts/get");
        let missing = if headers.version.is_none() {
            Some("MCP-Protocol-Version")
        } else if headers.method.is_none() {
            Some("Mcp-Method")
        } else if needs_name && headers.name.is_none() {
            Some("Mcp-Name")
        } else {
            None
        };
        if let Some(h) = missing {
            return Err(Refusal::mismatch(format!("the {h} header is required")));
        }
    }
    if msg.is_request() && meta.capabilities.is_none() {
        return Err(Refusal {
            code: code::INVALID_PARAMS,
            message: format!("params._meta[\"{META_CAPABILITIES}\"] is required"),
            data: None,
        });
    }
    Ok(meta)
}

/// The per-request keys of 2026-07-28 that a session-based server learnt from `initialize`.
const REQUEST_KEYS: &[&str] = &[
    META_VERSION,
    META_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
];

/// A modern request as a session-based server should see it: without the per-request keys
/// (a dual-era server would otherwise serve it as a modern request); the rest of `_meta`
/// (a progress token, say) stays.
pub fn strip_request_meta(msg: &mut Message) {
    let Some(Value::Object(mut meta)) = msg
        .params_as::<Value>()
        .and_then(|p| p.get("_meta").cloned())
    else {
        return;
    };
    let before = meta.len();
    meta.retain(|k, _| !REQUEST_KEYS.contains(&k.as_str()));
    if meta.len() != before {
        msg.set_param("_meta", to_raw(&Value::Object(meta)));
    }
}

/// Turn a legacy `initialize` result into the `server/discover` result of 2026-07-28.
pub fn discover_result(answer: &mut Message) {
    let Some(result) = answer.result_as::<Value>() else {
        return;
    };
    let mut out = serde_json::Map::new();
    out.insert("resultType".into(), "complete".into());
    out.insert(
        "supportedVersions".into(),
        serde_json::json!(MODERN_VERSIONS),
    );
    out.insert(
        "capabilities".into(),
        result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    );
    if let Some(i) = result.get("instructions") {
        out.insert("instructions".into(), i.clone());
    }
    let mut meta = result
        .get("_meta")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(info) = result.get("serverInfo") {
        meta.insert(META_SERVER_INFO.into(), info.clone());
    }
    if !meta.is_empty() {
        out.insert("_meta".into(), Value::Object(meta));
    }
    out.insert("ttlMs".into(), 0.into());
    out.insert("cacheScope".into(), "private".into());
    answer.set("result", to_raw(&Value::Object(out)));
}

/// Give a legacy server's answer to `method` what a modern client requires of it.
pub fn modernise_result(method: &str, answer: &mut Message) {
    /// Which of the members in question a result has (the rest is not read).
    #[derive(serde::Deserialize)]
    struct Has {
        #[serde(rename = "resultType")]
        result_type: Option<serde::de::IgnoredAny>,
        #[serde(rename = "ttlMs")]
        ttl_ms: Option<serde::de::IgnoredAny>,
        #[serde(rename = "cacheScope")]
        cache_scope: Option<serde::de::IgnoredAny>,
    }
    let Some(has) = answer.result_as::<Has>() else {
        return;
    };
    if has.result_type.is_none() {
        answer.set_result_member("resultType", to_raw(&"complete"));
    }
    if CACHEABLE.contains(&method) {
        // A legacy server says nothing about caching: the safe reading is "ask again".
        if has.ttl_ms.is_none() {
            answer.set_result_member("ttlMs", to_raw(&0));
        }
        if has.cache_scope.is_none() {
            answer.set_result_member("cacheScope", to_raw(&"private"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Id;

    fn msg(text: &str) -> Message {
        Message::parse_one(text.to_owned()).expect("valid")
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}"#;

    #[test]
    fn a_consistent_request_passes() {
        let h = Headers {
            http: true,
            version: Some("2026-07-28"),
            method: Some("tools/call"),
            name: Some("echo"),
        };
        let meta = validate(&msg(CALL), &h).expect("valid");
        assert_eq!(meta.capabilities, Some(serde_json::json!({"sampling": {}})));
    }

    #[test]
    fn header_body_mismatches_are_refused() {
        for h in [
            Headers {
                http: false,
                version: Some("2026-07-28"),
                method: Some("tools/list"),
                name: None,
            },
            Headers {
                http: false,
                version: Some("2026-07-28"),
                method: None,
                name: Some("other"),
            },
        ] {
            assert_eq!(validate(&msg(CALL), &h).unwrap_err().code, HEADER_MISMATCH);
        }
    }

    #[test]
    fn over_http_the_headers_are_required() {
        let h = |method: Option<&'static str>, name: Option<&'static str>| Headers {
            http: true,
            version: Some("2026-07-28"),
            method,
            name,
        };
        for (m, n) in [(None, Some("echo")), (Some("tools/call"), None)] {
            assert_eq!(
                validate(&msg(CALL), &h(m, n)).unwrap_err().code,
                HEADER_MISMATCH
            );
        }
        assert!(validate(&msg(CALL), &h(Some("tools/call"), Some("echo"))).is_ok());
        // On stdio there are no headers to require.
        assert!(validate(&msg(CALL), &Headers::default()).is_ok());
    }

    #[test]
    fn unknown_versions_are_refused_with_the_supported_ones() {
        let m = msg(&CALL.replace("2026-07-28", "2099-01-01"));
        let e = validate(&m, &Headers::default()).unwrap_err();
        assert_eq!(e.code, UNSUPPORTED_VERSION);
        let data = e.data.expect("data");
        assert_eq!(data["requested"], "2099-01-01");
        assert_eq!(data["supported"][0], MODERN);
    }

    #[test]
    fn version_and_capabilities_are_required_in_the_body() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(
            validate(&m, &Headers::default()).unwrap_err().code,
            code::INVALID_PARAMS
        );
        // server/discover too, and the header does not stand in for the body.
        let d = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert!(validate(&d, &Headers::default()).is_err());
        let bare = msg(r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#);
        let h = Headers {
            http: true,
            version: Some("2026-07-28"),
            method: Some("server/discover"),
            name: None,
        };
        assert_eq!(validate(&bare, &h).unwrap_err().code, code::INVALID_PARAMS);
    }

    #[test]
    fn list_results_get_result_type_and_cache_fields() {
        let mut a = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"x":{"keep":1}}}"#);
        modernise_result("tools/list", &mut a);
        let r: Value = a.result_as().expect("result");
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["ttlMs"], 0);
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["x"]["keep"], 1);
        let mut c = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
        modernise_result("tools/call", &mut c);
        let r: Value = c.result_as().expect("result");
        assert_eq!(r["resultType"], "complete");
        assert!(r.get("ttlMs").is_none());
    }

    #[test]
    fn discover_comes_from_initialize() {
        let mut a = msg(
            r#"{"jsonrpc":"2.0","id":"d","result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"2"},"instructions":"hi"}}"#,
        );
        discover_result(&mut a);
        assert_eq!(a.id(), Some(Id::string("d")));
        let r: Value = a.result_as().expect("result");
        assert_eq!(r["supportedVersions"][0], MODERN);
        assert_eq!(r["capabilities"]["tools"], serde_json::json!({}));
        assert_eq!(r["_meta"][META_SERVER_INFO]["name"], "s");
        assert_eq!(r["instructions"], "hi");
        assert_eq!(r["resultType"], "complete");
        assert!(r.get("protocolVersion").is_none());
    }
}
