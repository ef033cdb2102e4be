//! The refresh token grant (RFC 6749 §6) with rotating refresh tokens: each
//! use spends the token and issues a new one; a spent token used again
//! revokes its whole grant (OAuth 2.0 Security BCP §4.14.2), as real
//! providers do. Tests count refreshes ([`DevProvider::refreshes`]) and
//! revoke a user's grants ([`DevProvider::revoke_grants_of`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::jws::random_token;
use super::params::Params;
use super::token::{SignedIn, TokenError, sign_id_token};
use super::{DevProvider, TokenGrant, User};

/// How long a refresh token can be redeemed.
pub(super) const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a refresh token stands for.
#[derive(Clone, Debug)]
pub(super) enum RefreshEntry {
    /// Usable once.
    Active(RefreshGrant),
    /// Used already: using it again revokes the grant.
    Spent { grant: String },
}

/// The sign-in a chain of refresh tokens continues.
#[derive(Clone, Debug)]
pub(super) struct RefreshGrant {
    /// The grant's id, the same for every token of the chain.
    pub(super) id: String,
    pub(super) client_id: String,
    pub(super) user: User,
    pub(super) sid: String,
    pub(super) scope: String,
    pub(super) auth_time: i64,
}

/// Grants revoked, and each user's grants (to revoke them by user).
#[derive(Default)]
pub(super) struct Grants {
    revoked: HashSet<String>,
    of_user: HashMap<String, Vec<String>>,
}

impl DevProvider {
    /// Issues the first refresh token of a new grant (at the code exchange).
    pub(super) fn start_grant(&self, grant: RefreshGrant) -> String {
        self.grants()
            .of_user
            .entry(grant.user.sub.clone())
            .or_default()
            .push(grant.id.clone());
        let token = random_token(32);
        self.refresh_tokens()
            .insert(token.clone(), RefreshEntry::Active(grant), REFRESH_TOKEN_TTL);
        token
    }

    /// How many refresh token grants were answered with new tokens.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::SeqCst)
    }

    /// Revokes every grant of the user `sub` (as an administrator disabling
    /// them would): their refresh tokens are refused from now on. Returns
    /// how many grants.
    pub fn revoke_grants_of(&self, sub: &str) -> usize {
        let mut grants = self.grants();
        let ids = grants.of_user.remove(sub).unwrap_or_default();
        let n = ids.len();
        grants.revoked.extend(ids);
        n
    }

    /// Sets the lifetime of the access tokens issued from now on (tests:
    /// a few seconds, so that sessions outlive several).
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.inner.access_ttl.store(ttl.as_secs().max(1), Ordering::SeqCst);
    }

    /// The `sub` the sign-in page gives the user with this email.
    pub fn subject_of(email: &str) -> String {
        super::jws::subject_for(email)
    }

    fn revoke(&self, grant: &str) {
        self.grants().revoked.insert(grant.to_owned());
    }

    fn is_revoked(&self, grant: &str) -> bool {
        self.grants().revoked.contains(grant)
    }
}

/// `grant_type=refresh_token` (the client is authenticated).
pub(super) fn refresh(dev: &DevProvider, params: &Params) -> Result<Response, TokenError> {
    let presented = params
        .get("refresh_token")
        .ok_or(TokenError::new("invalid_request", "refresh_token missing"))?;
    // Taking the token spends it, whatever happens next.
    let grant = match dev.refresh_tokens().take(presented) {
        Some(RefreshEntry::Active(grant)) => grant,
        Some(RefreshEntry::Spent { grant }) => {
            dev.revoke(&grant);
            tracing::warn!("dev provider: spent refresh token used again, grant revoked");
            return Err(TokenError::new("invalid_grant", "refresh token already used"));
        }
        None => return Err(TokenError::new("invalid_grant", "refresh token unknown or expired")),
    };
    if grant.client_id != dev.client().client_id {
        return Err(TokenError::new("invalid_grant", "refresh token of another client"));
    }
    if dev.is_revoked(&grant.id) {
        return Err(TokenError::new("invalid_grant", "grant revoked"));
    }
    dev.refresh_tokens().insert(
        presented.to_owned(),
        RefreshEntry::Spent {
            grant: grant.id.clone(),
        },
        REFRESH_TOKEN_TTL,
    );
    let ttl = dev.inner.access_ttl.load(Ordering::SeqCst);
    let access_token = random_token(32);
    let id_token = refreshed_id_token(dev, &grant, &access_token)?;
    dev.tokens().insert(
        access_token.clone(),
        TokenGrant {
            user: grant.user.clone(),
            scope: grant.scope.clone(),
            expires_at: super::unix_now() + ttl as i64,
        },
        Duration::from_secs(ttl),
    );
    let scope = grant.scope.clone();
    let next = random_token(32);
    dev.refresh_tokens()
        .insert(next.clone(), RefreshEntry::Active(grant), REFRESH_TOKEN_TTL);
    dev.inner.refreshes.fetch_add(1, Ordering::SeqCst);
    tracing::info!("dev provider: tokens refreshed");
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "id_token": id_token,
        "refresh_token": next,
        "scope": scope,
    });
    Ok((
        [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        Json(body),
    )
        .into_response())
}

/// A refreshed ID token: the same user and sign-in, no nonce (OIDC Core §12.2).
fn refreshed_id_token(dev: &DevProvider, grant: &RefreshGrant, access_token: &str) -> Result<String, TokenError> {
    let signed_in = SignedIn {
        client_id: &grant.client_id,
        user: &grant.user,
        sid: &grant.sid,
        auth_time: grant.auth_time,
    };
    sign_id_token(dev, &signed_in, None, access_token)
}
