//! The token and userinfo endpoints: the whole code flow with PKCE, the ID
//! token's signature and claims, and every way a redemption must fail.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::*;

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
}

fn token_request(code: &str, verifier: &str, auth: Auth<'_>) -> Request<Body> {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let mut request = Request::post("/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match auth {
        Auth::Basic(id, secret) => {
            // RFC 6749 §2.3.1: form-encode each part, then base64.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = STANDARD.encode(format!("{}:{}", encode(id), encode(secret)));
            request = request.header(header::AUTHORIZATION, format!("Basic {credentials}"));
        }
        Auth::Post(id, secret) => params.extend([("client_id", id), ("client_secret", secret)]),
    }
    request.body(Body::from(form(&params))).unwrap()
}

fn b64_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies the ID token with the key published in the JWKS, independently
/// of the provider's own code, and returns its claims.
async fn verified_claims(app: &Router, id_token: &str) -> Value {
    let jwk = send(app, get("/jwks")).await.json()["keys"][0].clone();
    let mut sec1 = vec![0x04];
    for coordinate in ["x", "y"] {
        sec1.extend(URL_SAFE_NO_PAD.decode(jwk[coordinate].as_str().unwrap()).unwrap());
    }
    let key = VerifyingKey::from_sec1_bytes(&sec1).unwrap();

    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = b64_json(parts[0]);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], jwk["kid"]);
    let signature_bytes = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!(signature_bytes.len(), 64, "r || s, not DER");
    let signature = Signature::from_slice(&signature_bytes).unwrap();
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    key.verify(signing_input.as_bytes(), &signature)
        .expect("ID token signature verifies with the JWKS key");

    // A changed payload must not verify: the check above can fail.
    let forged = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(b"{\"sub\":\"eve\"}"));
    assert!(key.verify(forged.as_bytes(), &signature).is_err());
    b64_json(parts[1])
}

#[tokio::test]
async fn full_flow_with_pkce() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let response = send(&app, token_request(&code, VERIFIER, Auth::Basic(CLIENT_ID, SECRET))).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.header(header::CACHE_CONTROL), Some("no-store"));
    let tokens = response.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "openid email profile");
    let access_token = tokens["access_token"].as_str().unwrap();

    let claims = verified_claims(&app, tokens["id_token"].as_str().unwrap()).await;
    let expected_sub: String = Sha256::digest(b"ada@example.com")[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], expected_sub);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["email_verified"], true);
    assert!(!claims["sid"].as_str().unwrap().is_empty());
    let at_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16]);
    assert_eq!(claims["at_hash"], at_hash);
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 300);
    assert!(claims["auth_time"].as_i64().unwrap() <= iat);

    let userinfo = Request::get("/userinfo")
        .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
        .body(Body::empty())
        .unwrap();
    let response = send(&app, userinfo).await;
    assert_eq!(response.status, StatusCode::OK);
    let info = response.json();
    assert_eq!(info["sub"], expected_sub);
    assert_eq!(info["name"], "Ada Lovelace");
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["email_verified"], true);

    let userinfo = Request::post("/userinfo")
        .header(header::AUTHORIZATION, format!("bearer {access_token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, userinfo).await.status, StatusCode::OK);
}

#[tokio::test]
async fn client_secret_post_is_accepted() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let response = send(&app, token_request(&code, VERIFIER, Auth::Post(CLIENT_ID, SECRET))).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(response.json()["id_token"].is_string());
}

#[tokio::test]
async fn code_reuse_is_rejected_and_revokes_the_token() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let auth = Auth::Basic(CLIENT_ID, SECRET);
    let first = send(&app, token_request(&code, VERIFIER, auth)).await;
    assert_eq!(first.status, StatusCode::OK);
    let access_token = first.json()["access_token"].as_str().unwrap().to_owned();

    let second = send(&app, token_request(&code, VERIFIER, auth)).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.json()["error"], "invalid_grant");
    assert!(second.json().get("access_token").is_none());

    let userinfo = Request::get("/userinfo")
        .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, userinfo).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_pkce_verifier_is_rejected_and_burns_the_code() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let auth = Auth::Basic(CLIENT_ID, SECRET);
    let wrong = "x".repeat(43);
    let response = send(&app, token_request(&code, &wrong, auth)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"], "invalid_grant");

    // An attacker with a stolen code gets one guess, not many.
    let response = send(&app, token_request(&code, VERIFIER, auth)).await;
    assert_eq!(response.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn missing_pkce_verifier_is_rejected() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ]);
    let response = send(&app, post_form("/token", body)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn wrong_client_secret_is_rejected() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let cases = [
        Auth::Basic(CLIENT_ID, "wrong"),
        Auth::Post(CLIENT_ID, "wrong"),
        Auth::Basic(CLIENT_ID, ""),
        Auth::Basic("someone-else", SECRET),
        Auth::Post("someone-else", SECRET),
    ];
    for auth in cases {
        let response = send(&app, token_request(&code, VERIFIER, auth)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.json()["error"], "invalid_client");
        assert!(response.header(header::WWW_AUTHENTICATE).unwrap().starts_with("Basic"));
    }
    // Failed client authentication does not consume the code.
    let response = send(&app, token_request(&code, VERIFIER, Auth::Basic(CLIENT_ID, SECRET))).await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn redirect_uri_must_match() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "http://localhost:5000/other"),
        ("code_verifier", VERIFIER),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ]);
    let response = send(&app, post_form("/token", body)).await;
    assert_eq!(response.json()["error"], "invalid_grant");
}

#[tokio::test(start_paused = true)]
async fn code_expires_after_60_seconds() {
    let app = provider().router();
    let code = sign_in(&app).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let response = send(&app, token_request(&code, VERIFIER, Auth::Basic(CLIENT_ID, SECRET))).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn userinfo_rejects_unknown_or_missing_tokens() {
    let app = provider().router();
    let request = Request::get("/userinfo")
        .header(header::AUTHORIZATION, "Bearer not-a-token")
        .body(Body::empty())
        .unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.header(header::WWW_AUTHENTICATE),
        Some(r#"Bearer error="invalid_token""#)
    );

    let response = send(&app, get("/userinfo")).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.header(header::WWW_AUTHENTICATE), Some("Bearer"));

    let request = Request::get("/userinfo")
        .header(header::AUTHORIZATION, "Basic Zm9vOmJhcg==")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_token_requests_get_oauth_errors() {
    let app = provider().router();
    let code = sign_in(&app).await;
    let valid = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]);
    let cases: Vec<(Request<Body>, &str)> = vec![
        (
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, "Basic !!!not-base64")
                .body(Body::from(valid.clone()))
                .unwrap(),
            "invalid_client",
        ),
        (
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode("no-colon")))
                .body(Body::from(valid.clone()))
                .unwrap(),
            "invalid_client",
        ),
        (
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
            "invalid_request",
        ),
        (
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(vec![0xff, 0xfe, b'=', 0x80]))
                .unwrap(),
            "invalid_client",
        ),
        (
            post_form("/token", format!("{valid}&client_id={CLIENT_ID}&client_id=x")),
            "invalid_request",
        ),
        (
            post_form(
                "/token",
                form(&[
                    ("grant_type", "password"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", SECRET),
                ]),
            ),
            "unsupported_grant_type",
        ),
        (
            post_form(
                "/token",
                form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", SECRET),
                ]),
            ),
            "invalid_request",
        ),
    ];
    for (request, error) in cases {
        let response = send(&app, request).await;
        assert!(response.status.is_client_error(), "{error}: {}", response.status);
        assert_eq!(response.json()["error"], error);
    }
    // Both authentication methods at once.
    let mut request = token_request(&code, VERIFIER, Auth::Basic(CLIENT_ID, SECRET));
    *request.body_mut() = Body::from(format!("{valid}&client_secret=x"));
    let response = send(&app, request).await;
    assert_eq!(response.json()["error"], "invalid_request");
    // None of that consumed the code.
    let response = send(&app, token_request(&code, VERIFIER, Auth::Post(CLIENT_ID, SECRET))).await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = provider().router();
    let body = format!("grant_type=authorization_code&code={}", "a".repeat(64 * 1024));
    let response = send(&app, post_form("/token", body)).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// With an RSA key the provider signs RS256 or PS256, says so in its
/// discovery and JWKS, and its ID tokens verify with the published key by
/// the `rsa` crate (and not with the other padding: the check can fail).
#[tokio::test]
async fn rsa_keys_sign_rs256_and_ps256() {
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
    use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};

    let pem = include_str!("../../../tests/it/fake_op/keys/rsa1.pem");
    let der = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap().to_pkcs8_der().unwrap();
    for alg in [RsaAlg::Rs256, RsaAlg::Ps256] {
        let issuer = Url::parse(ISSUER).unwrap();
        let app = provider().with_rsa_key(issuer, alg, der.as_bytes()).unwrap().router();
        let discovery = send(&app, get("/.well-known/openid-configuration")).await.json();
        assert_eq!(
            discovery["id_token_signing_alg_values_supported"],
            serde_json::json!([alg.name()])
        );
        let code = sign_in(&app).await;
        let tokens = send(&app, token_request(&code, VERIFIER, Auth::Basic(CLIENT_ID, SECRET)))
            .await
            .json();
        let parts: Vec<&str> = tokens["id_token"].as_str().unwrap().split('.').collect();
        assert_eq!(b64_json(parts[0])["alg"], alg.name());

        let jwk = send(&app, get("/jwks")).await.json()["keys"][0].clone();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str()),
            (Some("RSA"), Some(alg.name()))
        );
        let number = |name: &str| BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap());
        let key = RsaPublicKey::new(number("n"), number("e")).unwrap();
        let digest = Sha256::digest(format!("{}.{}", parts[0], parts[1]).as_bytes());
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let pkcs1 = key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature);
        let pss = key.verify(Pss::new::<Sha256>(), &digest, &signature);
        match alg {
            RsaAlg::Rs256 => assert!(pkcs1.is_ok() && pss.is_err()),
            RsaAlg::Ps256 => assert!(pss.is_ok() && pkcs1.is_err()),
        }
    }
}
