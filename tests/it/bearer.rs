//! Bearer-token API access (`SKIP_JWT_BEARER_TOKENS`, `API_AUDIENCE`)
//! through the real server: access tokens of the development provider (RFC
//! 9068 JWTs, or opaque ones checked by introspection) let API clients onto
//! the gateway's proxied paths, forward auth and the library's routes
//! without a session; the fake provider mints the hostile ones, which are
//! `401` with RFC 6750's challenge, never a redirect.

use std::sync::Mutex;

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_gate::config::Args;
use oidc_gate::web::{AppState, BearerUser, RequireLoginLayer};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::fake_op::{Alg, Key, now};
use crate::gateway::reverse_proxy::Upstream;
use crate::support::*;

/// The API the tokens are for.
const AUDIENCE: &str = "api://orders";

fn bearer_on(a: &mut Args) {
    a.bearer.skip_jwt_bearer_tokens = Some("true".into());
    a.bearer.api_audience = Some(AUDIENCE.into());
}

/// A route of an embedding app behind `RequireLoginLayer`: who the caller is.
fn api_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/me",
            get(
                async |auth: oidc_gate::users::AuthSession, bearer: Option<axum::Extension<BearerUser>>| match (
                    auth.user, bearer,
                ) {
                    (Some(user), _) => format!("session {}", user.display_name()),
                    (None, Some(b)) => format!("bearer {} {}", b.subject, b.display_name()),
                    (None, None) => unreachable!("RequireLoginLayer lets nobody else in"),
                },
            ),
        )
        .route_layer(RequireLoginLayer)
}

/// The upstream's address for the `tweak` function pointer.
static UPSTREAM: Mutex<String> = Mutex::new(String::new());

/// The gateway, with the development provider, in front of a fresh echo
/// upstream, with `/api/me` of [`api_routes`], bearer tokens for
/// [`AUDIENCE`], and `PASS_ACCESS_TOKEN` (forward auth's answer hands the
/// signed-in user's access token to the test). `opaque`: the provider's
/// access tokens are opaque.
async fn dev_gateway(opaque: bool) -> (Upstream, TestApp) {
    static START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = START.lock().await;
    let upstream = Upstream::start().await;
    *UPSTREAM.lock().unwrap() = format!("http://{}", upstream.addr);
    fn settings(a: &mut Args) {
        a.gateway = crate::gateway::defaults();
        a.gateway.upstream_url = Some(UPSTREAM.lock().unwrap().clone());
        a.gateway.pass_access_token = "true".into();
        bearer_on(a);
    }
    let app = TestApp::spawn_with(Options {
        tweak: Some(match opaque {
            false => settings,
            true => |a| {
                settings(a);
                a.bearer.dev_provider_access_tokens = Some("opaque".into());
            },
        }),
        routes: Some(api_routes),
        ..Default::default()
    })
    .await;
    (upstream, app)
}

/// Signs `browser` in at the development provider as Ada, through the
/// gateway; returns her subject and access token, as forward auth hands them out.
async fn sign_in(app: &TestApp, browser: &Browser) -> (String, String) {
    let start = browser.get(&app.url("/oauth2/start?rd=/")).await;
    let authorize = redirect_target(&start);
    let callback = dev_provider_sign_in(browser, &authorize, "Ada Lovelace", "ada@example.com", "sign_in").await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::SEE_OTHER);
    let auth = browser
        .client
        .get(app.url("/oauth2/auth"))
        .header("x-forwarded-uri", "/")
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), StatusCode::ACCEPTED);
    let header = |name: &str| auth.headers()[name].to_str().unwrap().to_owned();
    (header("x-auth-request-user"), header("x-auth-request-access-token"))
}

/// A client without cookies.
fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_with(url: &str, token: &str) -> Response {
    api_client().get(url).bearer_auth(token).send().await.unwrap()
}

/// A browser navigation (it would be sent to sign in without a token).
async fn navigate_with(url: &str, token: &str) -> Response {
    api_client()
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap()
}

/// Asserts RFC 6750's `401`; returns the reason code of the body.
async fn assert_invalid_token(r: Response) -> String {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", r.url());
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    body["reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_jwt_access_token_opens_the_upstream_forward_auth_and_library_routes_without_a_session() {
    let (upstream, app) = dev_gateway(false).await;
    let browser = Browser::new();
    let (subject, token) = sign_in(&app, &browser).await;
    // RFC 9068: a JWT whose header says `at+jwt`, for our API.
    let part = |i: usize| -> Value {
        let raw = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(raw).unwrap()).unwrap()
    };
    assert_eq!(part(0)["typ"], "at+jwt");
    assert_eq!(part(1)["aud"], json!([AUDIENCE]));

    // The proxied path: the identity comes from the token, spoofed headers go.
    let r = api_client()
        .get(app.url("/orders?x=1"))
        .bearer_auth(&token)
        .header("x-forwarded-user", "admin")
        .header("x-forwarded-email", "boss@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(set_cookies(&r).is_empty(), "no session is made for a bearer token");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.uri, "/orders?x=1");
    assert_eq!(seen.headers["x-forwarded-user"], subject.as_str());
    assert_eq!(seen.headers["x-forwarded-email"], "ada@example.com");
    assert_eq!(seen.headers["x-forwarded-access-token"], token.as_str());
    assert_eq!(seen.headers.get_all("x-forwarded-user").iter().count(), 1);

    // Forward auth.
    let r = api_client()
        .get(app.url("/oauth2/auth"))
        .bearer_auth(&token)
        .header("x-forwarded-uri", "/reports")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-auth-request-user"], subject.as_str());
    assert_eq!(r.headers()["x-auth-request-email"], "ada@example.com");

    // A route of the embedding app behind RequireLoginLayer.
    let r = get_with(&app.url("/api/me"), &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, format!("bearer {subject} ada@example.com"));

    // A bad token is 401 for a browser navigation too, never a redirect.
    let forged = format!("{}x", &token[..token.len() - 1]);
    for path in ["/orders", "/api/me"] {
        assert_invalid_token(navigate_with(&app.url(path), &forged).await).await;
    }
    let r = api_client()
        .get(app.url("/oauth2/auth"))
        .bearer_auth("garbage")
        .header("x-forwarded-uri", "/reports")
        .send()
        .await
        .unwrap();
    assert_invalid_token(r).await;

    // A signed-in browser's session wins over whatever token it sends.
    let r = browser
        .client
        .get(app.url("/api/me"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "session Ada Lovelace");
}

#[tokio::test]
async fn opaque_tokens_are_introspected_once_then_served_from_the_cache() {
    let (upstream, app) = dev_gateway(true).await;
    let dev = app.dev.clone().unwrap();
    let (subject, token) = sign_in(&app, &Browser::new()).await;
    assert!(!token.contains('.'), "an opaque token");

    let before = dev.introspections();
    for _ in 0..3 {
        let r = get_with(&app.url("/data"), &token).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(dev.introspections(), before + 1, "one introspection for three requests");
    assert_eq!(
        upstream.seen().pop().unwrap().headers["x-forwarded-user"],
        subject.as_str()
    );
    let r = get_with(&app.url("/api/me"), &token).await;
    assert_eq!(text(r).await, format!("bearer {subject} ada@example.com"));
    assert_eq!(dev.introspections(), before + 1);

    // A token the provider never issued: it says inactive.
    let reason = assert_invalid_token(get_with(&app.url("/data"), "never-issued-token").await).await;
    assert_eq!(reason, "bearer_inactive");
    assert_eq!(dev.introspections(), before + 2);
}

/// The fake provider's app (`/secret` behind the login) with bearer tokens on.
async fn op_app(tweak: fn(&mut Args)) -> (crate::fake_op::FakeOp, TestApp) {
    crate::access::op_app(tweak, |_| {}).await
}

#[tokio::test]
async fn hostile_tokens_are_401_with_the_bearer_challenge() {
    let (op, app) = op_app(bearer_on).await;
    let secret = app.url("/secret");
    let good = op.access_token("at+jwt", AUDIENCE, json!({}));
    let r = get_with(&secret, &good).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("ada@example.com"));

    let now = now();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong aud",
            op.access_token("at+jwt", "api://other", json!({})),
            "bearer_aud",
        ),
        (
            "wrong iss",
            op.access_token("at+jwt", AUDIENCE, json!({"iss": "https://evil.example"})),
            "bearer_iss",
        ),
        (
            "expired",
            op.access_token("at+jwt", AUDIENCE, json!({"iat": now - 7200, "exp": now - 3600})),
            "bearer_exp",
        ),
        (
            "not yet valid",
            op.access_token("at+jwt", AUDIENCE, json!({"nbf": now + 3600})),
            "bearer_exp",
        ),
        (
            "an ID token's typ",
            op.access_token("JWT", AUDIENCE, json!({})),
            "bearer_malformed",
        ),
        ("garbage", "garbage".to_owned(), "bearer_opaque"),
        ("three garbage parts", "a.b.c".to_owned(), "bearer_malformed"),
        ("not a b64token", "a b\"c".to_owned(), "bearer_malformed"),
    ];
    for (what, token, reason) in cases {
        let got = assert_invalid_token(navigate_with(&secret, &token).await).await;
        assert_eq!(got, reason, "{what}");
    }
    type Shape = fn(&mut crate::fake_op::Behavior);
    let shaped: [(&str, Shape, &str); 4] = [
        ("alg none", |b| b.alg = Alg::None, "bearer_alg"),
        ("HS256 with the client secret", |b| b.alg = Alg::Hs256, "bearer_alg"),
        ("an unknown key", |b| b.key = Key::Rsa2, "bearer_unknown_key"),
        (
            "a tampered signature",
            |b| b.corrupt_signature = true,
            "bearer_signature",
        ),
    ];
    for (what, shape, reason) in shaped {
        op.set(|b| *b = Default::default());
        op.set(shape);
        let token = op.access_token("at+jwt", AUDIENCE, json!({}));
        let got = assert_invalid_token(get_with(&secret, &token).await).await;
        assert_eq!(got, reason, "{what}");
    }
    // The good token still works (from the cache).
    assert_eq!(get_with(&secret, &good).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_whose_subject_the_rules_refuse_is_403() {
    let (op, app) = op_app(|a| {
        bearer_on(a);
        a.access.allowed_email_domains = Some("example.com".into());
    })
    .await;
    let secret = app.url("/secret");
    let outsider = op.access_token("at+jwt", AUDIENCE, json!({"email": "eve@evil.example"}));
    for _ in 0..2 {
        let r = navigate_with(&secret, &outsider).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.headers().contains_key("www-authenticate"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "access_denied", "reason": "email_domain_not_allowed"})
        );
    }
    let insider = op.access_token("at+jwt", AUDIENCE, json!({}));
    assert_eq!(get_with(&secret, &insider).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn plain_jwt_typ_is_accepted_only_when_allowed_and_never_an_id_token() {
    let (op, app) = op_app(|a| {
        bearer_on(a);
        a.bearer.bearer_allow_jwt_typ = Some("true".into());
    })
    .await;
    let secret = app.url("/secret");
    let plain = op.access_token("JWT", AUDIENCE, json!({}));
    assert_eq!(get_with(&secret, &plain).await.status(), StatusCode::OK);
    let id_token_like = op.access_token("JWT", AUDIENCE, json!({"nonce": "n"}));
    let reason = assert_invalid_token(get_with(&secret, &id_token_like).await).await;
    assert_eq!(reason, "bearer_malformed");
}

#[tokio::test]
async fn without_the_setting_a_bearer_token_is_ignored() {
    let (op, app) = op_app(|_| {}).await;
    let token = op.access_token("at+jwt", AUDIENCE, json!({}));
    let r = navigate_with(&app.url("/secret"), &token).await;
    let authorize = to_provider(&r);
    assert!(authorize.starts_with(&op.url("/op/auth?")), "{authorize}");
    let r = api_client()
        .get(app.url("/secret"))
        .bearer_auth(&token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "OIDC realm=\"oidc-gate\"");
}

#[tokio::test]
async fn an_unreachable_provider_is_503_not_401() {
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::spawn_with(Options {
        provider: Some((issuer, "client".into(), "secret".into())),
        tweak: Some(bearer_on),
        ..Default::default()
    })
    .await;
    let r = get_with(&app.url("/secret"), "a.b.c").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn only_tokens_to_verify_take_from_the_rate_limit() {
    let (op, app) = op_app(|a| {
        bearer_on(a);
        a.rate_limits.bearer = "3/1h".into();
    })
    .await;
    let secret = app.url("/secret");
    let good = op.access_token("at+jwt", AUDIENCE, json!({}));
    assert_eq!(get_with(&secret, &good).await.status(), StatusCode::OK);
    for i in 0..2 {
        let forged = op.access_token("at+jwt", "api://other", json!({"jti": i}));
        assert_invalid_token(get_with(&secret, &forged).await).await;
    }
    let r = get_with(&secret, &op.access_token("at+jwt", AUDIENCE, json!({"jti": "x"}))).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // The verified token is in the cache: not counted, still let in.
    for _ in 0..5 {
        assert_eq!(get_with(&secret, &good).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_cached_token_is_trusted_no_longer_than_its_exp() {
    let (op, app) = op_app(bearer_on).await;
    let secret = app.url("/secret");
    let token = op.access_token("at+jwt", AUDIENCE, json!({"exp": now() + 120}));
    assert_eq!(get_with(&secret, &token).await.status(), StatusCode::OK);
    // Past `exp` and the clock skew (60 s in the tests): checked again, and refused.
    app.clock.advance(std::time::Duration::from_secs(120 + 61));
    let reason = assert_invalid_token(get_with(&secret, &token).await).await;
    assert_eq!(reason, "bearer_exp");
}

#[tokio::test]
async fn an_introspected_token_without_sub_is_its_client() {
    // oidc-provider answers so for a client_credentials token: RFC 7662
    // makes `sub` optional; the same token as a JWT has `sub` = client_id.
    let (op, app) = op_app(bearer_on).await;
    let introspect = op.url("/op/introspect");
    let issuer = op.issuer().to_owned();
    let answer = move |patch: Value| {
        let mut a = json!({
            "active": true, "client_id": "api-client", "aud": AUDIENCE, "iss": issuer,
            "exp": now() + 300, "iat": now(), "scope": "api", "token_type": "Bearer",
        });
        a.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        a
    };
    let endpoint = introspect.clone();
    op.set(|b| b.discovery_patch = json!({"introspection_endpoint": endpoint}));
    let secret = app.url("/secret");

    let no_sub = answer(json!({}));
    op.set(|b| b.introspection = no_sub);
    let r = get_with(&secret, "client-token").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("api-client"));

    // A `sub`, when given, is the subject.
    let with_sub = answer(json!({"sub": "user-7"}));
    op.set(|b| b.introspection = with_sub);
    let r = get_with(&secret, "user-token").await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = text(r).await;
    assert!(page.contains("user-7") && !page.contains("api-client"), "{page}");

    // Neither, or a `sub` that is not a name: nobody.
    for (token, patch) in [
        ("anonymous-token", json!({"client_id": null})),
        ("null-sub-token", json!({"sub": null})),
        ("empty-sub-token", json!({"sub": ""})),
    ] {
        let refused = answer(patch);
        op.set(|b| b.introspection = refused);
        let reason = assert_invalid_token(get_with(&secret, token).await).await;
        assert_eq!(reason, "bearer_sub", "{token}");
    }
}
