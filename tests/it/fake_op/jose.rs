//! The fixture's keys and the little JOSE it needs: public JWKs, compact JWS
//! signing with every algorithm a test may ask for, `at_hash`, PKCE S256.
//! Only third-party crates: a bug in the relying party cannot confirm itself here.
//!
//! The keys in `keys/` are test-only, made once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` (rsa1, rsa2, rsa3;
//! `rsa_keygen_bits:1024` for rsa1024),
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` (ec1, ec2) and
//! `openssl genpkey -algorithm ed25519`; RSA key generation at test time is too slow.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// One of the fixture's key pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// RSA 2048, kid `rsa-1`: the default signing key.
    Rsa1,
    /// RSA 2048, kid `rsa-2`: the key rotated to.
    Rsa2,
    /// RSA 2048, kid `rsa-3`: the key rotated to next.
    Rsa3,
    /// RSA 1024, kid `rsa-small`: too small to be trusted.
    RsaSmall,
    /// P-256, kid `ec-1`.
    Ec1,
    /// P-256, kid `ec-2`.
    Ec2,
    /// Ed25519, kid `ed-1`.
    Ed,
}

impl Key {
    /// The key id published in the JWKS and put in token headers.
    pub fn kid(self) -> &'static str {
        match self {
            Key::Rsa1 => "rsa-1",
            Key::Rsa2 => "rsa-2",
            Key::Rsa3 => "rsa-3",
            Key::RsaSmall => "rsa-small",
            Key::Ec1 => "ec-1",
            Key::Ec2 => "ec-2",
            Key::Ed => "ed-1",
        }
    }
}

/// A JWS `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (needs an RSA key).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (needs an RSA key).
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256 (needs an EC key).
    Es256,
    /// Ed25519 (needs the Ed key).
    EdDsa,
    /// HMAC-SHA256 keyed with the client secret (the key is ignored).
    Hs256,
    /// No signature at all.
    None,
}

impl Alg {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
            Alg::None => "none",
        }
    }
}

struct KeyRing {
    rsa1: RsaPrivateKey,
    rsa2: RsaPrivateKey,
    rsa3: RsaPrivateKey,
    rsa_small: RsaPrivateKey,
    ec1: p256::ecdsa::SigningKey,
    ec2: p256::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
}

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let rsa = |pem: &str| RsaPrivateKey::from_pkcs8_pem(pem).expect("test RSA key");
        let ec = |pem: &str| {
            use p256::pkcs8::DecodePrivateKey as _;
            p256::ecdsa::SigningKey::from_pkcs8_der(&pem_der(pem)).expect("test P-256 key")
        };
        // PKCS#8 for Ed25519 is a fixed 16-byte prefix and the 32-byte seed.
        let ed_der = pem_der(include_str!("keys/ed25519.pem"));
        let seed: [u8; 32] = ed_der[ed_der.len() - 32..].try_into().unwrap();
        KeyRing {
            rsa1: rsa(include_str!("keys/rsa1.pem")),
            rsa2: rsa(include_str!("keys/rsa2.pem")),
            rsa3: rsa(include_str!("keys/rsa3.pem")),
            rsa_small: rsa(include_str!("keys/rsa1024.pem")),
            ec1: ec(include_str!("keys/ec1.pem")),
            ec2: ec(include_str!("keys/ec2.pem")),
            ed: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    })
}

fn rsa_key(key: Key) -> &'static RsaPrivateKey {
    let r = ring();
    match key {
        Key::Rsa2 => &r.rsa2,
        Key::Rsa3 => &r.rsa3,
        Key::RsaSmall => &r.rsa_small,
        _ => &r.rsa1,
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK of `key`, with or without its `kid`.
pub fn jwk(key: Key, with_kid: bool) -> Value {
    let r = ring();
    let mut jwk = match key {
        Key::Rsa1 | Key::Rsa2 | Key::Rsa3 | Key::RsaSmall => {
            let k = rsa_key(key);
            json!({"kty": "RSA", "use": "sig", "n": b64(k.n().to_bytes_be()), "e": b64(k.e().to_bytes_be())})
        }
        Key::Ec1 | Key::Ec2 => {
            let k = if key == Key::Ec1 { &r.ec1 } else { &r.ec2 };
            let point = k.verifying_key().to_sec1_point(false);
            let xy = &point.as_bytes()[1..];
            json!({"kty": "EC", "use": "sig", "crv": "P-256", "x": b64(&xy[..32]), "y": b64(&xy[32..])})
        }
        Key::Ed => json!({"kty": "OKP", "use": "sig", "crv": "Ed25519", "x": b64(r.ed.verifying_key().to_bytes())}),
    };
    if with_kid {
        jwk["kid"] = key.kid().into();
    }
    jwk
}

/// Signs `claims` under `header` as a compact JWS. `secret` keys HS256;
/// `corrupt` flips one bit of the signature.
pub fn sign(header: &Value, claims: &Value, alg: Alg, key: Key, secret: &str, corrupt: bool) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let r = ring();
    let ec = |k: Key| if k == Key::Ec2 { &r.ec2 } else { &r.ec1 };
    let (message, rsa, rng) = (input.as_bytes(), rsa_key(key).clone(), &mut rand::rngs::OsRng);
    use rsa::{pkcs1v15, pss};
    let mut sig: Vec<u8> = match alg {
        Alg::Rs256 => pkcs1v15::SigningKey::<Sha256>::new(rsa).sign(message).to_vec(),
        Alg::Rs384 => pkcs1v15::SigningKey::<Sha384>::new(rsa).sign(message).to_vec(),
        Alg::Rs512 => pkcs1v15::SigningKey::<Sha512>::new(rsa).sign(message).to_vec(),
        Alg::Ps256 => pss::BlindedSigningKey::<Sha256>::new(rsa)
            .sign_with_rng(rng, message)
            .to_vec(),
        Alg::Ps384 => pss::BlindedSigningKey::<Sha384>::new(rsa)
            .sign_with_rng(rng, message)
            .to_vec(),
        Alg::Ps512 => pss::BlindedSigningKey::<Sha512>::new(rsa)
            .sign_with_rng(rng, message)
            .to_vec(),
        Alg::Es256 => {
            use p256::ecdsa::signature::Signer as _;
            let s: p256::ecdsa::Signature = ec(key).sign(input.as_bytes());
            s.to_bytes().to_vec()
        }
        Alg::EdDsa => {
            use ed25519_dalek::Signer as _;
            r.ed.sign(input.as_bytes()).to_bytes().to_vec()
        }
        Alg::Hs256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Alg::None => Vec::new(),
    };
    if corrupt && let Some(last) = sig.last_mut() {
        *last ^= 0x01;
    }
    format!("{input}.{}", b64(sig))
}

/// `at_hash` for `alg`: the left half of the access token's hash (by the
/// alg's hash function; SHA-512 for Ed25519).
pub fn at_hash(access_token: &str, alg: Alg) -> String {
    let token = access_token.as_bytes();
    match alg {
        Alg::Rs384 | Alg::Ps384 => b64(&Sha384::digest(token)[..24]),
        Alg::EdDsa | Alg::Rs512 | Alg::Ps512 => b64(&Sha512::digest(token)[..32]),
        _ => b64(&Sha256::digest(token)[..16]),
    }
}

/// BASE64URL(SHA256(verifier)): the PKCE S256 transform.
pub fn s256(verifier: &str) -> String {
    b64(Sha256::digest(verifier.as_bytes()))
}

/// `n` random bytes, base64url.
pub fn random(n: usize) -> String {
    use rand::RngCore as _;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    b64(bytes)
}

/// Applies `patch` to the JSON object `target`: each member replaces the
/// one of the same name, and a `null` member removes it.
pub fn merge(target: &mut Value, patch: &Value) {
    let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object()) else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}
