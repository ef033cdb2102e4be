//! What the fake provider does ([`Behavior`], shaped by each test; the
//! default is a fully correct provider) and what it saw ([`Log`]).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::jose::{Alg, Key};

/// The `kid` put in token headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kid {
    /// The signing key's own kid.
    OfKey,
    /// No `kid` header.
    Absent,
    /// This kid, whatever the key.
    Is(String),
}

/// The ID token's `at_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtHash {
    /// The right hash of the access token issued with it.
    Correct,
    /// The hash of another access token.
    Wrong,
    /// No `at_hash` claim (it is optional in the code flow).
    Absent,
}

/// How `/token` answers a request it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReply {
    /// A proper token response.
    Tokens,
    /// This HTTP status with an OAuth error body.
    Status(u16),
    /// This HTTP status with this OAuth `error` code.
    Error(u16, &'static str),
    /// 200 with a body that is not JSON.
    Garbage,
    /// A token response without `id_token`.
    NoIdToken,
    /// A proper response, after this long (longer than the app's timeout).
    Hang(Duration),
}

/// Everything a test can shape. Read at each request, so a change applies
/// to the next request.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Members replacing (or, when `null`, removing) those of the discovery
    /// document, e.g. `{"issuer": "…"}` or `{"end_session_endpoint": null}`.
    pub discovery_patch: Value,
    /// How many discovery requests still answer 503 before the document is served.
    pub discovery_failures: u32,
    /// The keys the JWKS publishes, in order.
    pub jwks: Vec<Key>,
    /// Whether the published keys carry their `kid`.
    pub jwks_kids: bool,
    /// Holds each JWKS response until this many token requests were received
    /// (at most 5 s), so that concurrent logins really overlap.
    pub jwks_hold_until_tokens: Option<u64>,
    /// The signing algorithm of ID and logout tokens.
    pub alg: Alg,
    /// The key that signs them (ignored by HS256 and none).
    pub key: Key,
    /// The `kid` header.
    pub kid: Kid,
    /// Flip a bit of every signature.
    pub corrupt_signature: bool,
    /// The subject of the next ID token (and UserInfo).
    pub sub: String,
    /// The `sid` claim of the next ID token, if any.
    pub sid: Option<String>,
    /// The user's name.
    pub name: String,
    /// The user's email address.
    pub email: String,
    /// Whether the ID token carries name and email (else only UserInfo has them).
    pub profile_in_id_token: bool,
    /// The `at_hash` claim.
    pub at_hash: AtHash,
    /// Members replacing (or, when `null`, removing) claims of the ID token,
    /// applied last: `{"aud": ["a", "b"]}`, `{"iat": null}`, …
    pub claims_patch: Value,
    /// How `/token` answers.
    pub token_reply: TokenReply,
    /// `expires_in` of the access tokens (seconds).
    pub expires_in: u64,
    /// Refuse authorization requests without an S256 `code_challenge`.
    pub require_pkce: bool,
    /// UserInfo's `sub`, when it should differ from the ID token's.
    pub userinfo_sub: Option<String>,
    /// Members replacing (or, when `null`, removing) those of the UserInfo
    /// answer, applied last: `{"groups": ["admin"]}`, `{"email": null}`, …
    pub userinfo_patch: Value,
    /// The `state` sent back on the post-logout redirect (overrides the RP's).
    pub end_session_state: Option<String>,
    /// The introspection endpoint's answer, for any token.
    pub introspection: Value,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            discovery_patch: json!({}),
            discovery_failures: 0,
            jwks: vec![Key::Rsa1, Key::Ec1, Key::Ed],
            jwks_kids: true,
            jwks_hold_until_tokens: None,
            alg: Alg::Rs256,
            key: Key::Rsa1,
            kid: Kid::OfKey,
            corrupt_signature: false,
            sub: "user-1".to_owned(),
            sid: None,
            name: "Ada Lovelace".to_owned(),
            email: "ada@example.com".to_owned(),
            profile_in_id_token: true,
            at_hash: AtHash::Correct,
            claims_patch: json!({}),
            token_reply: TokenReply::Tokens,
            expires_in: 300,
            require_pkce: false,
            userinfo_sub: None,
            userinfo_patch: json!({}),
            end_session_state: None,
            introspection: json!({"active": false}),
        }
    }
}

/// How the client authenticated at `/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with form-urlencoded id and secret.
    Basic,
    /// `client_secret_post`: id and secret in the form.
    Post,
    /// Both at once (refused).
    Both,
    /// Neither (refused).
    None,
}

/// What the PKCE check of a token request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkce {
    /// The verifier matches the S256 challenge.
    Verified,
    /// A challenge was sent but no verifier.
    Missing,
    /// The verifier does not match the challenge.
    Wrong,
    /// The authorization request had no challenge.
    NotUsed,
}

/// What the provider saw.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Discovery requests.
    pub discovery: u64,
    /// JWKS requests.
    pub jwks: u64,
    /// The path of each JWKS request.
    pub jwks_paths: Vec<String>,
    /// Authorization requests.
    pub authorize: u64,
    /// The query of the last authorization request.
    pub last_authorize: HashMap<String, String>,
    /// Token requests (counted on arrival, accepted or not).
    pub token: u64,
    /// Client authentication of each token request.
    pub client_auth: Vec<ClientAuth>,
    /// PKCE outcome of each token request that got that far.
    pub pkce: Vec<Pkce>,
    /// Every ID token issued, in order.
    pub id_tokens: Vec<String>,
    /// Refresh token grants answered.
    pub refresh: u64,
    /// UserInfo requests.
    pub userinfo: u64,
    /// The query of the last end-session request.
    pub end_session: Option<HashMap<String, String>>,
    /// Every request to the revocation endpoint, in order.
    pub revocations: Vec<RevocationSeen>,
}

/// A request to the revocation endpoint.
#[derive(Debug, Clone)]
pub struct RevocationSeen {
    /// The `token` parameter.
    pub token: String,
    /// The `token_type_hint` parameter.
    pub token_type_hint: Option<String>,
    /// How the client authenticated.
    pub client_auth: ClientAuth,
    /// Whether its credentials were right.
    pub credentials_ok: bool,
}
