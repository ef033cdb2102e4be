//! The request table: spoofed identity, hop-by-hop, Connection-listed names, X-Forwarded-*.

use super::*;

struct Case {
    what: &'static str,
    incoming: &'static [(&'static str, &'static str)],
    signed_in: bool,
    policy: HeaderPolicy,
    expect: &'static [(&'static str, Option<&'static str>)],
}

const CASES: &[Case] = &[
    Case {
        what: "the gateway's own cookies stay with the gateway",
        incoming: &[(
            "Cookie",
            "oidc_gate=SESSION; app=1; oidc_gate_login_abcdefgh=LOGIN; theme=dark",
        )],
        signed_in: true,
        policy: NO,
        expect: &[("cookie", Some("app=1; theme=dark"))],
    },
    Case {
        what: "only the gateway's cookies: no Cookie header at all",
        incoming: &[("Cookie", "oidc_gate=SESSION"), ("cookie", " oidc_gate_login_x=L ")],
        signed_in: false,
        policy: NO,
        expect: &[("cookie", None)],
    },
    Case {
        what: "cookies that only look like the gateway's are the app's",
        incoming: &[("Cookie", "oidc_gatex=1; xoidc_gate=2; oidc_gate_other=3")],
        signed_in: true,
        policy: NO,
        expect: &[("cookie", Some("oidc_gatex=1; xoidc_gate=2; oidc_gate_other=3"))],
    },
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
        what: "a client's X-Forwarded-For (nothing believed) is replaced by the peer",
        incoming: &[("X-Forwarded-For", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")],
        signed_in: false,
        policy: NO,
        expect: &[("x-forwarded-for", Some("10.0.0.9"))],
    },
    Case {
        what: "a client's X-Request-Id never reaches the upstream as the request's",
        incoming: &[("X-Request-Id", "planted"), ("x-request-id", "twice")],
        signed_in: false,
        policy: NO,
        expect: &[("x-request-id", None)],
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

/// Behind trusted proxies: the believed hops, then the peer; the request's
/// own id replaces the client's.
#[test]
fn forwarded_for_is_the_believed_chain_then_the_peer() {
    let incoming = map(&[
        ("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.2"),
        ("X-Request-Id", "planted"),
    ]);
    let through = Forwarded {
        believed: vec!["198.51.100.7".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        request_id: Some(HeaderValue::from_static("0af7651916cd43dd8448eb211c80319c")),
        ..forwarded()
    };
    let out = upstream_request_headers(&incoming, None, &NO, &through);
    assert_eq!(
        get(&out, "x-forwarded-for").as_deref(),
        Some("198.51.100.7, 10.0.0.2, 10.0.0.9"),
        "what the client wrote left of its own address is gone"
    );
    assert_eq!(
        get(&out, "x-request-id").as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );

    // No peer known (not served over TCP): the believed hops alone.
    let through = Forwarded {
        client: None,
        believed: vec!["2001:db8::7".parse().unwrap()],
        ..forwarded()
    };
    let out = upstream_request_headers(&incoming, None, &NO, &through);
    assert_eq!(get(&out, "x-forwarded-for").as_deref(), Some("2001:db8::7"));
    assert_eq!(get(&out, "x-request-id"), None);
}
