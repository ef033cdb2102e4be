//! Who may sign in (`ALLOWED_EMAIL_DOMAINS`, `ALLOWED_EMAILS`,
//! `ALLOWED_GROUPS`, `REQUIRE_EMAIL_VERIFIED`): allowed users get in;
//! refused ones get a 403 page with the reason and nothing of theirs is
//! stored; rules are judged again on every request, so tightening them and
//! restarting shuts existing sessions out.

use oidc_gate::config::Args;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::fake_op::{Behavior, FakeOp};
use crate::support::process::{BIN, output, start};
use crate::support::*;

/// The app with the development provider and the rules of `tweak`.
async fn dev_app(tweak: fn(&mut Args)) -> TestApp {
    TestApp::spawn_with(Options {
        tweak: Some(tweak),
        ..Default::default()
    })
    .await
}

/// The fake provider shaped by `shape`, and the app with the rules of `tweak`.
pub(crate) async fn op_app(tweak: fn(&mut Args), shape: impl FnOnce(&mut Behavior)) -> (FakeOp, TestApp) {
    let op = FakeOp::start().await;
    op.set(shape);
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(tweak),
        ..Default::default()
    })
    .await;
    (op, app)
}

/// Signs in on the development provider as `email`; returns the callback's answer.
async fn dev_login(app: &TestApp, browser: &Browser, email: &str) -> Response {
    let authorize = start_login(app, browser, None).await;
    let callback = dev_provider_sign_in(browser, &authorize, "Some One", email, "sign_in").await;
    browser.get(&callback).await
}

/// Signs in at the fake provider (which answers at once); returns the callback's answer.
async fn op_login(app: &TestApp, browser: &Browser) -> Response {
    let authorize = start_login(app, browser, None).await;
    let callback = redirect_target(&browser.get(&authorize).await);
    browser.get(&callback).await
}

async fn assert_admitted(app: &TestApp, browser: &Browser, callback: Response) {
    let status = callback.status();
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", text(callback).await);
    let secret = browser.get(&app.url("/secret")).await;
    assert_eq!(secret.status(), StatusCode::OK);
    assert!(text(secret).await.contains(SECRET));
}

/// Asserts a 403 refusal page with `reason`; returns the page.
async fn assert_refused_page(r: Response, reason: &str) -> String {
    let status = r.status();
    let page = text(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(
        page.contains(&format!("Reference: {reason}<")),
        "expected {reason}: {page}"
    );
    assert!(page.contains("Sign in as someone else"), "{page}");
    page
}

/// The callback was refused with `reason`, `/secret` stays closed, and
/// nothing was stored: no user, no session, no session index entry.
async fn assert_refused(app: &TestApp, browser: &Browser, callback: Response, reason: &str) -> String {
    let page = assert_refused_page(callback, reason).await;
    assert!(page.contains("You have not been signed in here."), "{page}");
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "/secret stays closed");
    assert_eq!(app.count("users").await, 0, "no user row");
    assert_eq!(app.count("tower_sessions").await, 0, "no session row");
    assert_eq!(app.count("session_index").await, 0, "no session index row");
    page
}

fn example_com(a: &mut Args) {
    a.access.allowed_email_domains = Some("example.com".into());
}

#[tokio::test]
async fn allowed_email_domains_admit_exactly_those_domains() {
    let app = dev_app(example_com).await;
    for email in ["eve@evil-example.com", "eve@example.com.evil", "eve@mail.example.com"] {
        let browser = Browser::new();
        let page = assert_refused(
            &app,
            &browser,
            dev_login(&app, &browser, email).await,
            "email_domain_not_allowed",
        )
        .await;
        assert!(page.contains(&format!("<strong>{email}</strong>")), "says who: {page}");
    }
    let browser = Browser::new();
    assert_admitted(&app, &browser, dev_login(&app, &browser, "Ada@EXAMPLE.com").await).await;
}

#[tokio::test]
async fn allowed_emails_are_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("allowed.txt"),
        "# the team\nada@example.com\n\nBob@Example.org\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(Options {
        data_dir: Some(dir.path().to_path_buf()),
        tweak: Some(|a| {
            a.access.allowed_emails = Some(format!("@{}", a.data_dir.join("allowed.txt").display()));
        }),
        ..Default::default()
    })
    .await;
    let eve = Browser::new();
    assert_refused(
        &app,
        &eve,
        dev_login(&app, &eve, "eve@example.com").await,
        "email_not_allowed",
    )
    .await;
    let bob = Browser::new();
    assert_admitted(&app, &bob, dev_login(&app, &bob, "bob@example.org").await).await;
}

#[tokio::test]
async fn groups_are_read_from_a_nested_claim() {
    let keycloak = |a: &mut Args| {
        a.access.allowed_groups = Some("admin".into());
        a.access.groups_claim = "realm_access.roles".into();
    };
    let (op, app) = op_app(keycloak, |b| {
        b.claims_patch = json!({"realm_access": {"roles": ["user"]}, "groups": ["admin"]});
    })
    .await;
    let browser = Browser::new();
    assert_refused(&app, &browser, op_login(&app, &browser).await, "group_not_allowed").await;

    op.set(|b| b.claims_patch = json!({"realm_access": {"roles": ["user", "admin"]}}));
    assert_admitted(&app, &browser, op_login(&app, &browser).await).await;
    assert_eq!(op.log().userinfo, 0, "the ID token had the claim");
}

#[tokio::test]
async fn groups_come_from_userinfo_when_the_id_token_lacks_them() {
    let admins = |a: &mut Args| a.access.allowed_groups = Some("admin".into());
    let (op, app) = op_app(admins, |b| b.userinfo_patch = json!({"groups": "staff"})).await;
    let browser = Browser::new();
    assert_refused(&app, &browser, op_login(&app, &browser).await, "group_not_allowed").await;
    assert_eq!(op.log().userinfo, 1);

    op.set(|b| b.userinfo_patch = json!({"groups": ["staff", "admin"]}));
    assert_admitted(&app, &browser, op_login(&app, &browser).await).await;
    assert_eq!(op.log().userinfo, 2);
}

#[tokio::test]
async fn email_verified_must_be_true() {
    for (claim, outcome) in [
        (json!(false), Some("email_unverified")),
        (Value::Null, Some("email_unverified")), // absent
        (json!("false"), Some("email_unverified")),
        (json!("true"), None), // as some providers send it
        (json!(true), None),
    ] {
        let (_op, app) = op_app(example_com, |b| b.claims_patch = json!({ "email_verified": claim })).await;
        let browser = Browser::new();
        let callback = op_login(&app, &browser).await;
        match outcome {
            Some(reason) => {
                assert_refused(&app, &browser, callback, reason).await;
            }
            None => assert_admitted(&app, &browser, callback).await,
        }
    }
    // Unless the operator says otherwise.
    let lenient = |a: &mut Args| {
        example_com(a);
        a.access.require_email_verified = Some("false".into());
    };
    let (_op, app) = op_app(lenient, |b| b.claims_patch = json!({"email_verified": false})).await;
    let browser = Browser::new();
    assert_admitted(&app, &browser, op_login(&app, &browser).await).await;
}

#[tokio::test]
async fn an_hd_claim_must_be_an_allowed_domain() {
    let (op, app) = op_app(example_com, |b| b.claims_patch = json!({"hd": "evil.test"})).await;
    let browser = Browser::new();
    assert_refused(&app, &browser, op_login(&app, &browser).await, "hd_not_allowed").await;
    op.set(|b| b.claims_patch = json!({"hd": "example.com"}));
    assert_admitted(&app, &browser, op_login(&app, &browser).await).await;
}

#[tokio::test]
async fn the_refusal_page_escapes_who_and_offers_the_account_chooser() {
    let (op, app) = op_app(example_com, |b| {
        b.claims_patch = json!({"email": null, "name": "<b>Eve</b>"});
        b.userinfo_patch = json!({"email": null});
    })
    .await;
    let browser = Browser::new();
    let page = assert_refused(&app, &browser, op_login(&app, &browser).await, "email_missing").await;
    assert!(page.contains("&#60;b&#62;Eve&#60;/b&#62;"), "{page}");
    assert!(!page.contains("<b>Eve"), "{page}");
    assert!(page.contains(r#"href="/login?prompt=select_account""#), "{page}");

    // The button asks the provider for its account chooser; a plain login does not.
    let r = browser.get(&app.url("/login?prompt=select_account")).await;
    assert_eq!(query_param(&redirect_target(&r), "prompt"), "select_account");
    for plain in ["/login", "/login?prompt=none"] {
        let target = redirect_target(&browser.get(&app.url(plain)).await);
        assert!(!target.contains("prompt="), "{plain}: {target}");
    }
    let authorize = redirect_target(&browser.get(&app.url("/login?prompt=select_account")).await);
    browser.get(&authorize).await;
    let asked = op.log().last_authorize.get("prompt").cloned();
    assert_eq!(asked.as_deref(), Some("select_account"));
}

#[tokio::test]
async fn a_refused_sign_in_ends_the_earlier_session_of_the_browser() {
    let app = dev_app(example_com).await;
    let browser = Browser::new();
    assert_admitted(&app, &browser, dev_login(&app, &browser, "ada@example.com").await).await;
    assert_eq!(app.count("tower_sessions").await, 1);

    let refused = dev_login(&app, &browser, "eve@elsewhere.test").await;
    assert_refused_page(refused, "email_domain_not_allowed").await;
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "no longer signed in as anyone");
    assert_eq!(app.count("tower_sessions").await, 0);
    assert_eq!(app.count("session_index").await, 0);
    assert_eq!(app.count("users").await, 1, "only Ada was ever stored");
}

#[tokio::test]
async fn tighter_rules_shut_existing_sessions_out_after_a_restart() {
    let mut first = dev_app(|a| a.access.allowed_email_domains = Some("example.com,other.test".into())).await;
    let keep = first.keep_data();
    let (ada, eve, api) = (Browser::new(), Browser::new(), Browser::new());
    assert_admitted(&first, &ada, dev_login(&first, &ada, "ada@example.com").await).await;
    assert_admitted(&first, &eve, dev_login(&first, &eve, "eve@other.test").await).await;
    assert_admitted(&first, &api, dev_login(&first, &api, "carl@other.test").await).await;
    first.stop().await;

    let second = TestApp::spawn_with(Options {
        data_dir: Some(first.data_dir.clone()),
        tweak: Some(example_com),
        ..Default::default()
    })
    .await;
    assert_eq!(second.count("session_index").await, 3);
    let page = assert_refused_page(eve.get(&second.url("/secret")).await, "email_domain_not_allowed").await;
    assert!(page.contains("<strong>eve@other.test</strong>"), "{page}");
    assert!(page.contains("Your session here has ended."), "{page}");
    assert!(
        page.contains(r#"href="/login?next=/secret&#38;prompt=select_account""#),
        "{page}"
    );
    let r = eve.get(&second.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "ended: now anonymous");

    let r = api
        .client
        .get(second.url("/secret"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "access_denied", "reason": "email_domain_not_allowed"})
    );

    // Ada is still allowed; the two others' sessions and links are gone.
    let r = ada.get(&second.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(second.count("tower_sessions").await, 1);
    assert_eq!(second.count("session_index").await, 1);
    drop(keep);
}

#[tokio::test]
async fn sessions_from_before_any_rule_sign_in_again() {
    let mut first = TestApp::spawn().await;
    let keep = first.keep_data();
    let browser = Browser::new();
    assert_admitted(&first, &browser, dev_login(&first, &browser, "eve@other.test").await).await;
    first.stop().await;

    // Signed in without rules, so nothing to judge was kept: the session
    // ends and the user signs in again, judged then.
    let second = TestApp::spawn_with(Options {
        data_dir: Some(first.data_dir.clone()),
        tweak: Some(example_com),
        ..Default::default()
    })
    .await;
    let r = browser.get(&second.url("/secret")).await;
    to_provider(&r);
    assert_eq!(second.count("tower_sessions").await, 0);
    assert_eq!(second.count("session_index").await, 0);
    assert_refused_page(
        dev_login(&second, &browser, "eve@other.test").await,
        "email_domain_not_allowed",
    )
    .await;
    drop(keep);
}

/// Starts the binary with `env`, waits until it answers, stops it, and returns what it logged.
async fn startup_log(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "info"));
    let (mut child, _) = start(dir.path(), &env).await;
    // Start-up logging is done once it answers.
    child.start_kill().unwrap();
    output(&mut child).await
}

#[tokio::test]
async fn a_real_provider_without_rules_warns_once_at_start_up() {
    const WARNING: &str = "no access rule is set";
    let op = FakeOp::start().await;
    let (issuer, id, secret) = op.client();
    let provider = [
        ("OIDC_ISSUER", issuer.as_str()),
        ("OIDC_CLIENT_ID", id.as_str()),
        ("OIDC_CLIENT_SECRET", secret.as_str()),
    ];
    let log = startup_log(&provider).await;
    assert_eq!(log.matches(WARNING).count(), 1, "{log}");
    assert!(log.contains(&format!("any account at {issuer} can sign in")), "{log}");

    let mut with_rule = provider.to_vec();
    with_rule.push(("ALLOWED_EMAIL_DOMAINS", "example.com"));
    let log = startup_log(&with_rule).await;
    assert!(!log.contains(WARNING), "{log}");

    let log = startup_log(&[]).await;
    assert!(log.contains("DEVELOPMENT PROVIDER"), "{log}");
    assert!(
        !log.contains(WARNING),
        "the development provider has its own banner: {log}"
    );
}

#[tokio::test]
async fn with_several_providers_the_warning_names_those_without_rules() {
    let (a, b) = (FakeOp::start().await, FakeOp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    let entry = |id: &str, op: &FakeOp, rule: &str| {
        let (issuer, client, secret) = op.client();
        format!(
            "[[providers]]\nid = \"{id}\"\nissuer = \"{issuer}\"\nclient_id = \"{client}\"\n\
             client_secret = \"{secret}\"\n{rule}\n"
        )
    };
    let rule = "allowed_email_domains = [\"example.com\"]";
    std::fs::write(&file, entry("a", &a, "") + &entry("b", &b, rule)).unwrap();
    let log = startup_log(&[("CONFIG_FILE", file.to_str().unwrap())]).await;
    assert!(
        log.contains(&format!(
            "no access rule is set: any account at {} can sign in",
            a.issuer()
        )),
        "{log}"
    );
    assert!(!log.contains(&format!("any account at {}", b.issuer())), "{log}");
    std::fs::write(&file, entry("a", &a, rule) + &entry("b", &b, rule)).unwrap();
    let log = startup_log(&[("CONFIG_FILE", file.to_str().unwrap())]).await;
    assert!(!log.contains("no access rule is set"), "{log}");
}

#[tokio::test]
async fn help_lists_the_access_settings() {
    let o = Command::new(BIN).arg("--help").env_clear().output().await.unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for var in [
        "ALLOWED_EMAIL_DOMAINS",
        "ALLOWED_EMAILS",
        "ALLOWED_GROUPS",
        "GROUPS_CLAIM",
        "REQUIRE_EMAIL_VERIFIED",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}
