//! oidc-gate's development provider in a process of its own, so that the
//! login benchmark counts only the relying party's CPU in oidc-gate (the
//! provider's ES256 signing and pages run here instead).
//!
//! Also the provider of the Apache + mod_auth_openidc peer row, whose
//! redirect URI is elsewhere.
//!
//! Usage: `provider <listen addr> <client id> <client secret> <base URL> [<callback path>]`.
//! The issuer is `http://<listen addr>/dev-provider`; the one client may
//! use `<base><callback path>` (default `/callback`) and `<base>/`. Serves
//! until killed.

use std::process::ExitCode;

use axum::Router;
use oidc_gate::app::DEV_PROVIDER_PATH;
use oidc_gate::devprovider::{DevClient, DevProvider};
use url::Url;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, client_id, client_secret, base, callback) = match args.as_slice() {
        [listen, id, secret, base] => (listen, id, secret, base, "/callback"),
        [listen, id, secret, base, callback] => (listen, id, secret, base, callback.as_str()),
        _ => {
            eprintln!("usage: provider <listen addr> <client id> <client secret> <base URL> [<callback path>]");
            return ExitCode::from(2);
        }
    };
    let issuer = match Url::parse(&format!("http://{listen}{DEV_PROVIDER_PATH}")) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("provider: bad listen address {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let base = base.trim_end_matches('/');
    let dev = DevProvider::new(
        issuer,
        DevClient {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            redirect_uris: vec![format!("{base}{callback}")],
            post_logout_redirect_uris: vec![format!("{base}/")],
        },
    );
    let app = Router::new().nest_service(DEV_PROVIDER_PATH, dev.router());
    let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("provider: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provider: {e}");
            ExitCode::FAILURE
        }
    }
}
