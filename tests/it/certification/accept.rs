//! Valid responses of any shape a provider may give: the login completes.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;

use super::*;
use crate::fake_op::{Alg, AtHash, ClientAuth, FakeOp, Key, Kid, Pkce};

#[tokio::test]
async fn rp_response_type_code() {
    let (op, app) = setup(|_| {}).await;
    logged_in(&app).await;
    let log = op.log();
    assert_eq!(log.last_authorize["response_type"], "code");
    assert_eq!(log.last_authorize["scope"], "openid email profile");
    assert_eq!((log.authorize, log.token), (1, 1));
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn rp_token_endpoint_client_secret_basic() {
    // A secret with characters RFC 6749 §2.3.1 makes the client form-urlencode.
    let op = FakeOp::start_with_client("gate-client", "gate:secret/+ %&é").await;
    let app = spawn_for(&op).await;
    logged_in(&app).await;
    assert_eq!(op.log().client_auth, [ClientAuth::Basic]);
}

#[tokio::test]
async fn rp_token_endpoint_client_secret_post() {
    let (op, app) = setup(|b| {
        b.discovery_patch = json!({"token_endpoint_auth_methods_supported": ["client_secret_post"]});
    })
    .await;
    logged_in(&app).await;
    assert_eq!(op.log().client_auth, [ClientAuth::Post]);
}

/// A login whose ID token is signed with `alg` by `key`, the one algorithm
/// the provider's discovery lists (the app expects it without being told),
/// is accepted.
async fn accepts_signature(alg: Alg, key: Key) {
    let (op, app) = setup(|b| {
        b.alg = alg;
        b.key = key;
        b.discovery_patch = json!({"id_token_signing_alg_values_supported": [alg.name()]});
    })
    .await;
    logged_in(&app).await;
    assert_eq!(signed_with(&op), alg.name());
}

/// The `alg` of the first ID token `op` issued.
fn signed_with(op: &FakeOp) -> String {
    let header = op.log().id_tokens[0].split('.').next().unwrap().to_owned();
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rp_id_token_sig_rs256() {
    accepts_signature(Alg::Rs256, Key::Rsa1).await;
}

#[tokio::test]
async fn rp_id_token_sig_es256() {
    accepts_signature(Alg::Es256, Key::Ec1).await;
}

#[tokio::test]
async fn rp_id_token_sig_ps256() {
    accepts_signature(Alg::Ps256, Key::Rsa1).await;
}

#[tokio::test]
async fn rp_id_token_sig_eddsa() {
    accepts_signature(Alg::EdDsa, Key::Ed).await;
}

#[tokio::test]
async fn id_token_sig_rs384_rs512_ps384_ps512() {
    for alg in [Alg::Rs384, Alg::Rs512, Alg::Ps384, Alg::Ps512] {
        accepts_signature(alg, Key::Rsa1).await;
    }
}

#[tokio::test]
async fn oidc_id_token_alg_chooses_among_the_algorithms_the_provider_lists() {
    // The provider lists RS256 first; the client is registered for PS256.
    let op = FakeOp::start().await;
    op.set(|b| b.alg = Alg::Ps256);
    let app = spawn_tweaked(&op, Some(|args| args.oidc_id_token_alg = Some("PS256".into()))).await;
    logged_in(&app).await;
    assert_eq!(signed_with(&op), "PS256");
}

#[tokio::test]
async fn several_audiences_with_azp_ours_and_the_others_trusted() {
    // Google's cross-client ID tokens: our client id, the other client's, azp ours.
    let op = FakeOp::start().await;
    op.set(|b| b.claims_patch = json!({"aud": ["android-app", "gate-client", "web-app"], "azp": "gate-client"}));
    let app = spawn_tweaked(
        &op,
        Some(|args| args.oidc_trusted_audiences = Some("web-app, android-app".into())),
    )
    .await;
    logged_in(&app).await;
    assert_eq!(jwt_claims(&op.log().id_tokens[0])["aud"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn rp_id_token_kid_absent_single_jwks() {
    let (_op, app) = setup(|b| {
        b.jwks = vec![Key::Rsa1];
        b.jwks_kids = false;
        b.kid = Kid::Absent;
    })
    .await;
    logged_in(&app).await;
}

#[tokio::test]
async fn rp_id_token_kid_absent_multiple_jwks() {
    // Two keys of the right type, no kid in the token: the second one signed.
    let (_op, app) = setup(|b| {
        b.jwks = vec![Key::Rsa1, Key::Rsa2];
        b.key = Key::Rsa2;
        b.kid = Kid::Absent;
    })
    .await;
    logged_in(&app).await;
}

#[tokio::test]
async fn rp_discovery_openid_configuration() {
    // The fixture's endpoints are at unusual paths: only discovery can find them.
    let (op, app) = setup(|_| {}).await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    assert!(authorize.starts_with(&op.url("/op/auth?")), "{authorize}");
    let callback = redirect_target(&browser.get(&authorize).await);
    assert_logged_in(&app, &browser, browser.get(&callback).await).await;
    let log = op.log();
    // Fetched once at start-up and cached: the login itself paid for no fetch.
    assert_eq!((log.discovery, log.jwks), (1, 1));
    assert_eq!(
        (log.token, log.jwks_paths.first().map(String::as_str)),
        (1, Some("/op/keys/jwks.json"))
    );
}

#[tokio::test]
async fn rp_discovery_jwks_uri_keys() {
    // The keys are wherever discovery's jwks_uri says, not at a guessed path.
    let op = FakeOp::start().await;
    let other = op.url("/op/keys/other.json");
    op.set(|b| b.discovery_patch = json!({ "jwks_uri": other }));
    let app = spawn_for(&op).await;
    logged_in(&app).await;
    let paths = op.log().jwks_paths;
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p == "/op/keys/other.json"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn rp_scope_userinfo_claims() {
    let (op, app) = setup(|b| {
        b.profile_in_id_token = false;
        b.at_hash = AtHash::Absent;
    })
    .await;
    let browser = logged_in(&app).await;
    let log = op.log();
    let claims = jwt_claims(&log.id_tokens[0]);
    let names: BTreeSet<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["aud", "exp", "iat", "iss", "nonce", "sub"]));
    assert_eq!(log.userinfo, 1);
    let index = text(browser.get(&app.url("/")).await).await;
    assert!(
        index.contains("Ada Lovelace") && index.contains("ada@example.com"),
        "{index}"
    );
}

#[tokio::test]
async fn provider_requiring_pkce_s256() {
    let (op, app) = setup(|b| b.require_pkce = true).await;
    logged_in(&app).await;
    let log = op.log();
    assert_eq!(log.last_authorize["code_challenge_method"], "S256");
    assert_eq!(log.pkce, [Pkce::Verified]);
}

#[tokio::test]
async fn id_token_expired_within_the_clock_skew_is_accepted() {
    let (_op, app) = setup(|b| b.claims_patch = json!({"exp": crate::fake_op::now() - 30})).await;
    logged_in(&app).await;
}

#[tokio::test]
async fn the_fixture_refuses_wrong_pkce_and_unadvertised_client_auth() {
    // The fixture's own checks, so that the tests above could fail.
    let op = FakeOp::start().await;
    op.set(|b| b.require_pkce = true);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = |challenge: Option<&str>| {
        let mut url = url::Url::parse(&op.url("/op/auth")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "gate-client")
            .append_pair("redirect_uri", "http://127.0.0.1:1/callback")
            .append_pair("scope", "openid")
            .append_pair("state", "s");
        if let Some(c) = challenge {
            url.query_pairs_mut()
                .append_pair("code_challenge", c)
                .append_pair("code_challenge_method", "S256");
        }
        let http = http.clone();
        async move { location(&http.get(url).send().await.unwrap()) }
    };
    assert!(authorize(None).await.contains("error=invalid_request"));
    let back = url::Url::parse(&authorize(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")).await).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let redeem = |verifier: &'static str, code: String, basic: bool| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:1/callback".to_owned()),
            ("code_verifier", verifier.to_owned()),
        ];
        let mut request = http.post(op.url("/op/token"));
        if basic {
            request = request.basic_auth("gate-client", Some("gate-secret"));
        } else {
            form.push(("client_id", "gate-client".to_owned()));
            form.push(("client_secret", "gate-secret".to_owned()));
        }
        async move { request.form(&form).send().await.unwrap().status() }
    };
    assert_eq!(
        redeem("wrong-verifier", code.clone(), true).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(op.log().pkce, [Pkce::Wrong]);
    op.set(|b| b.discovery_patch = json!({"token_endpoint_auth_methods_supported": ["client_secret_basic"]}));
    assert_eq!(redeem("x", "any".into(), false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(op.log().client_auth.last(), Some(&ClientAuth::Post));
}
