//! Who may sign in: the access rules (`ALLOWED_EMAIL_DOMAINS`,
//! `ALLOWED_EMAILS`, `ALLOWED_GROUPS`, `REQUIRE_EMAIL_VERIFIED`) built from
//! the configuration, and [`Rules::check`], a pure judgement of a user's
//! [`Claims`] with a reason code for every refusal.
//!
//! The claims are taken from a validated login and kept in the session, so
//! the same check runs at sign-in and again on every request.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ConfigError, GOOGLE_ISSUER, ProviderChoice, boolean, err};
use crate::provider::{ClaimPath, Login, VerifiedIdToken};

/// Groups kept in a session, at most (the allowed ones always fit).
const MAX_GROUPS: usize = 64;
/// Longest group name kept in a session (bytes); longer ones are dropped
/// unless they are allowed.
const MAX_GROUP_LEN: usize = 256;
/// Longest name kept for the refusal page (characters).
const MAX_NAME_LEN: usize = 128;

/// The settings, as the command line and environment give them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Who may sign in")]
pub struct AccessArgs {
    /// Only accounts whose email address is in one of these domains
    /// (comma-separated, case-insensitive, exact: `example.com` does not
    /// admit `evil-example.com`). With Google, the account's Workspace
    /// domain (`hd`) must be listed too.
    #[arg(long, env = "ALLOWED_EMAIL_DOMAINS")]
    pub allowed_email_domains: Option<String>,
    /// Only these email addresses (comma-separated, case-insensitive), or
    /// `@/path/to/file` with one per line (`#` comments allowed).
    #[arg(long, env = "ALLOWED_EMAILS")]
    pub allowed_emails: Option<String>,
    /// Only members of one of these groups (comma-separated, exact), or
    /// `@/path/to/file` with one per line; read from GROUPS_CLAIM.
    #[arg(long, env = "ALLOWED_GROUPS")]
    pub allowed_groups: Option<String>,
    /// The claim holding the user's groups: a name, or a dotted path such as
    /// `realm_access.roles` (Keycloak). Read from the ID token, else UserInfo.
    #[arg(long, env = "GROUPS_CLAIM", default_value = "groups")]
    pub groups_claim: String,
    /// Require `email_verified` to be true [default: true when
    /// ALLOWED_EMAIL_DOMAINS or ALLOWED_EMAILS is set, else false].
    #[arg(long, env = "REQUIRE_EMAIL_VERIFIED")]
    pub require_email_verified: Option<String>,
}

/// The access rules. With none set ([`Rules::is_open`]), anyone the
/// provider signs in gets in.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Lowercase domains.
    domains: HashSet<String>,
    /// Lowercase addresses.
    emails: HashSet<String>,
    /// Exact group names.
    groups: HashSet<String>,
    groups_claim: ClaimPath,
    require_email_verified: bool,
    /// The provider is Google: its `hd` claim must be present for the domain rule.
    google: bool,
    open: bool,
    /// Claims are kept in the session even with no rule set (the gateway
    /// hands them to the app, and its per-path rules judge them).
    keep: bool,
    /// Groups kept first when a user has more than fit: the allowed ones
    /// here and in per-path rules.
    priority_groups: HashSet<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Self::build(
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
            default_groups_claim(),
            None,
            false,
        )
    }
}

/// Why someone may not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An email rule is set, and the provider gave no email address.
    EmailMissing,
    /// `email_verified` is not true (or missing) and it is required.
    EmailUnverified,
    /// The address's domain is not in `ALLOWED_EMAIL_DOMAINS` (nor the address in `ALLOWED_EMAILS`).
    EmailDomainNotAllowed,
    /// The address is not in `ALLOWED_EMAILS` (and no domain is allowed).
    EmailNotAllowed,
    /// The domain is allowed, but the account's `hd` (Google Workspace) is missing or another.
    HdNotAllowed,
    /// None of the user's groups is in `ALLOWED_GROUPS`.
    GroupNotAllowed,
}

impl Refusal {
    /// The reason code, shown on the page and logged.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::EmailMissing => "email_missing",
            Refusal::EmailUnverified => "email_unverified",
            Refusal::EmailDomainNotAllowed => "email_domain_not_allowed",
            Refusal::EmailNotAllowed => "email_not_allowed",
            Refusal::HdNotAllowed => "hd_not_allowed",
            Refusal::GroupNotAllowed => "group_not_allowed",
        }
    }

    /// One sentence for the user.
    pub fn sentence(self) -> &'static str {
        match self {
            Refusal::EmailMissing => {
                "The sign-in provider did not tell us this account's email address, which this site needs."
            }
            Refusal::EmailUnverified => "This account's email address is not verified at the sign-in provider.",
            Refusal::EmailDomainNotAllowed => "Accounts with this email domain may not sign in here.",
            Refusal::EmailNotAllowed => "This email address is not among those that may sign in here.",
            Refusal::HdNotAllowed => {
                "Only accounts of the organisation's own Google Workspace may sign in here, and this is not one."
            }
            Refusal::GroupNotAllowed => "This account is not in a group that may sign in here.",
        }
    }
}

/// What the rules look at, taken from a login and kept in the session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `email_verified` (missing: not verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Google's `hd`: the account's Workspace domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
    /// The user's groups (bounded); `None` when no group rule was set at
    /// sign-in, so they were not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// `name`, for the refusal page only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `preferred_username`, kept when the gateway hands it to the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

impl Claims {
    /// Who the user is at the provider, for the refusal page.
    pub fn who(&self) -> Option<&str> {
        self.email.as_deref().or(self.name.as_deref())
    }
}

impl Rules {
    /// Validates the settings for `provider`.
    pub fn from_args(args: &AccessArgs, provider: &ProviderChoice) -> Result<Self, ConfigError> {
        let domains = list("ALLOWED_EMAIL_DOMAINS", args.allowed_email_domains.as_deref(), false)?
            .into_iter()
            .map(|d| domain("ALLOWED_EMAIL_DOMAINS", &d))
            .collect::<Result<_, _>>()?;
        let emails = list("ALLOWED_EMAILS", args.allowed_emails.as_deref(), true)?
            .into_iter()
            .map(|e| email("ALLOWED_EMAILS", &e))
            .collect::<Result<_, _>>()?;
        let groups = list("ALLOWED_GROUPS", args.allowed_groups.as_deref(), true)?
            .into_iter()
            .collect();
        let groups_claim = match args.groups_claim.trim() {
            "" => default_groups_claim(),
            raw => ClaimPath::new(raw).ok_or_else(|| {
                err(format!(
                    "GROUPS_CLAIM must be a claim name or a dotted path such as realm_access.roles, got `{raw}`."
                ))
            })?,
        };
        let require_email_verified = match args.require_email_verified.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(boolean("REQUIRE_EMAIL_VERIFIED", v)?),
        };
        let google = match provider {
            ProviderChoice::Configured(client) => client.issuer.trim_end_matches('/') == GOOGLE_ISSUER,
            ProviderChoice::Listed(_) | ProviderChoice::Development => false,
        };
        Ok(Self::build(
            domains,
            emails,
            groups,
            groups_claim,
            require_email_verified,
            google,
        ))
    }

    fn build(
        domains: HashSet<String>,
        emails: HashSet<String>,
        groups: HashSet<String>,
        groups_claim: ClaimPath,
        require_email_verified: Option<bool>,
        google: bool,
    ) -> Self {
        let email_rule = !domains.is_empty() || !emails.is_empty();
        let require_email_verified = require_email_verified.unwrap_or(email_rule);
        let open = !email_rule && groups.is_empty() && !require_email_verified;
        Self {
            priority_groups: groups.clone(),
            domains,
            emails,
            groups,
            groups_claim,
            require_email_verified,
            google,
            open,
            keep: false,
        }
    }

    /// Rules for one path of the gateway (`CONFIG_FILE`'s `[[paths]]`),
    /// judged on top of these global ones, with their groups claim and
    /// provider.
    pub fn for_path(
        &self,
        domains: Vec<String>,
        emails: Vec<String>,
        groups: Vec<String>,
    ) -> Result<Self, ConfigError> {
        let domains = domains
            .iter()
            .map(|d| domain("allowed_email_domains", d))
            .collect::<Result<_, _>>()?;
        let emails = emails
            .iter()
            .map(|e| email("allowed_emails", e))
            .collect::<Result<_, _>>()?;
        Ok(Self::build(
            domains,
            emails,
            groups.into_iter().collect(),
            self.groups_claim.clone(),
            Some(self.require_email_verified),
            self.google,
        ))
    }

    /// Rules of one provider (`CONFIG_FILE`'s `[[providers]]`), judged at
    /// its sign-ins on top of these global ones, with their groups claim;
    /// `google`: that provider is Google (its `hd` counts).
    pub fn for_provider(
        &self,
        domains: Vec<String>,
        emails: Vec<String>,
        groups: Vec<String>,
        google: bool,
    ) -> Result<Self, ConfigError> {
        let mut rules = self.for_path(domains, emails, groups)?;
        rules.google = google;
        Ok(rules)
    }

    /// Keeps every user's claims in the session, groups included, with
    /// `also_wanted` groups (of per-path rules) kept first: what the
    /// gateway needs to pass the identity on and judge per-path rules.
    pub fn keeping_claims(mut self, also_wanted: impl IntoIterator<Item = String>) -> Self {
        self.keep = true;
        self.priority_groups.extend(also_wanted);
        self
    }

    /// Whether a login's claims are kept in its session.
    pub fn keeps_claims(&self) -> bool {
        self.keep || !self.open
    }

    /// The groups these rules allow (empty: no group rule).
    pub fn allowed_groups(&self) -> impl Iterator<Item = &String> {
        self.groups.iter()
    }

    /// No rule is set: anyone the provider signs in gets in, and nothing is
    /// checked or kept per request.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The rules in words, one a line, as the settings name them (for
    /// `oidc-gate check`); empty when no rule is set.
    pub fn describe(&self) -> Vec<String> {
        let sorted = |set: &HashSet<String>| {
            let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.join(", ")
        };
        let mut lines = Vec::new();
        if !self.domains.is_empty() {
            let hd = if self.google {
                " (and the Google Workspace domain, hd)"
            } else {
                ""
            };
            lines.push(format!("ALLOWED_EMAIL_DOMAINS: {}{hd}", sorted(&self.domains)));
        }
        if !self.emails.is_empty() {
            lines.push(format!("ALLOWED_EMAILS: {} addresses", self.emails.len()));
        }
        if !self.groups.is_empty() {
            lines.push(format!(
                "ALLOWED_GROUPS: {} (claim {})",
                sorted(&self.groups),
                self.groups_claim.as_str()
            ));
        }
        if self.require_email_verified {
            lines.push("REQUIRE_EMAIL_VERIFIED: the email address must be verified".to_owned());
        }
        lines
    }

    /// Claims the provider should complete from UserInfo when the ID token lacks them.
    pub fn wanted_claims(&self) -> Vec<ClaimPath> {
        if self.reads_groups() {
            vec![self.groups_claim.clone()]
        } else {
            Vec::new()
        }
    }

    /// Groups are read at sign-in: a group rule needs them, or they are kept.
    fn reads_groups(&self) -> bool {
        self.keep || !self.groups.is_empty()
    }

    /// Extra authorization request parameters: Google's `hd` hint when
    /// exactly one domain is allowed (it only preselects accounts; the
    /// check is what counts).
    pub fn authorization_params(&self) -> Vec<(String, String)> {
        match (self.google, self.domains.iter().next()) {
            (true, Some(domain)) if self.domains.len() == 1 => vec![("hd".to_owned(), domain.clone())],
            _ => Vec::new(),
        }
    }

    /// What the rules need from a validated login: the ID token's claims,
    /// completed from UserInfo where it lacks them.
    pub fn claims_of(&self, login: &Login) -> Claims {
        self.claims_of_id_token(&login.id_token, &login.userinfo_claims)
    }

    /// What the rules need from a validated ID token (of a sign-in or a
    /// refresh) and UserInfo's `userinfo` claims.
    pub fn claims_of_id_token(&self, token: &VerifiedIdToken, userinfo: &serde_json::Map<String, Value>) -> Claims {
        let find = |path: &ClaimPath| path.find(&token.claims).or_else(|| path.find(userinfo));
        Claims {
            email: token.email.clone(),
            email_verified: token.email_verified,
            name: token.name.as_ref().map(|n| n.chars().take(MAX_NAME_LEN).collect()),
            ..self.other_claims(find)
        }
    }

    /// Whether a session keeps claims for these (global) rules or those of
    /// its provider, `own` (see [`Rules::kept_claims`]).
    pub fn keep_claims_with(&self, own: Option<&Rules>) -> bool {
        self.keeps_claims() || own.is_some()
    }

    /// The claims a session keeps for these (global) rules and those of its
    /// provider, `own`: these rules' reading, with the groups of the
    /// provider's groups claim when these read none; `None` when neither
    /// keeps claims. At sign-in and at each refresh that brings an ID token.
    pub fn kept_claims(
        &self,
        own: Option<&Rules>,
        token: &VerifiedIdToken,
        userinfo: &serde_json::Map<String, Value>,
    ) -> Option<Claims> {
        if !self.keep_claims_with(own) {
            return None;
        }
        // Kept for both rules: the provider's may read groups these do not.
        let mut claims = self.claims_of_id_token(token, userinfo);
        if let Some(own) = own
            && claims.groups.is_none()
        {
            claims.groups = own.claims_of_id_token(token, userinfo).groups;
        }
        Some(claims)
    }

    /// What the rules need from a bearer token's claims (a JWT access
    /// token's, or the provider's introspection answer): the same claims
    /// as at sign-in, read from the token alone.
    pub fn claims_of_token(&self, claims: &serde_json::Map<String, Value>) -> Claims {
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        Claims {
            email: text("email").map(str::to_owned),
            email_verified: match claims.get("email_verified") {
                Some(Value::Bool(b)) => Some(*b),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            },
            name: text("name").map(|n| n.chars().take(MAX_NAME_LEN).collect()),
            ..self.other_claims(|path| path.find(claims))
        }
    }

    /// `hd`, the groups and `preferred_username`, as `find` finds them.
    fn other_claims<'a>(&self, find: impl Fn(&ClaimPath) -> Option<&'a Value>) -> Claims {
        let hd_path = ClaimPath::new("hd").expect("a plain name");
        let username_path = ClaimPath::new("preferred_username").expect("a plain name");
        let groups = self.reads_groups().then(|| {
            let all = find(&self.groups_claim).map(strings).unwrap_or_default();
            self.bounded(all)
        });
        Claims {
            hd: find(&hd_path).and_then(Value::as_str).map(str::to_owned),
            groups,
            preferred_username: self
                .keep
                .then(|| find(&username_path))
                .flatten()
                .and_then(Value::as_str)
                .map(|n| n.chars().take(MAX_NAME_LEN).collect()),
            ..Claims::default()
        }
    }

    /// The groups worth keeping: every allowed one the user has, then others
    /// up to the bound (so a session stays small whatever the provider sends).
    fn bounded(&self, all: Vec<String>) -> Vec<String> {
        let (mut kept, others): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|g| self.priority_groups.contains(g));
        kept.sort();
        kept.dedup();
        let room = MAX_GROUPS.saturating_sub(kept.len());
        kept.extend(others.into_iter().filter(|g| g.len() <= MAX_GROUP_LEN).take(room));
        kept
    }

    /// Whether `claims` hold what these rules look at: a session signed in
    /// before a group rule was set has no groups to judge.
    pub fn can_judge(&self, claims: &Claims) -> bool {
        self.groups.is_empty() || claims.groups.is_some()
    }

    /// Judges a user: the email rule (an allowed domain or a listed address,
    /// if either is set) and the group rule (if set) must both pass.
    pub fn check(&self, claims: &Claims) -> Result<(), Refusal> {
        if self.open {
            return Ok(());
        }
        let email_rule = !self.domains.is_empty() || !self.emails.is_empty();
        if email_rule || self.require_email_verified {
            let Some(email) = claims.email.as_deref().filter(|e| !e.is_empty()) else {
                return Err(Refusal::EmailMissing);
            };
            if self.require_email_verified && claims.email_verified != Some(true) {
                return Err(Refusal::EmailUnverified);
            }
            if email_rule {
                self.check_email(email, claims.hd.as_deref())?;
            }
        }
        if !self.groups.is_empty() {
            let groups = claims.groups.as_deref().unwrap_or_default();
            if !groups.iter().any(|g| self.groups.contains(g)) {
                return Err(Refusal::GroupNotAllowed);
            }
        }
        Ok(())
    }

    fn check_email(&self, email: &str, hd: Option<&str>) -> Result<(), Refusal> {
        let email = email.to_lowercase();
        if self.emails.contains(&email) {
            return Ok(());
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d);
        if !domain.is_some_and(|d| self.domains.contains(d)) {
            return Err(match self.domains.is_empty() {
                true => Refusal::EmailNotAllowed,
                false => Refusal::EmailDomainNotAllowed,
            });
        }
        // Google lets anyone make an account with any address they can
        // receive mail at: only `hd` says the organisation manages it.
        // Another provider's `hd`, when sent, must be allowed too.
        match hd.map(str::to_lowercase) {
            Some(hd) if self.domains.contains(&hd) => Ok(()),
            None if !self.google => Ok(()),
            _ => Err(Refusal::HdNotAllowed),
        }
    }
}

fn default_groups_claim() -> ClaimPath {
    ClaimPath::new("groups").expect("a plain name")
}

/// The strings of a claim: an array of strings (other members ignored) or one string.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A comma-separated list, or (when `files`) `@path` to a file with one
/// entry per line, blank lines and `#` comments skipped. Unset or blank: empty.
pub(crate) fn list(var: &str, raw: Option<&str>, files: bool) -> Result<Vec<String>, ConfigError> {
    let raw = raw.map(str::trim).unwrap_or_default();
    if let Some(path) = raw.strip_prefix('@').filter(|_| files) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("{var} names the file `{path}`, which cannot be read: {e}.")))?;
        let entries: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if entries.is_empty() {
            return Err(err(format!("{var} names the file `{path}`, which lists nothing.")));
        }
        return Ok(entries);
    }
    Ok(raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect())
}

fn domain(var: &str, raw: &str) -> Result<String, ConfigError> {
    let d = raw.strip_prefix('@').unwrap_or(raw).to_lowercase();
    let valid = !d.is_empty()
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.chars().any(|c| c == '@' || c == '*' || c == '/' || c.is_whitespace());
    if !valid {
        return Err(err(format!(
            "{var} must list domains such as example.com (exact, no wildcards), got `{raw}`."
        )));
    }
    Ok(d)
}

fn email(var: &str, raw: &str) -> Result<String, ConfigError> {
    match raw.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !raw.contains(char::is_whitespace) => {
            Ok(raw.to_lowercase())
        }
        _ => Err(err(format!(
            "{var} must list email addresses such as ada@example.com, got `{raw}`."
        ))),
    }
}

#[cfg(test)]
mod tests;
