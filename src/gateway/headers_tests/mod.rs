//! Table tests of the header policy against hostile requests and values.

mod requests;
mod values;

use super::*;

/// A signed-in user with every field set.
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

/// Behind `https://gate.example.com`, to an upstream on 127.0.0.1:8000, for peer 10.0.0.9.
fn forwarded() -> Forwarded {
    let public = Url::parse("https://gate.example.com/").unwrap();
    let upstream = Url::parse("http://127.0.0.1:8000/app/").unwrap();
    Forwarded {
        client: Some("10.0.0.9".parse().unwrap()),
        ..Forwarded::new(&public, &upstream).unwrap()
    }
}

/// A header map from raw pairs, in order (names are lowercased by `HeaderName`).
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

/// Nothing extra passed; the client's `Host` kept.
const NO: HeaderPolicy = HeaderPolicy {
    pass_access_token: false,
    pass_authorization_header: false,
    pass_host_header: true,
    own_cookie: "oidc_gate",
};
/// Both tokens passed.
const TOKENS: HeaderPolicy = HeaderPolicy {
    pass_access_token: true,
    pass_authorization_header: true,
    pass_host_header: true,
    own_cookie: "oidc_gate",
};
/// `Host` rewritten to the upstream's.
const UPSTREAM_HOST: HeaderPolicy = HeaderPolicy {
    pass_access_token: false,
    pass_authorization_header: false,
    pass_host_header: false,
    own_cookie: "oidc_gate",
};
