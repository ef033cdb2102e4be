//! The gateway (oauth2-proxy's interface) through the real server: forward
//! auth for a web server in front, the routes under `/oauth2`, sign-out,
//! redirects, and the reverse proxy in front of a real upstream.

mod forward_auth;
pub(crate) mod reverse_proxy;
mod step_up;

use std::path::PathBuf;
use std::sync::OnceLock;

use oidc_gate::config::{Args, GatewayArgs};
use reqwest::StatusCode;
use serde_json::json;

use crate::fake_op::FakeOp;
use crate::support::*;

/// The gateway settings as the command line gives them by default.
pub fn defaults() -> GatewayArgs {
    use clap::Parser;
    Args::try_parse_from(["oidc-gate"]).unwrap().gateway
}

/// A fake provider whose users have a username and groups, and a gateway
/// set up by `tweak` (which starts from the gateway's defaults).
pub async fn gateway(tweak: fn(&mut Args)) -> (FakeOp, TestApp) {
    crate::access::op_app(tweak, |b| {
        b.claims_patch = json!({"preferred_username": "ada", "groups": ["users", "ops"]});
    })
    .await
}

/// A `CONFIG_FILE` with `/admin` for the group `admins` only (which the
/// test user is not in), written once per test run.
pub fn admins_only_file() -> PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, file) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gate.toml");
        std::fs::write(&file, "[[paths]]\nprefix = \"/admin\"\nallowed_groups = [\"admins\"]\n").unwrap();
        (dir, file)
    });
    file.clone()
}

/// Signs in through `/oauth2/start?rd=…` at the fake provider (which
/// answers at once); returns where the callback sends the browser.
pub async fn sign_in(app: &TestApp, browser: &Browser, rd: &str) -> String {
    let start = browser
        .get(&app.url(&format!("/oauth2/start?rd={}", urlencoding(rd))))
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER, "start");
    let authorize = redirect_target(&start);
    let callback = redirect_target(&browser.get(&authorize).await);
    assert!(callback.contains("/oauth2/callback?"), "{callback}");
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER, "callback");
    location(&landed)
}
