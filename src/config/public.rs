//! Where the app is reached: `PUBLIC_URL` and `LISTEN`, and the start-up
//! refusals that keep plain http and the development provider (anyone signs
//! in as anyone there) off the network.

use std::net::{IpAddr, SocketAddr};

use url::{Host, Url};

use super::{ConfigError, err};

/// Validates `PUBLIC_URL`: an absolute http(s) URL at the root of its host,
/// and https unless the host is loopback or `ALLOW_INSECURE_HTTP` is set.
pub(super) fn parse_public_url(raw: &str, allow_insecure_http: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|_| err(format!("PUBLIC_URL must be an absolute http(s) URL, got `{raw}`.")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(err(format!("PUBLIC_URL must be an absolute http(s) URL, got `{raw}`.")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("PUBLIC_URL must not have a query or fragment."));
    }
    // Every redirect and page link is root-absolute, and the session cookie
    // is `__Host-`, which requires Path=/: under a path, nothing would work.
    if url.path() != "/" {
        return Err(err(format!(
            "PUBLIC_URL must not have a path (got `{raw}`): oidc-gate must be served at the root of its \
             host, since its session cookie is `__Host-` with Path=/."
        )));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        // Session ids in clear, and without `__Host-` a sibling subdomain can
        // plant cookies: a login CSRF that signs a victim in as the attacker.
        if !allow_insecure_http {
            return Err(err(format!(
                "PUBLIC_URL is plain http on a non-loopback host (`{raw}`): session cookies would travel \
                 in clear; use https, or set ALLOW_INSECURE_HTTP=true to run like this anyway."
            )));
        }
        tracing::warn!(
            public_url = raw,
            "INSECURE: PUBLIC_URL is plain http on a non-loopback host (ALLOW_INSECURE_HTTP=true): \
             session ids travel in clear and cookies cannot be Secure or __Host-"
        );
    }
    Ok(url)
}

/// Refuses the development provider unless both `PUBLIC_URL` and `LISTEN`
/// are loopback: anyone who reaches it signs in as anyone.
pub(super) fn allow_development_provider(public_url: &Url, listen: SocketAddr) -> Result<(), ConfigError> {
    if !is_loopback(public_url) {
        return Err(err(
            "OIDC_ISSUER is not set: configure a provider (OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET); \
             the development provider only runs with a loopback PUBLIC_URL and LISTEN.",
        ));
    }
    if !listen.ip().to_canonical().is_loopback() {
        return Err(err(format!(
            "OIDC_ISSUER is not set and LISTEN ({listen}) is not a loopback address: the development provider \
             lets anyone sign in as anyone, so it only runs with LISTEN on 127.0.0.1 or [::1]; configure a \
             provider (OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET) or listen on loopback."
        )));
    }
    Ok(())
}

/// Whether the URL's host is a loopback name or address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Args, Config, ProviderChoice};

    fn args() -> Args {
        Args::try_parse_from(["oidc-gate"]).unwrap()
    }

    fn with_provider() -> Args {
        Args {
            oidc_issuer: Some("https://idp.example.com".into()),
            oidc_client_id: Some("c".into()),
            oidc_client_secret: Some("s".into()),
            ..args()
        }
    }

    #[test]
    fn the_development_provider_needs_a_loopback_listen_address() {
        for listen in ["0.0.0.0:5000", "[::]:5000", "192.168.1.20:5000", "[::ffff:10.0.0.1]:80"] {
            let e = Config::from_args(Args {
                listen: listen.into(),
                ..args()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("OIDC_ISSUER") && e.contains("LISTEN"), "{listen}: {e}");
        }
        for listen in ["127.0.0.1:5000", "127.0.0.2:1", "[::1]:5000", "[::ffff:127.0.0.1]:80"] {
            let c = Config::from_args(Args {
                listen: listen.into(),
                ..args()
            })
            .unwrap();
            assert!(matches!(c.provider, ProviderChoice::Development), "{listen}");
        }
        // A configured provider may listen anywhere.
        Config::from_args(Args {
            listen: "0.0.0.0:5000".into(),
            public_url: "https://app.example.com".into(),
            ..with_provider()
        })
        .unwrap();
    }

    #[test]
    fn plain_http_off_loopback_needs_allow_insecure_http() {
        let insecure = Args {
            public_url: "http://app.example.com".into(),
            ..with_provider()
        };
        let e = Config::from_args(insecure.clone()).unwrap_err().to_string();
        assert!(
            e.contains("PUBLIC_URL") && e.contains("ALLOW_INSECURE_HTTP=true"),
            "{e}"
        );
        let c = Config::from_args(Args {
            allow_insecure_http: true,
            ..insecure
        })
        .unwrap();
        assert!(!c.is_https());
        for fine in ["https://app.example.com", "http://localhost:8080", "http://127.0.0.1:1"] {
            Config::from_args(Args {
                public_url: fine.into(),
                ..with_provider()
            })
            .unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
    }

    #[test]
    fn a_public_url_with_a_path_is_refused() {
        for with_path in [
            "https://app.example.com/app",
            "https://app.example.com/app/",
            "http://localhost:5000/x",
        ] {
            let e = Config::from_args(Args {
                public_url: with_path.into(),
                ..with_provider()
            })
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("PUBLIC_URL") && e.contains("root of its host"),
                "{with_path}: {e}"
            );
        }
        let c = Config::from_args(Args {
            public_url: "https://app.example.com/".into(),
            ..with_provider()
        })
        .unwrap();
        assert_eq!(c.redirect_uri().as_str(), "https://app.example.com/callback");
    }
}
