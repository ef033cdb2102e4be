//! Forward auth (`FORWARD_AUTH=true`): what nginx, Caddy and Traefik are
//! answered, the gateway's own routes, sign-out and `rd`.

use std::time::Duration;

use oidc_gate::clock::Clock;
use oidc_gate::config::Args;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{defaults, gateway, sign_in};
use crate::support::*;

/// Forward auth with `/public` public and `/admin` for the group `admins`
/// (which the test user is not in).
async fn forward_auth_app() -> (crate::fake_op::FakeOp, TestApp) {
    gateway(|a| {
        a.gateway = defaults();
        a.gateway.forward_auth = Some("true".into());
        a.gateway.public_paths = Some("/public".into());
        a.gateway.config_file = Some(super::admins_only_file());
    })
    .await
}

/// Asks `/oauth2/auth` as nginx's recipe does (`X-Original-URI`).
pub(super) async fn nginx_asks(app: &TestApp, browser: &Browser, uri: &str) -> reqwest::Response {
    browser
        .client
        .get(app.url("/oauth2/auth"))
        .header("X-Original-URI", uri)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap()
}

/// Asks as Traefik and Caddy do (`X-Forwarded-*`).
pub(super) async fn traefik_asks(
    app: &TestApp,
    browser: &Browser,
    method: &str,
    uri: &str,
    accept: &str,
) -> reqwest::Response {
    browser
        .client
        .get(app.url("/oauth2/auth"))
        .header("X-Forwarded-Method", method)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "app.example.test")
        .header("X-Forwarded-Uri", uri)
        .header("Accept", accept)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anonymous_requests_get_401_behind_nginx_and_a_sign_in_redirect_behind_traefik() {
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    // nginx turns anything but 2xx/401/403 into a 500: always 401, even for a browser.
    let r = nginx_asks(&app, &browser, "/app?x=1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Traefik/Caddy pass the answer on: a browser is sent to sign in, and back.
    let r = traefik_asks(&app, &browser, "GET", "/app?x=1", "text/html").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with(&app.url("/oauth2/start?rd=")), "{to}");
    assert_eq!(
        query_param(&to, "rd"),
        "https://app.example.test/app?x=1",
        "back to the original URL"
    );
    // API calls and non-GETs are not navigations.
    for (method, accept) in [("GET", "application/json"), ("POST", "text/html"), ("DELETE", "*/*")] {
        let r = traefik_asks(&app, &browser, method, "/app", accept).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {accept}");
    }
    // Public paths pass anonymously; tricks that leave them do not.
    assert_eq!(
        nginx_asks(&app, &browser, "/public/a.css").await.status(),
        StatusCode::ACCEPTED
    );
    for trick in [
        "/public/../app",
        "/public/%2e%2e/app",
        "/public%2F..%2Fapp",
        "//public/../app",
        "/PUBLIC/x",
        "/public/..;/app",
    ] {
        assert_eq!(
            nginx_asks(&app, &browser, trick).await.status(),
            StatusCode::UNAUTHORIZED,
            "{trick}"
        );
    }
    // Not a path at all: refused, never a 5xx (nginx would make it a 500 anyway).
    assert_eq!(nginx_asks(&app, &browser, "/%zz").await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_signed_in_user_gets_202_with_identity_headers_and_per_path_rules_refuse_with_403() {
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    assert_eq!(sign_in(&app, &browser, "/app?x=1").await, "/app?x=1");
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let h = r.headers();
    assert_eq!(h["x-auth-request-user"], "user-1");
    assert_eq!(h["x-auth-request-email"], "ada@example.com");
    assert_eq!(h["x-auth-request-preferred-username"], "ada");
    assert_eq!(h["x-auth-request-groups"], "users,ops");
    assert!(
        h.get("x-auth-request-access-token").is_none(),
        "not without PASS_ACCESS_TOKEN"
    );
    // The answer names its request, for the web server's logs.
    assert_eq!(h["x-request-id"].len(), 32);

    for ruled in [
        "/admin",
        "/admin/x",
        "/x/../admin",
        "/%61dmin",
        "/x/..;/admin",
        "/ADMIN",
        "/Admin/x",
    ] {
        let r = nginx_asks(&app, &browser, ruled).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{ruled}");
    }
    // Behind Traefik the 403 reaches the browser: the refusal page, and the session stays.
    let r = traefik_asks(&app, &browser, "GET", "/admin", "text/html").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = text(r).await;
    assert!(
        page.contains("group_not_allowed") && page.contains("only for some accounts"),
        "{page}"
    );
    assert!(
        page.contains("/oauth2/static/style.css"),
        "the gateway's own links: {page}"
    );
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);

    let info: Value = browser.get(&app.url("/oauth2/userinfo")).await.json().await.unwrap();
    assert_eq!(info["user"], "user-1");
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["preferred_username"], "ada");
    assert_eq!(info["groups"], serde_json::json!(["users", "ops"]));
}

#[tokio::test]
async fn the_gateway_serves_its_own_routes_only_and_never_the_apps() {
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    let ping = browser.get(&app.url("/ping")).await;
    assert_eq!(ping.status(), StatusCode::OK);
    assert_eq!(browser.get(&app.url("/ready")).await.status(), StatusCode::OK);
    let r = browser.get(&app.url("/oauth2/userinfo")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let css = browser.get(&app.url("/oauth2/static/style.css")).await;
    assert_eq!(css.status(), StatusCode::OK);
    // The app's pages are the upstream's paths: not served here.
    for path in ["/", "/login", "/callback", "/secret", "/healthz", "/static/style.css"] {
        let r = browser.get(&app.url(path)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let page = text(r).await;
        assert!(page.contains("/oauth2/static/style.css"), "{path}: {page}");
    }
}

#[tokio::test]
async fn sign_out_asks_first_then_ends_the_session_at_the_provider_and_follows_rd() {
    let (op, app) = forward_auth_app().await;
    let browser = Browser::new();
    sign_in(&app, &browser, "/").await;
    // A GET only asks: a link or an image elsewhere cannot sign anyone out.
    let page = browser.get(&app.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = text(page).await;
    let form = html::form(&body).expect("a sign-out form");
    assert_eq!(form.action, "/oauth2/sign_out");
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
    let fields: Vec<(&str, &str)> = form.inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(fields.contains(&("rd", "/bye")), "{fields:?}");
    // Without the form's token: refused, still signed in.
    let forged = browser.post_form(&app.url("/oauth2/sign_out"), &[("rd", "/bye")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);

    let r = browser.post_form(&app.url("/oauth2/sign_out"), &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let end_session = redirect_target(&r);
    assert_eq!(query_param(&end_session, "state"), "/bye");
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri"),
        app.url("/oauth2/sign_out")
    );
    assert_eq!(
        nginx_asks(&app, &browser, "/app").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The provider comes back with the state: on to `rd`.
    let back = redirect_target(&browser.get(&end_session).await);
    assert!(op.log().end_session.is_some());
    let r = browser.get(&back).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/bye");
    // Signed out, with nowhere to go: the signed-out page; elsewhere: home.
    let r = browser.get(&app.url("/oauth2/sign_out")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("You are signed out"));
    let r = browser.get(&app.url("/oauth2/sign_out?rd=https://evil.example/")).await;
    assert_eq!(location(&r), "/");
}

#[tokio::test]
async fn rd_may_leave_the_site_only_for_allowed_redirect_domains() {
    let (_op, app) = super::gateway(|a| {
        a.gateway = super::defaults();
        a.gateway.forward_auth = Some("true".into());
        a.gateway.allowed_redirect_domains = Some(".example.test".into());
    })
    .await;
    for (rd, lands) in [
        ("https://app.example.test/x?y=1", "https://app.example.test/x?y=1"),
        ("https://example.test/", "https://example.test/"),
        ("https://evil.test/", "/"),
        ("https://app.example.test.evil.test/", "/"),
        ("//evil.test/", "/"),
        ("/local", "/local"),
    ] {
        let browser = Browser::new();
        assert_eq!(sign_in(&app, &browser, rd).await, lands, "{rd}");
    }
}

#[tokio::test]
async fn tokens_are_handed_over_only_when_asked_refreshed_when_due_and_never_stored_in_clear() {
    let (op, app) = super::gateway(|a| {
        a.gateway = super::defaults();
        a.gateway.forward_auth = Some("true".into());
        a.gateway.pass_access_token = "true".into();
        a.gateway.pass_authorization_header = "true".into();
    })
    .await;
    let browser = Browser::new();
    sign_in(&app, &browser, "/").await;
    let access_token = op.access_tokens().pop().expect("one access token issued");
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-auth-request-access-token"], access_token.as_str());
    // The store holds the access token only sealed. (The ID token is also
    // in the session index, as today, for logout's `id_token_hint`.)
    for entry in std::fs::read_dir(&app.data_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(access_token.len()).any(|w| w == access_token.as_bytes()),
            "the access token in clear in the store"
        );
    }
    // The fake provider's access tokens live 300 s: when it is about to
    // expire, the refresh token brings a new one, handed over instead.
    app.clock.advance(std::time::Duration::from_secs(290));
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let refreshed = op.access_tokens();
    assert_eq!(op.log().refresh, 1);
    let fresh = r.headers()["x-auth-request-access-token"].to_str().unwrap().to_owned();
    assert_ne!(fresh, access_token);
    assert!(refreshed.contains(&fresh), "issued by the provider");
    // The provider refuses the next refresh (the grant revoked): the
    // session ends, and nothing is handed over.
    op.set(|b| b.token_reply = crate::fake_op::TokenReply::Error(400, "invalid_grant"));
    app.clock.advance(std::time::Duration::from_secs(301));
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("x-auth-request-access-token").is_none());
    assert_eq!(op.log().refresh, 2);
}

#[tokio::test]
async fn the_development_provider_works_under_the_route_prefix() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.gateway = super::defaults();
            a.gateway.forward_auth = Some("true".into());
        }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let start = browser.get(&app.url("/oauth2/start?rd=/app")).await;
    let authorize = redirect_target(&start);
    assert!(authorize.starts_with(&app.url("/oauth2/dev-provider/")), "{authorize}");
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    assert!(callback.starts_with(&app.url("/oauth2/callback?")), "{callback}");
    let landed = browser.get(&callback).await;
    assert_eq!(location(&landed), "/app");
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-auth-request-email"], "ada@example.com");
}

/// Asks `/oauth2/auth` with these headers (a browser's `Accept`).
async fn asks(app: &TestApp, browser: &Browser, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = browser
        .client
        .get(app.url("/oauth2/auth"))
        .header("Accept", "text/html");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_client_cannot_pick_the_path_judged_by_adding_another_servers_header() {
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    // Caddy and Traefik set X-Forwarded-Uri and pass a client's X-Original-URI on;
    // nginx sets X-Original-URI and passes a client's X-Forwarded-Uri on.
    for headers in [
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/app"),
            ("X-Original-URI", "/public/x"),
        ][..],
        &[("X-Original-URI", "/app"), ("X-Forwarded-Uri", "/public/x")],
        &[
            ("X-Original-URL", "https://app.example.test/app"),
            ("X-Forwarded-Uri", "/public/x"),
        ],
        &[("X-Original-URI", "/app"), ("X-Original-URI", "/public/x")],
    ] {
        let r = asks(&app, &browser, headers).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    // Agreeing headers are fine; ingress-nginx's X-Original-URL is read.
    let both = [("X-Original-URI", "/public/x"), ("X-Forwarded-Uri", "/public/x")];
    assert_eq!(asks(&app, &browser, &both).await.status(), StatusCode::ACCEPTED);
    let url = [("X-Original-URL", "https://app.example.test/public/x?y=1")];
    assert_eq!(asks(&app, &browser, &url).await.status(), StatusCode::ACCEPTED);
    let url = [("X-Original-URL", "https://app.example.test/app")];
    assert_eq!(asks(&app, &browser, &url).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn oauth2_proxys_own_nginx_recipe_works_unchanged() {
    // Its auth location sets X-Forwarded-Uri (no X-Forwarded-Method): a 401,
    // never a redirect (nginx would turn it into a 500); its `error_page 401
    // =403 /oauth2/sign_in` shows the sign-in page, its `/oauth2/` location
    // sets X-Auth-Request-Redirect to the request URI.
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    let r = asks(&app, &browser, &[("X-Forwarded-Uri", "/app?x=1")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = browser
        .client
        .get(app.url("/oauth2/sign_in"))
        .header("X-Auth-Request-Redirect", "/app?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body = text(page).await;
    assert!(body.contains("href=\"/oauth2/start?rd=/app%3Fx%3D1\""), "{body}");
    // /oauth2/start takes the header too, and the sign-in comes back there.
    let start = browser
        .client
        .get(app.url("/oauth2/start"))
        .header("X-Auth-Request-Redirect", "/app?x=1")
        .send()
        .await
        .unwrap();
    let authorize = redirect_target(&start);
    let callback = redirect_target(&browser.get(&authorize).await);
    assert_eq!(location(&browser.get(&callback).await), "/app?x=1");
    let r = asks(&app, &browser, &[("X-Forwarded-Uri", "/app?x=1")]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_forwarded_host_cannot_turn_the_sign_in_into_an_open_redirect() {
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    let r = browser
        .client
        .get(app.url("/oauth2/auth"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Uri", "/steal")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    let start = location(&r);
    // The sign-in itself is always ours; where it returns is judged there.
    assert!(start.starts_with(&app.url("/oauth2/start?rd=")), "{start}");
    let authorize = redirect_target(&browser.get(&start).await);
    let callback = redirect_target(&browser.get(&authorize).await);
    assert_eq!(location(&browser.get(&callback).await), "/");
}

/// A fake provider whose users are in `groups`, with access tokens of 4 s,
/// and the app `tweak` sets up for it on a stopped clock.
async fn with_short_tokens(groups: Value, tweak: fn(&mut Args)) -> (crate::fake_op::FakeOp, TestApp, Clock) {
    let op = crate::fake_op::FakeOp::start().await;
    op.set(|b| {
        b.expires_in = 4;
        b.claims_patch = json!({ "groups": groups });
    });
    let clock = Clock::stopped();
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(tweak),
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    (op, app, clock)
}

/// The groups the app is told follow the provider: a refresh's ID token
/// replaces them (and they are what the rules judge), a save of the session
/// as a request loaded it before the refresh does not bring the old ones
/// back, and a user no longer in `ALLOWED_GROUPS` is refused.
#[tokio::test]
async fn the_groups_passed_on_follow_each_refresh_and_a_stale_save_does_not_bring_old_ones_back() {
    use std::str::FromStr as _;
    use tower_sessions::SessionStore as _;

    let (op, app, clock) = with_short_tokens(json!(["users", "ops"]), |a| {
        a.gateway = defaults();
        a.gateway.forward_auth = Some("true".into());
        a.access.allowed_groups = Some("users".into());
    })
    .await;
    let browser = Browser::new();
    sign_in(&app, &browser, "/app").await;
    let groups = |r: &reqwest::Response| r.headers()["x-auth-request-groups"].to_str().unwrap().to_owned();
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!((r.status(), groups(&r)), (StatusCode::ACCEPTED, "users,ops".into()));
    let id = tower_sessions::session::Id::from_str(&browser.session_id(&app).unwrap()).unwrap();
    let sessions = app.store.session_backend();
    let loaded_before = sessions.load(&id).await.unwrap().expect("the session");

    // Removed from `ops`: the refresh's ID token says so.
    op.set(|b| b.claims_patch = json!({"groups": ["users"]}));
    clock.advance(Duration::from_secs(5));
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!((r.status(), groups(&r)), (StatusCode::ACCEPTED, "users".into()));
    assert_eq!(op.log().refresh, 1);
    // A request that loaded the session before saves it: its tokens are
    // due, so the refreshed ones and their claims are taken again.
    sessions.save(&loaded_before).await.unwrap();
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!((r.status(), groups(&r)), (StatusCode::ACCEPTED, "users".into()));
    assert_eq!(op.log().refresh, 1, "from the slot, not refreshed again");

    // Removed from `users`: refused at the next refresh, and signed out.
    op.set(|b| b.claims_patch = json!({"groups": ["ops"]}));
    clock.advance(Duration::from_secs(5));
    let r = nginx_asks(&app, &browser, "/app").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(text(r).await.contains("group_not_allowed"));
    assert_eq!(op.log().refresh, 2);
    assert_eq!(
        nginx_asks(&app, &browser, "/app").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Forward auth with `/admin` for the group `admins` (by its path rule
/// only), 4-second tokens, and a member signed in.
async fn signed_in_to_admins_path() -> (crate::fake_op::FakeOp, TestApp, Clock, Browser) {
    let (op, app, clock) = with_short_tokens(json!(["admins"]), |a| {
        a.gateway = defaults();
        a.gateway.forward_auth = Some("true".into());
        a.gateway.config_file = Some(super::admins_only_file());
    })
    .await;
    let browser = Browser::new();
    sign_in(&app, &browser, "/admin").await;
    (op, app, clock, browser)
}

/// Per-path rules judge the newest claims too: with no global rule and no
/// token handed over, a path with rules of its own refreshes due tokens
/// first, so a user removed from its group at the provider is refused there
/// at the next refresh; paths without rules refresh nothing, and the
/// session stays for them.
#[tokio::test]
async fn a_path_rule_judges_the_claims_of_the_last_refresh() {
    let (op, app, clock, browser) = signed_in_to_admins_path().await;
    assert_eq!(
        nginx_asks(&app, &browser, "/admin").await.status(),
        StatusCode::ACCEPTED
    );

    op.set(|b| b.claims_patch = json!({"groups": ["users"]}));
    clock.advance(Duration::from_secs(5));
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
    assert_eq!(op.log().refresh, 0, "a path without rules refreshes nothing");
    let r = nginx_asks(&app, &browser, "/admin").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(text(r).await.contains("group_not_allowed"));
    assert_eq!(op.log().refresh, 1);
    assert_eq!(
        nginx_asks(&app, &browser, "/app").await.status(),
        StatusCode::ACCEPTED,
        "the session stays for the other paths"
    );
}

/// A path its rules refuse is an audit event (who, which rule, which path
/// as judged), as a refused sign-in is; the session stays.
#[tokio::test]
async fn a_refused_path_is_audited() {
    use crate::logs::{Captured, audit};

    let log = Captured::default();
    let _guard = log.json_default();
    let (_op, app) = forward_auth_app().await;
    let browser = Browser::new();
    sign_in(&app, &browser, "/").await;
    // Another test's thread may have first met the event's callsite while
    // this thread's log was being set up, and cached that no one listens.
    tracing::callsite::rebuild_interest_cache();
    let r = nginx_asks(&app, &browser, "/x/../ADMIN/users").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);

    let lines = log.json();
    let refused = audit(&lines, "path_refused");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["reason"], "group_not_allowed");
    assert_eq!(refused[0]["subject"], "user-1");
    assert_eq!(refused[0]["path"], "/ADMIN/users");
    assert_eq!(refused[0]["request_id"].as_str().map(str::len), Some(32));
}

/// A path with rules of its own needs no token: while the provider does
/// not answer, its due (even expired) tokens do not stop it, and it is
/// judged on the claims the session has, as pages under access rules are.
#[tokio::test]
async fn a_path_rule_goes_on_with_the_sessions_claims_while_the_provider_is_down() {
    let (op, app, clock, browser) = signed_in_to_admins_path().await;
    op.set(|b| b.token_reply = crate::fake_op::TokenReply::Status(503));
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        nginx_asks(&app, &browser, "/admin").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(op.log().refresh, 1, "asked once");
    assert_eq!(
        nginx_asks(&app, &browser, "/admin").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(op.log().refresh, 1, "not asked again while it fails");
}
