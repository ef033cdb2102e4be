//! Bearer-token API access: `SKIP_JWT_BEARER_TOKENS`, `API_AUDIENCE` and
//! `BEARER_ALLOW_JWT_TYP`, validated together (one of the first two
//! without the other is refused).

use super::{ConfigError, boolean, err};
use crate::provider::BearerRules;

/// The settings, as the command line and environment give them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Bearer tokens of API clients")]
pub struct BearerArgs {
    /// Accept `Authorization: Bearer <access token>` from the provider on
    /// protected paths, without a session (needs API_AUDIENCE).
    #[arg(long, env = "SKIP_JWT_BEARER_TOKENS")]
    pub skip_jwt_bearer_tokens: Option<String>,
    /// The audience (`aud`) a bearer token must name: your API's identifier
    /// at the provider.
    #[arg(long, env = "API_AUDIENCE")]
    pub api_audience: Option<String>,
    /// Also accept JWT access tokens whose header `typ` is plain `JWT` (or
    /// absent) rather than RFC 9068's `at+jwt` (Keycloak, Entra ID, Auth0).
    #[arg(long, env = "BEARER_ALLOW_JWT_TYP")]
    pub bearer_allow_jwt_typ: Option<String>,
    /// The development provider's access tokens for API_AUDIENCE: `jwt`
    /// (RFC 9068, the default) or `opaque` (checked by introspection).
    #[arg(long, env = "DEV_PROVIDER_ACCESS_TOKENS")]
    pub dev_provider_access_tokens: Option<String>,
}

/// `DEV_PROVIDER_ACCESS_TOKENS`: whether the development provider issues
/// opaque access tokens rather than JWTs.
pub(super) fn dev_opaque(args: &BearerArgs) -> Result<bool, ConfigError> {
    match args.dev_provider_access_tokens.as_deref().map(str::trim) {
        None | Some("") | Some("jwt") => Ok(false),
        Some("opaque") => Ok(true),
        Some(other) => Err(err(format!(
            "DEV_PROVIDER_ACCESS_TOKENS must be jwt or opaque, got `{other}`."
        ))),
    }
}

/// Validates the settings: `None` when bearer tokens are not accepted.
pub(super) fn from_args(args: &BearerArgs) -> Result<Option<BearerRules>, ConfigError> {
    let flag = |var: &str, raw: &Option<String>| match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some(v) => boolean(var, v),
    };
    let on = flag("SKIP_JWT_BEARER_TOKENS", &args.skip_jwt_bearer_tokens)?;
    let allow_jwt_typ = flag("BEARER_ALLOW_JWT_TYP", &args.bearer_allow_jwt_typ)?;
    let audience = args.api_audience.as_deref().map(str::trim).filter(|a| !a.is_empty());
    match (on, audience) {
        (true, Some(audience)) => Ok(Some(BearerRules {
            audience: audience.to_owned(),
            allow_jwt_typ,
        })),
        (true, None) => Err(err(
            "SKIP_JWT_BEARER_TOKENS=true needs API_AUDIENCE: the audience (aud) your API's access tokens name, \
             so that tokens issued for other APIs are refused.",
        )),
        (false, Some(_)) => Err(err(
            "API_AUDIENCE is set but SKIP_JWT_BEARER_TOKENS is not true: set SKIP_JWT_BEARER_TOKENS=true to accept \
             bearer tokens, or unset API_AUDIENCE.",
        )),
        (false, None) if allow_jwt_typ => Err(err(
            "BEARER_ALLOW_JWT_TYP is set but SKIP_JWT_BEARER_TOKENS is not true.",
        )),
        (false, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(on: Option<&str>, aud: Option<&str>, typ: Option<&str>) -> BearerArgs {
        BearerArgs {
            skip_jwt_bearer_tokens: on.map(Into::into),
            api_audience: aud.map(Into::into),
            bearer_allow_jwt_typ: typ.map(Into::into),
            dev_provider_access_tokens: None,
        }
    }

    #[test]
    fn one_without_the_other_is_refused() {
        assert!(from_args(&args(None, None, None)).unwrap().is_none());
        assert!(from_args(&args(Some("false"), Some(""), None)).unwrap().is_none());
        let rules = from_args(&args(Some("true"), Some(" api://orders "), Some("yes")))
            .unwrap()
            .unwrap();
        assert_eq!(rules.audience, "api://orders");
        assert!(rules.allow_jwt_typ);
        let e = from_args(&args(Some("true"), None, None)).unwrap_err().to_string();
        assert!(e.starts_with("SKIP_JWT_BEARER_TOKENS=true needs API_AUDIENCE"), "{e}");
        let e = from_args(&args(None, Some("api"), None)).unwrap_err().to_string();
        assert!(e.starts_with("API_AUDIENCE is set but SKIP_JWT_BEARER_TOKENS"), "{e}");
        let e = from_args(&args(Some("maybe"), Some("api"), None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SKIP_JWT_BEARER_TOKENS must be true or false"), "{e}");
        assert!(from_args(&args(None, None, Some("true"))).is_err());
    }
}
