//! A misbehaving OpenID Provider for the certification tests: a small axum
//! server on 127.0.0.1:0 whose every answer the test shapes through
//! [`Behavior`] (discovery, keys, signatures, claims, token endpoint errors).
//!
//! It stands in for someone else's server, so it never imports the
//! `oidc_gate` crate: only third-party crates, so a bug in the relying
//! party's checks cannot confirm itself.
//!
//! ```ignore
//! let op = FakeOp::start().await;
//! op.set(|b| { b.alg = Alg::Es256; b.key = Key::Ec1; b.claims_patch = json!({"aud": "someone-else"}) });
//! let app = TestApp::spawn_with(Options { provider: Some(op.client()), ..Default::default() }).await;
//! ```

#![allow(dead_code)]

mod behavior;
mod endpoints;
mod jose;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;

pub use behavior::{AtHash, Behavior, ClientAuth, Kid, Log, Pkce, TokenReply};
pub use jose::{Alg, Key};

/// The `events` member that makes a JWT a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The default client registration.
pub const CLIENT_ID: &str = "gate-client";
/// The default client secret.
pub const CLIENT_SECRET: &str = "gate-secret";

/// A running fake provider; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeOp {
    shared: Arc<Shared>,
}

/// An authorization code (or a refresh token) and what it was issued for.
#[derive(Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
}

struct Shared {
    issuer: String,
    client_id: String,
    client_secret: String,
    behavior: Mutex<Behavior>,
    log: watch::Sender<Log>,
    codes: Mutex<HashMap<String, Grant>>,
    /// Refresh token → the login it continues (each usable once).
    refresh_tokens: Mutex<HashMap<String, Grant>>,
    /// Access token → subject, for UserInfo.
    access_tokens: Mutex<HashMap<String, String>>,
    /// Holds the next JWKS answer until `true` (at most 10 s).
    jwks_hold: Mutex<Option<watch::Receiver<bool>>>,
}

impl FakeOp {
    /// A correct provider for client `gate-client` / `gate-secret`.
    pub async fn start() -> Self {
        Self::start_with_client(CLIENT_ID, CLIENT_SECRET).await
    }

    /// A correct provider for the given client registration.
    pub async fn start_with_client(client_id: &str, client_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake OP");
        let addr: SocketAddr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            behavior: Mutex::new(Behavior::default()),
            log: watch::Sender::new(Log::default()),
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            access_tokens: Mutex::default(),
            jwks_hold: Mutex::default(),
        });
        let router = endpoints::router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { shared }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// An absolute URL on the provider.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shared.issuer)
    }

    /// Issuer, client id and secret, as the test harness's `Options::provider` takes them.
    pub fn client(&self) -> (String, String, String) {
        let s = &self.shared;
        (s.issuer.clone(), s.client_id.clone(), s.client_secret.clone())
    }

    /// Changes the behaviour from the next request on.
    pub fn set(&self, change: impl FnOnce(&mut Behavior)) {
        change(&mut self.shared.behavior.lock().unwrap());
    }

    /// Holds the answer to the next JWKS request (it is counted on arrival)
    /// until `true` is sent, or 10 s have passed.
    pub fn hold_next_jwks(&self) -> watch::Sender<bool> {
        let (release, held) = watch::channel(false);
        *self.shared.jwks_hold.lock().unwrap() = Some(held);
        release
    }

    /// A copy of what the provider saw so far.
    pub fn log(&self) -> Log {
        self.shared.log.borrow().clone()
    }

    /// The access tokens issued so far.
    pub fn access_tokens(&self) -> Vec<String> {
        self.shared.access_tokens.lock().unwrap().keys().cloned().collect()
    }

    /// Waits until what the provider saw satisfies `done`.
    pub async fn wait_for(&self, done: impl FnMut(&Log) -> bool) {
        let mut rx = self.shared.log.subscribe();
        rx.wait_for(done)
            .await
            .expect("the provider lives as long as its handle");
    }

    /// Mints a back-channel logout token with the current signing knobs
    /// (`alg`, `key`, `kid`, `corrupt_signature`): `iss`, `aud`, `iat`, `exp`,
    /// a fresh `jti` and the logout event, then `patch` (a `null` member
    /// removes a claim). Add `sid` and/or `sub` through `patch`.
    pub fn logout_token(&self, patch: Value) -> String {
        let s = &self.shared;
        let b = s.behavior.lock().unwrap().clone();
        let now = now();
        let mut claims = json!({
            "iss": s.issuer,
            "aud": s.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": jose::random(16),
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        jose::merge(&mut claims, &patch);
        s.sign(&b, "logout+jwt", &claims)
    }
}

impl FakeOp {
    /// Mints an access token for the API `audience` with the current
    /// signing knobs, header `typ` as given (RFC 9068's is `at+jwt`): `iss`,
    /// `sub`, `aud`, `client_id`, `iat`, `exp` (in 10 minutes), `jti`, the
    /// user's email, then `patch` (a `null` member removes a claim).
    pub fn access_token(&self, typ: &str, audience: &str, patch: Value) -> String {
        let s = &self.shared;
        let b = s.behavior.lock().unwrap().clone();
        let now = now();
        let mut claims = json!({
            "iss": s.issuer,
            "sub": b.sub,
            "aud": audience,
            "client_id": s.client_id,
            "iat": now,
            "exp": now + 600,
            "jti": jose::random(16),
            "email": b.email,
            "email_verified": true,
        });
        jose::merge(&mut claims, &patch);
        s.sign(&b, typ, &claims)
    }
}

impl Shared {
    /// The ID token for a code being redeemed, shaped by `b`.
    fn id_token(&self, b: &Behavior, grant: &Grant, access_token: &str) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": b.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
        });
        if let Some(nonce) = &grant.nonce {
            claims["nonce"] = nonce.as_str().into();
        }
        if let Some(sid) = &b.sid {
            claims["sid"] = sid.as_str().into();
        }
        if b.profile_in_id_token {
            claims["name"] = b.name.as_str().into();
            claims["email"] = b.email.as_str().into();
            claims["email_verified"] = true.into();
        }
        match b.at_hash {
            AtHash::Correct => claims["at_hash"] = jose::at_hash(access_token, b.alg).into(),
            AtHash::Wrong => claims["at_hash"] = jose::at_hash("another access token", b.alg).into(),
            AtHash::Absent => {}
        }
        jose::merge(&mut claims, &b.claims_patch);
        self.sign(b, "JWT", &claims)
    }

    fn sign(&self, b: &Behavior, typ: &str, claims: &Value) -> String {
        let mut header = json!({ "alg": b.alg.name(), "typ": typ });
        match &b.kid {
            Kid::OfKey => header["kid"] = b.key.kid().into(),
            Kid::Is(kid) => header["kid"] = kid.as_str().into(),
            Kid::Absent => {}
        }
        jose::sign(&header, claims, b.alg, b.key, &self.client_secret, b.corrupt_signature)
    }
}

/// Seconds since the Unix epoch, by the real clock (the provider's, not the app's).
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Delivers a logout token the way a provider does: a server-to-server
/// form POST, no cookies.
pub async fn send_logout_token(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .form(&[("logout_token", token)])
        .send()
        .await
        .expect("POST logout token")
}
