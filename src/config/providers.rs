//! Several OpenID providers at once: `CONFIG_FILE`'s `[[providers]]`, each
//! with an id, a display name, its client registration, its scopes and
//! optional access rules of its own. The `OIDC_*` variables remain the
//! one-provider shorthand; both at once are refused.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::{ClientConfig, ConfigError, GOOGLE_ISSUER, err, is_loopback};
use crate::access::Rules;
use crate::secret::Secret;

/// Longest provider id (it appears in URLs and logs).
const MAX_ID_LEN: usize = 32;

/// One `[[providers]]` entry as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileProvider {
    id: String,
    name: Option<String>,
    issuer: String,
    client_id: String,
    /// Never in a `Debug` print.
    client_secret: Option<Secret>,
    client_secret_file: Option<PathBuf>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    allowed_email_domains: Vec<String>,
    #[serde(default)]
    allowed_emails: Vec<String>,
    #[serde(default)]
    allowed_groups: Vec<String>,
}

/// A provider of the list, validated.
#[derive(Debug, Clone)]
pub struct NamedClient {
    /// `id`: lowercase letters, digits, `-` and `_` (in `?provider=` and the redirect URI).
    pub id: String,
    /// `name`: the chooser's button text (default: the id).
    pub name: String,
    /// How this app is registered there.
    pub client: ClientConfig,
    /// Scopes to request (`OIDC_SCOPES` unless the entry sets its own).
    pub scopes: Option<Vec<String>>,
    /// Rules of this provider's sign-ins, judged on top of the global ones.
    pub rules: Option<Rules>,
}

/// Validates the entries (`global`: the rules every sign-in must pass).
pub(super) fn from_file(entries: Vec<FileProvider>, global: &Rules) -> Result<Vec<NamedClient>, ConfigError> {
    let mut out: Vec<NamedClient> = Vec::new();
    for entry in entries {
        let named = one(entry, global)?;
        if out.iter().any(|o| o.id == named.id) {
            return Err(err(format!(
                "CONFIG_FILE: two [[providers]] have the id `{}`.",
                named.id
            )));
        }
        if out.iter().any(|o| o.client.issuer == named.client.issuer) {
            return Err(err(format!(
                "CONFIG_FILE: two [[providers]] have the issuer `{}` (users are told apart by issuer).",
                named.client.issuer
            )));
        }
        out.push(named);
    }
    Ok(out)
}

fn one(entry: FileProvider, global: &Rules) -> Result<NamedClient, ConfigError> {
    let id = entry.id.trim().to_owned();
    let id_ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        return Err(err(format!(
            "CONFIG_FILE: a [[providers]] id must be 1 to {MAX_ID_LEN} lowercase letters, digits, - or _, got `{}`.",
            entry.id
        )));
    }
    let at = |what: &str| format!("CONFIG_FILE: [[providers]] `{id}` {what}");
    let issuer = check_issuer(&at("issuer"), &entry.issuer)?;
    if entry.client_id.trim().is_empty() {
        return Err(err(at("needs a client_id.")));
    }
    let secret = match (entry.client_secret, entry.client_secret_file) {
        (Some(s), None) => s,
        (None, Some(path)) => Secret::new(
            std::fs::read_to_string(&path)
                .map_err(|e| {
                    err(at(&format!(
                        "client_secret_file `{}` could not be read: {e}.",
                        path.display()
                    )))
                })?
                .trim(),
        ),
        _ => return Err(err(at("needs one of client_secret or client_secret_file."))),
    };
    if secret.expose().is_empty() {
        return Err(err(at("has an empty client secret.")));
    }
    if let Some(scopes) = &entry.scopes
        && !scopes.iter().any(|s| s == "openid")
    {
        return Err(err(at("scopes must include `openid`.")));
    }
    let no_rule =
        entry.allowed_email_domains.is_empty() && entry.allowed_emails.is_empty() && entry.allowed_groups.is_empty();
    let rules = match no_rule {
        true => None,
        false => Some(
            global
                .for_provider(
                    entry.allowed_email_domains,
                    entry.allowed_emails,
                    entry.allowed_groups,
                    issuer.trim_end_matches('/') == GOOGLE_ISSUER,
                )
                .map_err(|e| err(at(&format!(": {e}"))))?,
        ),
    };
    Ok(NamedClient {
        name: entry
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| id.clone()),
        id,
        client: ClientConfig {
            issuer,
            client_id: entry.client_id.trim().to_owned(),
            client_secret: secret,
        },
        scopes: entry.scopes,
        rules,
    })
}

/// An issuer URL (`name` says which setting): https (http on loopback
/// hosts), no query or fragment.
pub(super) fn check_issuer(name: &str, issuer: &str) -> Result<String, ConfigError> {
    let url = Url::parse(issuer).map_err(|_| err(format!("{name} must be an absolute URL, got `{issuer}`.")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(err(format!(
                "{name} must use https (plain http is only allowed on loopback hosts), got `{issuer}`."
            )));
        }
        _ => return Err(err(format!("{name} must be an https URL, got `{issuer}`."))),
    }
    if url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
        return Err(err(format!(
            "{name} must not have a query or fragment, got `{issuer}`."
        )));
    }
    Ok(issuer.to_owned())
}
