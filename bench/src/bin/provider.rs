//! oidc-gate's development provider in a process of its own, so that the
//! login benchmark counts only the relying party's CPU in oidc-gate (the
//! provider's ES256 signing and pages run here instead).
//!
//! Beside it, the same provider signing RS256 and PS256 (one RSA 2048 key,
//! made at start) at `/rs256/dev-provider` and `/ps256/dev-provider`, for
//! the login rows of those algorithms.
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
use oidc_gate::devprovider::{DevClient, DevProvider, RsaAlg};
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
    let mut app = Router::new().nest_service(DEV_PROVIDER_PATH, dev.router());
    let key = match rsa_key() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("provider: cannot make an RSA key: {e}");
            return ExitCode::FAILURE;
        }
    };
    for alg in [RsaAlg::Rs256, RsaAlg::Ps256] {
        let path = format!("/{}{DEV_PROVIDER_PATH}", alg.name().to_lowercase());
        let signing = Url::parse(&format!("http://{listen}{path}")).map(|issuer| dev.with_rsa_key(issuer, alg, &key));
        match signing {
            Ok(Ok(signing)) => app = app.nest_service(&path, signing.router()),
            Ok(Err(e)) => {
                eprintln!("provider: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("provider: bad listen address {listen}: {e}");
                return ExitCode::from(2);
            }
        }
    }
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

/// A fresh RSA 2048 key, PKCS#8 DER (`ring`, which signs, makes no RSA keys).
fn rsa_key() -> Result<Vec<u8>, rsa::Error> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let der = key.to_pkcs8_der().map_err(rsa::Error::Pkcs8)?;
    Ok(der.as_bytes().to_vec())
}
