//! Parse-don't-validate newtypes for the strings users send us. Each parser
//! returns a [`ValidationError`] naming the rule that failed, which the API
//! turns into a 422 entry for the offending field.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ValidationError {
    pub msg: String,
    /// Machine-readable kind, in the style of Svix's 422 `type` field.
    pub kind: &'static str,
}

impl ValidationError {
    pub fn new(kind: &'static str, msg: impl Into<String>) -> Self {
        Self { msg: msg.into(), kind }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn check_name(value: &str, max: usize, what: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(
            "value_error.any_str.min_length",
            format!("{what} must not be empty"),
        ));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            "value_error.any_str.max_length",
            format!("{what} must be at most {max} characters"),
        ));
    }
    if !value.chars().all(is_name_char) {
        return Err(ValidationError::new(
            "value_error.str.regex",
            format!("{what} may contain only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                check_name(&value, $max, $what)?;
                Ok(Self(value))
            }
            /// For values read back from storage, which were checked on the way in.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An event type such as `invoice.paid`.
    EventTypeName, 256, "event type name"
);
name_type!(
    /// A user-chosen id usable in place of the generated one (`uid`, `eventId`).
    Uid, 256, "uid"
);
name_type!(
    /// A channel, used to route messages to endpoints that subscribe to it.
    Channel, 128, "channel"
);

/// Svix caps the number of channels on a message or endpoint.
pub const MAX_CHANNELS: usize = 10;

/// A URL a webhook may be sent to: absolute http(s) with a host. Whether its
/// address may be reached is decided at delivery time, after DNS resolution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if value.len() > 65_536 {
            return Err(ValidationError::new("value_error.url.too_long", "URL is too long"));
        }
        let url =
            url::Url::parse(value).map_err(|e| ValidationError::new("value_error.url", format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ValidationError::new(
                "value_error.url.scheme",
                "URL scheme must be http or https",
            ));
        }
        if url.host().is_none() {
            return Err(ValidationError::new("value_error.url.host", "URL must have a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ValidationError::new(
                "value_error.url.userinfo",
                "URL must not carry credentials; use endpoint credentials instead",
            ));
        }
        // Normalised (scheme and host lower-cased, default port dropped, an
        // empty path written `/`), so one URL is stored and shown one way.
        Ok(Self(url.into()))
    }
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Deepest nesting of objects and arrays a message payload may have (`{}` is
/// depth 1). The payload is kept as raw text, which serde_json never walks,
/// so without this a receiver (or our own templates) would have to parse
/// whatever depth a sender chose; 64 is far beyond any real event.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// A message payload: the exact JSON text the platform posted, which must be
/// an object nested at most [`MAX_PAYLOAD_DEPTH`] deep. It is stored and
/// delivered byte for byte.
pub fn check_payload_object(raw_json: &str) -> Result<(), ValidationError> {
    if !raw_json.trim_start().starts_with('{') {
        return Err(ValidationError::new("type_error.dict", "payload must be a JSON object"));
    }
    check_depth(raw_json.as_bytes(), MAX_PAYLOAD_DEPTH)
        .map_err(|_| ValidationError::new(DEPTH_KIND, depth_message("payload", MAX_PAYLOAD_DEPTH)))
}

/// The 422 `type` of a value nested too deep.
pub const DEPTH_KIND: &str = "value_error.json.depth";

pub fn depth_message(what: &str, max: usize) -> String {
    format!("{what} is nested deeper than {max} levels of objects and arrays")
}

/// Nesting went past the limit; `field` is the top-level object key under
/// which it did, when the text is an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    pub field: Option<String>,
}

/// Checks that JSON text nests objects and arrays at most `max` deep, in one
/// pass over the bytes and without recursion, so neither its time nor its
/// stack grows with the depth. Syntax is not checked (the parser does that).
pub fn check_depth(json: &[u8], max: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    // Top-level keys, so the error can name the field that is too deep.
    let (mut top_is_object, mut expect_key, mut string_is_key) = (false, false, false);
    let (mut string_start, mut key) = (0usize, None::<(usize, usize)>);
    let mut i = 0;
    while i < json.len() {
        if in_string {
            // Strings are most of a payload's bytes: skip to the next quote
            // or backslash at once.
            match memchr::memchr2(b'"', b'\\', &json[i..]) {
                None => return Ok(()),
                Some(at) => i += at,
            }
            if json[i] == b'\\' {
                // The escaped byte cannot end the string.
                i += 2;
                continue;
            }
            in_string = false;
            if string_is_key {
                key = Some((string_start, i));
            }
            i += 1;
            continue;
        }
        let b = json[i];
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
                string_is_key = depth == 1 && expect_key;
                if depth == 1 {
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    let field = key
                        .filter(|_| top_is_object && depth > 1)
                        .map(|(start, end)| String::from_utf8_lossy(&json[start..end]).into_owned());
                    return Err(TooDeep { field });
                }
                if depth == 1 {
                    top_is_object = b == b'{';
                    expect_key = top_is_object;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = top_is_object,
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_svix_pattern() {
        assert!(EventTypeName::parse("invoice.paid").is_ok());
        assert!(EventTypeName::parse("a-b_c.D9").is_ok());
        assert_eq!(
            EventTypeName::parse("").unwrap_err().kind,
            "value_error.any_str.min_length"
        );
        assert_eq!(
            EventTypeName::parse("has space").unwrap_err().kind,
            "value_error.str.regex"
        );
        assert!(EventTypeName::parse("x".repeat(257)).is_err());
        assert!(Channel::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn urls_must_be_http_with_host() {
        assert!(EndpointUrl::parse("https://example.com/hook").is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:9000/").is_ok());
        assert!(EndpointUrl::parse("ftp://example.com/").is_err());
        assert!(EndpointUrl::parse("not a url").is_err());
        assert!(EndpointUrl::parse("https://user:pw@example.com/").is_err());
    }

    #[test]
    fn payload_must_be_object() {
        assert!(check_payload_object(r#" {"a":1}"#).is_ok());
        assert!(check_payload_object("[1]").is_err());
        assert!(check_payload_object("\"x\"").is_err());
    }

    fn nested(depth: usize) -> String {
        format!("{}{{}}{}", r#"{"a":"#.repeat(depth - 1), "}".repeat(depth - 1))
    }

    #[test]
    fn payload_depth_is_limited() {
        assert_eq!(check_depth(nested(1).as_bytes(), 1), Ok(()));
        assert!(check_payload_object(&nested(MAX_PAYLOAD_DEPTH)).is_ok());
        let err = check_payload_object(&nested(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        assert_eq!(err.kind, DEPTH_KIND);
        // Brackets inside strings, escaped quotes included, do not count.
        let quoted = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_payload_object(&quoted).is_ok());
    }

    #[test]
    fn depth_check_names_the_top_level_field() {
        let text = format!(
            r#"{{"eventType":"x","tags":["a,b"],"payload":{}}}"#,
            "[".repeat(150_000)
        );
        assert_eq!(
            check_depth(text.as_bytes(), 65),
            Err(TooDeep {
                field: Some("payload".into())
            })
        );
        let text = format!(r#"{{"k":"v","nested":{{"deep":{}}}}}"#, "[".repeat(10));
        assert_eq!(
            check_depth(text.as_bytes(), 5),
            Err(TooDeep {
                field: Some("nested".into())
            })
        );
        assert_eq!(
            check_depth("[".repeat(150_000).as_bytes(), 65),
            Err(TooDeep { field: None })
        );
        assert_eq!(check_depth(br#"{"a":[[1],[2]],"b":{"c":[]}}"#, 3), Ok(()));
    }

    /// The depth check one byte at a time, as plainly as it can be written.
    fn depth_byte_by_byte(json: &[u8], max: usize) -> Result<(), TooDeep> {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let (mut top_is_object, mut expect_key, mut string_is_key) = (false, false, false);
        let (mut string_start, mut key) = (0usize, None::<(usize, usize)>);
        for (i, &b) in json.iter().enumerate() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                    if string_is_key {
                        key = Some((string_start, i));
                    }
                }
                continue;
            }
            match b {
                b'"' => {
                    in_string = true;
                    string_start = i + 1;
                    string_is_key = depth == 1 && expect_key;
                    if depth == 1 {
                        expect_key = false;
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        let field = key
                            .filter(|_| top_is_object && depth > 1)
                            .map(|(s, e)| String::from_utf8_lossy(&json[s..e]).into_owned());
                        return Err(TooDeep { field });
                    }
                    if depth == 1 {
                        top_is_object = b == b'{';
                        expect_key = top_is_object;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b',' if depth == 1 => expect_key = top_is_object,
                _ => {}
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn the_depth_check_skipping_strings_agrees_with_one_byte_at_a_time(
            text in proptest::collection::vec(proptest::sample::select(b"{}[]\"\\\\a:,".to_vec()), 0..200),
            max in 0usize..6,
        ) {
            proptest::prop_assert_eq!(check_depth(&text, max), depth_byte_by_byte(&text, max));
        }
    }
}
