//! What an endpoint's requests carry besides the signatures (SPEC §4), and
//! how their body is encoded: HTTP Basic credentials (`basicAuth`), a verify
//! token placed inside the JSON body at a JSON Pointer (`verifyToken`), and
//! the form-encoded body GitHub offers (`bodyEncoding: form`).
//!
//! The secret halves, the password and the token, are [`Credential`]s:
//! `Debug` never prints them, and the settings document's serde shape skips
//! them, so the store keeps them only where it seals them ([`SecretParts`]).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::model::EndpointSettings;

/// The most levels a verify token's pointer may name.
pub const MAX_POINTER_DEPTH: usize = 32;

/// A credential's plain value, sent to the endpoint and never shown back.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// `Authorization: Basic base64(username:password)` on every request
/// (RFC 7617). The username is a setting like any other; the password is
/// sealed apart from the settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    pub username: String,
    #[serde(skip)]
    pub password: Credential,
}

impl BasicAuth {
    /// The `Authorization` header's value, the pair encoded as UTF-8.
    pub fn header_value(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password.expose());
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// A token set, as a JSON string, at `pointer` in every request's JSON
/// body (Chative's `infoWebhook.verifyToken`). The pointer is a setting;
/// the token is sealed apart from the settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyToken {
    pub pointer: JsonPointer,
    #[serde(skip)]
    pub token: Credential,
}

/// Why a finished body cannot carry the verify token. The attempt fails
/// with this text rather than go out without the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "verifyToken: the body at '{at}' is {found}, not an object, so no token can be set at '{pointer}'; nothing was sent"
    )]
    NotAnObject {
        at: String,
        found: &'static str,
        pointer: String,
    },
    #[error("verifyToken: the body is not JSON ({0}); nothing was sent")]
    NotJson(String),
}

impl VerifyToken {
    /// `body` with the token set at the pointer, the objects missing on the
    /// way created; a value already there is replaced. Only the objects on
    /// the path are written again (compactly): every other member keeps its
    /// bytes, order and number spelling included. Arrays are not walked into.
    pub fn insert(&self, body: &[u8]) -> Result<Vec<u8>, BodyError> {
        let text = std::str::from_utf8(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
        let token = json_string(self.token.expose());
        let out = set_at(text, &self.pointer, 0, &token)?;
        Ok(out.into_bytes())
    }
}

/// The value at `pointer.tokens[depth..]` inside the JSON value `text` set
/// to `value` (already JSON).
fn set_at(text: &str, pointer: &JsonPointer, depth: usize, value: &str) -> Result<String, BodyError> {
    let Some(key) = pointer.tokens.get(depth) else {
        return Ok(value.to_owned());
    };
    let Members(mut members) = match first_byte(text) {
        Some(b'{') => serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?,
        other => {
            return Err(BodyError::NotAnObject {
                at: pointer.prefix(depth),
                found: kind_of(other),
                pointer: pointer.source.clone(),
            });
        }
    };
    // Duplicate keys: the last one is what receivers read.
    match members.iter_mut().rev().find(|(k, _)| k == key) {
        Some((_, raw)) => *raw = set_at(raw, pointer, depth + 1, value)?,
        None => members.push((key.clone(), nested(&pointer.tokens[depth + 1..], value))),
    }
    let mut out = String::with_capacity(text.len() + value.len() + 16);
    out.push('{');
    for (i, (k, raw)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        out.push_str(raw);
    }
    out.push('}');
    Ok(out)
}

/// `{"a":{"b":value}}` for the tokens `a`, `b`.
fn nested(tokens: &[String], value: &str) -> String {
    tokens.iter().rev().fold(value.to_owned(), |inner, key| {
        format!("{{{}:{inner}}}", json_string(key))
    })
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn first_byte(text: &str) -> Option<u8> {
    text.bytes().find(|b| !b.is_ascii_whitespace())
}

fn kind_of(first: Option<u8>) -> &'static str {
    match first {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "empty",
    }
}

/// An object's members in their order, each value as its own JSON text.
struct Members(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v.get().to_owned()));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON Pointer (RFC 6901) that names a member inside the body: not
/// empty (a token cannot replace the whole body), `~0` and `~1` unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    source: String,
    tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("the pointer must start with '/' (RFC 6901), and cannot be empty: the token goes inside the body")]
    NoSlash,
    #[error("'~' must be followed by '0' or '1' in a JSON Pointer (RFC 6901)")]
    BadEscape,
    #[error("the pointer may name at most {MAX_POINTER_DEPTH} levels")]
    TooDeep,
}

impl JsonPointer {
    pub fn parse(source: &str) -> Result<Self, PointerError> {
        let rest = source.strip_prefix('/').ok_or(PointerError::NoSlash)?;
        let tokens = rest.split('/').map(unescape).collect::<Result<Vec<_>, _>>()?;
        if tokens.len() > MAX_POINTER_DEPTH {
            return Err(PointerError::TooDeep);
        }
        Ok(Self {
            source: source.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The pointer to the value `depth` levels down, as written.
    fn prefix(&self, depth: usize) -> String {
        self.source.split('/').take(depth + 1).collect::<Vec<_>>().join("/")
    }
}

fn unescape(token: &str) -> Result<String, PointerError> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(PointerError::BadEscape),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

impl Serialize for JsonPointer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// A stored pointer that no longer parses is an error, never dropped.
impl<'de> Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Self::parse(&source).map_err(|e| de::Error::custom(format!("verify token pointer: {e}")))
    }
}

/// How a request's body goes on the wire. Signatures cover the bytes sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The JSON itself, `application/json`.
    #[default]
    Json,
    /// `payload=<percent-encoded JSON>`, `application/x-www-form-urlencoded`,
    /// as GitHub offers.
    Form,
}

impl BodyEncoding {
    pub fn is_json(&self) -> bool {
        *self == Self::Json
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
        }
    }

    /// The bytes sent for the JSON body `json`.
    pub fn encode(self, json: Bytes) -> Bytes {
        match self {
            Self::Json => json,
            Self::Form => {
                let mut out = String::with_capacity(json.len() * 3 / 2 + 8);
                out.push_str("payload=");
                out.extend(form_urlencoded::byte_serialize(&json));
                Bytes::from(out)
            }
        }
    }
}

/// The header names whose values are credentials: sealed at rest with the
/// rest of an endpoint's secret parts and never shown (Svix's list; names
/// lower-case, as Herald keeps them).
pub const SENSITIVE_HEADERS: &[&str] = &[
    "x-auth-token",
    "www-authenticate",
    "authorization",
    "proxy-authenticate",
    "proxy-authorization",
];

pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS.contains(&name)
}

/// The secret halves of an endpoint's credentials, in the one document the
/// store seals (with the key that seals endpoint secrets), apart from the
/// settings document that holds the rest.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretParts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    basic_auth_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_token: Option<String>,
    /// The values of its sensitive custom headers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
}

impl fmt::Debug for SecretParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretParts(..)")
    }
}

impl SecretParts {
    /// What `settings` holds that must be sealed; `None` when nothing.
    pub fn of(settings: &EndpointSettings) -> Option<Self> {
        let parts = Self {
            basic_auth_password: settings.basic_auth.as_ref().map(|b| b.password.expose().to_owned()),
            verify_token: settings.verify_token.as_ref().map(|v| v.token.expose().to_owned()),
            headers: settings
                .headers
                .iter()
                .filter(|(name, _)| is_sensitive_header(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        };
        (parts != Self::default()).then_some(parts)
    }

    /// Puts the unsealed `parts` back into settings loaded from their
    /// document. A part the settings name but the sealed document lacks, or
    /// the other way round, is data that does not map back: an error.
    pub fn restore(parts: Option<Self>, settings: &mut EndpointSettings) -> Result<(), String> {
        let Self {
            basic_auth_password,
            verify_token,
            headers,
        } = parts.unwrap_or_default();
        // A sensitive header's value is in the settings document only as a
        // blank (or, written before values were sealed, in plain).
        for (name, value) in headers {
            match settings.headers.get_mut(&name) {
                Some(slot) => *slot = value,
                None => return Err(format!("a sealed value for header {name}, which is not set")),
            }
        }
        match (&mut settings.basic_auth, basic_auth_password) {
            (Some(b), Some(p)) => b.password = Credential::new(p),
            (None, None) => {}
            (Some(_), None) => return Err("basicAuth has no sealed password".into()),
            (None, Some(_)) => return Err("a sealed password with no basicAuth".into()),
        }
        match (&mut settings.verify_token, verify_token) {
            (Some(v), Some(t)) => v.token = Credential::new(t),
            (None, None) => {}
            (Some(_), None) => return Err("verifyToken has no sealed token".into()),
            (None, Some(_)) => return Err("a sealed token with no verifyToken".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::validate::EndpointUrl;

    fn token(pointer: &str) -> VerifyToken {
        VerifyToken {
            pointer: JsonPointer::parse(pointer).unwrap(),
            token: Credential::new("tok\"en"),
        }
    }

    fn insert(pointer: &str, body: &str) -> Result<String, BodyError> {
        token(pointer)
            .insert(body.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn the_token_goes_at_the_pointer_and_nothing_else_moves() {
        let body = r#"{"_id": "1", "n": 12345678901234567890123, "infoWebhook": {"keep": [1, 2]}, "z": 1.50}"#;
        let out = insert("/infoWebhook/verifyToken", body).unwrap();
        assert_eq!(
            out,
            r#"{"_id":"1","n":12345678901234567890123,"infoWebhook":{"keep":[1, 2],"verifyToken":"tok\"en"},"z":1.50}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.pointer("/infoWebhook/verifyToken").unwrap(), "tok\"en");
    }

    #[test]
    fn missing_objects_are_created_and_a_value_there_replaced() {
        assert_eq!(
            insert("/a/b~1c/d~0", "{}").unwrap(),
            r#"{"a":{"b/c":{"d~":"tok\"en"}}}"#
        );
        assert_eq!(insert("/a", r#"{"a": [1]}"#).unwrap(), r#"{"a":"tok\"en"}"#);
        assert_eq!(insert("/", r#"{"x":1}"#).unwrap(), r#"{"x":1,"":"tok\"en"}"#);
        // Duplicate keys: the last one, the one receivers read, gets it.
        assert_eq!(
            insert("/a/t", r#"{"a": 1, "a": {}}"#).unwrap(),
            r#"{"a":1,"a":{"t":"tok\"en"}}"#
        );
    }

    #[test]
    fn a_value_that_is_not_an_object_on_the_path_is_an_error() {
        let err = insert("/items/0/t", r#"{"items": [{"a": 1}]}"#).unwrap_err();
        assert_eq!(
            err,
            BodyError::NotAnObject {
                at: "/items".into(),
                found: "an array",
                pointer: "/items/0/t".into()
            }
        );
        assert!(err.to_string().contains("nothing was sent"), "{err}");
        assert!(matches!(
            insert("/a", "[1]"),
            Err(BodyError::NotAnObject { found: "an array", .. })
        ));
        assert!(matches!(
            insert("/a/b", r#"{"a": null}"#),
            Err(BodyError::NotAnObject { found: "null", .. })
        ));
        assert!(matches!(insert("/a", "{nope"), Err(BodyError::NotJson(_))));
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        assert_eq!(JsonPointer::parse(""), Err(PointerError::NoSlash));
        assert_eq!(JsonPointer::parse("a/b"), Err(PointerError::NoSlash));
        assert_eq!(JsonPointer::parse("/a~2"), Err(PointerError::BadEscape));
        assert_eq!(JsonPointer::parse("/a~"), Err(PointerError::BadEscape));
        assert_eq!(JsonPointer::parse(&"/a".repeat(33)), Err(PointerError::TooDeep));
        let p = JsonPointer::parse("/m~0n/a~1b").unwrap();
        assert_eq!(p.tokens, vec!["m~n", "a/b"]);
        assert_eq!(serde_json::to_value(&p).unwrap(), "/m~0n/a~1b");
    }

    #[test]
    fn basic_auth_encodes_the_pair_and_prints_no_password() {
        let b = BasicAuth {
            username: "Aladdin".into(),
            password: Credential::new("open sesame"),
        };
        // RFC 7617's example.
        assert_eq!(b.header_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let printed = format!("{b:?}");
        assert!(!printed.contains("sesame"), "{printed}");
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({"username": "Aladdin"})
        );
    }

    #[test]
    fn form_encoding_carries_the_json_as_payload() {
        let json = Bytes::from_static(br#"{"a":"x y&z=1","e":"\u00e9"}"#);
        let sent = BodyEncoding::Form.encode(json.clone());
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&sent).into_owned().collect();
        assert_eq!(
            pairs,
            vec![("payload".to_owned(), String::from_utf8(json.to_vec()).unwrap())]
        );
        assert!(sent.starts_with(b"payload=%7B%22a%22"), "{sent:?}");
        assert_eq!(BodyEncoding::Json.encode(json.clone()), json);
    }

    #[test]
    fn secret_parts_leave_the_settings_document_and_come_back() {
        let mut s = EndpointSettings::new(EndpointUrl::parse("https://example.com/").unwrap());
        assert_eq!(SecretParts::of(&s), None);
        s.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: Credential::new("hunter2"),
        });
        s.verify_token = Some(token("/a"));
        let doc = serde_json::to_string(&s).unwrap();
        assert!(!doc.contains("hunter2") && !doc.contains("tok"), "{doc}");
        let parts = SecretParts::of(&s);
        assert!(!format!("{parts:?}").contains("hunter2"));

        let mut back: EndpointSettings = serde_json::from_str(&doc).unwrap();
        assert_ne!(back, s);
        SecretParts::restore(parts.clone(), &mut back).unwrap();
        assert_eq!(back, s);

        let mut bare: EndpointSettings = serde_json::from_str(&doc).unwrap();
        assert!(SecretParts::restore(None, &mut bare).is_err(), "a part is missing");
        let mut none = EndpointSettings::new(EndpointUrl::parse("https://example.com/").unwrap());
        assert!(
            SecretParts::restore(parts, &mut none).is_err(),
            "a part with no setting"
        );
    }
}
