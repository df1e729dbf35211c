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
        Ok(Self(value.to_owned()))
    }
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message payload: the exact JSON text the platform posted, which must be
/// an object. It is stored and delivered byte for byte.
pub fn check_payload_object(raw_json: &str) -> Result<(), ValidationError> {
    if raw_json.trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(ValidationError::new("type_error.dict", "payload must be a JSON object"))
    }
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
}
