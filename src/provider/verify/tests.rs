//! The checks this module adds to the crate's: the one expected `alg`,
//! several audiences, small RSA keys.

use std::time::Duration;

use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::{Value, json};

use super::*;
use crate::provider::test_keys::{self, jws, p256_sign, rsa_sign};

const ISSUER: &str = "https://op.example";
const CLIENT: &str = "gate-client";
const NOW: i64 = 1_700_000_000;

/// A P-256 key (`ec`), an RSA 2048 key (`rsa`) and an RSA 1024 key (`small`).
fn key_set() -> GateJsonWebKeySet {
    let keys = json!({"keys": [
        test_keys::p256_jwk(&test_keys::p256(), json!({"kid": "ec", "use": "sig"})),
        test_keys::rsa_jwk(&test_keys::rsa_2048(), json!({"kid": "rsa", "use": "sig"})),
        test_keys::rsa_jwk(&test_keys::rsa_1024(), json!({"kid": "small", "use": "sig"})),
    ]});
    serde_json::from_value(keys).unwrap()
}

fn claims(patch: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "sub": "user-1", "aud": CLIENT, "iat": NOW, "exp": NOW + 300, "nonce": "n",
    });
    for (k, v) in patch.as_object().unwrap() {
        match v {
            Value::Null => claims.as_object_mut().unwrap().remove(k),
            v => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    claims
}

/// A token with `claims`, signed under `alg` (RS256, PS256 or ES256) by the key `kid`.
fn token(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    jws(&header, claims, |input| match (alg, kid) {
        ("ES256", _) => p256_sign(&test_keys::p256(), input),
        (_, "small") => rsa_sign(&test_keys::rsa_1024(), &core(alg), input),
        _ => rsa_sign(&test_keys::rsa_2048(), &core(alg), input),
    })
}

fn core(alg: &str) -> CoreJwsSigningAlgorithm {
    SigningAlg::from_name(alg).unwrap().core()
}

/// The reason `raw` is refused for, `Ok` if it is valid.
fn check(raw: &str, expected: &str, trusted: &[&str]) -> Result<(), String> {
    let trusted: Vec<String> = trusted.iter().map(|t| t.to_string()).collect();
    let want = Expectations {
        issuer: ISSUER,
        client_id: CLIENT,
        nonce: Some("n"),
        access_token: "at",
        now_unix: NOW,
        skew: Duration::from_secs(60),
        alg: SigningAlg::from_name(expected).unwrap(),
        trusted_audiences: &trusted,
    };
    match verify(raw, &key_set(), &want) {
        Verdict::Valid(t) => {
            assert_eq!(t.subject, "user-1");
            Ok(())
        }
        Verdict::UnknownKey => Err("unknown key".into()),
        Verdict::Invalid(e) => Err(e.reason.code().into()),
    }
}

#[test]
fn only_the_expected_algorithm_is_accepted() {
    let claims = claims(json!({}));
    let es256 = token("ES256", "ec", &claims);
    let rs256 = token("RS256", "rsa", &claims);
    let ps256 = token("PS256", "rsa", &claims);
    assert_eq!(check(&es256, "ES256", &[]), Ok(()));
    assert_eq!(check(&rs256, "RS256", &[]), Ok(()));
    assert_eq!(check(&ps256, "PS256", &[]), Ok(()));
    // Each is properly signed with a key the provider publishes, yet refused.
    assert_eq!(check(&es256, "RS256", &[]), Err("id_token_alg".into()));
    assert_eq!(check(&ps256, "RS256", &[]), Err("id_token_alg".into()));
    assert_eq!(check(&rs256, "PS256", &[]), Err("id_token_alg".into()));
    // Refused before any key is looked for: no refetch for an unknown kid.
    let ghost = token("ES256", "ghost", &claims);
    assert_eq!(check(&ghost, "RS256", &[]), Err("id_token_alg".into()));
    assert_eq!(check(&ghost, "ES256", &[]), Err("unknown key".into()));
}

#[test]
fn several_audiences_need_azp_ours_and_every_other_one_trusted() {
    let cases: [(Value, &[&str], Result<(), &str>); 8] = [
        (json!({"aud": [CLIENT, "api"], "azp": CLIENT}), &["api"], Ok(())),
        (
            json!({"aud": ["api", CLIENT, "web"], "azp": CLIENT}),
            &["web", "api"],
            Ok(()),
        ),
        (json!({"aud": CLIENT, "azp": CLIENT}), &[], Ok(())),
        (json!({"aud": [CLIENT, "api"], "azp": CLIENT}), &[], Err("id_token_aud")),
        (
            json!({"aud": [CLIENT, "api", "other"], "azp": CLIENT}),
            &["api"],
            Err("id_token_aud"),
        ),
        (json!({"aud": ["api"], "azp": CLIENT}), &["api"], Err("id_token_aud")),
        (json!({"aud": [CLIENT, "api"]}), &["api"], Err("id_token_azp")),
        (
            json!({"aud": [CLIENT, "api"], "azp": "api"}),
            &["api"],
            Err("id_token_azp"),
        ),
    ];
    for (patch, trusted, outcome) in cases {
        let raw = token("RS256", "rsa", &claims(patch.clone()));
        assert_eq!(
            check(&raw, "RS256", trusted),
            outcome.map_err(str::to_owned),
            "{patch} trusting {trusted:?}"
        );
    }
}

#[test]
fn a_token_signed_with_an_rsa_key_under_2048_bits_is_refused() {
    let claims = claims(json!({}));
    for alg in ["RS256", "PS256"] {
        let raw = token(alg, "small", &claims);
        assert_eq!(check(&raw, alg, &[]), Err("id_token_key_too_small".into()), "{alg}");
    }
}
