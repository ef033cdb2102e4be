//! Table tests of the client address against hostile and odd forwarding headers.

use super::*;
use axum::http::HeaderValue;

/// nginx on loopback and a private load balancer network are trusted.
fn trusted() -> TrustedProxies {
    TrustedProxies::parse("127.0.0.1/32, 10.0.0.0/8, ::1/128, fd00::/8").unwrap()
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (name, value) in pairs {
        m.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    m
}

struct Case {
    what: &'static str,
    peer: &'static str,
    headers: &'static [(&'static str, &'static [u8])],
    client: &'static str,
    chain: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "no header: the peer",
        peer: "203.0.113.5",
        headers: &[],
        client: "203.0.113.5",
        chain: &[],
    },
    Case {
        what: "spoofed X-Forwarded-For from an untrusted peer is ignored",
        peer: "203.0.113.5",
        headers: &[("X-Forwarded-For", b"1.2.3.4")],
        client: "203.0.113.5",
        chain: &[],
    },
    Case {
        what: "spoofed Forwarded from an untrusted peer is ignored",
        peer: "203.0.113.5",
        headers: &[("Forwarded", b"for=1.2.3.4")],
        client: "203.0.113.5",
        chain: &[],
    },
    Case {
        what: "a trusted peer names the client",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"198.51.100.7")],
        client: "198.51.100.7",
        chain: &["198.51.100.7"],
    },
    Case {
        what: "trusted peer, no header: the peer",
        peer: "127.0.0.1",
        headers: &[],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "what the client wrote left of its own address is not believed",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"6.6.6.6, 198.51.100.7")],
        client: "198.51.100.7",
        chain: &["198.51.100.7"],
    },
    Case {
        what: "trusted hops are skipped from the right",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"6.6.6.6, 198.51.100.7, 10.1.2.3, 10.9.9.9")],
        client: "198.51.100.7",
        chain: &["198.51.100.7", "10.1.2.3", "10.9.9.9"],
    },
    Case {
        what: "several header lines are one list, in order",
        peer: "10.0.0.1",
        headers: &[
            ("X-Forwarded-For", b"6.6.6.6"),
            ("x-forwarded-for", b"198.51.100.7, 10.0.0.2"),
        ],
        client: "198.51.100.7",
        chain: &["198.51.100.7", "10.0.0.2"],
    },
    Case {
        what: "a trusted client address is skipped like a hop: the leftmost when all are trusted",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"10.0.0.3, 10.0.0.2")],
        client: "10.0.0.3",
        chain: &["10.0.0.3", "10.0.0.2"],
    },
    Case {
        what: "garbage stops the walk at the last address believed",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"198.51.100.7, garbage, 10.0.0.2")],
        client: "10.0.0.2",
        chain: &["10.0.0.2"],
    },
    Case {
        what: "garbage as the rightmost entry: the peer",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"198.51.100.7, unknown")],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "a header of nothing but commas and spaces: the peer",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b" , ,, ")],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "a non-ASCII header line is garbage",
        peer: "127.0.0.1",
        headers: &[
            ("X-Forwarded-For", b"198.51.100.7"),
            ("X-Forwarded-For", b"\xff1.1.1.1"),
        ],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "an address with a port, IPv4 and bracketed IPv6",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"[2001:db8::7]:443, 10.0.0.2:8080")],
        client: "2001:db8::7",
        chain: &["2001:db8::7", "10.0.0.2"],
    },
    Case {
        what: "plain IPv6 in X-Forwarded-For, from an IPv6 proxy",
        peer: "::1",
        headers: &[("X-Forwarded-For", b"2001:db8::7")],
        client: "2001:db8::7",
        chain: &["2001:db8::7"],
    },
    Case {
        what: "an IPv4-mapped peer is the IPv4 address it maps",
        peer: "::ffff:127.0.0.1",
        headers: &[("X-Forwarded-For", b"198.51.100.7")],
        client: "198.51.100.7",
        chain: &["198.51.100.7"],
    },
    Case {
        what: "an IPv4-mapped untrusted peer is logged as IPv4",
        peer: "::ffff:203.0.113.5",
        headers: &[("X-Forwarded-For", b"1.2.3.4")],
        client: "203.0.113.5",
        chain: &[],
    },
    Case {
        what: "an address with a bad port is garbage",
        peer: "127.0.0.1",
        headers: &[("X-Forwarded-For", b"198.51.100.7:99999")],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "Forwarded: quoted IPv6 with a port",
        peer: "127.0.0.1",
        headers: &[("Forwarded", b"for=\"[::1]:80\"")],
        client: "::1",
        chain: &["::1"],
    },
    Case {
        what: "Forwarded: a chain with other parameters, case-insensitive names",
        peer: "127.0.0.1",
        headers: &[(
            "Forwarded",
            b"for=6.6.6.6, For=198.51.100.7;proto=https;by=10.0.0.1, for=\"10.0.0.5:9000\";host=\"a,b\"",
        )],
        client: "198.51.100.7",
        chain: &["198.51.100.7", "10.0.0.5"],
    },
    Case {
        what: "Forwarded: an obfuscated or unknown hop stops the walk",
        peer: "127.0.0.1",
        headers: &[("Forwarded", b"for=198.51.100.7, for=_hidden")],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "Forwarded: an element without for= is no address",
        peer: "127.0.0.1",
        headers: &[("Forwarded", b"for=198.51.100.7, proto=https")],
        client: "127.0.0.1",
        chain: &[],
    },
    Case {
        what: "X-Forwarded-For wins over Forwarded when both are sent",
        peer: "127.0.0.1",
        headers: &[("Forwarded", b"for=6.6.6.6"), ("X-Forwarded-For", b"198.51.100.7")],
        client: "198.51.100.7",
        chain: &["198.51.100.7"],
    },
];

#[test]
fn client_addresses() {
    let trusted = trusted();
    for case in CASES {
        let peer: IpAddr = case.peer.parse().unwrap();
        let (client, chain) = trusted.resolve(peer, &headers(case.headers));
        assert_eq!(client.to_string(), case.client, "{}", case.what);
        let chain: Vec<String> = chain.0.iter().map(IpAddr::to_string).collect();
        assert_eq!(chain, case.chain, "{}", case.what);
    }
}

#[test]
fn nobody_trusted_means_the_peer_always() {
    let none = TrustedProxies::default();
    let h = headers(&[("X-Forwarded-For", b"198.51.100.7"), ("Forwarded", b"for=1.1.1.1")]);
    for peer in ["127.0.0.1", "::1", "10.0.0.1"] {
        let (client, chain) = none.resolve(peer.parse().unwrap(), &h);
        assert_eq!(client.to_string(), peer);
        assert!(chain.0.is_empty());
    }
}

#[test]
fn trusted_proxies_parse() {
    let t = TrustedProxies::parse(" 10.0.0.0/8 ,, 192.168.1.7, 2001:db8::/32 , 10.1.2.3/8").unwrap();
    for (ip, inside) in [
        ("10.255.0.1", true),
        ("192.168.1.7", true),
        ("192.168.1.8", false),
        ("2001:db8:1::1", true),
        ("2001:db9::1", false),
        ("11.0.0.1", false),
    ] {
        assert_eq!(t.contains(ip.parse().unwrap()), inside, "{ip}");
    }
    assert!(TrustedProxies::parse("").unwrap().is_empty());
    for bad in ["10.0.0.0/33", "nope", "10.0.0.0/8, 300.1.1.1", "::1/129", "10.0.0.0/"] {
        assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
    }
}
