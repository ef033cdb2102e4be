//! Why a provider interaction failed, as a short reason code.

use std::fmt;

/// A short, stable reason code for each way a provider interaction can fail.
/// It is logged and tested; it never contains a token, code or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The discovery document could not be fetched or parsed.
    DiscoveryFailed,
    /// The discovery document's `issuer` differs from the configured issuer.
    IssuerMismatch,
    /// The JWKS could not be fetched or parsed.
    JwksFailed,
    /// The token endpoint could not be reached, timed out or answered an error.
    TokenEndpoint,
    /// The token endpoint refused the code (`invalid_grant`): forged, expired
    /// or already used, or its PKCE verifier does not match. Anyone can send
    /// a code to `/callback`, so this is the request's fault, not the provider's.
    CodeRejected,
    /// The token endpoint refused the refresh token (`invalid_grant`): the
    /// grant was revoked or expired, or the user was disabled. The session ends.
    RefreshRejected,
    /// A refreshed ID token names another user (`sub`) than the session's.
    RefreshSubject,
    /// The token endpoint's answer is not a valid token response.
    TokenResponseInvalid,
    /// The token response has no `id_token`.
    IdTokenMissing,
    /// The ID token is not a well-formed JWT with the required claims.
    IdTokenMalformed,
    /// The ID token's `alg` is not the expected one (`OIDC_ID_TOKEN_ALG`);
    /// `none` and symmetric ones never are.
    IdTokenAlg,
    /// The ID token's signature does not verify.
    IdTokenSignature,
    /// No key in the provider's JWKS matches the ID token, even after a refetch.
    IdTokenUnknownKey,
    /// The key that would verify the ID token is an RSA key under 2048 bits
    /// (the provider's to fix: a 502).
    IdTokenKeyTooSmall,
    /// The ID token's `iss` is not the provider's issuer.
    IdTokenIss,
    /// The ID token's `aud` is missing or does not contain our client id.
    IdTokenAud,
    /// `azp` is not our client id, or is missing with several audiences.
    IdTokenAzp,
    /// The ID token has expired.
    IdTokenExp,
    /// The ID token's `iat` is missing or in the future.
    IdTokenIat,
    /// The ID token has no `sub`.
    IdTokenSub,
    /// The ID token's `nonce` is missing or not the one we sent.
    IdTokenNonce,
    /// The ID token's `at_hash` does not match the access token.
    IdTokenAtHash,
    /// The UserInfo endpoint failed or answered garbage.
    UserinfoFailed,
    /// UserInfo's `sub` differs from the ID token's.
    UserinfoSub,
    /// A back-channel logout token failed validation.
    LogoutToken,
    /// A logout token's `alg` is not the expected one (`OIDC_ID_TOKEN_ALG`).
    LogoutTokenAlg,
    /// The key that would verify a logout token is an RSA key under 2048 bits.
    LogoutTokenKeyTooSmall,
    /// The revocation endpoint (RFC 7009) could not be reached, timed out
    /// or refused to revoke a token.
    RevocationFailed,
    /// A bearer token is not a JWT access token we accept: malformed, its
    /// `typ` not `at+jwt` (nor allowed `JWT`), or an ID token.
    BearerMalformed,
    /// A bearer token's `alg` is not the expected one (`none` and HMAC never are).
    BearerAlg,
    /// A bearer token's signature does not verify (or its key is too small).
    BearerSignature,
    /// No key in the provider's JWKS matches the bearer token.
    BearerUnknownKey,
    /// A bearer token's `iss` is not the provider's issuer.
    BearerIss,
    /// A bearer token's `aud` does not contain `API_AUDIENCE`.
    BearerAud,
    /// A bearer token has expired, or is not valid yet (`nbf`, `iat`).
    BearerExp,
    /// A bearer token has no `sub`.
    BearerSub,
    /// The provider's introspection says the token is not active (or not for us).
    BearerInactive,
    /// An opaque bearer token, and the provider has no introspection endpoint.
    BearerOpaque,
    /// The introspection endpoint could not be reached, timed out or answered an error.
    IntrospectionFailed,
}

impl Reason {
    /// The code as logged, e.g. `id_token_aud`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::DiscoveryFailed => "discovery_failed",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::JwksFailed => "jwks_failed",
            Reason::TokenEndpoint => "token_endpoint",
            Reason::CodeRejected => "code_rejected",
            Reason::RefreshRejected => "refresh_rejected",
            Reason::RefreshSubject => "refresh_sub",
            Reason::TokenResponseInvalid => "token_response_invalid",
            Reason::IdTokenMissing => "id_token_missing",
            Reason::IdTokenMalformed => "id_token_malformed",
            Reason::IdTokenAlg => "id_token_alg",
            Reason::IdTokenSignature => "id_token_signature",
            Reason::IdTokenUnknownKey => "id_token_unknown_key",
            Reason::IdTokenKeyTooSmall => "id_token_key_too_small",
            Reason::IdTokenIss => "id_token_iss",
            Reason::IdTokenAud => "id_token_aud",
            Reason::IdTokenAzp => "id_token_azp",
            Reason::IdTokenExp => "id_token_exp",
            Reason::IdTokenIat => "id_token_iat",
            Reason::IdTokenSub => "id_token_sub",
            Reason::IdTokenNonce => "id_token_nonce",
            Reason::IdTokenAtHash => "id_token_at_hash",
            Reason::UserinfoFailed => "userinfo_failed",
            Reason::UserinfoSub => "userinfo_sub",
            Reason::LogoutToken => "logout_token",
            Reason::LogoutTokenAlg => "logout_token_alg",
            Reason::LogoutTokenKeyTooSmall => "logout_token_key_too_small",
            Reason::RevocationFailed => "revocation_failed",
            Reason::BearerMalformed => "bearer_malformed",
            Reason::BearerAlg => "bearer_alg",
            Reason::BearerSignature => "bearer_signature",
            Reason::BearerUnknownKey => "bearer_unknown_key",
            Reason::BearerIss => "bearer_iss",
            Reason::BearerAud => "bearer_aud",
            Reason::BearerExp => "bearer_exp",
            Reason::BearerSub => "bearer_sub",
            Reason::BearerInactive => "bearer_inactive",
            Reason::BearerOpaque => "bearer_opaque",
            Reason::IntrospectionFailed => "introspection_failed",
        }
    }

    /// Whether the provider (not the browser's request) is at fault: such
    /// failures are shown as 502 Bad Gateway.
    pub fn is_upstream_failure(self) -> bool {
        matches!(
            self,
            Reason::DiscoveryFailed
                | Reason::IssuerMismatch
                | Reason::JwksFailed
                | Reason::TokenEndpoint
                | Reason::TokenResponseInvalid
                | Reason::IdTokenMissing
                | Reason::IdTokenKeyTooSmall
                | Reason::UserinfoFailed
                | Reason::RevocationFailed
                | Reason::IntrospectionFailed
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A failed provider interaction: a reason code and a detail for the log.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct ProviderError {
    /// The reason code.
    pub reason: Reason,
    /// What went wrong, for operators; free of secrets.
    pub detail: String,
}

impl ProviderError {
    /// A new error. Control characters in `detail` are escaped: it may
    /// quote the provider (a parser's message naming an unknown value), and
    /// a line break would start a forged line in the log.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        let detail: String = detail.into();
        if !detail.contains(char::is_control) {
            return Self { reason, detail };
        }
        let mut escaped = String::with_capacity(detail.len() + 8);
        for c in detail.chars() {
            match c.is_control() {
                true => escaped.extend(c.escape_debug()),
                false => escaped.push(c),
            }
        }
        Self {
            reason,
            detail: escaped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_cannot_break_a_log_line() {
        let e = ProviderError::new(Reason::JwksFailed, "unknown variant `a\nINFO forged\r\u{1b}[31m`");
        assert_eq!(e.detail, "unknown variant `a\\nINFO forged\\r\\u{1b}[31m`");
        assert!(!e.to_string().contains(['\n', '\r', '\u{1b}']));
        assert_eq!(
            ProviderError::new(Reason::JwksFailed, "plain `text`").detail,
            "plain `text`"
        );
    }
}
