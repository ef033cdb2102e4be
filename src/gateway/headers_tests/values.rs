//! Identity values that cannot be header values, forward-auth answers, response headers.

use super::*;

/// Identity values that are no valid header value never make a broken or
/// forged request: the header is left out (a group: that group).
#[test]
fn identity_values_that_cannot_be_header_values_are_dropped() {
    // (what, the change to a good identity, the header, what it should carry)
    type Case = (&'static str, fn(&mut Identity), &'static str, Option<&'static str>);
    let cases: &[Case] = &[
        (
            "CRLF in the subject",
            |i| i.user = "alice\r\nX-Forwarded-User: admin".into(),
            "x-forwarded-user",
            None,
        ),
        (
            "LF in the email",
            |i| i.email = Some("a@b.c\nX-Evil: 1".into()),
            "x-forwarded-email",
            None,
        ),
        (
            "NUL in the username",
            |i| i.preferred_username = Some("al\0ice".into()),
            "x-forwarded-preferred-username",
            None,
        ),
        (
            "DEL in the username",
            |i| i.preferred_username = Some("al\x7fice".into()),
            "x-forwarded-preferred-username",
            None,
        ),
        (
            "TAB in the subject",
            |i| i.user = "al\tice".into(),
            "x-forwarded-user",
            None,
        ),
        (
            "padded subject (would read as another)",
            |i| i.user = "admin ".into(),
            "x-forwarded-user",
            None,
        ),
        (
            "empty email",
            |i| i.email = Some(String::new()),
            "x-forwarded-email",
            None,
        ),
        (
            "UTF-8 passed as its bytes",
            |i| i.preferred_username = Some("José".into()),
            "x-forwarded-preferred-username",
            Some("José"),
        ),
        (
            "a group with a comma or CR/LF left out, the others kept",
            |i| i.groups = vec!["x,admins".into(), "staff".into(), "a\r\nb".into(), "users".into()],
            "x-forwarded-groups",
            Some("staff,users"),
        ),
        (
            "no sendable group: no header",
            |i| i.groups = vec!["a,b".into()],
            "x-forwarded-groups",
            None,
        ),
        (
            "CRLF in the ID token",
            |i| i.id_token = Some(Secret::new("t\r\nX-Evil: 1")),
            "authorization",
            None,
        ),
        (
            "CRLF in the access token",
            |i| i.access_token = Some(Secret::new("t\r\n")),
            "x-forwarded-access-token",
            None,
        ),
    ];
    for (what, change, name, want) in cases {
        let mut id = identity();
        change(&mut id);
        let out = upstream_request_headers(&HeaderMap::new(), Some(&id), &TOKENS, &forwarded());
        assert_eq!(get(&out, name).as_deref(), *want, "{what}");
        assert!(get(&out, "x-evil").is_none(), "{what}");
        // The other identity headers still go.
        if *name != "x-forwarded-email" {
            assert_eq!(
                get(&out, "x-forwarded-email").as_deref(),
                Some("alice@example.com"),
                "{what}"
            );
        }
    }
}

#[test]
fn forward_auth_answer_headers() {
    let out = auth_response_headers(&identity(), false);
    let names: Vec<_> = out.keys().map(HeaderName::as_str).collect();
    assert_eq!(
        names,
        [
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-preferred-username",
            "x-auth-request-groups"
        ]
    );
    assert_eq!(get(&out, "x-auth-request-groups").as_deref(), Some("admins,users"));
    let with_token = auth_response_headers(&identity(), true);
    assert_eq!(get(&with_token, "x-auth-request-access-token").as_deref(), Some("AT"));
    let minimal = Identity {
        user: "s".into(),
        ..Identity::default()
    };
    assert_eq!(auth_response_headers(&minimal, true).len(), 1, "only what is known");
}

#[test]
fn upstream_response_headers_lose_hop_by_hop() {
    let incoming = map(&[
        ("Connection", "keep-alive, X-Internal"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authenticate", "Basic"),
        ("Upgrade", "h2c"),
        ("X-Internal", "secret-route"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Type", "text/html"),
    ]);
    let out = upstream_response_headers(&incoming, StatusCode::OK);
    let names: Vec<_> = out.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["set-cookie", "content-type"]);
    let both = map(&[("Transfer-Encoding", "chunked"), ("Content-Length", "100")]);
    assert!(
        upstream_response_headers(&both, StatusCode::OK).is_empty(),
        "a stale length is dropped"
    );
    let length = map(&[("Content-Length", "100")]);
    assert_eq!(
        get(&upstream_response_headers(&length, StatusCode::OK), "content-length").as_deref(),
        Some("100")
    );
    assert_eq!(get(&out, "set-cookie").as_deref(), Some("a=1|b=2"));

    let switching = map(&[
        ("Connection", "Upgrade, X-Internal"),
        ("Upgrade", "websocket"),
        ("X-Internal", "1"),
        ("Sec-WebSocket-Accept", "abc"),
    ]);
    let out = upstream_response_headers(&switching, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(get(&out, "connection").as_deref(), Some("upgrade"));
    assert_eq!(get(&out, "upgrade").as_deref(), Some("websocket"));
    assert_eq!(get(&out, "sec-websocket-accept").as_deref(), Some("abc"));
    assert_eq!(get(&out, "x-internal"), None);
}

#[test]
fn upgrade_protocol_needs_connection_upgrade() {
    assert_eq!(upgrade_protocol(&map(&[("Upgrade", "websocket")])), None);
    let m = map(&[
        ("Connection", "keep-alive"),
        ("connection", " UPGRADE "),
        ("Upgrade", "websocket"),
    ]);
    assert_eq!(upgrade_protocol(&m).map(HeaderValue::as_bytes), Some(&b"websocket"[..]));
}

#[test]
fn identity_debug_hides_tokens() {
    let shown = format!("{:?}", identity());
    assert!(shown.contains("alice-sub") && shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains("\"AT\"") && !shown.contains("IDT"), "{shown}");
}
