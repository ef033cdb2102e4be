//! The user's tokens, kept in the session (for the app behind the gateway,
//! handlers' [`crate::web::UserTokens`], refresh and revocation): encrypted
//! and authenticated (AES-256-GCM), never in a cookie, never in clear in
//! the store.
//!
//! The key is `TOKEN_ENCRYPTION_KEY` when set, so that whoever can read
//! the session store (a backup, a Redis replica) still cannot use the
//! tokens; otherwise it is derived from the key every instance already
//! shares in the database, which keeps them out of a session store that is
//! not the database (Redis) but not from someone who reads both.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, err};
use crate::secret::Secret;

/// Bytes of a token key.
pub const KEY_BYTES: usize = 32;

/// Which token a sealed value holds: bound into its authentication, so an
/// ID token cannot be passed off as an access token.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The access token.
    Access,
    /// The ID token.
    Id,
    /// The refresh token.
    Refresh,
}

impl Kind {
    fn aad(self) -> &'static [u8] {
        match self {
            Kind::Access => b"oidc-gate access token v1",
            Kind::Id => b"oidc-gate id token v1",
            Kind::Refresh => b"oidc-gate refresh token v1",
        }
    }
}

/// Seals and opens tokens.
pub struct TokenVault {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVault([redacted])")
    }
}

/// A login's tokens as a session keeps them. Written as an array of its
/// fields in this order, absent ones `null` (see `Serialize` below: the
/// session is copied on every request, an array more cheaply than an
/// object); read from that or from an object with their names.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredTokens {
    /// The access token, sealed.
    #[serde(default)]
    pub access: Option<String>,
    /// When the access token expires (Unix seconds), if the provider said.
    #[serde(default)]
    pub access_expires_at: Option<i64>,
    /// When the access token was issued (Unix seconds, our clock): its
    /// lifetime sets the refresh margin, and `SESSION_REFRESH_INTERVAL`
    /// counts from it.
    #[serde(default)]
    pub issued_at: Option<i64>,
    /// The ID token, sealed.
    #[serde(default)]
    pub id: Option<String>,
    /// The refresh token, sealed, when the provider issued one.
    #[serde(default)]
    pub refresh: Option<String>,
}

impl Serialize for StoredTokens {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            &self.access,
            &self.access_expires_at,
            &self.issued_at,
            &self.id,
            &self.refresh,
        )
            .serialize(serializer)
    }
}

impl TokenVault {
    /// A vault with a key of [`KEY_BYTES`] bytes.
    pub fn new(key: &[u8; KEY_BYTES]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key");
        Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        }
    }

    /// A vault keyed by HKDF-SHA256 from a longer shared secret (the
    /// database's shared key), for this purpose only.
    pub fn derived(shared: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"oidc-gate").extract(shared);
        let mut key = [0u8; KEY_BYTES];
        prk.expand(&[b"session tokens v1"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self::new(&key)
    }

    /// The vault of the servers' configuration: `TOKEN_ENCRYPTION_KEY` when
    /// set, otherwise derived from the database's `shared` key.
    pub fn configured(key: Option<&TokenKey>, shared: &[u8]) -> Self {
        match key {
            Some(key) => Self::new(&key.0),
            None => Self::derived(shared),
        }
    }

    /// Seals `token`: base64url of a random nonce, the ciphertext and its tag.
    pub fn seal(&self, kind: Kind, token: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("the system's random source works");
        let mut sealed = token.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kind.aad()), &mut sealed)
            .expect("AES-GCM seals any length a token has");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a sealed `kind` token; `None` if it was not sealed by this key
    /// as that kind (another key, tampered with, truncated).
    pub fn open(&self, kind: Kind, sealed: &str) -> Option<Secret> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut rest = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(kind.aad()), &mut rest).ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

/// `TOKEN_ENCRYPTION_KEY`, validated (its `Debug` shows no byte of it).
#[derive(Clone)]
pub struct TokenKey(pub [u8; KEY_BYTES]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

/// Reads `TOKEN_ENCRYPTION_KEY`: 32 bytes as base64 (standard or URL-safe)
/// or 64 hex digits.
pub fn parse_key(raw: &str) -> Result<[u8; KEY_BYTES], ConfigError> {
    let raw = raw.trim();
    let bytes = if raw.len() == 2 * KEY_BYTES && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..KEY_BYTES)
            .map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()
    } else {
        STANDARD
            .decode(raw)
            .or_else(|_| URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')))
            .ok()
    };
    bytes.and_then(|b| <[u8; KEY_BYTES]>::try_from(b).ok()).ok_or_else(|| {
        err(
            "TOKEN_ENCRYPTION_KEY must be 32 random bytes, as base64 or 64 hex digits \
             (e.g. the output of `openssl rand -base64 32`).",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read back in declaration order (see `Serialize`): each field keeps
    /// its own value.
    #[test]
    fn stored_tokens_read_back_as_written_field_by_field() {
        let tokens = StoredTokens {
            access: Some("a".into()),
            access_expires_at: Some(1),
            issued_at: Some(2),
            id: Some("i".into()),
            refresh: Some("r".into()),
        };
        let back: StoredTokens = serde_json::from_value(serde_json::to_value(&tokens).unwrap()).unwrap();
        assert_eq!(
            (back.access.as_deref(), back.access_expires_at, back.issued_at),
            (Some("a"), Some(1), Some(2))
        );
        assert_eq!((back.id.as_deref(), back.refresh.as_deref()), (Some("i"), Some("r")));
    }

    #[test]
    fn tokens_round_trip_and_nothing_else_opens() {
        let vault = TokenVault::new(&[7; KEY_BYTES]);
        let sealed = vault.seal(Kind::Access, "at-123");
        assert!(!sealed.contains("at-123"));
        assert_eq!(vault.open(Kind::Access, &sealed).unwrap().expose(), "at-123");
        // A fresh nonce each time.
        assert_ne!(sealed, vault.seal(Kind::Access, "at-123"));
        // Another kind, another key, a flipped bit, a cut: nothing.
        assert!(vault.open(Kind::Id, &sealed).is_none());
        assert!(TokenVault::new(&[8; KEY_BYTES]).open(Kind::Access, &sealed).is_none());
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(vault.open(Kind::Access, &URL_SAFE_NO_PAD.encode(&bytes)).is_none());
        assert!(vault.open(Kind::Access, &sealed[..10]).is_none());
        assert!(vault.open(Kind::Access, "not base64 !").is_none());
    }

    #[test]
    fn derived_keys_depend_on_the_shared_secret() {
        let a = TokenVault::derived(&[1; 64]);
        let sealed = a.seal(Kind::Id, "id");
        assert_eq!(
            TokenVault::derived(&[1; 64]).open(Kind::Id, &sealed).unwrap().expose(),
            "id"
        );
        assert!(TokenVault::derived(&[2; 64]).open(Kind::Id, &sealed).is_none());
    }

    #[test]
    fn the_key_setting_takes_base64_or_hex_of_32_bytes() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_key(&hex).unwrap()[31], 0xff);
        let b64 = STANDARD.encode([9u8; 32]);
        assert_eq!(parse_key(&b64).unwrap(), [9u8; 32]);
        assert_eq!(parse_key(&URL_SAFE_NO_PAD.encode([9u8; 32])).unwrap(), [9u8; 32]);
        for bad in ["", "short", &STANDARD.encode([1u8; 16]), &"0".repeat(63)] {
            let e = parse_key(bad).unwrap_err().to_string();
            assert!(e.contains("TOKEN_ENCRYPTION_KEY"), "{bad}: {e}");
        }
    }
}
