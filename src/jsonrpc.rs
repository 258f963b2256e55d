//! JSON-RPC 2.0 messages, read only as deep as routing needs.
//!
//! A [`Message`] keeps every top-level member as raw JSON text in its original order, so that
//! a message that is forwarded keeps its payload (`params`, `result`, `error`, unknown members)
//! byte for byte. Rewriting an id or one field of `params` touches only that member.
//!
//! Nothing is copied to read a message: its members are slices of the text it came in (one
//! shared buffer). An edit inside `params` or `result` splices the new text in between slices
//! of the old, and a message is written out as those slices, so a large payload is never
//! copied on its way through the proxy.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;
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
    /// An id from its JSON text.
    pub fn from_text(text: &str) -> Self {
        Id(text.trim().to_owned())
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

/// The raw JSON text of one member: one slice, or slices and new text in order (after an
/// edit inside it).
#[derive(Clone)]
enum Val {
    One(ByteString),
    Rope(Vec<ByteString>),
}

impl Val {
    fn own(text: String) -> Val {
        Val::One(ByteString::from(text))
    }

    fn text(&self) -> Cow<'_, str> {
        match self {
            Val::One(s) => Cow::Borrowed(&s[..]),
            Val::Rope(v) => Cow::Owned(v.iter().map(|p| &p[..]).collect()),
        }
    }

    /// The text in one piece (a copy only when it is in several).
    fn contiguous(&self) -> ByteString {
        match self {
            Val::One(s) => s.clone(),
            Val::Rope(v) => ByteString::from(v.iter().map(|p| &p[..]).collect::<String>()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Val::One(s) => s.len(),
            Val::Rope(v) => v.iter().map(|p| p.len()).sum(),
        }
    }

    fn pieces(&self) -> &[ByteString] {
        match self {
            Val::One(s) => std::slice::from_ref(s),
            Val::Rope(v) => v,
        }
    }
}

/// Raw JSON text of a member, as [`Message::get`] gives it.
pub struct Raw<'a>(Cow<'a, str>);

impl Raw<'_> {
    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// The JSON text as a value of its own.
    pub fn to_raw_value(&self) -> Box<RawValue> {
        raw(&self.0)
    }
}

impl fmt::Debug for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member name; those every message has are not allocated.
#[derive(Clone)]
enum Key {
    Known(&'static str),
    Other(Box<str>),
}

impl Key {
    fn of(name: &str) -> Key {
        const KNOWN: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
        match KNOWN.iter().find(|k| **k == name) {
            Some(k) => Key::Known(k),
            None => Key::Other(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Key::Known(k) => k,
            Key::Other(k) => k,
        }
    }
}

/// One JSON-RPC 2.0 message.
#[derive(Clone)]
pub struct Message {
    /// Top-level members in their original order.
    fields: Vec<(Key, Val)>,
    kind: Kind,
    method: Option<Box<str>>,
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

/// A member name as read: borrowed from the input unless it had escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Members in order, as slices of the text they were read from.
struct Members<'a>(Vec<(Name<'a>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Either one object or an array of raw elements.
enum Top<'a> {
    Object(Members<'a>),
    Array(Vec<&'a RawValue>),
}

impl<'de> serde::Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC object or batch array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Top::Object(Members(out)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    out.push(v);
                }
                Ok(Top::Array(out))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
                Err(E::custom("expected a JSON object, got a string"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
                Err(E::custom("expected a JSON object, got a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
                Err(E::custom("expected a JSON object, got a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
                Err(E::custom("expected a JSON object, got a number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
                Err(E::custom("expected a JSON object, got a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
                Err(E::custom("expected a JSON object, got null"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `part`, a slice of `whole`'s text, as a slice of `whole` (no copy).
fn sub(whole: &ByteString, part: &str) -> ByteString {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    ByteString::try_from(whole.as_bytes().slice(start..start + part.len())).unwrap_or_default()
}

/// Where the members of the object `text` are: each member's name and the byte range of
/// its value, with the positions of the braces. `None` when `text` is not an object.
struct Spans {
    open: usize,
    close: usize,
    members: Vec<(String, usize, usize)>,
}

fn spans(text: &str) -> Option<Spans> {
    let members: Members<'_> = serde_json::from_str(text).ok()?;
    let base = text.as_ptr() as usize;
    let open = text.find('{')?;
    let close = text.rfind('}')?;
    Some(Spans {
        open,
        close,
        members: members
            .0
            .into_iter()
            .map(|(k, v)| {
                let start = v.get().as_ptr() as usize - base;
                (k.0.into_owned(), start, start + v.get().len())
            })
            .collect(),
    })
}

/// `object` with member `name` set to `value` (or removed, for `None`): a splice of the
/// object's text, the rest untouched. Anything that is not an object becomes one.
fn edit_member(object: &ByteString, name: &str, value: Option<&str>) -> Val {
    let Some(sp) = spans(object) else {
        return match value {
            Some(v) => Val::own(format!("{{{}:{v}}}", quote(name))),
            None => Val::own("{}".to_owned()),
        };
    };
    let splice = |from: usize, to: usize, insert: String| {
        let mut pieces = vec![];
        if from > 0 {
            pieces.push(sub(object, &object[..from]));
        }
        if !insert.is_empty() {
            pieces.push(ByteString::from(insert));
        }
        if to < object.len() {
            pieces.push(sub(object, &object[to..]));
        }
        Val::Rope(pieces)
    };
    let at = sp.members.iter().position(|(k, _, _)| k == name);
    match (at, value) {
        (Some(i), Some(v)) => {
            let (_, from, to) = sp.members[i];
            splice(from, to, v.to_owned())
        }
        (None, Some(v)) => match sp.members.last() {
            Some((_, _, end)) => splice(*end, *end, format!(",{}:{v}", quote(name))),
            None => splice(sp.open + 1, sp.close, format!("{}:{v}", quote(name))),
        },
        (Some(i), None) => {
            if i > 0 {
                let from = sp.members[i - 1].2;
                let to = sp.members[i].2;
                splice(from, to, String::new())
            } else if let Some((_, next, _)) = sp.members.get(1) {
                // The first member goes with the comma after it: up to the next name.
                let comma = object[..*next].rfind(',').unwrap_or(sp.open);
                let name_start = object[comma + 1..*next]
                    .find('"')
                    .map(|p| comma + 1 + p)
                    .unwrap_or(comma + 1);
                splice(sp.open + 1, name_start, String::new())
            } else {
                splice(sp.open + 1, sp.close, String::new())
            }
        }
        (None, None) => Val::One(object.clone()),
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Text to write, in order: messages' pieces (large parts of a payload are slices of the
/// text the message came in, not copies) and text between them. Line breaks inside a
/// message (only ever whitespace in JSON) become spaces, so that a message is one line.
#[derive(Default)]
pub struct Pieces {
    parts: Vec<Bytes>,
    small: Vec<u8>,
    len: usize,
}

/// Parts this long are written as they are; shorter ones are gathered into one buffer.
const GATHER_UNDER: usize = 8 * 1024;

impl Pieces {
    pub fn new() -> Pieces {
        Pieces::default()
    }

    /// Text of the proxy's own (no line breaks are taken out).
    pub fn text(&mut self, s: &str) {
        self.small.extend_from_slice(s.as_bytes());
    }

    /// The message as one line of JSON text.
    pub fn message(&mut self, m: &Message) {
        self.text("{");
        for (i, (k, v)) in m.fields.iter().enumerate() {
            if i > 0 {
                self.text(",");
            }
            match k {
                Key::Known(k) => {
                    self.text("\"");
                    self.text(k);
                    self.text("\":");
                }
                Key::Other(k) => {
                    self.text(&quote(k));
                    self.text(":");
                }
            }
            for p in v.pieces() {
                self.piece(p);
            }
        }
        self.text("}");
    }

    fn piece(&mut self, p: &ByteString) {
        let bytes = p.as_bytes();
        if memchr::memchr2(b'\n', b'\r', bytes).is_some() {
            self.small.extend(
                bytes
                    .iter()
                    .map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { *b }),
            );
        } else if bytes.len() < GATHER_UNDER {
            self.small.extend_from_slice(bytes);
        } else {
            self.flush();
            self.len += bytes.len();
            self.parts.push(bytes.clone());
        }
    }

    fn flush(&mut self) {
        if !self.small.is_empty() {
            let small = std::mem::take(&mut self.small);
            self.len += small.len();
            self.parts.push(Bytes::from(small));
        }
    }

    /// How many bytes in all.
    pub fn len(&self) -> usize {
        self.len + self.small.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts, in order.
    pub fn into_parts(mut self) -> Vec<Bytes> {
        self.flush();
        self.parts
    }

    /// The whole text in one buffer (a copy only when it is in several parts).
    pub fn into_bytes(self) -> Bytes {
        let len = self.len();
        let parts = self.into_parts();
        match <[Bytes; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => {
                let mut all = Vec::with_capacity(len);
                for p in parts {
                    all.extend_from_slice(&p);
                }
                Bytes::from(all)
            }
        }
    }

    /// The text as one buffer when it is in one part already; else as a body of its parts.
    pub fn into_one_or_body(self) -> Result<Bytes, PiecesBody> {
        let body = self.into_body();
        if body.parts.len() == 1
            && let Some(one) = body.parts.front()
        {
            return Ok(one.clone());
        }
        Err(body)
    }

    /// An HTTP body of the parts, of known length.
    pub fn into_body(self) -> PiecesBody {
        let len = self.len() as u64;
        PiecesBody {
            parts: self.into_parts().into(),
            left: len,
        }
    }
}

/// An HTTP body made of [`Pieces`], for requests and responses alike.
pub struct PiecesBody {
    parts: std::collections::VecDeque<Bytes>,
    left: u64,
}

impl http_body::Body for PiecesBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.parts.pop_front();
        if let Some(p) = &next {
            self.left -= p.len() as u64;
        }
        std::task::Poll::Ready(next.map(|p| Ok(http_body::Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

impl Message {
    /// Read one piece of input: a message or a batch of messages. The input is kept (not
    /// copied): the messages' members are slices of it.
    pub fn parse(input: impl Into<Bytes>) -> Result<Payload, ParseError> {
        let src = ByteString::try_from(input.into())
            .map_err(|_| ParseError::Json("the input is not valid UTF-8".into()))?;
        let top: Top<'_> = match serde_json::from_str(&src) {
            Ok(t) => t,
            Err(e) if e.is_data() => return Err(ParseError::Invalid(e.to_string())),
            Err(e) => return Err(ParseError::Json(e.to_string())),
        };
        match top {
            Top::Object(m) => Ok(Payload::Single(Self::from_members(&src, m)?)),
            Top::Array(items) => {
                if items.is_empty() {
                    return Err(ParseError::Invalid("empty batch".into()));
                }
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let m: Members<'_> = serde_json::from_str(item.get())
                        .map_err(|e| ParseError::Invalid(format!("batch element: {e}")))?;
                    out.push(Self::from_members(&src, m)?);
                }
                Ok(Payload::Batch(out))
            }
        }
    }

    /// Read exactly one message (no batch).
    pub fn parse_one(input: impl Into<Bytes>) -> Result<Message, ParseError> {
        match Self::parse(input)? {
            Payload::Single(m) => Ok(m),
            Payload::Batch(_) => Err(ParseError::Invalid("a batch is not allowed here".into())),
        }
    }

    fn from_members(src: &ByteString, members: Members<'_>) -> Result<Message, ParseError> {
        let get = |name: &str| {
            members
                .0
                .iter()
                .find(|(k, _)| k.0 == name)
                .map(|(_, v)| v.get())
        };
        match get("jsonrpc") {
            Some("\"2.0\"") => {}
            Some(_) => return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\"".into())),
            None => return Err(ParseError::Invalid("missing \"jsonrpc\": \"2.0\"".into())),
        }
        let first = |v: &str| v.as_bytes().first().copied().unwrap_or(b' ');
        let id = get("id");
        if let Some(id) = id
            && !matches!(first(id), b'"' | b'-' | b'0'..=b'9' | b'n')
        {
            return Err(ParseError::Invalid(
                "\"id\" must be a string or a number".into(),
            ));
        }
        let method: Option<Box<str>> = match get("method") {
            Some(m) => Some(
                serde_json::from_str::<Cow<'_, str>>(m)
                    .map_err(|_| ParseError::Invalid("\"method\" must be a string".into()))?
                    .into(),
            ),
            None => None,
        };
        let kind = if method.is_some() {
            if let Some(p) = get("params")
                && !matches!(first(p), b'{' | b'[')
            {
                return Err(ParseError::Invalid(
                    "\"params\" must be an object or an array".into(),
                ));
            }
            match id {
                Some("null") => {
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
        let fields = members
            .0
            .into_iter()
            .map(|(k, v)| (Key::of(&k.0), Val::One(sub(src, v.get()))))
            .collect();
        Ok(Message {
            fields,
            kind,
            method,
        })
    }

    fn build(kind: Kind, method: Option<&str>, fields: Vec<(&str, Box<RawValue>)>) -> Message {
        let mut all = vec![(Key::Known("jsonrpc"), Val::own("\"2.0\"".to_owned()))];
        all.extend(
            fields
                .into_iter()
                .map(|(k, v)| (Key::of(k), Val::own(String::from(Box::<str>::from(v))))),
        );
        Message {
            fields: all,
            kind,
            method: method.map(Into::into),
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

    /// A response whose result is `result`, JSON text the caller built itself (it is not
    /// checked again).
    pub fn response_from_text(id: Id, result: impl Into<ByteString>) -> Message {
        Message {
            fields: vec![
                (Key::Known("jsonrpc"), Val::own("\"2.0\"".to_owned())),
                (Key::Known("id"), Val::own(id.as_json().to_owned())),
                (Key::Known("result"), Val::One(result.into())),
            ],
            kind: Kind::Response,
            method: None,
        }
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

    fn val(&self, name: &str) -> Option<&Val> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
    }

    /// A member's raw JSON text.
    pub fn get(&self, name: &str) -> Option<Raw<'_>> {
        self.val(name).map(|v| Raw(v.text()))
    }

    fn set_val(&mut self, name: &str, value: Val) {
        match self.fields.iter_mut().find(|(k, _)| k.as_str() == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((Key::of(name), value)),
        }
    }

    pub fn set(&mut self, name: &str, value: Box<RawValue>) {
        self.set_val(name, Val::own(String::from(Box::<str>::from(value))));
    }

    pub fn id(&self) -> Option<Id> {
        self.val("id").map(|v| Id::from_text(&v.text()))
    }
    pub fn set_id(&mut self, id: &Id) {
        self.set_val("id", Val::own(id.as_json().to_owned()));
    }
    pub fn params(&self) -> Option<Raw<'_>> {
        self.get("params")
    }
    pub fn result(&self) -> Option<Raw<'_>> {
        self.get("result")
    }
    pub fn error_value(&self) -> Option<Raw<'_>> {
        self.get("error")
    }

    /// Read `params` (or `result`) into a type that names only the members it needs.
    pub fn params_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.val("params")?.text()).ok()
    }
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.val("result")?.text()).ok()
    }

    /// Set member `name` of the object in `field` (`params`, `result`), keeping every other
    /// member's bytes where they are; `None` removes it.
    fn edit(&mut self, field: &str, name: &str, value: Option<&str>) {
        let object = match self.val(field) {
            Some(v) => v.contiguous(),
            None if value.is_none() => return,
            None => ByteString::from_static("{}"),
        };
        let edited = edit_member(&object, name, value);
        self.set_val(field, edited);
    }

    /// Replace one member of the `params` object, keeping every other member's bytes.
    #[allow(clippy::boxed_local)] // one signature for every setter
    pub fn set_param(&mut self, name: &str, value: Box<RawValue>) {
        self.edit("params", name, Some(value.get()));
    }

    /// Replace one member of the `result` object, keeping every other member's bytes.
    #[allow(clippy::boxed_local)] // one signature for every setter
    pub fn set_result_member(&mut self, name: &str, value: Box<RawValue>) {
        self.edit("result", name, Some(value.get()));
    }

    /// Remove one member of the `result` object, keeping every other member's bytes.
    pub fn remove_result_member(&mut self, name: &str) {
        let present = self
            .val("result")
            .map(|v| v.contiguous())
            .and_then(|r| spans(&r))
            .is_some_and(|sp| sp.members.iter().any(|(k, _, _)| k == name));
        if present {
            self.edit("result", name, None);
        }
    }

    /// Replace a member of `params._meta`, keeping the rest.
    pub fn set_param_meta(&mut self, name: &str, value: Box<RawValue>) {
        self.set_param_metas(vec![(name.to_owned(), value)]);
    }

    /// Replace several members of `params._meta` at once, keeping the rest (of `params`,
    /// byte for byte where it was).
    pub fn set_param_metas(&mut self, members: Vec<(String, Box<RawValue>)>) {
        let params = self
            .val("params")
            .map(|v| v.contiguous())
            .unwrap_or_else(|| ByteString::from_static("{}"));
        let meta = spans(&params)
            .and_then(|sp| {
                let (_, from, to) = sp.members.into_iter().find(|(k, _, _)| k == "_meta")?;
                Some(ByteString::from(&params[from..to]))
            })
            .filter(|m| m.trim_start().starts_with('{'))
            .unwrap_or_else(|| ByteString::from_static("{}"));
        let mut meta = Val::One(meta);
        for (name, value) in members {
            meta = edit_member(&meta.contiguous(), &name, Some(value.get()));
        }
        let meta = meta.text().into_owned();
        self.set_val("params", edit_member(&params, "_meta", Some(&meta)));
    }

    /// Whether the raw text of `params` contains `needle` anywhere (a quick test before a
    /// parse: arguments of any size are searched, not decoded).
    pub fn params_mention(&self, needle: &str) -> bool {
        self.val("params").is_some_and(|v| {
            let finder = memchr::memmem::Finder::new(needle.as_bytes());
            v.pieces()
                .iter()
                .any(|p| finder.find(p.as_bytes()).is_some())
        })
    }

    /// As [`Message::params_mention`], in `result`.
    pub fn result_mentions(&self, needle: &str) -> bool {
        self.val("result").is_some_and(|v| {
            let finder = memchr::memmem::Finder::new(needle.as_bytes());
            v.pieces()
                .iter()
                .any(|p| finder.find(p.as_bytes()).is_some())
        })
    }

    /// `params._meta.progressToken`, when the request asks for progress.
    pub fn progress_token(&self) -> Option<Id> {
        if !self.params_mention("progressToken") {
            return None;
        }
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
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
    }

    /// The message's text as pieces to write (one line: no line breaks).
    pub fn pieces(&self) -> Pieces {
        let mut p = Pieces::new();
        p.message(self);
        p
    }

    /// The message as one line of JSON text, in one buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.pieces().into_bytes()
    }

    /// The message as one line of JSON text.
    pub fn to_json(&self) -> String {
        String::from_utf8(self.to_bytes().to_vec()).unwrap_or_default()
    }
}

/// `object` (raw JSON) with member `name` set to `value`; every other member keeps its bytes.
/// Anything that is not an object is treated as an empty one.
#[allow(clippy::boxed_local)] // one signature for every setter
pub fn with_member(object: Option<&str>, name: &str, value: Box<RawValue>) -> Box<RawValue> {
    let object = ByteString::from(object.unwrap_or("{}"));
    let edited = edit_member(&object, name, Some(value.get()));
    raw(&edited.text())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Message {
        Message::parse_one(s.to_owned()).expect("valid message")
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
        let e = |s: &str| Message::parse(s.to_owned()).map(|_| ()).unwrap_err();
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
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
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
        assert!(Message::parse_one(r.to_json()).is_ok());
    }

    #[test]
    fn edits_inside_params_and_result_keep_every_other_byte() {
        let mut m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{ "name" : "a",  "arguments": {"x": [1, 2.50]} }}"#,
        );
        m.set_param("name", to_raw(&"b"));
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{ "name" : "b",  "arguments": {"x": [1, 2.50]} }}"#
        );
        m.set_param_meta("progressToken", to_raw(&7));
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{ "name" : "b",  "arguments": {"x": [1, 2.50]},"_meta":{"progressToken":7} }}"#
        );
        assert_eq!(m.progress_token(), Some(Id::number(7)));
        let mut r = one(
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[],"x":1}}"#,
        );
        r.remove_result_member("resultType");
        assert_eq!(
            r.to_json(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"x":1}}"#
        );
        r.remove_result_member("x");
        assert_eq!(
            r.to_json(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#
        );
        r.remove_result_member("content");
        assert_eq!(r.to_json(), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        r.set_result_member("y", to_raw(&true));
        assert_eq!(
            r.to_json(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"y":true}}"#
        );
    }

    #[test]
    fn large_payloads_are_written_from_the_text_they_came_in() {
        let big = "x".repeat(1 << 20);
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{big}"}}]}}}}"#
        );
        let input = Bytes::from(text.clone());
        let start = input.as_ptr() as usize;
        let mut m = Message::parse_one(input.clone()).unwrap();
        m.set_id(&Id::number(99));
        m.set_result_member("extra", to_raw(&1));
        let parts = m.pieces().into_parts();
        // The megabyte is one part, pointing into the input: not a copy.
        let large = parts.iter().find(|p| p.len() > 1000).expect("a large part");
        let at = large.as_ptr() as usize;
        assert!(
            at >= start && at < start + input.len(),
            "the payload was copied"
        );
        let joined: Vec<u8> = parts.concat();
        assert_eq!(
            String::from_utf8(joined).unwrap(),
            text.replacen(r#""id":1"#, r#""id":99"#, 1)
                .replacen("]}}", r#"],"extra":1}}"#, 1)
        );
    }

    #[test]
    fn line_breaks_never_reach_the_wire() {
        let m = one(
            "{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 1,\n  \"result\": {\n    \"a\": \"x\\ny\"\n  }\n}",
        );
        let out = m.to_json();
        assert!(!out.contains('\n') && !out.contains('\r'), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["result"]["a"], "x\ny");
    }
}
