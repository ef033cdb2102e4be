//! Rate limit settings: `RATE_LIMITS` (all on or off) and one
//! `RATE_LIMIT_…` per route class, each `N/PERIOD` (N requests at once,
//! the bucket refilled over PERIOD) or `off`.

use std::num::NonZeroU32;

use super::{ConfigError, boolean, err};
use crate::ratelimit::{Rate, RouteClass};

/// `RATE_LIMIT_LOGIN`'s default: a burst of 100, refilled over a minute.
pub const DEFAULT_LOGIN: &str = "100/1m";
/// `RATE_LIMIT_CALLBACK`'s default (a sign-in has one callback).
pub const DEFAULT_CALLBACK: &str = "100/1m";
/// `RATE_LIMIT_BACKCHANNEL_LOGOUT`'s default: roomier, since all of these
/// come from the provider's few addresses.
pub const DEFAULT_BACKCHANNEL_LOGOUT: &str = "300/1m";
/// `RATE_LIMIT_BEARER`'s default: bearer tokens not verified yet (a token
/// already verified is served from the cache, uncounted).
pub const DEFAULT_BEARER: &str = "300/1m";

/// The settings, as the command line and environment give them (an empty
/// value is the default).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Rate limits (per client address, on the sign-in routes)")]
pub struct RateLimitArgs {
    /// Limit the sign-in routes per client address (false: no limit at all).
    #[arg(long = "rate-limits", env = "RATE_LIMITS", default_value = "true")]
    pub enabled: String,
    /// `/login` and `/oauth2/start` (and protected pages sending an anonymous
    /// browser to the provider): N/PERIOD (N requests at once, refilled
    /// over PERIOD, e.g. 100/1m, 20/30s) or `off`.
    #[arg(long = "rate-limit-login", env = "RATE_LIMIT_LOGIN", default_value = DEFAULT_LOGIN)]
    pub login: String,
    /// `/callback` and `/oauth2/callback`: N/PERIOD or `off`.
    #[arg(long = "rate-limit-callback", env = "RATE_LIMIT_CALLBACK", default_value = DEFAULT_CALLBACK)]
    pub callback: String,
    /// `/backchannel-logout` (and under ROUTE_PREFIX): N/PERIOD or `off`.
    #[arg(
        long = "rate-limit-backchannel-logout",
        env = "RATE_LIMIT_BACKCHANNEL_LOGOUT",
        default_value = DEFAULT_BACKCHANNEL_LOGOUT
    )]
    pub backchannel_logout: String,
    /// Bearer tokens to verify (SKIP_JWT_BEARER_TOKENS; cached ones are not counted): N/PERIOD or `off`.
    #[arg(long = "rate-limit-bearer", env = "RATE_LIMIT_BEARER", default_value = DEFAULT_BEARER)]
    pub bearer: String,
}

/// The limit of each route class; `None`: not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `/login`, `/oauth2/start`.
    pub login: Option<Rate>,
    /// `/callback`, `/oauth2/callback`.
    pub callback: Option<Rate>,
    /// `/backchannel-logout`, `/oauth2/backchannel-logout`.
    pub backchannel_logout: Option<Rate>,
    /// Bearer tokens not in the verification cache.
    pub bearer: Option<Rate>,
}

impl RateLimitConfig {
    /// The limit of `class`.
    pub fn rate(&self, class: RouteClass) -> Option<Rate> {
        match class {
            RouteClass::Login => self.login,
            RouteClass::Callback => self.callback,
            RouteClass::BackchannelLogout => self.backchannel_logout,
            RouteClass::Bearer => self.bearer,
        }
    }
}

/// Validates the settings (all of them, even with `RATE_LIMITS=false`).
pub(super) fn from_args(args: &RateLimitArgs) -> Result<RateLimitConfig, ConfigError> {
    let enabled = match args.enabled.trim() {
        "" => true,
        raw => boolean("RATE_LIMITS", raw)?,
    };
    let config = RateLimitConfig {
        login: rate("RATE_LIMIT_LOGIN", &args.login, DEFAULT_LOGIN)?,
        callback: rate("RATE_LIMIT_CALLBACK", &args.callback, DEFAULT_CALLBACK)?,
        backchannel_logout: rate(
            "RATE_LIMIT_BACKCHANNEL_LOGOUT",
            &args.backchannel_logout,
            DEFAULT_BACKCHANNEL_LOGOUT,
        )?,
        bearer: rate("RATE_LIMIT_BEARER", &args.bearer, DEFAULT_BEARER)?,
    };
    Ok(if enabled { config } else { RateLimitConfig::default() })
}

/// `N/PERIOD` or `off`; PERIOD is a duration like the other settings'
/// (`30s`, `1m`, `1h`), or a bare unit (`100/min`).
fn rate(var: &str, raw: &str, default: &str) -> Result<Option<Rate>, ConfigError> {
    let value = match raw.trim() {
        "" => default,
        v => v,
    };
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        err(format!(
            "{var} must be `off` or a number of requests per period like 100/1m or 20/30s, got `{raw}`."
        ))
    };
    let (burst, period) = value.split_once('/').ok_or_else(bad)?;
    let burst: NonZeroU32 = burst.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let period = match period.starts_with(|c: char| c.is_ascii_alphabetic()) {
        true => humantime::parse_duration(&format!("1{period}")),
        false => humantime::parse_duration(period),
    }
    .map_err(|_| bad())?;
    if period.is_zero() {
        return Err(err(format!("{var}'s period must be longer than zero, got `{raw}`.")));
    }
    Rate::new(burst, period).map(Some).ok_or_else(|| {
        err(format!(
            "{var}'s period is too short for {burst} requests, got `{raw}`."
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(burst: u32, secs: u64) -> Option<Rate> {
        Rate::new(NonZeroU32::new(burst).unwrap(), Duration::from_secs(secs))
    }

    #[test]
    fn defaults_limit_every_class_and_empty_means_default() {
        use clap::Parser;
        let parsed = super::super::Args::try_parse_from(["oidc-gate"]).unwrap();
        let defaults = from_args(&parsed.rate_limits).unwrap();
        assert_eq!(defaults.login, limit(100, 60));
        assert_eq!(defaults.callback, limit(100, 60));
        assert_eq!(defaults.backchannel_logout, limit(300, 60));
        assert_eq!(from_args(&RateLimitArgs::default()).unwrap(), defaults);
    }

    #[test]
    fn rates_read_as_requests_per_period() {
        for (raw, expected) in [
            ("20/1m", limit(20, 60)),
            (" 20 / 60s ", limit(20, 60)),
            ("20/min", limit(20, 60)),
            ("5/s", limit(5, 1)),
            ("1000/1h", limit(1000, 3600)),
            ("OFF", None),
        ] {
            assert_eq!(rate("RATE_LIMIT_LOGIN", raw, DEFAULT_LOGIN).unwrap(), expected, "{raw}");
        }
    }

    #[test]
    fn switched_off_all_at_once_or_one_by_one() {
        let off = RateLimitArgs {
            enabled: "false".into(),
            ..RateLimitArgs::default()
        };
        assert_eq!(from_args(&off).unwrap(), RateLimitConfig::default());
        let login_off = RateLimitArgs {
            login: "off".into(),
            ..RateLimitArgs::default()
        };
        let config = from_args(&login_off).unwrap();
        assert_eq!((config.login, config.callback), (None, limit(100, 60)));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&str, RateLimitArgs); 7] = [
            (
                "RATE_LIMITS must be true or false",
                RateLimitArgs {
                    enabled: "sometimes".into(),
                    ..Default::default()
                },
            ),
            (
                "RATE_LIMIT_LOGIN must be `off` or a number",
                RateLimitArgs {
                    login: "100".into(),
                    ..Default::default()
                },
            ),
            (
                "RATE_LIMIT_LOGIN must be",
                RateLimitArgs {
                    login: "0/1m".into(),
                    ..Default::default()
                },
            ),
            (
                "RATE_LIMIT_CALLBACK must be",
                RateLimitArgs {
                    callback: "10/soon".into(),
                    ..Default::default()
                },
            ),
            (
                "RATE_LIMIT_CALLBACK must be",
                RateLimitArgs {
                    callback: "-1/1m".into(),
                    ..Default::default()
                },
            ),
            (
                "RATE_LIMIT_BACKCHANNEL_LOGOUT's period must be longer than zero",
                RateLimitArgs {
                    backchannel_logout: "10/0s".into(),
                    ..Default::default()
                },
            ),
            // Checked even when every limit is off.
            (
                "RATE_LIMIT_LOGIN's period is too short",
                RateLimitArgs {
                    enabled: "off".into(),
                    login: "1000/1ns".into(),
                    ..Default::default()
                },
            ),
        ];
        for (expected, args) in cases {
            let e = from_args(&args).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{expected}: {e}");
        }
    }
}
