//! Payload templates (SPEC §5): an endpoint may take, instead of the message
//! payload exactly as posted, a body built from the message and its delivery
//! context, so a platform can match the envelope its receivers expect.
//!
//! A template is JSON. A string that is exactly one placeholder,
//! `"{{ msg.payload }}"`, becomes that value with its own JSON type (an
//! object, a number, a string); placeholders inside a longer string,
//! `"id-{{ msg.id }}"`, are replaced by their text. Everything else, keys
//! and their order included, is copied as written. The template is compiled
//! once into literal byte runs and variable slots, so rendering is a few
//! copies and no JSON parsing.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Longest template accepted, in bytes of JSON.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// A value a template can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `msg.id`: the message id, also sent as `webhook-id` (string).
    MsgId,
    /// `msg.eventType` (string).
    EventType,
    /// `msg.timestamp`: when the message was created, RFC 3339 (string).
    MsgTimestamp,
    /// `msg.payload`: the payload exactly as posted (JSON).
    Payload,
    /// `attempt.number`: 1 for the first try (number).
    AttemptNumber,
    /// `attempt.timestamp`: this attempt's Unix time in seconds, the value
    /// of `webhook-timestamp` (number).
    AttemptTimestamp,
    /// `attempt.firstSentAt`: when this delivery was first tried, RFC 3339
    /// (string).
    FirstSentAt,
}

impl Var {
    const ALL: [(&'static str, Var); 7] = [
        ("msg.id", Var::MsgId),
        ("msg.eventType", Var::EventType),
        ("msg.timestamp", Var::MsgTimestamp),
        ("msg.payload", Var::Payload),
        ("attempt.number", Var::AttemptNumber),
        ("attempt.timestamp", Var::AttemptTimestamp),
        ("attempt.firstSentAt", Var::FirstSentAt),
    ];

    fn parse(name: &str) -> Option<Var> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Every name a template may use, for error messages and docs.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|(n, _)| *n)
    }
}

/// What a template is rendered with: one attempt of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    pub msg_id: &'a str,
    pub event_type: &'a str,
    pub msg_created_at: DateTime<Utc>,
    /// The payload as posted: valid JSON.
    pub payload: &'a [u8],
    pub attempt_number: u32,
    pub attempt_timestamp: i64,
    pub first_sent_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("the template is not valid JSON: {0}")]
    Json(String),
    #[error("the template must be a JSON object or array")]
    NotContainer,
    #[error("the template is larger than {MAX_TEMPLATE_BYTES} bytes")]
    TooLarge,
    #[error("unknown placeholder {{{{{0}}}}}; the known ones are {1}")]
    UnknownVariable(String, String),
    #[error("a placeholder is not closed with }}}}: {0:?}")]
    Unclosed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Bytes copied as they are.
    Literal(Vec<u8>),
    /// The variable as a JSON value.
    Value(Var),
    /// The variable's text, escaped for the inside of a JSON string.
    Text(Var),
}

/// A compiled payload template.
#[derive(Clone)]
pub struct PayloadTemplate {
    source: String,
    segments: Vec<Segment>,
}

impl fmt::Debug for PayloadTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PayloadTemplate").field(&self.source).finish()
    }
}

impl PartialEq for PayloadTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl PayloadTemplate {
    /// Parses and compiles a template given as JSON text.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge);
        }
        let node: Node = serde_json::from_str(source).map_err(|e| TemplateError::Json(e.to_string()))?;
        if !matches!(node, Node::Object(_) | Node::Array(_)) {
            return Err(TemplateError::NotContainer);
        }
        let mut out = Compiler::default();
        out.node(&node)?;
        Ok(Self {
            source: source.trim().to_owned(),
            segments: out.finish(),
        })
    }

    /// The template as it was given (for storage and for the API).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The request body for one attempt.
    pub fn render(&self, ctx: &RenderContext<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.source.len() + ctx.payload.len() + 64);
        for segment in &self.segments {
            match *segment {
                Segment::Literal(ref bytes) => out.extend_from_slice(bytes),
                Segment::Value(var) => write_value(&mut out, var, ctx),
                Segment::Text(var) => write_text(&mut out, var, ctx),
            }
        }
        out
    }
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Appends `s` as a JSON string, quotes included.
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends `s` escaped for the inside of a JSON string, without quotes.
fn push_json_text(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    push_json_string(out, s);
    out.pop();
    out.remove(start);
}

fn write_value(out: &mut Vec<u8>, var: Var, ctx: &RenderContext<'_>) {
    match var {
        Var::MsgId => push_json_string(out, ctx.msg_id),
        Var::EventType => push_json_string(out, ctx.event_type),
        Var::MsgTimestamp => push_json_string(out, &rfc3339(ctx.msg_created_at)),
        Var::Payload => out.extend_from_slice(ctx.payload),
        Var::AttemptNumber => out.extend_from_slice(ctx.attempt_number.to_string().as_bytes()),
        Var::AttemptTimestamp => out.extend_from_slice(ctx.attempt_timestamp.to_string().as_bytes()),
        Var::FirstSentAt => push_json_string(out, &rfc3339(ctx.first_sent_at)),
    }
}

fn write_text(out: &mut Vec<u8>, var: Var, ctx: &RenderContext<'_>) {
    let text = match var {
        Var::MsgId => ctx.msg_id.to_owned(),
        Var::EventType => ctx.event_type.to_owned(),
        Var::MsgTimestamp => rfc3339(ctx.msg_created_at),
        Var::Payload => String::from_utf8_lossy(ctx.payload).into_owned(),
        Var::AttemptNumber => ctx.attempt_number.to_string(),
        Var::AttemptTimestamp => ctx.attempt_timestamp.to_string(),
        Var::FirstSentAt => rfc3339(ctx.first_sent_at),
    };
    push_json_text(out, &text);
}

/// The parsed template, keys in the order they were written.
enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Number(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                serde_json::Number::from_f64(v)
                    .map(Node::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Node>()? {
                    entries.push((key, value));
                }
                Ok(Node::Object(entries))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

/// Turns a parsed template into segments, merging adjacent literals.
#[derive(Default)]
struct Compiler {
    segments: Vec<Segment>,
    literal: Vec<u8>,
}

impl Compiler {
    fn lit(&mut self, bytes: &[u8]) {
        self.literal.extend_from_slice(bytes);
    }

    fn slot(&mut self, segment: Segment) {
        if !self.literal.is_empty() {
            self.segments.push(Segment::Literal(std::mem::take(&mut self.literal)));
        }
        self.segments.push(segment);
    }

    fn finish(mut self) -> Vec<Segment> {
        if !self.literal.is_empty() {
            self.segments.push(Segment::Literal(self.literal));
        }
        self.segments
    }

    fn node(&mut self, node: &Node) -> Result<(), TemplateError> {
        match node {
            Node::Null => self.lit(b"null"),
            Node::Bool(b) => self.lit(if *b { b"true" } else { b"false" }),
            Node::Number(n) => self.lit(n.to_string().as_bytes()),
            Node::String(s) => self.string(s)?,
            Node::Array(items) => {
                self.lit(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.lit(b",");
                    }
                    self.node(item)?;
                }
                self.lit(b"]");
            }
            Node::Object(entries) => {
                self.lit(b"{");
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.lit(b",");
                    }
                    push_json_string(&mut self.literal, key);
                    self.lit(b":");
                    self.node(value)?;
                }
                self.lit(b"}");
            }
        }
        Ok(())
    }

    /// A string: one whole placeholder becomes a typed value; otherwise
    /// literal text with placeholders filled in as text.
    fn string(&mut self, s: &str) -> Result<(), TemplateError> {
        let pieces = split_placeholders(s)?;
        if let [Piece::Var(var)] = pieces.as_slice() {
            self.slot(Segment::Value(*var));
            return Ok(());
        }
        self.lit(b"\"");
        for piece in pieces {
            match piece {
                Piece::Text(text) => push_json_text(&mut self.literal, text),
                Piece::Var(var) => self.slot(Segment::Text(var)),
            }
        }
        self.lit(b"\"");
        Ok(())
    }
}

enum Piece<'a> {
    Text(&'a str),
    Var(Var),
}

fn split_placeholders(s: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| TemplateError::Unclosed(s.to_owned()))?;
        let name = after[..close].trim();
        let var = Var::parse(name).ok_or_else(|| {
            TemplateError::UnknownVariable(name.to_owned(), Var::names().collect::<Vec<_>>().join(", "))
        })?;
        pieces.push(Piece::Var(var));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    /// One attempt of an alarm message, for this module's tests and jq's.
    pub(in crate::transform) fn ctx() -> RenderContext<'static> {
        RenderContext {
            msg_id: "msg_1",
            event_type: "alarm.triggered",
            msg_created_at: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            payload: br#"{"zone":3,"armed":true}"#,
            attempt_number: 2,
            attempt_timestamp: 1_700_000_100,
            first_sent_at: Utc.timestamp_millis_opt(1_700_000_000_500).unwrap(),
        }
    }

    fn render(template: &str) -> String {
        String::from_utf8(PayloadTemplate::parse(template).unwrap().render(&ctx())).unwrap()
    }

    /// The alarm-platform envelope of SPEC §6, keys in the given order.
    #[test]
    fn builds_the_alarm_platform_envelope() {
        let out = render(
            r#"{"event": "{{ msg.eventType }}", "webhook_id": "{{msg.id}}",
                "timestamp": "{{ attempt.timestamp }}", "data": "{{ msg.payload }}"}"#,
        );
        assert_eq!(
            out,
            r#"{"event":"alarm.triggered","webhook_id":"msg_1","timestamp":1700000100,"data":{"zone":3,"armed":true}}"#
        );
    }

    /// The chat-CRM envelope of SPEC §6, with a literal verify token.
    #[test]
    fn builds_the_chat_crm_envelope() {
        let out = render(
            r#"{"_id": "{{msg.id}}", "event": "{{msg.eventType}}", "createdAt": "{{msg.timestamp}}",
                "deliveryAttempts": "{{attempt.number}}", "firstSentAt": "{{attempt.firstSentAt}}",
                "items": ["{{msg.payload}}"], "infoWebhook": {"verifyToken": "tok-123"}}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["_id"], "msg_1");
        assert_eq!(v["createdAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["deliveryAttempts"], 2);
        assert_eq!(v["firstSentAt"], "2023-11-14T22:13:20.500Z");
        assert_eq!(v["items"][0]["zone"], 3);
        assert_eq!(v["infoWebhook"]["verifyToken"], "tok-123");
        let keys: Vec<&str> = out
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|k| {
                [
                    "_id",
                    "event",
                    "createdAt",
                    "deliveryAttempts",
                    "firstSentAt",
                    "items",
                    "infoWebhook",
                ]
                .contains(k)
            })
            .collect();
        assert_eq!(
            keys,
            [
                "_id",
                "event",
                "createdAt",
                "deliveryAttempts",
                "firstSentAt",
                "items",
                "infoWebhook"
            ],
            "keys keep the template's order"
        );
    }

    #[test]
    fn placeholders_inside_text_are_escaped_text() {
        let out = render(
            r#"{"note": "attempt {{attempt.number}} of {{msg.id}}: {{msg.payload}}", "n": [1, 2.5, null, false]}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["note"], r#"attempt 2 of msg_1: {"zone":3,"armed":true}"#);
        assert_eq!(
            out,
            r#"{"note":"attempt 2 of msg_1: {\"zone\":3,\"armed\":true}","n":[1,2.5,null,false]}"#
        );
    }

    #[test]
    fn literal_keys_and_strings_are_escaped() {
        let out = render(r#"{"a\"b": "line\nbreak", "ü": "✓"}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a\"b"], "line\nbreak");
        assert_eq!(v["ü"], "✓");
    }

    #[test]
    fn a_top_level_array_is_allowed() {
        assert_eq!(render(r#"["{{msg.payload}}"]"#), r#"[{"zone":3,"armed":true}]"#);
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        assert!(matches!(PayloadTemplate::parse("{"), Err(TemplateError::Json(_))));
        assert_eq!(
            PayloadTemplate::parse(r#""{{msg.id}}""#),
            Err(TemplateError::NotContainer)
        );
        assert!(matches!(
            PayloadTemplate::parse(r#"{"a": "{{msg.nope}}"}"#),
            Err(TemplateError::UnknownVariable(name, known)) if name == "msg.nope" && known.contains("msg.payload")
        ));
        assert!(matches!(
            PayloadTemplate::parse(r#"{"a": "{{msg.id"}"#),
            Err(TemplateError::Unclosed(_))
        ));
        let huge = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_TEMPLATE_BYTES));
        assert_eq!(PayloadTemplate::parse(&huge), Err(TemplateError::TooLarge));
    }

    #[test]
    fn the_source_is_kept_for_storage() {
        let source = r#"{"data": "{{msg.payload}}"}"#;
        let t = PayloadTemplate::parse(source).unwrap();
        assert_eq!(t.source(), source);
        assert_eq!(PayloadTemplate::parse(t.source()).unwrap(), t);
    }

    proptest::proptest! {
        /// Whatever the literal text and payload, the output is valid JSON
        /// and carries them unchanged.
        #[test]
        fn output_is_always_valid_json(text in ".*", key in "k[^{}]*", n in 1u32..100) {
            let template = serde_json::json!({ key.clone(): format!("{text}"), "p": "{{msg.payload}}", "n": "{{attempt.number}}" });
            let Ok(t) = PayloadTemplate::parse(&template.to_string()) else {
                // Text that happens to contain "{{" is a placeholder; skip it.
                return Ok(());
            };
            let mut c = ctx();
            c.attempt_number = n;
            let v: serde_json::Value = serde_json::from_slice(&t.render(&c)).unwrap();
            proptest::prop_assert_eq!(&v[&key], &serde_json::Value::String(text));
            proptest::prop_assert_eq!(v["n"].as_u64(), Some(u64::from(n)));
            proptest::prop_assert_eq!(&v["p"]["zone"], &serde_json::json!(3));
        }
    }
}
