use super::*;
use crate::access::Rules;

fn rules(public: &[&str], guarded: &[&str]) -> PathRules {
    let global = Rules::default();
    PathRules::new(
        public.iter().map(|p| Prefix::new(p).unwrap()).collect(),
        guarded
            .iter()
            .map(|p| PathRule {
                prefix: Prefix::new(p).unwrap(),
                rules: global.for_path(vec![], vec![], vec!["admins".to_owned()]).unwrap(),
                step_up: StepUp::default(),
            })
            .collect(),
    )
}

fn forwarded(raw: &str) -> String {
    RequestPath::parse(raw).unwrap().forwarded
}

#[test]
fn paths_are_normalised_as_the_upstream_will_see_them() {
    let cases = [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("//a///b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/%61dmin", "/admin"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a;x=1/b", "/a;x=1/b"),
    ];
    for (raw, expected) in cases {
        assert_eq!(forwarded(raw), expected, "{raw}");
    }
    for bad in ["", "a/b", "/%zz", "/%2", "/a%", "/caf\u{e9}", "/a\u{1}b"] {
        assert_eq!(RequestPath::parse(bad), Err(BadPath), "{bad:?}");
    }
}

#[test]
fn public_paths_match_whole_segments_and_every_reading() {
    let r = rules(&["/public", "/static/"], &[]);
    let public = |raw: &str| r.judge(&RequestPath::parse(raw).unwrap()).public;
    for yes in [
        "/public",
        "/public/",
        "/public/x",
        "/static/app.js",
        "/public//x",
        "/public/./x",
        "/public/a/../b",
    ] {
        assert!(public(yes), "{yes} should be public");
    }
    for no in [
        "/",
        "/publicity",
        "/PUBLIC",
        "/Public/x",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "//public/../admin",
        "/public%2F..%2Fadmin",
        "/public%2f..%2fadmin",
        "/public/..%2Fadmin",
        "/public/..%5Cadmin",
        "/public\\..\\admin",
        "/public/..;/admin",
        "/public;/../admin",
        "/x/../publicx",
        "/admin",
    ] {
        assert!(!public(no), "{no} must not be public");
    }
}

#[test]
fn per_path_rules_apply_to_every_reading_and_win_over_public() {
    let r = rules(&["/"], &["/admin"]);
    let guarded = |raw: &str| !r.judge(&RequestPath::parse(raw).unwrap()).rules.is_empty();
    for yes in [
        "/admin",
        "/admin/",
        "/admin/users",
        "//admin",
        "/x/../admin",
        "/%61dmin",
        "/public/..%2Fadmin",
        "/public%2F..%2Fadmin/x",
        "/x/..;/admin",
        "/x\\..\\admin",
        "/admin;jsessionid=1",
        // A case-insensitive upstream (Express, ASP.NET Core, IIS).
        "/ADMIN",
        "/Admin/users",
        "/%41dmin",
        "/public/..%2FADMIN",
    ] {
        assert!(guarded(yes), "{yes} must be guarded");
        assert!(
            !r.judge(&RequestPath::parse(yes).unwrap()).public,
            "{yes} must not be public"
        );
    }
    for no in ["/administrator", "/ADMINISTRATOR", "/x/admin", "/"] {
        assert!(!guarded(no), "{no} is not under /admin");
    }
}

#[test]
fn configured_prefixes_must_be_plain_paths() {
    assert_eq!(Prefix::new("/static/").unwrap().to_string(), "/static");
    assert_eq!(Prefix::new("/").unwrap().to_string(), "/");
    for bad in [
        "static", "/a/../b", "//a", "/a/./b", "/%61", "/a?b", "/a#b", "/a\\b", "/a;b", "",
    ] {
        assert!(Prefix::new(bad).is_none(), "{bad:?}");
    }
    assert!(Prefix::new("/").unwrap().matches("/oauth2"));
    assert!(Prefix::new("/oauth2").unwrap().matches("/oauth2"));
    assert!(!Prefix::new("/oauth").unwrap().matches("/oauth2"));
}

fn step_up(max_age: Option<u64>, acr: Option<&[&str]>) -> StepUp {
    StepUp {
        max_age,
        acr_values: acr.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
    }
}

#[test]
fn the_strictest_step_up_of_the_matching_rules_applies() {
    let global = Rules::default();
    let rule = |prefix: &str, s: StepUp| PathRule {
        prefix: Prefix::new(prefix).unwrap(),
        rules: global.clone(),
        step_up: s,
    };
    let r = PathRules::new(
        vec![],
        vec![
            rule("/admin", step_up(Some(900), Some(&["mfa", "hwk"]))),
            rule("/admin/keys", step_up(Some(60), Some(&["hwk"]))),
            rule("/other", step_up(None, None)),
        ],
    );
    let of = |p: &str| r.judge(&RequestPath::parse(p).unwrap()).step_up();
    assert_eq!(of("/admin/x"), step_up(Some(900), Some(&["mfa", "hwk"])));
    assert_eq!(of("/admin/keys/1"), step_up(Some(60), Some(&["hwk"])));
    // The lenient reading counts too.
    assert_eq!(of("/x/..;/admin/keys"), step_up(Some(60), Some(&["hwk"])));
    assert!(of("/other").is_none());
    assert!(of("/").is_none());
}

#[test]
fn a_step_up_is_met_by_a_recent_enough_and_strong_enough_sign_in() {
    let at = |auth_time, acr| SignedIn { auth_time, acr };
    let s = step_up(Some(600), Some(&["mfa"]));
    assert!(s.met_by(at(Some(1000), Some("mfa")), 1600, 30));
    assert!(!s.met_by(at(Some(1000), Some("mfa")), 1601, 30), "too old");
    assert!(!s.met_by(at(Some(1000), Some("pwd")), 1100, 30), "wrong acr");
    assert!(!s.met_by(at(Some(1000), None), 1100, 30), "no acr");
    assert!(!s.met_by(at(None, Some("mfa")), 1100, 30), "unknown time");
    // max_age = 0: only the sign-in that just happened (within the skew).
    let fresh = step_up(Some(0), None);
    assert!(fresh.met_by(at(Some(1000), None), 1030, 30));
    assert!(!fresh.met_by(at(Some(1000), None), 1031, 30));
    assert!(StepUp::default().met_by(at(None, None), 0, 0));
}

#[test]
fn case_never_opens_a_path_and_never_escapes_a_rule() {
    // A prefix configured in any case guards the path in every case.
    let r = rules(&["/public"], &["/Finance"]);
    for raw in ["/Finance", "/finance/q3", "/FINANCE", "/public/..%2Ffinance"] {
        let verdict = r.judge(&RequestPath::parse(raw).unwrap());
        assert!(!verdict.rules.is_empty(), "{raw} must be guarded");
        assert!(!verdict.public, "{raw} must not be public");
    }
    // Public needs the exact case: another case may be another resource.
    for (raw, public) in [("/public/a.css", true), ("/PUBLIC/a.css", false), ("/Public", false)] {
        assert_eq!(r.judge(&RequestPath::parse(raw).unwrap()).public, public, "{raw}");
    }
    // Only ASCII letters fold, on whole segments.
    for raw in ["/finances", "/FINANCES/x", "/%EF%AC%81nance"] {
        assert!(r.judge(&RequestPath::parse(raw).unwrap()).rules.is_empty(), "{raw}");
    }
}
