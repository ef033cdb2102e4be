//! Where a user may be sent after login: only addresses on this site, under
//! `PUBLIC_URL` (or on a host of `ALLOWED_REDIRECT_DOMAINS`), decided by
//! parsing them as a browser would; and the links of oidc-gate's own pages.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

/// Longest accepted `next` value. It travels in the login-in-progress
/// cookie, and three of those must stay within the 8 KB of request headers
/// proxies accept.
const MAX_NEXT: usize = 512;

/// Characters escaped when a path is put into `?next=`; `/` stays readable.
const NEXT_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where a browser may be sent after sign-in or sign-out: this site, and
/// the hosts of `ALLOWED_REDIRECT_DOMAINS` (sites sharing the sign-in).
#[derive(Debug, Clone)]
pub struct Redirects {
    base: Url,
    /// Lowercase host names; a leading dot admits every subdomain.
    domains: Vec<String>,
}

impl Redirects {
    /// Paths under `base` (`PUBLIC_URL`), and absolute URLs on `domains`.
    pub fn new(base: Url, domains: Vec<String>) -> Self {
        Self { base, domains }
    }

    /// Where to send the browser: [`safe_next`]'s path on this site, or an
    /// absolute URL on an allowed host with this site's scheme (or https);
    /// otherwise `/`.
    pub fn safe(&self, next: Option<&str>) -> String {
        let Some(next) = next else { return "/".to_owned() };
        if let Some(path) = resolve(next, &self.base) {
            return path;
        }
        self.elsewhere(next).unwrap_or_else(|| "/".to_owned())
    }

    fn elsewhere(&self, next: &str) -> Option<String> {
        if self.domains.is_empty() || next.len() > MAX_NEXT || next.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return None;
        }
        let url = Url::parse(next).ok()?;
        let scheme_ok = url.scheme() == "https" || url.scheme() == self.base.scheme();
        if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let allowed = self.domains.iter().any(|d| match d.strip_prefix('.') {
            Some(parent) => host == parent || host.ends_with(d.as_str()),
            None => host == *d,
        });
        let mut out = url;
        out.set_fragment(None);
        (allowed && out.as_str().len() <= MAX_NEXT).then(|| out.to_string())
    }
}

/// The links of oidc-gate's own pages: at the root in the app (`/login`),
/// under `ROUTE_PREFIX` in the gateway (`/oauth2/start`).
#[derive(Debug, Clone)]
pub struct Links {
    /// Where sign-in starts.
    pub login: String,
    /// The query parameter naming where to come back: `next` or `rd`.
    pub return_param: &'static str,
    /// Where the sign-out form posts.
    pub logout: String,
    /// The stylesheet.
    pub style: String,
    /// The "Your sessions" page.
    pub sessions: String,
}

impl Links {
    /// The app's own pages: `/login`, `/logout`, `/static/style.css`, `/sessions`.
    pub fn app() -> Self {
        Self {
            login: "/login".to_owned(),
            return_param: "next",
            logout: "/logout".to_owned(),
            style: "/static/style.css".to_owned(),
            sessions: "/sessions".to_owned(),
        }
    }

    /// The gateway's, under `prefix`: `/oauth2/start?rd=`, `/oauth2/sign_out`.
    pub fn gateway(prefix: &str) -> Self {
        Self {
            login: format!("{prefix}/start"),
            return_param: "rd",
            logout: format!("{prefix}/sign_out"),
            style: format!("{prefix}/static/style.css"),
            sessions: format!("{prefix}/sessions"),
        }
    }

    /// The sign-in URL that comes back to `path_and_query` afterwards.
    pub fn login_for(&self, path_and_query: &str) -> String {
        if path_and_query == "/" {
            return self.login.clone();
        }
        format!(
            "{}?{}={}",
            self.login,
            self.return_param,
            utf8_percent_encode(path_and_query, NEXT_ESCAPE)
        )
    }
}

/// Where to send the browser after login: `next` resolved against `base`
/// (`PUBLIC_URL`) the way a browser resolves a link, kept only if it stays
/// on the same origin and under the base path; otherwise `/`. The result is
/// the path and query of the resolved URL (dot segments removed, escaped by
/// the `url` crate), never the raw input, and never a fragment.
pub fn safe_next(next: Option<&str>, base: &Url) -> String {
    next.and_then(|n| resolve(n, base)).unwrap_or_else(|| "/".to_owned())
}

fn resolve(next: &str, base: &Url) -> Option<String> {
    // The URL parser silently drops tabs and newlines and trims spaces, so a
    // value it would "repair" is refused rather than repaired: no page of
    // ours makes such a link.
    if next.len() > MAX_NEXT || next.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let url = base.join(next).ok()?;
    if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    let under_base = path
        .strip_prefix(base_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !under_base {
        return None;
    }
    let mut out = path.to_owned();
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(query);
    }
    (out.len() <= MAX_NEXT).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Url {
        Url::parse("https://gate.example.com").unwrap()
    }

    fn next(value: &str) -> String {
        safe_next(Some(value), &root())
    }

    #[test]
    fn relative_paths_are_kept() {
        for ok in ["/", "/secret", "/secret?x=1", "/a/b?c=d&e=%20f", "/caf%C3%A9", "/%2F/x"] {
            assert_eq!(next(ok), ok, "{ok}");
        }
        // Absolute URLs of this very site are kept as their path.
        assert_eq!(next("https://gate.example.com/secret?x=1"), "/secret?x=1");
    }

    #[test]
    fn other_origins_and_smuggled_characters_fall_back_to_root() {
        let bad = [
            "//evil.com",
            "///evil.com",
            "https://evil.com",
            "https://gate.example.com.evil.com/",
            "https://gate.example.com:8443/",
            "http://gate.example.com/",
            "https://user:pw@gate.example.com/",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "/\tevil",
            "/\t/evil.com",
            "/\r\nLocation: https://evil.com",
            "/ /evil.com",
            " //evil.com",
            "/\u{0}x",
            "javascript:alert(1)",
            "data:text/html,x",
        ];
        for b in bad {
            assert_eq!(next(b), "/", "{b:?}");
        }
        assert_eq!(safe_next(None, &root()), "/");
    }

    #[test]
    fn tricks_that_stay_on_this_site_resolve_to_a_plain_path() {
        // Each of these was refused by the earlier pattern list; resolved as a
        // browser would, each is a harmless path on this very site.
        let cases = [
            ("http:evil.com", "/"),
            ("/%2F/evil.com", "/%2F/evil.com"),
            ("/%2f%2fevil.com", "/%2f%2fevil.com"),
            ("%2F%2Fevil.com", "/%2F%2Fevil.com"),
            ("/%5Cevil.com", "/%5Cevil.com"),
            ("/%5cevil.com", "/%5cevil.com"),
            ("/%0d%0aSet-Cookie:x=y", "/%0d%0aSet-Cookie:x=y"),
            ("evil.com", "/evil.com"),
            ("", "/"),
            ("/secret#@evil.com", "/secret"),
            ("/a/../../evil", "/evil"),
            ("/%2e%2e/evil/../x", "/x"),
            ("/q?a=<script>", "/q?a=%3Cscript%3E"),
        ];
        for (input, expected) in cases {
            let got = next(input);
            assert_eq!(got, expected, "{input:?}");
            assert!(got.starts_with('/') && !got.starts_with("//"), "{input:?} → {got}");
            let resolved = root().join(&got).unwrap();
            assert_eq!(resolved.origin(), root().origin(), "{input:?}");
        }
    }

    #[test]
    fn only_paths_under_the_base_path() {
        let base = Url::parse("https://host.example.com/app").unwrap();
        assert_eq!(safe_next(Some("/app"), &base), "/app");
        assert_eq!(safe_next(Some("/app/x?y=1"), &base), "/app/x?y=1");
        assert_eq!(safe_next(Some("/other"), &base), "/");
        assert_eq!(safe_next(Some("/application"), &base), "/");
        assert_eq!(safe_next(Some("/app/../other"), &base), "/");
    }

    #[test]
    fn long_values_fall_back_to_root() {
        assert_eq!(next(&format!("/{}", "a".repeat(5000))), "/");
        let longest = format!("/{}", "a".repeat(MAX_NEXT - 1));
        assert_eq!(next(&longest), longest);
        assert_eq!(next(&format!("{longest}a")), "/");
        // Escaping may lengthen a value past the bound: still refused.
        assert_eq!(next(&format!("/{}", "é".repeat(200))), "/");
    }

    #[test]
    fn login_url_escapes_the_query() {
        let app = Links::app();
        assert_eq!(app.login_for("/secret"), "/login?next=/secret");
        assert_eq!(app.login_for("/secret?x=1&y=2"), "/login?next=/secret%3Fx%3D1%26y%3D2");
        assert_eq!(app.login_for("/"), "/login");
        let gateway = Links::gateway("/oauth2");
        assert_eq!(gateway.login_for("/a?b=c"), "/oauth2/start?rd=/a%3Fb%3Dc");
        assert_eq!(
            gateway.login_for("https://app.example.com/x"),
            "/oauth2/start?rd=https%3A//app.example.com/x"
        );
    }

    #[test]
    fn other_hosts_only_when_allowed() {
        let r = Redirects::new(root(), vec!["app.example.com".into(), ".corp.example".into()]);
        for ok in [
            "https://app.example.com/x?y=1",
            "https://corp.example/",
            "https://a.corp.example/dash",
            "https://a.b.corp.example/",
            "https://APP.example.com/",
        ] {
            let got = r.safe(Some(ok));
            assert!(got.starts_with("https://"), "{ok} → {got}");
        }
        assert_eq!(
            r.safe(Some("https://app.example.com/x#frag")),
            "https://app.example.com/x"
        );
        assert_eq!(r.safe(Some("/local?q")), "/local?q");
        for bad in [
            "https://evil.com/",
            "https://app.example.com.evil.com/",
            "https://evilcorp.example/",
            "https://xapp.example.com/",
            "http://app.example.com/",
            "https://user@app.example.com/",
            "javascript://app.example.com/%0aalert(1)",
            "//evil.com",
            "https://app.example.com/\t",
            " https://app.example.com/",
        ] {
            assert_eq!(r.safe(Some(bad)), "/", "{bad:?}");
        }
        // Without allowed domains, absolute URLs elsewhere fall back to `/`.
        let none = Redirects::new(root(), vec![]);
        assert_eq!(none.safe(Some("https://app.example.com/")), "/");
    }
}
