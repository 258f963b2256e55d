//! JSON-RPC 2.0 messages, read only as deep as routing needs.
//!
//! A [`Message`] keeps every top-level member as raw JSON text in its original order, so that
//! a message that is forwarded keeps its payload (`params`, `result`, `error`, unknown members)
//! byte for byte. Rewriting an id or one field of `params` touches only that member.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Standard JSON-RPC error codes, and the ones this proxy uses for its own errors.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The upstream server is not reachable, exited, or broke the connection.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32000;
    /// The upstream server did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32001;
    /// The message exceeds `--max-message-size`.
    pub const MESSAGE_TOO_LARGE: i64 = -32002;
}

/// What kind of JSON-RPC message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    Error,
}

/// A request id as its raw JSON text (`1`, `"abc"`): compared and hashed as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub fn from_raw(raw: &RawValue) -> Self {
        Id(raw.get().trim().to_owned())
    }
    pub fn number(n: u64) -> Self {
        Id(n.to_string())
    }
    pub fn string(s: &str) -> Self {
        Id(serde_json::Value::String(s.to_owned()).to_string())
    }
    pub fn null() -> Self {
        Id("null".into())
    }
    pub fn as_json(&self) -> &str {
        &self.0
    }
    pub fn to_raw(&self) -> Box<RawValue> {
        raw(&self.0)
    }
    /// The id as a plain number, when it is one (ids this proxy allocates upstream).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
    /// The id as a plain string, when it is one.
    pub fn as_str(&self) -> Option<String> {
        serde_json::from_str::<String>(&self.0).ok()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Raw JSON from text this module built itself (always valid JSON).
fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned())
        .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default())
}

/// Serialize a value this module built into raw JSON.
pub fn to_raw<T: serde::Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| raw("null"))
}

/// Why a piece of input is not a JSON-RPC message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("parse error: {0}")]
    Json(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => code::PARSE_ERROR,
            ParseError::Invalid(_) => code::INVALID_REQUEST,
        }
    }
    /// The JSON-RPC error response that answers this bad input (id null: it was not readable).
    pub fn to_response(&self) -> Message {
        Message::error(Id::null(), self.code(), &self.to_string(), None)
    }
}

/// One JSON-RPC 2.0 message.
#[derive(Clone)]
pub struct Message {
    /// Top-level members in their original order.
    fields: Vec<(String, Box<RawValue>)>,
    kind: Kind,
    method: Option<String>,
}

/// What one piece of input held: a single message or a batch (revision 2025-03-26).
#[derive(Debug, Clone)]
pub enum Payload {
    Single(Message),
    Batch(Vec<Message>),
}

impl Payload {
    pub fn into_messages(self) -> Vec<Message> {
        match self {
            Payload::Single(m) => vec![m],
            Payload::Batch(v) => v,
        }
    }
}

/// Members in order, as read by serde without interpreting them.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Either one object or an array of raw elements.
enum Top {
    Object(Members),
    Array(Vec<Box<RawValue>>),
}

impl<'de> serde::Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC object or batch array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Top::Object(Members(out)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Box<RawValue>>()? {
                    out.push(v);
                }
                Ok(Top::Array(out))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Top, E> {
                Err(E::custom("expected a JSON object, got a string"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top, E> {
                Err(E::custom("expected a JSON object, got a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top, E> {
                Err(E::custom("expected a JSON object, got a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top, E> {
                Err(E::custom("expected a JSON object, got a number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top, E> {
                Err(E::custom("expected a JSON object, got a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
                Err(E::custom("expected a JSON object, got null"))
            }
        }
        d.deserialize_any(V)
    }
}

fn first_char(raw: &RawValue) -> u8 {
    raw.get()
        .trim_start()
        .as_bytes()
        .first()
        .copied()
        .unwrap_or(b' ')
}

impl Message {
    /// Read one piece of input: a message or a batch of messages.
    pub fn parse(input: &[u8]) -> Result<Payload, ParseError> {
        let top: Top = match serde_json::from_slice(input) {
            Ok(t) => t,
            Err(e) if e.is_data() => return Err(ParseError::Invalid(e.to_string())),
            Err(e) => return Err(ParseError::Json(e.to_string())),
        };
        match top {
            Top::Object(m) => Ok(Payload::Single(Self::from_members(m.0)?)),
            Top::Array(items) => {
                if items.is_empty() {
                    return Err(ParseError::Invalid("empty batch".into()));
                }
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let m: Members = serde_json::from_str(item.get())
                        .map_err(|e| ParseError::Invalid(format!("batch element: {e}")))?;
                    out.push(Self::from_members(m.0)?);
                }
                Ok(Payload::Batch(out))
            }
        }
    }

    /// Read exactly one message (no batch).
    pub fn parse_one(input: &[u8]) -> Result<Message, ParseError> {
        match Self::parse(input)? {
            Payload::Single(m) => Ok(m),
            Payload::Batch(_) => Err(ParseError::Invalid("a batch is not allowed here".into())),
        }
    }

    fn from_members(fields: Vec<(String, Box<RawValue>)>) -> Result<Message, ParseError> {
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match get("jsonrpc") {
            Some(v) if v.get().trim() == "\"2.0\"" => {}
            Some(_) => return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\"".into())),
            None => return Err(ParseError::Invalid("missing \"jsonrpc\": \"2.0\"".into())),
        }
        let id = get("id");
        if let Some(id) = id {
            match first_char(id) {
                b'"' | b'-' | b'0'..=b'9' | b'n' => {}
                _ => {
                    return Err(ParseError::Invalid(
                        "\"id\" must be a string or a number".into(),
                    ));
                }
            }
        }
        let method = match get("method") {
            Some(m) => Some(
                serde_json::from_str::<String>(m.get())
                    .map_err(|_| ParseError::Invalid("\"method\" must be a string".into()))?,
            ),
            None => None,
        };
        let kind = if method.is_some() {
            if let Some(p) = get("params")
                && !matches!(first_char(p), b'{' | b'[')
            {
                return Err(ParseError::Invalid(
                    "\"params\" must be an object or an array".into(),
                ));
            }
            match id {
                Some(id) if id.get().trim() == "null" => {
                    return Err(ParseError::Invalid("a request id must not be null".into()));
                }
                Some(_) => Kind::Request,
                None => Kind::Notification,
            }
        } else {
            if id.is_none() {
                return Err(ParseError::Invalid(
                    "neither a request (\"method\") nor a response (\"id\")".into(),
                ));
            }
            match (get("result").is_some(), get("error").is_some()) {
                (true, false) => Kind::Response,
                (false, true) => Kind::Error,
                _ => {
                    return Err(ParseError::Invalid(
                        "a response needs exactly one of \"result\" and \"error\"".into(),
                    ));
                }
            }
        };
        Ok(Message {
            fields,
            kind,
            method,
        })
    }

    fn build(kind: Kind, method: Option<&str>, fields: Vec<(&str, Box<RawValue>)>) -> Message {
        let mut all = vec![("jsonrpc".to_owned(), raw("\"2.0\""))];
        all.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Message {
            fields: all,
            kind,
            method: method.map(str::to_owned),
        }
    }

    pub fn request(id: Id, method: &str, params: Option<Box<RawValue>>) -> Message {
        let mut f = vec![("id", id.to_raw()), ("method", to_raw(&method))];
        if let Some(p) = params {
            f.push(("params", p));
        }
        Self::build(Kind::Request, Some(method), f)
    }

    pub fn notification(method: &str, params: Option<Box<RawValue>>) -> Message {
        let mut f = vec![("method", to_raw(&method))];
        if let Some(p) = params {
            f.push(("params", p));
        }
        Self::build(Kind::Notification, Some(method), f)
    }

    pub fn response(id: Id, result: Box<RawValue>) -> Message {
        Self::build(
            Kind::Response,
            None,
            vec![("id", id.to_raw()), ("result", result)],
        )
    }

    pub fn error(id: Id, code: i64, message: &str, data: Option<serde_json::Value>) -> Message {
        let mut e = serde_json::json!({ "code": code, "message": message });
        if let Some(d) = data {
            e["data"] = d;
        }
        Self::build(
            Kind::Error,
            None,
            vec![("id", id.to_raw()), ("error", to_raw(&e))],
        )
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }
    pub fn is_notification(&self) -> bool {
        self.kind == Kind::Notification
    }
    pub fn is_response(&self) -> bool {
        matches!(self.kind, Kind::Response | Kind::Error)
    }
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    pub fn set(&mut self, name: &str, value: Box<RawValue>) {
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    pub fn id(&self) -> Option<Id> {
        self.get("id").map(Id::from_raw)
    }
    pub fn set_id(&mut self, id: &Id) {
        self.set("id", id.to_raw());
    }
    pub fn params(&self) -> Option<&RawValue> {
        self.get("params")
    }
    pub fn result(&self) -> Option<&RawValue> {
        self.get("result")
    }
    pub fn error_value(&self) -> Option<&RawValue> {
        self.get("error")
    }

    /// Read `params` (or `result`) into a type that names only the members it needs.
    pub fn params_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.params()?.get()).ok()
    }
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.result()?.get()).ok()
    }

    /// Replace one member of the `params` object, keeping every other member's bytes.
    pub fn set_param(&mut self, name: &str, value: Box<RawValue>) {
        let params = with_member(self.params(), name, value);
        self.set("params", params);
    }

    /// Replace one member of the `result` object, keeping every other member's bytes.
    pub fn set_result_member(&mut self, name: &str, value: Box<RawValue>) {
        let result = with_member(self.result(), name, value);
        self.set("result", result);
    }

    /// Replace a member of `params._meta`, keeping the rest.
    pub fn set_param_meta(&mut self, name: &str, value: Box<RawValue>) {
        self.set_param_metas(vec![(name.to_owned(), value)]);
    }

    /// Replace several members of `params._meta` at once, keeping the rest.
    pub fn set_param_metas(&mut self, members: Vec<(String, Box<RawValue>)>) {
        let mut meta = self
            .params()
            .and_then(|p| serde_json::from_str::<MetaOnly>(p.get()).ok())
            .and_then(|m| m.meta)
            .and_then(|m| serde_json::from_str::<Members>(m.get()).ok())
            .map(|m| m.0)
            .unwrap_or_default();
        for (name, value) in members {
            match meta.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) => slot.1 = value,
                None => meta.push((name, value)),
            }
        }
        self.set_param("_meta", raw(&write_object(&meta)));
    }

    /// Remove one member of the `result` object, keeping every other member's bytes.
    pub fn remove_result_member(&mut self, name: &str) {
        let Some(members) = self
            .result()
            .and_then(|r| serde_json::from_str::<Members>(r.get()).ok())
            .map(|m| m.0)
        else {
            return;
        };
        if members.iter().any(|(k, _)| k == name) {
            let kept: Vec<_> = members.into_iter().filter(|(k, _)| k != name).collect();
            self.set("result", raw(&write_object(&kept)));
        }
    }

    /// `params._meta.progressToken`, when the request asks for progress.
    pub fn progress_token(&self) -> Option<Id> {
        let p: MetaOnly = self.params_as()?;
        let meta: ProgressMeta = serde_json::from_str(p.meta?.get()).ok()?;
        meta.progress_token.map(|t| Id::from_raw(&t))
    }

    /// `params.progressToken` of a `notifications/progress`.
    pub fn notification_progress_token(&self) -> Option<Id> {
        let p: ProgressParams = self.params_as()?;
        p.progress_token.map(|t| Id::from_raw(&t))
    }

    /// `params.requestId` of a `notifications/cancelled`.
    pub fn cancelled_request_id(&self) -> Option<Id> {
        let p: CancelParams = self.params_as()?;
        p.request_id.map(|t| Id::from_raw(&t))
    }

    /// About how many bytes the message takes on the wire (for bounds, not for framing).
    pub fn wire_len(&self) -> usize {
        2 + self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
    }

    /// The message as compact JSON text.
    pub fn to_json(&self) -> String {
        write_object(&self.fields)
    }
}

/// `object` (raw JSON) with member `name` set to `value`; every other member keeps its bytes.
/// Anything that is not an object is treated as an empty one.
pub fn with_member(object: Option<&RawValue>, name: &str, value: Box<RawValue>) -> Box<RawValue> {
    let mut members = object
        .and_then(|p| serde_json::from_str::<Members>(p.get()).ok())
        .map(|m| m.0)
        .unwrap_or_default();
    match members.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => members.push((name.to_owned(), value)),
    }
    raw(&write_object(&members))
}

/// A batch as one JSON array.
pub fn batch_to_json(messages: &[Message]) -> String {
    let mut s = String::from("[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&m.to_json());
    }
    s.push(']');
    s
}

fn write_object(members: &[(String, Box<RawValue>)]) -> String {
    let len: usize = members
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut s = String::with_capacity(len + 2);
    s.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Keys came from serde_json's own parser or from this module: re-escape them.
        s.push_str(&serde_json::Value::String(k.clone()).to_string());
        s.push(':');
        s.push_str(v.get().trim());
    }
    s.push('}');
    s
}

#[derive(serde::Deserialize)]
struct MetaOnly {
    #[serde(rename = "_meta")]
    meta: Option<Box<RawValue>>,
}

#[derive(serde::Deserialize)]
struct ProgressMeta {
    #[serde(rename = "progressToken")]
    progress_token: Option<Box<RawValue>>,
}

#[derive(serde::Deserialize)]
struct ProgressParams {
    #[serde(rename = "progressToken")]
    progress_token: Option<Box<RawValue>>,
}

#[derive(serde::Deserialize)]
struct CancelParams {
    #[serde(rename = "requestId")]
    request_id: Option<Box<RawValue>>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl serde::Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Message {
        Message::parse_one(s.as_bytes()).expect("valid message")
    }

    #[test]
    fn unknown_members_survive_byte_for_byte() {
        let text = r#"{"jsonrpc":"2.0","id":7,"method":"x/unknown","params":{"a": [1, 2.50, "é\u00e9"],"_meta":{"k":{"deep":true}}},"extra":{"z":1e3}}"#;
        let mut m = one(text);
        assert_eq!(m.kind(), Kind::Request);
        assert_eq!(m.method(), Some("x/unknown"));
        m.set_id(&Id::number(99));
        let out = m.to_json();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":99,"method":"x/unknown","params":{"a": [1, 2.50, "é\u00e9"],"_meta":{"k":{"deep":true}}},"extra":{"z":1e3}}"#
        );
        m.set_id(&Id::from_raw(&to_raw(&7)));
        assert_eq!(m.to_json(), text);
    }

    #[test]
    fn string_ids_are_kept_as_written() {
        let m = one(r#"{"jsonrpc":"2.0","id":"a\"b","result":{}}"#);
        assert_eq!(
            m.id().map(|i| i.as_json().to_owned()),
            Some(r#""a\"b""#.into())
        );
        assert_eq!(m.id().and_then(|i| i.as_str()), Some("a\"b".into()));
        assert_eq!(m.kind(), Kind::Response);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","method":"n"}"#).kind(),
            Kind::Notification
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#).kind(),
            Kind::Error
        );
    }

    #[test]
    fn bad_input_is_classified() {
        let e = |s: &str| Message::parse(s.as_bytes()).map(|_| ()).unwrap_err();
        assert_eq!(e("{").code(), code::PARSE_ERROR);
        assert_eq!(e("not json").code(), code::PARSE_ERROR);
        assert_eq!(e("42").code(), code::INVALID_REQUEST);
        assert_eq!(e("[]").code(), code::INVALID_REQUEST);
        assert_eq!(e(r#"{"id":1,"method":"x"}"#).code(), code::INVALID_REQUEST);
        assert_eq!(
            e(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).code(),
            code::INVALID_REQUEST
        );
        assert_eq!(
            e(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).code(),
            code::INVALID_REQUEST
        );
        assert_eq!(
            e(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).code(),
            code::INVALID_REQUEST
        );
        assert_eq!(
            e(r#"{"jsonrpc":"2.0","method":5}"#).code(),
            code::INVALID_REQUEST
        );
        assert_eq!(
            e(r#"{"jsonrpc":"2.0","id":1}"#).code(),
            code::INVALID_REQUEST
        );
        assert_eq!(
            e(r#"{"jsonrpc":"2.0","method":"x","params":3}"#).code(),
            code::INVALID_REQUEST
        );
    }

    #[test]
    fn batches() {
        let p = Message::parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
        )
        .unwrap();
        let v = p.into_messages();
        assert_eq!(v.len(), 2);
        assert_eq!(
            batch_to_json(&v),
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#
        );
    }

    #[test]
    fn progress_token_rewrite_keeps_other_meta() {
        let mut m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":"p1","other":[1]}}}"#,
        );
        assert_eq!(m.progress_token(), Some(Id::string("p1")));
        m.set_param_meta("progressToken", Id::number(5).to_raw());
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":5,"other":[1]}}}"#
        );
    }

    #[test]
    fn built_messages() {
        let m = Message::error(Id::null(), -32700, "bad \"x\"", None);
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad \"x\""}}"#
        );
        let r = Message::request(Id::number(1), "ping", None);
        assert_eq!(r.to_json(), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        assert!(Message::parse_one(r.to_json().as_bytes()).is_ok());
    }
}
