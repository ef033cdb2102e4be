//! Table tests of the header policy against hostile requests.

use super::*;

fn identity() -> Identity {
    Identity {
        user: "alice-sub".into(),
        email: Some("alice@example.com".into()),
        preferred_username: Some("alice".into()),
        groups: vec!["admins".into(), "users".into()],
        access_token: Some(Secret::new("AT")),
        id_token: Some(Secret::new("IDT")),
    }
}

fn forwarded() -> Forwarded {
    let public = Url::parse("https://gate.example.com/").unwrap();
    let upstream = Url::parse("http://127.0.0.1:8000/app/").unwrap();
    Forwarded {
        client: Some("10.0.0.9".parse().unwrap()),
        ..Forwarded::new(&public, &upstream).unwrap()
    }
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in pairs {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

/// Every value of `name`, joined with `|`; `None` when absent.
fn get(m: &HeaderMap, name: &str) -> Option<String> {
    let all: Vec<_> = m
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!all.is_empty()).then(|| all.join("|"))
}

const NO: HeaderPolicy = HeaderPolicy {
    pass_access_token: false,
    pass_authorization_header: false,
    pass_host_header: true,
};
const TOKENS: HeaderPolicy = HeaderPolicy {
    pass_access_token: true,
    pass_authorization_header: true,
    pass_host_header: true,
};
const UPSTREAM_HOST: HeaderPolicy = HeaderPolicy {
    pass_access_token: false,
    pass_authorization_header: false,
    pass_host_header: false,
};

struct Case {
    what: &'static str,
    incoming: &'static [(&'static str, &'static str)],
    signed_in: bool,
    policy: HeaderPolicy,
    expect: &'static [(&'static str, Option<&'static str>)],
}

const CASES: &[Case] = &[
    Case {
        what: "spoofed identity, plain",
        incoming: &[
            ("X-Forwarded-User", "admin"),
            ("X-Forwarded-Email", "boss@example.com"),
            ("X-Forwarded-Groups", "root"),
        ],
        signed_in: true,
        policy: NO,
        expect: &[
            ("x-forwarded-user", Some("alice-sub")),
            ("x-forwarded-email", Some("alice@example.com")),
            ("x-forwarded-groups", Some("admins,users")),
            ("x-forwarded-preferred-username", Some("alice")),
        ],
    },
    Case {
        what: "spoofed identity, odd case and duplicated",
        incoming: &[
            ("x-FORWARDED-uSeR", "admin"),
            ("X-Forwarded-User", "root"),
            ("X-FORWARDED-PREFERRED-USERNAME", "a"),
            ("x-forwarded-preferred-username", "b"),
        ],
        signed_in: true,
        policy: NO,
        expect: &[
            ("x-forwarded-user", Some("alice-sub")),
            ("x-forwarded-preferred-username", Some("alice")),
        ],
    },
    Case {
        what: "spoofed identity with underscores (CGI/WSGI read them as dashes)",
        incoming: &[
            ("X_Forwarded_User", "admin"),
            ("x_auth_request_email", "boss@example.com"),
            ("X-Forwarded_Groups", "root"),
        ],
        signed_in: true,
        policy: NO,
        expect: &[
            ("x_forwarded_user", None),
            ("x_auth_request_email", None),
            ("x-forwarded_groups", None),
        ],
    },
    Case {
        what: "forward-auth names and GAP-Auth from a client never reach the upstream",
        incoming: &[
            ("X-Auth-Request-User", "admin"),
            ("X-Auth-Request-Groups", "root"),
            ("X-Auth-Request-Access-Token", "t"),
            ("GAP-Auth", "admin"),
        ],
        signed_in: true,
        policy: TOKENS,
        expect: &[
            ("x-auth-request-user", None),
            ("x-auth-request-groups", None),
            ("x-auth-request-access-token", None),
            ("gap-auth", None),
        ],
    },
    Case {
        what: "anonymous request (public path): spoofed identity removed, none added",
        incoming: &[
            ("X-Forwarded-User", "admin"),
            ("X-Forwarded-Access-Token", "t"),
            ("Authorization", "Bearer forged"),
        ],
        signed_in: false,
        policy: TOKENS,
        expect: &[
            ("x-forwarded-user", None),
            ("x-forwarded-access-token", None),
            ("authorization", None),
        ],
    },
    Case {
        what: "spoofed access token without PASS_ACCESS_TOKEN",
        incoming: &[("X-Forwarded-Access-Token", "forged")],
        signed_in: true,
        policy: NO,
        expect: &[("x-forwarded-access-token", None), ("authorization", None)],
    },
    Case {
        what: "tokens passed when asked; the client's Authorization replaced",
        incoming: &[
            ("Authorization", "Basic YWRtaW46YWRtaW4="),
            ("authorization", "Bearer forged"),
        ],
        signed_in: true,
        policy: TOKENS,
        expect: &[
            ("x-forwarded-access-token", Some("AT")),
            ("authorization", Some("Bearer IDT")),
        ],
    },
    Case {
        what: "the client's Authorization kept without PASS_AUTHORIZATION_HEADER",
        incoming: &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        signed_in: true,
        policy: NO,
        expect: &[("authorization", Some("Basic YWRtaW46YWRtaW4="))],
    },
    Case {
        what: "identity header named in Connection: still ours, added after the removal",
        incoming: &[("Connection", "X-Forwarded-User"), ("X-Forwarded-User", "admin")],
        signed_in: true,
        policy: NO,
        expect: &[("x-forwarded-user", Some("alice-sub")), ("connection", None)],
    },
    Case {
        what: "names in several Connection headers, comma lists, odd case and spaces",
        incoming: &[
            ("Connection", " X-A ,, x-b\t"),
            ("connection", "CLOSE,X-C"),
            ("X-A", "1"),
            ("x-b", "2"),
            ("X-C", "3"),
            ("X-D", "4"),
        ],
        signed_in: false,
        policy: NO,
        expect: &[
            ("x-a", None),
            ("x-b", None),
            ("x-c", None),
            ("x-d", Some("4")),
            ("connection", None),
        ],
    },
    Case {
        what: "Connection naming Host cannot remove or change it",
        incoming: &[("Host", "app.example.com"), ("Connection", "host")],
        signed_in: false,
        policy: NO,
        expect: &[("host", Some("app.example.com"))],
    },
    Case {
        what: "Host rewritten to the upstream's when not passed",
        incoming: &[("Host", "app.example.com")],
        signed_in: false,
        policy: UPSTREAM_HOST,
        expect: &[("host", Some("127.0.0.1:8000"))],
    },
    Case {
        what: "X-Forwarded-For appended to (two headers joined)",
        incoming: &[("X-Forwarded-For", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")],
        signed_in: false,
        policy: NO,
        expect: &[("x-forwarded-for", Some("1.2.3.4, 5.6.7.8, 10.0.0.9"))],
    },
    Case {
        what: "Connection naming X-Forwarded-For drops what came; the peer stays",
        incoming: &[("Connection", "x-forwarded-for"), ("X-Forwarded-For", "1.2.3.4")],
        signed_in: false,
        policy: NO,
        expect: &[("x-forwarded-for", Some("10.0.0.9"))],
    },
    Case {
        what: "X-Forwarded-Proto/-Host and Forwarded from the client overwritten by PUBLIC_URL's",
        incoming: &[
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=1.1.1.1;host=evil.example;proto=http"),
        ],
        signed_in: false,
        policy: NO,
        expect: &[
            ("x-forwarded-proto", Some("https")),
            ("x-forwarded-host", Some("gate.example.com")),
            ("forwarded", None),
        ],
    },
    Case {
        what: "hop-by-hop headers removed",
        incoming: &[
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "websocket"),
            ("Expect", "100-continue"),
            ("Accept", "text/html"),
        ],
        signed_in: false,
        policy: NO,
        expect: &[
            ("keep-alive", None),
            ("te", None),
            ("trailer", None),
            ("transfer-encoding", None),
            ("content-length", None),
            ("proxy-authorization", None),
            ("proxy-connection", None),
            ("upgrade", None),
            ("connection", None),
            ("expect", None),
            ("accept", Some("text/html")),
        ],
    },
    Case {
        what: "an upgrade keeps Connection: upgrade and its Upgrade, nothing else it listed",
        incoming: &[
            ("Connection", "keep-alive, Upgrade, X-A"),
            ("Upgrade", "websocket"),
            ("X-A", "1"),
            ("Content-Length", "0"),
        ],
        signed_in: false,
        policy: NO,
        expect: &[
            ("connection", Some("upgrade")),
            ("upgrade", Some("websocket")),
            ("x-a", None),
            ("content-length", Some("0")),
        ],
    },
];

#[test]
fn hostile_requests() {
    for case in CASES {
        let id = identity();
        let out = upstream_request_headers(
            &map(case.incoming),
            case.signed_in.then_some(&id),
            &case.policy,
            &forwarded(),
        );
        for (name, want) in case.expect {
            assert_eq!(get(&out, name).as_deref(), *want, "{}: header {name}", case.what);
        }
        // Whatever the case, one Host and PUBLIC_URL's X-Forwarded-*.
        assert_eq!(out.get_all(header::HOST).iter().count(), 1, "{}", case.what);
        assert_eq!(
            get(&out, "x-forwarded-proto").as_deref(),
            Some("https"),
            "{}",
            case.what
        );
        assert_eq!(
            get(&out, "x-forwarded-host").as_deref(),
            Some("gate.example.com"),
            "{}",
            case.what
        );
        for name in &IDENTITY_HEADERS {
            assert!(
                out.get_all(name).iter().count() <= 1,
                "{}: {name} once at most",
                case.what
            );
        }
    }
}

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
