//! Hostile or broken responses: no login, a clean 4xx/502 page with the
//! reason code, nothing stored.

use std::time::Duration;

use oidc_gate::config::Args;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::fake_op::{Alg, AtHash, Key, TokenReply, now};

/// Logs in against a provider shaped by `shape` and asserts the refusal.
async fn refused(shape: impl FnOnce(&mut Behavior), status: StatusCode, reason: &str) {
    refused_by(None, shape, status, reason).await;
}

/// [`refused`], by an app whose settings `tweak` changed.
async fn refused_by(tweak: Option<fn(&mut Args)>, shape: impl FnOnce(&mut Behavior), status: StatusCode, reason: &str) {
    let op = FakeOp::start().await;
    op.set(shape);
    let app = spawn_tweaked(&op, tweak).await;
    let browser = Browser::new();
    let callback = attempt_login(&app, &browser).await;
    assert_rejected(&app, &browser, callback, status, reason).await;
}

/// Refused with 401 because of the ID token claims `patch`.
async fn refused_claims(patch: Value, reason: &str) {
    refused(|b| b.claims_patch = patch, StatusCode::UNAUTHORIZED, reason).await;
}

#[tokio::test]
async fn rp_id_token_bad_sig_rs256() {
    refused(
        |b| b.corrupt_signature = true,
        StatusCode::UNAUTHORIZED,
        "id_token_signature",
    )
    .await;
}

#[tokio::test]
async fn rp_id_token_bad_sig_es256() {
    let shape = |b: &mut Behavior| {
        b.alg = Alg::Es256;
        b.key = Key::Ec1;
        b.corrupt_signature = true;
        b.discovery_patch = json!({"id_token_signing_alg_values_supported": ["ES256"]});
    };
    refused(shape, StatusCode::UNAUTHORIZED, "id_token_signature").await;
}

#[tokio::test]
async fn id_token_signed_with_another_algorithm_the_provider_has_a_key_for() {
    // The provider lists RS256 (expected by default) and publishes keys for
    // ES256 and PS256 too: a token properly signed with those is still refused.
    for (alg, key) in [(Alg::Es256, Key::Ec1), (Alg::Ps256, Key::Rsa1), (Alg::EdDsa, Key::Ed)] {
        let shape = |b: &mut Behavior| {
            b.alg = alg;
            b.key = key;
        };
        refused(shape, StatusCode::UNAUTHORIZED, "id_token_alg").await;
    }
}

#[tokio::test]
async fn id_token_rs256_where_oidc_id_token_alg_is_es256() {
    let expect_es256: fn(&mut Args) = |args| args.oidc_id_token_alg = Some("ES256".into());
    refused_by(Some(expect_es256), |_| {}, StatusCode::UNAUTHORIZED, "id_token_alg").await;
}

#[tokio::test]
async fn id_token_signed_by_an_rsa_key_under_2048_bits() {
    // The provider's to fix: a 502, as for its other failures.
    let shape = |b: &mut Behavior| {
        b.key = Key::RsaSmall;
        b.jwks = vec![Key::RsaSmall];
    };
    refused(shape, StatusCode::BAD_GATEWAY, "id_token_key_too_small").await;
}

#[tokio::test]
async fn rp_id_token_sig_none() {
    refused(|b| b.alg = Alg::None, StatusCode::UNAUTHORIZED, "id_token_alg").await;
}

#[tokio::test]
async fn rp_id_token_sig_hs256() {
    // Signed with the client secret: proves nothing about the provider.
    refused(|b| b.alg = Alg::Hs256, StatusCode::UNAUTHORIZED, "id_token_alg").await;
}

#[tokio::test]
async fn rp_id_token_issuer_mismatch() {
    refused_claims(json!({"iss": "https://evil.example"}), "id_token_iss").await;
}

#[tokio::test]
async fn rp_id_token_aud() {
    refused_claims(json!({"aud": "someone-else"}), "id_token_aud").await;
}

#[tokio::test]
async fn rp_id_token_aud_missing() {
    refused_claims(json!({"aud": null}), "id_token_aud").await;
}

#[tokio::test]
async fn id_token_azp_not_our_client() {
    refused_claims(json!({"azp": "someone-else"}), "id_token_azp").await;
}

#[tokio::test]
async fn id_token_several_audiences_without_azp() {
    // Refused already because `someone-else` is an audience we do not trust
    // (OIDC Core 3.1.3.7 step 3), before the azp rule is reached.
    refused_claims(json!({"aud": ["gate-client", "someone-else"]}), "id_token_aud").await;
}

/// Refused with 401 and `reason` because of the ID token claims `patch`,
/// by an app with `OIDC_TRUSTED_AUDIENCES=web-app`.
async fn refused_trusting_web_app(patch: Value, reason: &str) {
    let trust_web_app: fn(&mut Args) = |args| args.oidc_trusted_audiences = Some("web-app".into());
    refused_by(
        Some(trust_web_app),
        |b| b.claims_patch = patch,
        StatusCode::UNAUTHORIZED,
        reason,
    )
    .await;
}

#[tokio::test]
async fn id_token_several_audiences_one_untrusted() {
    let patch = json!({"aud": ["gate-client", "web-app", "someone-else"], "azp": "gate-client"});
    refused_trusting_web_app(patch, "id_token_aud").await;
}

#[tokio::test]
async fn id_token_several_trusted_audiences_without_azp_ours() {
    for azp in [json!(null), json!("web-app")] {
        let patch = json!({"aud": ["gate-client", "web-app"], "azp": azp});
        refused_trusting_web_app(patch, "id_token_azp").await;
    }
}

#[tokio::test]
async fn rp_id_token_iat() {
    refused_claims(json!({"iat": null}), "id_token_iat").await;
}

#[tokio::test]
async fn id_token_iat_far_in_the_future() {
    refused_claims(json!({"iat": now() + 3600, "exp": now() + 3900}), "id_token_iat").await;
}

#[tokio::test]
async fn id_token_exp_in_the_past_beyond_the_skew() {
    refused_claims(json!({"iat": now() - 400, "exp": now() - 90}), "id_token_exp").await;
}

#[tokio::test]
async fn rp_id_token_sub() {
    refused_claims(json!({"sub": null}), "id_token_sub").await;
}

#[tokio::test]
async fn rp_nonce_invalid() {
    let patch = json!({"nonce": "not-the-nonce-we-sent"});
    refused(|b| b.claims_patch = patch, StatusCode::BAD_REQUEST, "id_token_nonce").await;
}

#[tokio::test]
async fn rp_nonce_missing() {
    refused(
        |b| b.claims_patch = json!({"nonce": null}),
        StatusCode::BAD_REQUEST,
        "id_token_nonce",
    )
    .await;
}

#[tokio::test]
async fn id_token_at_hash_wrong() {
    refused(
        |b| b.at_hash = AtHash::Wrong,
        StatusCode::UNAUTHORIZED,
        "id_token_at_hash",
    )
    .await;
}

#[tokio::test]
async fn rp_userinfo_bad_sub_claim() {
    let shape = |b: &mut Behavior| {
        b.profile_in_id_token = false;
        b.userinfo_sub = Some("someone-else".into());
    };
    refused(shape, StatusCode::UNAUTHORIZED, "userinfo_sub").await;
}

#[tokio::test]
async fn token_endpoint_5xx() {
    refused(
        |b| b.token_reply = TokenReply::Status(500),
        StatusCode::BAD_GATEWAY,
        "token_endpoint",
    )
    .await;
}

/// A code the token endpoint refuses (`invalid_grant`) is anyone's to send:
/// a 400 that offers to sign in again, not a provider failure.
#[tokio::test]
async fn token_endpoint_invalid_grant_is_400_code_rejected() {
    let (_op, app) = setup(|b| b.token_reply = TokenReply::Error(400, "invalid_grant")).await;
    let browser = Browser::new();
    let callback = attempt_login(&app, &browser).await;
    assert_eq!(callback.status(), StatusCode::BAD_REQUEST);
    let page = text(callback).await;
    assert!(page.contains("Reference: code_rejected<"), "{page}");
    assert!(page.contains("href=\"/login\">Sign in again"), "{page}");
    assert_closed(&app, &browser).await;
    assert_eq!(app.count("session_index").await, 0);
}

/// A forged code, sent with a fresh login cookie: the provider refuses it.
#[tokio::test]
async fn a_forged_code_is_400_code_rejected() {
    let (op, app) = setup(|_| {}).await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let state = query_param(&authorize, "state");
    let forged = format!("/callback?state={}&code=forged-code", urlencoding(&state));
    let callback = browser.get(&app.url(&forged)).await;
    assert_rejected(&app, &browser, callback, StatusCode::BAD_REQUEST, "code_rejected").await;
    assert_eq!(op.log().token, 1, "the code was sent to the provider");
}

/// Errors that are our registration's (or the provider's) stay 502.
#[tokio::test]
async fn token_endpoint_client_errors_stay_502() {
    for (status, error) in [
        (401, "invalid_client"),
        (400, "unauthorized_client"),
        (400, "server_error"),
    ] {
        refused(
            |b| b.token_reply = TokenReply::Error(status, error),
            StatusCode::BAD_GATEWAY,
            "token_endpoint",
        )
        .await;
    }
}

#[tokio::test]
async fn token_endpoint_garbage() {
    let reason = "token_response_invalid";
    refused(|b| b.token_reply = TokenReply::Garbage, StatusCode::BAD_GATEWAY, reason).await;
}

#[tokio::test]
async fn token_endpoint_without_id_token() {
    refused(
        |b| b.token_reply = TokenReply::NoIdToken,
        StatusCode::BAD_GATEWAY,
        "id_token_missing",
    )
    .await;
}

#[tokio::test]
async fn token_endpoint_timeout() {
    // The one slow test: the app gives up after OIDC_HTTP_TIMEOUT (2 s in the harness).
    let hang = TokenReply::Hang(Duration::from_secs(5));
    refused(|b| b.token_reply = hang, StatusCode::BAD_GATEWAY, "token_endpoint").await;
}

#[tokio::test]
async fn rp_discovery_issuer_not_matching_config() {
    // Start-up refuses the provider, naming both issuers.
    let op = FakeOp::start().await;
    op.set(|b| b.discovery_patch = json!({"issuer": "https://impostor.example"}));
    let mut app = spawn_for(&op).await;
    let outcome = app.exited(Duration::from_secs(5)).await.expect("start-up stops");
    let message = outcome.expect_err("start-up fails").to_string();
    assert!(message.contains("issuer_mismatch"), "{message}");
    assert!(
        message.contains("https://impostor.example") && message.contains(op.issuer()),
        "{message}"
    );
    // Nothing serves logins now (the listener is closed, or at worst a 502).
    let login = Browser::new()
        .client
        .get(app.url("/login"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        login.as_ref().map_or(true, |r| r.status() == StatusCode::BAD_GATEWAY),
        "{login:?}"
    );
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn rp_discovery_issuer_not_matching_config_at_login() {
    // The provider is down at start-up, then comes back with the wrong issuer.
    let op = FakeOp::start().await;
    op.set(|b| {
        b.discovery_failures = 1;
        b.discovery_patch = json!({"issuer": "https://impostor.example"});
    });
    let app = spawn_for(&op).await;
    // The start-up fetch fails; the retry a second later finds the impostor
    // (a login meanwhile would get the failure at once, without a fetch).
    op.wait_for(|l| l.discovery >= 2).await;
    let browser = Browser::new();
    let r = browser.get(&app.url("/login")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(text(r).await.contains("Reference: issuer_mismatch<"));
    // A protected page answers as /login does: the same page.
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(text(r).await.contains("Reference: issuer_mismatch<"));
    assert_eq!(app.count("users").await, 0, "no user row");
    assert_eq!(op.log().authorize, 0);
    assert_eq!(op.log().discovery, 2, "the login used the remembered failure");
}

#[tokio::test]
async fn two_callbacks_of_one_copied_login_reach_the_token_endpoint_once() {
    // The token endpoint answers after 300 ms: both callbacks are in flight together.
    let (op, app) = setup(|b| b.token_reply = TokenReply::Hang(Duration::from_millis(300))).await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let copied = browser.cookies(&app.url("/"));
    let callback = redirect_target(&browser.get(&authorize).await);
    let thief = Browser::new();
    thief.set_cookie(&app, &copied);
    let (a, b) = tokio::join!(browser.get(&callback), thief.get(&callback));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::BAD_REQUEST]);
    assert_eq!(op.log().token, 1, "the state is used up before the code is exchanged");
}
