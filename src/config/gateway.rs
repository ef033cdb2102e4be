//! The gateway's settings: the upstream to protect (`UPSTREAM_URL`) or
//! forward-auth only (`FORWARD_AUTH`), where the gateway's own routes live,
//! public paths and per-path rules (`CONFIG_FILE`), cookies shared by
//! subdomains, and where `rd` may send a browser.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{ConfigError, boolean, err, parse_duration, parse_duration_allow_zero};
use crate::access::Rules;
use crate::gateway::paths::{PathRule, PathRules, Prefix, StepUp};

/// The settings, as the command line and environment give them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Gateway (login in front of another app)")]
pub struct GatewayArgs {
    /// The app to protect (http or https): every request that is not
    /// oidc-gate's own is passed to it once the browser is signed in.
    #[arg(long, env = "UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// Serve only the gateway's routes, for nginx `auth_request`, Caddy
    /// `forward_auth` or Traefik `ForwardAuth` (no UPSTREAM_URL needed).
    #[arg(long, env = "FORWARD_AUTH")]
    pub forward_auth: Option<String>,
    /// Where the gateway's own routes live (`/oauth2/start`, `/oauth2/callback`, …).
    #[arg(long, env = "ROUTE_PREFIX", default_value = "/oauth2")]
    pub route_prefix: String,
    /// Path prefixes served without sign-in (comma-separated; whole path
    /// segments, case-sensitive, matched after normalisation).
    #[arg(long, env = "PUBLIC_PATHS")]
    pub public_paths: Option<String>,
    /// A TOML file with public paths and per-path access rules.
    #[arg(long, env = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Share the sign-in with subdomains (e.g. `.example.com`): the session
    /// cookie gets this Domain and the `__Secure-` prefix.
    #[arg(long, env = "COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,
    /// Hosts `rd` may send the browser to besides PUBLIC_URL's (comma-separated;
    /// `.example.com` allows every subdomain of example.com).
    #[arg(long, env = "ALLOWED_REDIRECT_DOMAINS")]
    pub allowed_redirect_domains: Option<String>,
    /// Pass the client's Host header to the upstream (false: the upstream's own host).
    #[arg(long, env = "PASS_HOST_HEADER", default_value = "true")]
    pub pass_host_header: String,
    /// Time the upstream has to start its answer (then 504).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "30s")]
    pub upstream_timeout: String,
    /// Pass the user's access token to the upstream (X-Forwarded-Access-Token)
    /// and in forward-auth answers (X-Auth-Request-Access-Token).
    #[arg(long, env = "PASS_ACCESS_TOKEN", default_value = "false")]
    pub pass_access_token: String,
    /// Send `Authorization: Bearer <ID token>` to the upstream.
    #[arg(long, env = "PASS_AUTHORIZATION_HEADER", default_value = "false")]
    pub pass_authorization_header: String,
}

/// The validated gateway settings. Absent when no gateway setting is given:
/// then oidc-gate is the app of its own pages.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The app to pass requests to; `None`: forward-auth only.
    pub upstream: Option<Url>,
    /// Where the gateway's routes live: `/oauth2`, no trailing slash.
    pub prefix: String,
    /// Public paths and per-path rules.
    pub paths: PathRules,
    /// Pass the client's `Host` on.
    pub pass_host_header: bool,
    /// Until the upstream's response headers.
    pub upstream_timeout: Duration,
    /// Hand the access token over.
    pub pass_access_token: bool,
    /// Hand the ID token over as `Authorization: Bearer`.
    pub pass_authorization_header: bool,
}

/// Cookie and redirect settings that also exist outside the gateway.
#[derive(Debug, Clone, Default)]
pub struct SharedSignIn {
    /// The session cookie's Domain.
    pub cookie_domain: Option<String>,
    /// Hosts `rd`/`next` may point to (lowercase; a leading dot: any subdomain).
    pub redirect_domains: Vec<String>,
}

/// `CONFIG_FILE`: the gateway's paths and the providers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    public_paths: Vec<String>,
    #[serde(default)]
    paths: Vec<FilePathRule>,
    /// Taken by the provider settings before the gateway's are read.
    #[serde(default)]
    pub(super) providers: Vec<super::providers::FileProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePathRule {
    prefix: String,
    #[serde(default)]
    allowed_groups: Vec<String>,
    #[serde(default)]
    allowed_emails: Vec<String>,
    #[serde(default)]
    allowed_email_domains: Vec<String>,
    /// Step-up: the sign-in must be at most this old (`"15m"`, or seconds).
    max_age: Option<MaxAge>,
    /// Step-up: the sign-in's `acr` must be one of these.
    acr_values: Option<Vec<String>>,
}

/// `max_age` as a duration (`"15m"`, `"0s"`) or a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MaxAge {
    Seconds(u64),
    Duration(String),
}

/// Validates the gateway settings; `None` when neither `UPSTREAM_URL` nor
/// `FORWARD_AUTH` asks for a gateway. `global` are the access rules of
/// every sign-in, which the per-path rules come on top of.
pub(super) fn from_args(
    args: &GatewayArgs,
    file: Option<FileConfig>,
    global: &Rules,
) -> Result<Option<GatewayConfig>, ConfigError> {
    let forward_auth = match args.forward_auth.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) => boolean("FORWARD_AUTH", v)?,
    };
    let upstream = args.upstream_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    if upstream.is_none() && !forward_auth {
        for (var, set) in [
            ("PUBLIC_PATHS is a gateway setting", args.public_paths.is_some()),
            (
                "CONFIG_FILE's public_paths and [[paths]] are gateway settings",
                file.as_ref()
                    .is_some_and(|f| !f.public_paths.is_empty() || !f.paths.is_empty()),
            ),
        ] {
            if set {
                return Err(err(format!(
                    "{var}: set UPSTREAM_URL (reverse proxy) or FORWARD_AUTH=true too."
                )));
            }
        }
        return Ok(None);
    }
    let upstream = upstream.map(parse_upstream).transpose()?;
    let prefix = parse_prefix(&args.route_prefix)?;
    let mut public = list(args.public_paths.as_deref());
    let mut rules = Vec::new();
    if let Some(file) = file {
        public.extend(file.public_paths);
        for rule in file.paths {
            rules.push(path_rule(rule, global)?);
        }
    }
    let public = public
        .iter()
        .map(|p| {
            Prefix::new(p).ok_or_else(|| {
                err(format!(
                    "PUBLIC_PATHS entries must be absolute paths such as /static, got `{p}`."
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(p) = public.iter().find(|p| p.matches(&prefix)) {
        return Err(err(format!(
            "PUBLIC_PATHS entry `{p}` covers ROUTE_PREFIX `{prefix}`: the gateway's own routes are not the upstream's."
        )));
    }
    Ok(Some(GatewayConfig {
        upstream,
        prefix,
        paths: PathRules::new(public, rules),
        pass_host_header: boolean("PASS_HOST_HEADER", &args.pass_host_header)?,
        upstream_timeout: parse_duration("UPSTREAM_TIMEOUT", &args.upstream_timeout)?,
        pass_access_token: boolean("PASS_ACCESS_TOKEN", &args.pass_access_token)?,
        pass_authorization_header: boolean("PASS_AUTHORIZATION_HEADER", &args.pass_authorization_header)?,
    }))
}

/// `COOKIE_DOMAIN` and `ALLOWED_REDIRECT_DOMAINS`, checked against `PUBLIC_URL`.
pub(super) fn shared_sign_in(args: &GatewayArgs, public_url: &Url) -> Result<SharedSignIn, ConfigError> {
    let host = public_url.host_str().unwrap_or_default().to_ascii_lowercase();
    let cookie_domain = match args.cookie_domain.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => {
            let domain = raw.to_ascii_lowercase();
            let bare = domain.trim_start_matches('.');
            let covers = host == bare || host.ends_with(&format!(".{bare}"));
            if bare.is_empty() || !bare.contains('.') || !covers {
                return Err(err(format!(
                    "COOKIE_DOMAIN must be PUBLIC_URL's host or a parent domain of it (such as .example.com \
                     for gate.example.com), got `{raw}`."
                )));
            }
            Some(domain)
        }
    };
    let redirect_domains = list(args.allowed_redirect_domains.as_deref())
        .into_iter()
        .map(|d| {
            let d = d.to_ascii_lowercase();
            let bare = d.trim_start_matches('.');
            if bare.is_empty() || bare.contains(['/', ':', '@', '*']) {
                return Err(err(format!(
                    "ALLOWED_REDIRECT_DOMAINS entries must be host names such as app.example.com or \
                     .example.com, got `{d}`."
                )));
            }
            Ok(d)
        })
        .collect::<Result<_, _>>()?;
    Ok(SharedSignIn {
        cookie_domain,
        redirect_domains,
    })
}

fn parse_upstream(raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|_| err(format!("UPSTREAM_URL must be an http(s) URL, got `{raw}`.")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(err(format!("UPSTREAM_URL must be an http(s) URL, got `{raw}`.")));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(err(format!(
            "UPSTREAM_URL must not have credentials, a query or a fragment, got `{raw}`."
        )));
    }
    Ok(url)
}

fn parse_prefix(raw: &str) -> Result<String, ConfigError> {
    let prefix = raw.trim().trim_end_matches('/');
    let valid = prefix.starts_with('/')
        && prefix.len() > 1
        && prefix[1..].split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        });
    if !valid {
        return Err(err(format!(
            "ROUTE_PREFIX must be a path such as /oauth2 (letters, digits, - _ . ~), got `{raw}`."
        )));
    }
    Ok(prefix.to_owned())
}

pub(super) fn read_file(path: &PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("CONFIG_FILE `{}` could not be read: {e}.", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        err(format!(
            "CONFIG_FILE `{}` is not valid: {}",
            path.display(),
            e.to_string().trim()
        ))
    })
}

fn path_rule(rule: FilePathRule, global: &Rules) -> Result<PathRule, ConfigError> {
    let prefix = Prefix::new(&rule.prefix).ok_or_else(|| {
        err(format!(
            "CONFIG_FILE: a [[paths]] prefix must be an absolute path such as /admin, got `{}`.",
            rule.prefix
        ))
    })?;
    let max_age = match rule.max_age {
        None => None,
        Some(MaxAge::Seconds(s)) => Some(s),
        Some(MaxAge::Duration(raw)) => {
            Some(parse_duration_allow_zero(&format!("CONFIG_FILE: [[paths]] `{prefix}` max_age"), &raw)?.as_secs())
        }
    };
    if let Some(values) = &rule.acr_values
        && (values.is_empty() || values.iter().any(|v| v.is_empty() || !v.chars().all(acr_char)))
    {
        return Err(err(format!(
            "CONFIG_FILE: [[paths]] `{prefix}` acr_values must be a non-empty list of values such as \"mfa\" \
             (printable ASCII without spaces, quotes or backslashes)."
        )));
    }
    let step_up = StepUp {
        max_age,
        acr_values: rule.acr_values,
    };
    let no_access_rule =
        rule.allowed_groups.is_empty() && rule.allowed_emails.is_empty() && rule.allowed_email_domains.is_empty();
    if no_access_rule && step_up.is_none() {
        return Err(err(format!(
            "CONFIG_FILE: [[paths]] `{prefix}` sets no rule (allowed_groups, allowed_emails, allowed_email_domains, max_age or acr_values)."
        )));
    }
    let rules = match no_access_rule {
        // Step-up only: whoever may sign in may see the path.
        true => Rules::default(),
        false => global
            .for_path(rule.allowed_email_domains, rule.allowed_emails, rule.allowed_groups)
            .map_err(|e| err(format!("CONFIG_FILE: [[paths]] `{prefix}`: {e}")))?,
    };
    Ok(PathRule { prefix, rules, step_up })
}

/// A character an `acr` value may have: it goes into a quoted string of
/// `WWW-Authenticate` and a space-separated request parameter.
fn acr_char(c: char) -> bool {
    c.is_ascii_graphic() && c != '"' && c != '\\'
}

fn list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
