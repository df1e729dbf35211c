//! Where a verifier reads headers from. Any map of names to values works:
//! `http::HeaderMap` (feature `http`), a slice of pairs, or a `HashMap`.
//! Names are matched without regard to case, as HTTP requires.

use std::collections::HashMap;

/// A header that is present but whose value is not visible ASCII: it is
/// reported as such rather than taken as missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotText;

/// A source of request headers.
pub trait Headers {
    /// The value of `name` (any case), if present.
    fn header(&self, name: &str) -> Result<Option<&str>, NotText>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Result<Option<&str>, NotText> {
        Ok(self
            .iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Headers for [(K, V); N] {
    fn header(&self, name: &str) -> Result<Option<&str>, NotText> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn header(&self, name: &str) -> Result<Option<&str>, NotText> {
        self.as_slice().header(name)
    }
}

impl<V: AsRef<str>, S> Headers for HashMap<String, V, S> {
    fn header(&self, name: &str) -> Result<Option<&str>, NotText> {
        Ok(self
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref()))
    }
}

#[cfg(feature = "http")]
impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Result<Option<&str>, NotText> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value.to_str().map(Some).map_err(|_| NotText),
        }
    }
}

impl<H: Headers + ?Sized> Headers for &H {
    fn header(&self, name: &str) -> Result<Option<&str>, NotText> {
        (**self).header(name)
    }
}
