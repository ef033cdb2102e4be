//! Which paths are public and which per-path rules apply: the one place a
//! request's path is judged, after normalising it the ways an upstream may
//! read it.
//!
//! A path is read two ways. The **forwarded** reading is what the proxy
//! sends on: dot segments resolved, `//` merged, escapes of unreserved
//! characters decoded (`%2e` is `.`, `%41` is `A`). The **lenient** reading
//! is what a permissive upstream may make of the same bytes: `%2F`, `%5C`
//! and `\` as `/`, and `;params` cut from segments (Tomcat's `..;/`). A path
//! is public only if every reading is under a public prefix and no per-path
//! rule covers any reading; a rule applies if it covers any reading. So a
//! trick that one server would resolve to `/admin` is judged as `/admin`.
//! Matching is on whole segments, and case-sensitive, as paths are, except
//! that the lenient reading also ignores ASCII case: Express and ASP.NET
//! Core route case-insensitively by default, as IIS serves files, so
//! `/ADMIN` is judged as `/admin` too (a rule applies whatever the case;
//! public needs the exact case of the forwarded reading).

use std::fmt;

use crate::access::{Claims, Refusal, Rules};

/// A path prefix, matched on whole segments: `/static` covers `/static`
/// and `/static/x`, never `/staticx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// A prefix from configuration: an absolute path in its forwarded form
    /// (no dot segments, `//`, query or escapes of unreserved characters).
    pub fn new(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if !raw.starts_with('/') || raw.contains(['?', '#', '\\', ';']) {
            return None;
        }
        let forwarded = RequestPath::parse(raw).ok()?.forwarded;
        if forwarded.trim_end_matches('/') != raw.trim_end_matches('/') || raw.contains('%') {
            return None;
        }
        let trimmed = raw.trim_end_matches('/');
        Some(Self(if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        }))
    }

    /// Whether `path` (a normalised reading) is this prefix or under it.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_as(path, Case::Exact)
    }

    fn matches_as(&self, path: &str, case: Case) -> bool {
        if self.0 == "/" {
            return true;
        }
        let (prefix, path) = (self.0.as_bytes(), path.as_bytes());
        let Some((head, rest)) = path.split_at_checked(prefix.len()) else {
            return false;
        };
        let same = match case {
            Case::Exact => head == prefix,
            Case::Ignored => head.eq_ignore_ascii_case(prefix),
        };
        same && matches!(rest.first(), None | Some(b'/'))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Access rules for the paths under a prefix, on top of the global ones.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// Where the rule applies.
    pub prefix: Prefix,
    /// Who may see those paths.
    pub rules: Rules,
    /// How recent and how strong the sign-in must be.
    pub step_up: StepUp,
}

/// A per-path step-up requirement: a sign-in at most `max_age` seconds old,
/// an `acr` among `acr_values`. The default asks for nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepUp {
    /// The sign-in must be at most this many seconds old (0: a fresh one for
    /// every authorization request, sent with `prompt=login`).
    pub max_age: Option<u64>,
    /// The sign-in's `acr` must be one of these (`None`: any or none).
    pub acr_values: Option<Vec<String>>,
}

/// What a session says of its sign-in: when (`auth_time`) and how (`acr`).
#[derive(Debug, Clone, Copy)]
pub struct SignedIn<'a> {
    /// Unix seconds of the sign-in at the provider, if known.
    pub auth_time: Option<i64>,
    /// The sign-in's `acr`, if any.
    pub acr: Option<&'a str>,
}

impl StepUp {
    /// Whether nothing is asked.
    pub fn is_none(&self) -> bool {
        self.max_age.is_none() && self.acr_values.is_none()
    }

    /// The stricter of two: the shorter `max_age`, the `acr` values both allow.
    pub fn and(&self, other: &StepUp) -> StepUp {
        let max_age = match (self.max_age, other.max_age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let acr_values = match (&self.acr_values, &other.acr_values) {
            (Some(a), Some(b)) => Some(a.iter().filter(|v| b.contains(v)).cloned().collect()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        StepUp { max_age, acr_values }
    }

    /// Whether a sign-in satisfies this at `now` (Unix seconds). A sign-in
    /// of unknown time is too old for any `max_age`; `max_age = 0` is met
    /// only by the authorization request that asked for it, so a session
    /// passes it while its sign-in is younger than `grace` seconds.
    pub fn met_by(&self, signed_in: SignedIn<'_>, now: i64, grace: i64) -> bool {
        let recent = match (self.max_age, signed_in.auth_time) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(max_age), Some(at)) => now - at <= (max_age as i64).max(grace),
        };
        let strong = match &self.acr_values {
            None => true,
            Some(values) => signed_in.acr.is_some_and(|acr| values.iter().any(|v| v == acr)),
        };
        recent && strong
    }
}

/// The public paths and per-path rules of a gateway.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    public: Vec<Prefix>,
    rules: Vec<PathRule>,
}

/// A path the client sent, read the ways an upstream may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// What is forwarded to the upstream.
    pub forwarded: String,
    /// What a permissive upstream may make of it.
    lenient: String,
}

/// A path that is not a path: a bad percent escape, or not absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath;

impl RequestPath {
    /// Reads a request's raw path (without the query).
    pub fn parse(raw: &str) -> Result<Self, BadPath> {
        if !raw.starts_with('/') {
            return Err(BadPath);
        }
        let mut forwarded_segments = Vec::new();
        let mut lenient_input = String::with_capacity(raw.len());
        for segment in raw.split('/').skip(1) {
            let decoded = decode_unreserved(segment)?;
            lenient_input.push('/');
            lenient_input.push_str(&lenient_segment(&decoded));
            forwarded_segments.push(decoded);
        }
        let forwarded = resolve(forwarded_segments.iter().map(String::as_str));
        let lenient = resolve(
            lenient_input
                .split('/')
                .skip(1)
                .map(|s| s.split(';').next().unwrap_or_default()),
        );
        Ok(Self { forwarded, lenient })
    }

    /// The readings, each with how its case is compared.
    fn readings(&self) -> [(&str, Case); 2] {
        [(&self.forwarded, Case::Exact), (&self.lenient, Case::Ignored)]
    }
}

/// How a reading's case is compared with a prefix.
#[derive(Debug, Clone, Copy)]
enum Case {
    Exact,
    /// ASCII case ignored, as a case-insensitive upstream reads paths.
    Ignored,
}

/// What the rules say about one path.
#[derive(Debug)]
pub struct PathVerdict<'a> {
    /// Served without sign-in.
    pub public: bool,
    /// The per-path rules a signed-in user must also pass.
    pub rules: Vec<&'a PathRule>,
}

impl PathVerdict<'_> {
    /// Whether the per-path rules admit `claims`: the first refusal, if any.
    pub fn admits(&self, claims: &Claims) -> Result<(), Refusal> {
        for rule in &self.rules {
            rule.rules.check(claims)?;
        }
        Ok(())
    }

    /// The step-up requirement of the path: the strictest of its rules'.
    pub fn step_up(&self) -> StepUp {
        self.rules.iter().fold(StepUp::default(), |acc, r| acc.and(&r.step_up))
    }
}

impl PathRules {
    /// From the configuration.
    pub fn new(public: Vec<Prefix>, rules: Vec<PathRule>) -> Self {
        Self { public, rules }
    }

    /// The groups the per-path rules allow (kept first in sessions).
    pub fn groups(&self) -> impl Iterator<Item = String> + '_ {
        self.rules.iter().flat_map(|r| r.rules.allowed_groups().cloned())
    }

    /// The public path prefixes.
    pub fn public(&self) -> &[Prefix] {
        &self.public
    }

    /// The per-path rules, in the order configured.
    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }

    /// Whether nothing is configured (every path needs sign-in, no extra rule).
    pub fn is_empty(&self) -> bool {
        self.public.is_empty() && self.rules.is_empty()
    }

    /// Judges a path: public only if every reading is public and no rule
    /// covers any; every rule that covers some reading applies.
    pub fn judge(&self, path: &RequestPath) -> PathVerdict<'_> {
        let readings = path.readings();
        let rules: Vec<&PathRule> = self
            .rules
            .iter()
            .filter(|r| readings.iter().any(|&(p, case)| r.prefix.matches_as(p, case)))
            .collect();
        let public = rules.is_empty()
            && readings
                .iter()
                .all(|&(p, case)| self.public.iter().any(|pre| pre.matches_as(p, case)));
        PathVerdict { public, rules }
    }
}

/// Decodes the escapes of unreserved characters (RFC 3986 §2.3), which
/// mean the same escaped or not; other escapes stay, in upper case.
fn decode_unreserved(segment: &str) -> Result<String, BadPath> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadPath)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(BadPath)?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(value as char);
            } else {
                out.push('%');
                out.push_str(&format!("{value:02X}"));
            }
            i += 3;
        } else if bytes[i].is_ascii() && !bytes[i].is_ascii_control() {
            out.push(bytes[i] as char);
            i += 1;
        } else {
            // Raw non-ASCII or control bytes: servers disagree on them.
            return Err(BadPath);
        }
    }
    Ok(out)
}

/// A segment as a permissive server reads it: escaped and back slashes
/// are separators.
fn lenient_segment(segment: &str) -> String {
    segment.replace("%2F", "/").replace("%5C", "/").replace('\\', "/")
}

/// Joins segments, dropping empty and `.` ones and resolving `..` (never
/// above the root); a trailing slash is kept.
fn resolve<'a>(segments: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in segments {
        trailing = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(64);
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests;
