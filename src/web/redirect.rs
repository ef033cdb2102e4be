//! Where a user may be sent after login: only same-origin relative paths.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

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

/// Returns `next` if it is a safe same-origin relative path (with optional
/// query), otherwise `/`. Rejects scheme-relative (`//host`), absolute URLs,
/// backslashes (`/\host`, which browsers treat as `//host`), control
/// characters and the same tricks percent-encoded.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_safe(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn is_safe(next: &str) -> bool {
    if next.len() > MAX_NEXT || !next.starts_with('/') {
        return false;
    }
    let decoded = percent_decode_str(next).decode_utf8_lossy();
    for candidate in [next, decoded.as_ref()] {
        let path = candidate.split(['?', '#']).next().unwrap_or_default();
        if candidate.starts_with("//")
            || candidate.contains('\\')
            || candidate.chars().any(char::is_control)
            || path.contains("/./")
            || path.contains("/../")
        {
            return false;
        }
    }
    !next.contains('#') && !next.chars().any(char::is_whitespace)
}

/// The login URL that comes back to `path_and_query` afterwards.
pub fn login_url_for(path_and_query: &str) -> String {
    if path_and_query == "/" {
        return "/login".to_owned();
    }
    format!("/login?next={}", utf8_percent_encode(path_and_query, NEXT_ESCAPE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_kept() {
        for ok in ["/", "/secret", "/secret?x=1", "/a/b?c=d&e=%20f", "/caf%C3%A9"] {
            assert_eq!(safe_next(Some(ok)), ok, "{ok}");
        }
    }

    #[test]
    fn open_redirect_tricks_fall_back_to_root() {
        let bad = [
            "//evil.com",
            "///evil.com",
            "https://evil.com",
            "http:evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%2F/evil.com",
            "/%2f%2fevil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "/\tevil",
            "/\r\nLocation: https://evil.com",
            "/%0d%0aSet-Cookie:x=y",
            "javascript:alert(1)",
            "evil.com",
            "",
            "/secret#@evil.com",
            "/a/../../evil",
            "/%2e%2e/evil/../x",
        ];
        for b in bad {
            assert_eq!(safe_next(Some(b)), "/", "{b:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(5000)))), "/");
        let longest = format!("/{}", "a".repeat(MAX_NEXT - 1));
        assert_eq!(safe_next(Some(&longest)), longest);
        assert_eq!(safe_next(Some(&format!("{longest}a"))), "/");
    }

    #[test]
    fn login_url_escapes_the_query() {
        assert_eq!(login_url_for("/secret"), "/login?next=/secret");
        assert_eq!(login_url_for("/secret?x=1&y=2"), "/login?next=/secret%3Fx%3D1%26y%3D2");
        assert_eq!(login_url_for("/"), "/login");
    }
}
