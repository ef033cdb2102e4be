//! The request id: one per request, on every log line of the request, in the
//! `X-Request-Id` of the answer and of what the gateway passes on.
//!
//! A proxy in `TRUSTED_PROXIES` may hand its own id on (so that its logs and
//! ours name the request alike); from anyone else the header is replaced,
//! since a client could otherwise plant a misleading id in the logs.

use std::convert::Infallible;
use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a proxy (UUIDs are 36, nginx's
/// `$request_id` is 32, AWS's trace ids about 40).
const MAX_LEN: usize = 128;

/// The id of a request: a request extension, set by the request layer
/// ([`super::trace::RequestLayer`]); as an extractor it never fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A new id: 128 random bits as 32 hex digits (the shape of a W3C
    /// trace id), unique across instances without coordination.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let mut hex = [0u8; 32];
        for (i, b) in bytes.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        Self(HeaderValue::from_bytes(&hex).expect("hex digits are a header value"))
    }

    /// The id a trusted proxy sent, if it is sane: 1 to 128 visible ASCII
    /// characters (no space, no control character), from one header line.
    pub fn from_proxy(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(X_REQUEST_ID).iter();
        let value = values.next()?;
        let sane = values.next().is_none()
            && (1..=MAX_LEN).contains(&value.len())
            && value.as_bytes().iter().all(|b| b.is_ascii_graphic());
        sane.then(|| Self(value.clone()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII ever gets in (generated hex, or checked above).
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id of a request: its extension, or `-` for one that never went
    /// through the request layer.
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| Self(HeaderValue::from_static("-")))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(&parts.extensions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn only_sane_ids_are_taken_from_a_proxy() {
        let with = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
            }
            RequestId::from_proxy(&h).map(|id| id.to_string())
        };
        assert_eq!(
            with(&[b"4bf92f3577b34da6a3ce929d0e0e4736"]).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(with(&[b"req-1:abc/DEF=="]).as_deref(), Some("req-1:abc/DEF=="));
        assert_eq!(with(&[&[b'a'; 128]]).map(|s| s.len()), Some(128));
        let bad: [&[&[u8]]; 6] = [
            &[b""],
            &[&[b'a'; 129]],
            &[b"two words"],
            &[b"tab\there"],
            &[b"caf\xc3\xa9"],
            &[b"one", b"two"],
        ];
        for values in bad {
            assert_eq!(with(values), None, "{values:?}");
        }
        assert_eq!(with(&[]), None);
    }
}
