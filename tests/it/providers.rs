//! Several providers in one oidc-gate (`CONFIG_FILE`'s `[[providers]]`):
//! the chooser, sign-in through each, a login bound to its provider (the
//! mix-up attack refused), per-provider rules, and refresh and logout going
//! to the provider the session signed in with. Two fake providers, each on
//! its own port (so with its own issuer), stand in for two real ones.

use std::path::PathBuf;
use std::time::Duration;

use oidc_gate::clock::Clock;
use oidc_gate::config::{Args, Config};
use reqwest::StatusCode;

use crate::fake_op::FakeOp;
use crate::support::*;

/// A `CONFIG_FILE` listing `ops` as providers `a`, `b`, … (named
/// "Provider A", …), each entry followed by the matching `extra` lines.
pub(crate) fn providers_file(ops: &[&FakeOp], extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    let mut text = String::new();
    for (i, op) in ops.iter().enumerate() {
        let (issuer, id, secret) = op.client();
        let letter = (b'a' + i as u8) as char;
        text.push_str(&format!(
            "[[providers]]\nid = \"{letter}\"\nname = \"Provider {}\"\nissuer = \"{issuer}\"\n\
             client_id = \"{id}\"\nclient_secret = \"{secret}\"\n{}\n",
            letter.to_ascii_uppercase(),
            extra.get(i).copied().unwrap_or_default()
        ));
    }
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

/// Two fake providers and the app listing both (`extra`: their entries' rules).
async fn two(extra: &[&str], options: Options) -> (FakeOp, FakeOp, TestApp, tempfile::TempDir) {
    let (a, b) = (FakeOp::start().await, FakeOp::start().await);
    let (dir, file) = providers_file(&[&a, &b], extra);
    let app = TestApp::spawn_with(Options {
        config_file: Some(file),
        ..options
    })
    .await;
    (a, b, app, dir)
}

/// `/login?provider=ID`, then the provider (which answers at once); returns
/// the callback URL it sends the browser to.
async fn to_callback(app: &TestApp, browser: &Browser, id: &str) -> String {
    let r = browser.get(&app.url(&format!("/login?provider={id}"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "/login?provider={id}");
    let at_provider = browser.get(&redirect_target(&r)).await;
    redirect_target(&at_provider)
}

/// A full sign-in through provider `id`; returns the callback's answer.
async fn sign_in(app: &TestApp, browser: &Browser, id: &str) -> reqwest::Response {
    let callback = to_callback(app, browser, id).await;
    browser.get(&callback).await
}

#[tokio::test]
async fn with_two_providers_login_shows_a_chooser_and_each_signs_in() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    let browser = Browser::new();
    // A protected page sends the browser to the chooser first, starting nothing.
    let r = browser.get(&app.url("/secret?x=1")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=/secret%3Fx%3D1");
    assert!(set_cookies(&r).is_empty(), "{:?}", set_cookies(&r));
    let r = browser.get(&app.url("/login?next=/secret")).await;
    assert_eq!(r.status(), StatusCode::OK, "the chooser, not a redirect");
    let page = text(r).await;
    for (id, name) in [("a", "Provider A"), ("b", "Provider B")] {
        assert!(page.contains(&format!("Sign in with {name}")), "{page}");
        assert!(
            page.contains(&format!("href=\"/login?provider={id}&#38;next=%2Fsecret\"")),
            "{page}"
        );
    }
    // `?provider=` skips the chooser, to that provider, with its own redirect URI.
    for (id, op) in [("a", &a), ("b", &b)] {
        let r = browser.get(&app.url(&format!("/login?provider={id}"))).await;
        let authorize = redirect_target(&r);
        assert!(authorize.starts_with(&op.url("/op/auth?")), "{authorize}");
        assert_eq!(
            query_param(&authorize, "redirect_uri"),
            app.url(&format!("/callback/{id}"))
        );
    }
    // Both providers know a user by the same subject: two people here.
    for (id, op) in [("a", &a), ("b", &b)] {
        let browser = Browser::new();
        let r = sign_in(&app, &browser, id).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in through {id}");
        assert_eq!(op.log().token, 1, "the code went to {id}'s token endpoint");
        let secret = browser.get(&app.url("/secret")).await;
        assert_eq!(secret.status(), StatusCode::OK);
    }
    assert_eq!(app.count("users").await, 2, "one user per issuer and subject");
    assert_eq!(app.count("session_index").await, 2);
}

#[tokio::test]
async fn an_unknown_provider_is_a_400_page() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    let r = Browser::new().get(&app.url("/login?provider=c")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = text(r).await;
    assert!(page.contains("provider_unknown"), "{page}");
    assert_eq!(a.log().authorize + b.log().authorize, 0);
}

#[tokio::test]
async fn a_code_from_one_provider_at_anothers_callback_is_refused() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    let browser = Browser::new();
    let callback = to_callback(&app, &browser, "a").await;
    assert!(callback.starts_with(&app.url("/callback/a?")), "{callback}");
    let mixed_up = callback.replace("/callback/a?", "/callback/b?");
    let r = browser.get(&mixed_up).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("provider_mismatch"));
    assert_eq!((a.log().token, b.log().token), (0, 0), "the code went nowhere");
    assert_eq!(app.count("users").await, 0);
    // The state was used up: the right callback afterwards is refused too.
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A provider id that is not UTF-8 once decoded is hostile input: our 400
/// page, as for another provider's callback, not the router's bare one.
#[tokio::test]
async fn a_callback_at_an_undecodable_provider_id_is_refused_with_a_page() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    let browser = Browser::new();
    let callback = to_callback(&app, &browser, "a").await;
    let r = browser.get(&callback.replace("/callback/a?", "/callback/%FF?")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
    let page = text(r).await;
    assert!(html && page.contains("provider_mismatch"), "{page}");
    assert_eq!((a.log().token, b.log().token), (0, 0), "the code went nowhere");
    // Its state was spent as at any callback.
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    let browser = Browser::new();
    let callback = to_callback(&app, &browser, "a").await;
    let r = browser
        .get(&format!("{callback}&iss={}", urlencoding(b.issuer())))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("iss_mismatch"));
    assert_eq!((a.log().token, b.log().token), (0, 0));
    // Its own issuer is accepted.
    let browser = Browser::new();
    let callback = to_callback(&app, &browser, "b").await;
    let r = browser
        .get(&format!("{callback}&iss={}", urlencoding(b.issuer())))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!((a.log().token, b.log().token), (0, 1));
}

#[tokio::test]
async fn a_providers_own_rules_judge_its_sign_ins() {
    let (_a, _b, app, _dir) = two(&["", "allowed_email_domains = [\"partner.test\"]"], Options::default()).await;
    // ada@example.com at both: admitted through A, refused through B.
    let r = sign_in(&app, &Browser::new(), "a").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = sign_in(&app, &Browser::new(), "b").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(text(r).await.contains("email_domain_not_allowed"));
    assert_eq!(app.count("users").await, 1, "nothing stored of the refused sign-in");
}

#[tokio::test]
async fn refresh_and_logout_go_to_the_provider_of_the_session() {
    let clock = Clock::stopped();
    let (a, b, app, _dir) = two(
        &[],
        Options {
            clock: Some(clock.clone()),
            routes: Some(access_token_routes),
            ..Default::default()
        },
    )
    .await;
    b.set(|behavior| behavior.expires_in = 4);
    let browser = Browser::new();
    assert_eq!(sign_in(&app, &browser, "b").await.status(), StatusCode::SEE_OTHER);
    clock.advance(Duration::from_secs(5));
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::OK);
    assert_eq!((a.log().refresh, b.log().refresh), (0, 1));
    let r = click_log_out(&browser, &app.url("")).await;
    let target = redirect_target(&r);
    assert!(target.starts_with(&b.url("/op/session/end?")), "{target}");
    assert!(a.log().end_session.is_none());
}

#[tokio::test]
async fn a_back_channel_logout_ends_only_its_providers_sessions() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    let (at_a, at_b) = (Browser::new(), Browser::new());
    assert_eq!(sign_in(&app, &at_a, "a").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(sign_in(&app, &at_b, "b").await.status(), StatusCode::SEE_OTHER);
    // Both know the user as `user-1`: B's logout ends B's session only.
    let token = b.logout_token(serde_json::json!({"sub": "user-1"}));
    let r = crate::fake_op::send_logout_token(&app.url("/backchannel-logout"), &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(at_b.get(&app.url("/secret")).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(at_a.get(&app.url("/secret")).await.status(), StatusCode::OK);
    // A token from an issuer not listed is refused.
    let stranger = a.logout_token(serde_json::json!({"sub": "user-1", "iss": "http://127.0.0.1:9"}));
    let r = crate::fake_op::send_logout_token(&app.url("/backchannel-logout"), &stranger).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(at_a.get(&app.url("/secret")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_gateway_shows_the_chooser_at_its_start() {
    let (_a, b, app, _dir) = two(
        &[],
        Options {
            tweak: Some(|a: &mut Args| {
                let file = a.gateway.config_file.take();
                a.gateway = crate::gateway::defaults();
                a.gateway.config_file = file;
                a.gateway.forward_auth = Some("true".into());
            }),
            ..Default::default()
        },
    )
    .await;
    let browser = Browser::new();
    let page = text(browser.get(&app.url("/oauth2/start?rd=/app")).await).await;
    assert!(
        page.contains("href=\"/oauth2/start?provider=b&#38;rd=%2Fapp\""),
        "{page}"
    );
    let r = browser.get(&app.url("/oauth2/start?provider=b&rd=/app")).await;
    let authorize = redirect_target(&r);
    assert!(authorize.starts_with(&b.url("/op/auth?")), "{authorize}");
    assert_eq!(query_param(&authorize, "redirect_uri"), app.url("/oauth2/callback/b"));
    let landed = browser.get(&redirect_target(&browser.get(&authorize).await)).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&landed), "/app");
}

#[tokio::test]
async fn one_listed_provider_needs_no_chooser_and_keeps_callback() {
    let a = FakeOp::start().await;
    let (_dir, file) = providers_file(&[&a], &[]);
    let app = TestApp::spawn_with(Options {
        config_file: Some(file),
        ..Default::default()
    })
    .await;
    let authorize = start_login(&app, &Browser::new(), None).await;
    assert!(authorize.starts_with(&a.url("/op/auth?")), "{authorize}");
    assert_eq!(query_param(&authorize, "redirect_uri"), app.url("/callback"));
}

#[tokio::test]
async fn providers_in_the_file_and_the_environment_are_refused_together() {
    let a = FakeOp::start().await;
    let (dir, file) = providers_file(&[&a], &[]);
    let base = || {
        let mut args = <Args as clap::Parser>::try_parse_from(["oidc-gate"]).unwrap();
        args.gateway.config_file = Some(file.clone());
        args
    };
    let with_env = Args {
        oidc_issuer: Some(a.issuer().to_owned()),
        oidc_client_id: Some("c".into()),
        oidc_client_secret: Some("s".into()),
        ..base()
    };
    let e = Config::from_args(with_env).unwrap_err().to_string();
    assert!(e.contains("OIDC_ISSUER") && e.contains("[[providers]]"), "{e}");
    let e = Config::from_args(Args {
        google_client_id: Some("g".into()),
        ..base()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("[[providers]]"), "{e}");
    // Bad entries name the entry.
    let issuer = a.issuer();
    for (text, needle) in [
        (
            format!("[[providers]]\nid = \"A\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"),
            "id must be",
        ),
        (
            format!("[[providers]]\nid = \"a\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\n"),
            "client_secret",
        ),
        (
            format!(
                "[[providers]]\nid = \"a\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                 [[providers]]\nid = \"b\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
            ),
            "two [[providers]] have the issuer",
        ),
        (
            "[[providers]]\nid = \"a\"\nissuer = \"http://idp.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
                .to_owned(),
            "must use https",
        ),
        (
            format!("[[providers]]\nid = \"a\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[[paths]]\nprefix = \"/x\"\nallowed_groups = [\"g\"]\n"),
            "gateway settings",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, &text).unwrap();
        let mut args = base();
        args.gateway.config_file = Some(file);
        let e = Config::from_args(args).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("CONFIG_FILE"), "{text}: {e}");
    }
}

#[tokio::test]
async fn a_client_secret_file_is_read_and_never_logged() {
    let a = FakeOp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", crate::fake_op::CLIENT_SECRET)).unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(
        &file,
        format!(
            "[[providers]]\nid = \"a\"\nissuer = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"{}\"\n",
            a.issuer(),
            crate::fake_op::CLIENT_ID,
            secret.display()
        ),
    )
    .unwrap();
    let app = TestApp::spawn_with(Options {
        config_file: Some(file.clone()),
        ..Default::default()
    })
    .await;
    let r = sign_in(&app, &Browser::new(), "a").await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the secret from the file authenticates"
    );
    let mut args = <Args as clap::Parser>::try_parse_from(["oidc-gate"]).unwrap();
    args.gateway.config_file = Some(file);
    let config = format!("{:?}", Config::from_args(args).unwrap());
    assert!(!config.contains(crate::fake_op::CLIENT_SECRET), "{config}");
}

#[tokio::test]
async fn check_fetches_each_provider_and_names_each_redirect_uri() {
    let (a, b) = (FakeOp::start().await, FakeOp::start().await);
    let (dir, file) = providers_file(&[&a, &b], &["", "allowed_email_domains = [\"partner.test\"]"]);
    let mut args = <Args as clap::Parser>::try_parse_from(["oidc-gate"]).unwrap();
    args.gateway.config_file = Some(file);
    args.data_dir = dir.path().join("data");
    let report = oidc_gate::check::run(args).await;
    assert!(report.is_ok(), "{:?}\n{}", report.problems, report.text);
    assert!(
        report.text.contains("rule (b)") && report.text.contains("partner.test"),
        "{}",
        report.text
    );
    // A has no rule of its own, and there is no global one.
    assert!(
        report
            .text
            .contains(&format!("none: any account at {} can sign in", a.issuer())),
        "{}",
        report.text
    );
    for (id, op) in [("a", &a), ("b", &b)] {
        assert!(
            report
                .text
                .contains(&format!("provider {id} (Provider {})", id.to_uppercase())),
            "{}",
            report.text
        );
        assert!(report.text.contains(op.issuer()), "{}", report.text);
        assert!(
            report.text.contains(&format!("http://localhost:5000/callback/{id}")),
            "{}",
            report.text
        );
        assert_eq!(op.log().discovery, 1, "{id}'s discovery fetched");
    }
}

#[tokio::test]
async fn a_front_channel_logout_ends_only_its_providers_session() {
    let (a, b, app, _dir) = two(&[], Options::default()).await;
    // Both providers happen to use the same session id.
    a.set(|behavior| behavior.sid = Some("sid-1".into()));
    b.set(|behavior| behavior.sid = Some("sid-1".into()));
    let (at_a, at_b) = (Browser::new(), Browser::new());
    assert_eq!(sign_in(&app, &at_a, "a").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(sign_in(&app, &at_b, "b").await.status(), StatusCode::SEE_OTHER);
    let r = Browser::new()
        .get(&app.url(&format!(
            "/frontchannel-logout?iss={}&sid=sid-1",
            urlencoding(b.issuer())
        )))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.ends_with(&format!("frame-ancestors {}", b.issuer())), "{csp}");
    assert_eq!(at_b.get(&app.url("/secret")).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(at_a.get(&app.url("/secret")).await.status(), StatusCode::OK);
    // An issuer not listed ends nothing.
    let r = Browser::new()
        .get(&app.url("/frontchannel-logout?iss=http%3A%2F%2F127.0.0.1%3A9&sid=sid-1"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(at_a.get(&app.url("/secret")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_providers_tightened_rule_shuts_its_sessions_out_after_a_restart() {
    let (a, b) = (FakeOp::start().await, FakeOp::start().await);
    let (_dir, file) = providers_file(&[&a, &b], &["", "allowed_email_domains = [\"example.com\"]"]);
    let mut first = TestApp::spawn_with(Options {
        config_file: Some(file.clone()),
        ..Default::default()
    })
    .await;
    let keep = first.keep_data();
    let (at_a, at_b) = (Browser::new(), Browser::new());
    assert_eq!(sign_in(&first, &at_a, "a").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(sign_in(&first, &at_b, "b").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(at_b.get(&first.url("/secret")).await.status(), StatusCode::OK);
    first.stop().await;

    let (_dir2, tighter) = providers_file(&[&a, &b], &["", "allowed_email_domains = [\"partner.test\"]"]);
    let second = TestApp::spawn_with(Options {
        data_dir: Some(first.data_dir.clone()),
        config_file: Some(tighter),
        ..Default::default()
    })
    .await;
    let r = at_b.get(&second.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = text(r).await;
    assert!(
        page.contains("email_domain_not_allowed") && page.contains("Your session here has ended."),
        "{page}"
    );
    assert_eq!(at_b.get(&second.url("/secret")).await.status(), StatusCode::SEE_OTHER);
    // A's sessions are not B's rule's business.
    assert_eq!(at_a.get(&second.url("/secret")).await.status(), StatusCode::OK);
    drop(keep);
}
