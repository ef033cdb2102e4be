use clap::Parser;

use super::super::{Args, Config, ConfigError};
use super::{FileConfig, PathRule, Rules, path_rule};

fn args() -> Args {
    Args::try_parse_from(["oidc-gate"]).unwrap()
}

fn gateway(f: impl FnOnce(&mut Args)) -> Result<Config, String> {
    let mut a = args();
    a.gateway.upstream_url = Some("http://127.0.0.1:8000".into());
    f(&mut a);
    Config::from_args(a).map_err(|e| e.to_string())
}

#[test]
fn no_gateway_setting_keeps_the_app() {
    let c = Config::from_args(args()).unwrap();
    assert!(c.gateway.is_none());
    assert_eq!(c.redirect_uri().as_str(), "http://localhost:5000/callback");
    assert_eq!(c.post_logout_url().as_str(), "http://localhost:5000/");
    assert!(!c.access.keeps_claims());
    let e = Config::from_args(Args {
        gateway: super::GatewayArgs {
            public_paths: Some("/static".into()),
            ..args().gateway
        },
        ..args()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("PUBLIC_PATHS") && e.contains("UPSTREAM_URL"), "{e}");
}

#[test]
fn upstream_or_forward_auth_makes_a_gateway_under_its_prefix() {
    let c = gateway(|_| {}).unwrap();
    let g = c.gateway.as_ref().unwrap();
    assert_eq!(g.upstream.as_ref().unwrap().as_str(), "http://127.0.0.1:8000/");
    assert_eq!(g.prefix, "/oauth2");
    assert!(g.pass_host_header && !g.pass_access_token && !g.pass_authorization_header);
    assert_eq!(c.redirect_uri().as_str(), "http://localhost:5000/oauth2/callback");
    assert_eq!(c.post_logout_url().as_str(), "http://localhost:5000/oauth2/sign_out");
    assert!(c.access.keeps_claims(), "the gateway hands claims to the app");

    let mut a = args();
    a.gateway.forward_auth = Some("true".into());
    a.gateway.route_prefix = "/auth/".into();
    let c = Config::from_args(a).unwrap();
    let g = c.gateway.unwrap();
    assert!(g.upstream.is_none());
    assert_eq!(g.prefix, "/auth");
}

#[test]
fn bad_gateway_values_name_their_variable() {
    type Change = fn(&mut Args);
    let cases: [(&str, Change); 9] = [
        ("UPSTREAM_URL", |a| a.gateway.upstream_url = Some("ftp://x".into())),
        ("UPSTREAM_URL", |a| a.gateway.upstream_url = Some("http://u:p@x".into())),
        ("ROUTE_PREFIX", |a| a.gateway.route_prefix = "oauth2".into()),
        ("ROUTE_PREFIX", |a| a.gateway.route_prefix = "/".into()),
        ("ROUTE_PREFIX", |a| a.gateway.route_prefix = "/a/../b".into()),
        ("PUBLIC_PATHS", |a| a.gateway.public_paths = Some("/ok,static".into())),
        ("PUBLIC_PATHS", |a| a.gateway.public_paths = Some("/".into())),
        ("UPSTREAM_TIMEOUT", |a| a.gateway.upstream_timeout = "soon".into()),
        ("PASS_HOST_HEADER", |a| a.gateway.pass_host_header = "maybe".into()),
    ];
    for (var, f) in cases {
        let e = gateway(f).unwrap_err();
        assert!(e.contains(var), "{var}: {e}");
    }
}

#[test]
fn cookie_domain_must_cover_the_public_host() {
    let with = |public: &str, domain: &str| {
        gateway(|a| {
            a.public_url = public.into();
            a.oidc_issuer = Some("https://idp.example.com".into());
            a.oidc_client_id = Some("c".into());
            a.oidc_client_secret = Some("s".into());
            a.gateway.cookie_domain = Some(domain.into());
        })
    };
    let c = with("https://gate.example.com", ".example.com").unwrap();
    assert_eq!(c.sign_in.cookie_domain.as_deref(), Some(".example.com"));
    with("https://gate.example.com", "gate.example.com").unwrap();
    for bad in [".other.com", "xample.com", ".com", "ate.example.com", "."] {
        let e = with("https://gate.example.com", bad).unwrap_err();
        assert!(e.contains("COOKIE_DOMAIN"), "{bad}: {e}");
    }
}

#[test]
fn config_file_adds_public_paths_and_per_path_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(
        &file,
        r#"
public_paths = ["/health"]

[[paths]]
prefix = "/admin"
allowed_groups = ["admins"]

[[paths]]
prefix = "/finance"
allowed_email_domains = ["example.com"]
"#,
    )
    .unwrap();
    let c = gateway(|a| {
        a.gateway.public_paths = Some("/static, /favicon.ico".into());
        a.gateway.config_file = Some(file.clone());
    })
    .unwrap();
    let paths = &c.gateway.unwrap().paths;
    let judge = |p: &str| paths.judge(&crate::gateway::paths::RequestPath::parse(p).unwrap());
    assert!(judge("/health/x").public && judge("/static/a.css").public && judge("/favicon.ico").public);
    assert!(!judge("/other").public);
    assert_eq!(judge("/admin/x").rules.len(), 1);
    assert_eq!(judge("/finance").rules.len(), 1);
    assert!(judge("/other").rules.is_empty());

    for (text, needle) in [
        ("[[paths]]\nprefix = \"/admin\"\n", "sets no rule"),
        (
            "[[paths]]\nprefix = \"admin\"\nallowed_groups = [\"a\"]\n",
            "absolute path",
        ),
        ("public_paths = \"/x\"", "CONFIG_FILE"),
        ("unknown = 1", "unknown"),
        (
            "[[paths]]\nprefix = \"/a\"\nallowed_emails = [\"not-an-email\"]\n",
            "allowed_emails",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let e = gateway(|a| a.gateway.config_file = Some(file.clone())).unwrap_err();
        assert!(e.contains(needle) && e.contains("CONFIG_FILE"), "{text}: {e}");
    }
    let e = gateway(|a| a.gateway.config_file = Some(dir.path().join("missing.toml"))).unwrap_err();
    assert!(e.contains("could not be read"), "{e}");
}

fn rule(toml_text: &str) -> Result<PathRule, ConfigError> {
    let file: FileConfig = toml::from_str(toml_text).unwrap();
    path_rule(file.paths.into_iter().next().unwrap(), &Rules::default())
}

#[test]
fn step_up_settings_are_read_and_checked() {
    let r = rule("[[paths]]\nprefix = \"/admin\"\nmax_age = \"15m\"\nacr_values = [\"mfa\"]\n").unwrap();
    assert_eq!(r.step_up.max_age, Some(900));
    assert_eq!(r.step_up.acr_values, Some(vec!["mfa".to_owned()]));
    assert_eq!(
        rule("[[paths]]\nprefix = \"/a\"\nmax_age = 0\n")
            .unwrap()
            .step_up
            .max_age,
        Some(0)
    );
    assert_eq!(
        rule("[[paths]]\nprefix = \"/a\"\nmax_age = \"0s\"\n")
            .unwrap()
            .step_up
            .max_age,
        Some(0)
    );
    // Step-up only: whoever may sign in may see the path.
    assert!(
        rule("[[paths]]\nprefix = \"/a\"\nmax_age = 60\n")
            .unwrap()
            .rules
            .is_open()
    );
    for bad in [
        "[[paths]]\nprefix = \"/a\"\nmax_age = \"soon\"\n",
        "[[paths]]\nprefix = \"/a\"\nacr_values = []\n",
        "[[paths]]\nprefix = \"/a\"\nacr_values = [\"a b\"]\n",
        "[[paths]]\nprefix = \"/a\"\nacr_values = [\"a\\\"b\"]\n",
        "[[paths]]\nprefix = \"/a\"\n",
    ] {
        assert!(rule(bad).is_err(), "{bad}");
    }
}
