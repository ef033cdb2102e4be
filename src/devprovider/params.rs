//! Strict parsing of `application/x-www-form-urlencoded` request parameters,
//! as OAuth 2.0 asks (RFC 6749 §3.1): a parameter sent twice is an error and
//! one sent with an empty value counts as absent.

use std::collections::{HashMap, HashSet};

/// The parameters of one request, each name at most once.
#[derive(Debug, Default)]
pub(super) struct Params(HashMap<String, String>);

/// What to tell the user when [`Params::parse`] finds a duplicate.
pub(super) const DUPLICATE: &str = "A request parameter was sent more than once.";

/// A parameter appeared more than once.
#[derive(Debug, thiserror::Error)]
#[error("parameter {0} was sent more than once")]
pub(super) struct Duplicate(pub(super) String);

impl Params {
    /// Parses a query string or form body.
    pub(super) fn parse(input: &[u8]) -> Result<Self, Duplicate> {
        let mut seen = HashSet::new();
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if !seen.insert(name.clone()) {
                return Err(Duplicate(name.into_owned()));
            }
            if !value.is_empty() {
                map.insert(name.into_owned(), value.into_owned());
            }
        }
        Ok(Self(map))
    }

    /// The value of `name`, if sent and non-empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a
/// space and `%XX` a byte. Used for client credentials in HTTP Basic, which
/// RFC 6749 §2.3.1 form-encodes before base64. `None` if malformed.
pub(super) fn form_decode_component(input: &str) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_rejected() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        assert!(Params::parse(b"a=&a=2").is_err());
        assert!(Params::parse(b"a=1&a=").is_err());
    }

    #[test]
    fn empty_values_count_as_absent() {
        let p = Params::parse(b"a=&b=x%20y").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y"));
    }

    #[test]
    fn form_component_decoding() {
        assert_eq!(form_decode_component("a+b%3A%25c").as_deref(), Some("a b:%c"));
        assert_eq!(form_decode_component("%zz"), None);
        assert_eq!(form_decode_component("%4"), None);
        assert_eq!(form_decode_component("%ff"), None);
    }
}
