//! Token revocation at logout (RFC 7009): the Log out button and the
//! gateway's sign-out revoke the session's refresh and access tokens at the
//! provider's `revocation_endpoint`, in the background: a provider that
//! never answers does not hold the user's redirect.

use std::time::{Duration, Instant};

use oidc_gate::devprovider::{Revocation, Revoked};
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fake_op::{ClientAuth, FakeOp};
use crate::support::*;

/// Longest a test waits for a revocation to arrive.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn logout_revokes_the_refresh_and_the_access_token_at_the_dev_provider() {
    let app = TestApp::spawn().await;
    let dev = app.dev.clone().expect("the development provider runs");
    let browser = Browser::new();
    assert_eq!(login(&app, &browser, None).await.status(), StatusCode::SEE_OTHER);
    // Signing in revokes nothing.
    assert!(dev.revocations().is_empty());

    let r = click_log_out(&browser, &app.url("")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut seen = dev.wait_for_revocations(2, PATIENCE).await;
    seen.sort_by(|a, b| a.token_type_hint.cmp(&b.token_type_hint));
    // Both were live tokens of this provider, and now are not.
    assert_eq!(
        seen,
        [
            Revocation {
                token_type_hint: Some("access_token".into()),
                revoked: Some(Revoked::AccessToken),
            },
            Revocation {
                token_type_hint: Some("refresh_token".into()),
                revoked: Some(Revoked::RefreshToken),
            },
        ]
    );
}

#[tokio::test]
async fn ending_a_stored_session_by_id_revokes_its_tokens() {
    // What the sessions page and the administrators' command call before
    // they delete a session that is not the request's own.
    let app = TestApp::spawn().await;
    let dev = app.dev.clone().unwrap();
    let browser = Browser::new();
    assert_eq!(login(&app, &browser, None).await.status(), StatusCode::SEE_OTHER);
    let id = browser.session_id(&app).expect("a session cookie");
    let issuer = app.state.providers.first().provider.issuer().to_owned();
    oidc_gate::web::revoke::revoke_session(&app.state, &issuer, &id)
        .await
        .unwrap();
    let seen = dev.wait_for_revocations(2, PATIENCE).await;
    let mut revoked: Vec<_> = seen.iter().map(|r| r.revoked).collect();
    revoked.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(revoked, [Some(Revoked::AccessToken), Some(Revoked::RefreshToken)]);
    // An id that is no session, or no id at all: nothing, and no error.
    for id in ["", "not-an-id", "AAAAAAAAAAAAAAAAAAAAAA"] {
        oidc_gate::web::revoke::revoke_session(&app.state, &issuer, id)
            .await
            .unwrap();
    }
    let mut app = app;
    app.stop().await;
    assert_eq!(dev.revocations().len(), 2);
}

/// A fake provider whose discovery advertises `revocation_endpoint` at
/// `endpoint` (its own `/op/revoke` when `None`), and the app configured for
/// it, with settings changed by `tweak`.
async fn op_with_revocation(
    endpoint: Option<String>,
    tweak: fn(&mut oidc_gate::config::Args),
    metrics: bool,
) -> (FakeOp, TestApp) {
    let op = FakeOp::start().await;
    let endpoint = endpoint.unwrap_or_else(|| op.url("/op/revoke"));
    op.set(|b| b.discovery_patch = json!({ "revocation_endpoint": endpoint }));
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(tweak),
        metrics,
        ..Default::default()
    })
    .await;
    (op, app)
}

/// Signs in at the fake provider (which answers at once) through `/login`.
async fn op_login(app: &TestApp, browser: &Browser) {
    let authorize = start_login(app, browser, None).await;
    let callback = redirect_target(&browser.get(&authorize).await);
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in");
}

/// The gateway, in forward-auth mode.
fn gateway(a: &mut oidc_gate::config::Args) {
    a.gateway = crate::gateway::defaults();
    a.gateway.forward_auth = Some("true".into());
}

#[tokio::test]
async fn the_gateways_sign_out_revokes_the_issued_token_with_client_authentication() {
    let (op, app) = op_with_revocation(None, gateway, false).await;
    let browser = Browser::new();
    crate::gateway::sign_in(&app, &browser, "/").await;
    let page = text(browser.get(&app.url("/oauth2/sign_out")).await).await;
    let form = html::form(&page).expect("a sign-out form");
    let fields: Vec<(&str, &str)> = form.inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = browser.post_form(&app.url("/oauth2/sign_out"), &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // This provider issues a refresh token too: both are revoked.
    op.wait_for(|l| l.revocations.len() >= 2).await;
    let seen = op.log().revocations;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let access = seen
        .iter()
        .find(|r| r.token_type_hint.as_deref() == Some("access_token"))
        .expect("the access token revoked");
    assert_eq!(access.token, op.access_tokens()[0], "the token issued at sign-in");
    assert!(
        seen.iter()
            .any(|r| r.token_type_hint.as_deref() == Some("refresh_token"))
    );
    for revocation in &seen {
        assert_eq!(revocation.client_auth, ClientAuth::Basic);
        assert!(revocation.credentials_ok);
    }
}

/// A loopback listener that accepts connections and never answers; the
/// count of connections it accepted.
async fn silent_listener() -> (String, watch::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/revoke", listener.local_addr().unwrap());
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            tx.send_replace(held.len());
        }
    });
    (url, rx)
}

#[tokio::test]
async fn a_provider_that_never_answers_does_not_delay_the_logout() {
    let (url, mut connections) = silent_listener().await;
    let (_op, app) = op_with_revocation(Some(url), |a| a.oidc_http_timeout = "5s".into(), true).await;
    let browser = Browser::new();
    op_login(&app, &browser).await;

    let started = Instant::now();
    let r = click_log_out(&browser, &app.url("")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("/op/session/end"), "{}", location(&r));
    // The redirect does not wait for OIDC_HTTP_TIMEOUT (5 s here).
    assert!(took < Duration::from_millis(2500), "the logout took {took:?}");
    let secret = browser.get(&app.url("/secret")).await;
    assert_eq!(secret.status(), StatusCode::SEE_OTHER, "logged out at once");
    // The revocation was sent all the same.
    tokio::time::timeout(PATIENCE, connections.wait_for(|n| *n >= 1))
        .await
        .expect("the revocation request arrives")
        .unwrap();
    // Stopping waits for it (drain): by then its timeout is counted.
    let mut app = app;
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "bounded by the HTTP timeout"
    );
    let scrape = oidc_gate::metrics::install().unwrap().render();
    let counted = scrape.lines().any(|l| {
        l.starts_with("oidc_gate_provider_errors_total{")
            && l.contains("request=\"revocation\"")
            && l.contains("reason=\"revocation_failed\"")
    });
    assert!(counted, "no revocation failure counted:\n{scrape}");
}

#[tokio::test]
async fn without_a_revocation_endpoint_nothing_is_sent() {
    // The provider serves `/op/revoke` but does not advertise it.
    let (op, app) = crate::access::op_app(|_| {}, |_| {}).await;
    let browser = Browser::new();
    op_login(&app, &browser).await;
    let r = click_log_out(&browser, &app.url("")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Whatever was spawned for the logout ends with the server.
    let mut app = app;
    app.stop().await;
    assert!(op.log().revocations.is_empty(), "{:?}", op.log().revocations);
}

#[tokio::test]
async fn the_administrators_sessions_end_revokes_the_tokens_of_each_session_it_ends() {
    let (op, app) = op_with_revocation(None, |_| {}, false).await;
    let browser = Browser::new();
    op_login(&app, &browser).await;
    let (issuer, client_id, client_secret) = op.client();
    let data_dir = app.data_dir.display().to_string();
    let env = [
        ("DATA_DIR", data_dir.as_str()),
        ("OIDC_ISSUER", issuer.as_str()),
        ("OIDC_CLIENT_ID", client_id.as_str()),
        ("OIDC_CLIENT_SECRET", client_secret.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = crate::admin_sessions::sessions(dir.path(), &env, &["end", "--user", "ada@example.com"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ended 1 session of ada@example.com\nrevoked 2 tokens at the provider\n"
    );
    // Revoked before the command returned: the refresh and the access token.
    let seen = op.log().revocations;
    let mut hints: Vec<_> = seen
        .iter()
        .map(|r| r.token_type_hint.clone().unwrap_or_default())
        .collect();
    hints.sort();
    assert_eq!(hints, ["access_token", "refresh_token"], "{seen:?}");
    let access = seen
        .iter()
        .find(|r| r.token_type_hint.as_deref() == Some("access_token"))
        .unwrap();
    assert!(
        op.access_tokens().contains(&access.token),
        "the token issued at sign-in"
    );
    assert!(seen.iter().all(|r| r.credentials_ok));
    // And the session is over.
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed out");
}
