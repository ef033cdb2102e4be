use serde_json::json;

use super::*;
use crate::config::ClientConfig;
use crate::provider::VerifiedIdToken;
use crate::secret::Secret;

fn args() -> AccessArgs {
    AccessArgs {
        groups_claim: "groups".into(),
        ..AccessArgs::default()
    }
}

fn provider(issuer: &str) -> ProviderChoice {
    ProviderChoice::Configured(ClientConfig {
        issuer: issuer.into(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
    })
}

fn rules(change: impl FnOnce(&mut AccessArgs), issuer: &str) -> Rules {
    let mut a = args();
    change(&mut a);
    Rules::from_args(&a, &provider(issuer)).unwrap()
}

fn user(email: &str) -> Claims {
    Claims {
        email: Some(email.into()),
        email_verified: Some(true),
        ..Claims::default()
    }
}

const OTHER: &str = "https://idp.example.net";

#[test]
fn every_rule_admits_and_refuses_with_its_reason() {
    use Refusal::*;
    let domains = rules(
        |a| a.allowed_email_domains = Some("Example.com, @corp.example".into()),
        OTHER,
    );
    let emails = rules(
        |a| a.allowed_emails = Some("Ada@Example.org,bob@example.net".into()),
        OTHER,
    );
    let both = rules(
        |a| {
            a.allowed_email_domains = Some("example.com".into());
            a.allowed_emails = Some("guest@gmail.com".into());
        },
        OTHER,
    );
    let groups = rules(|a| a.allowed_groups = Some("admins,ops".into()), OTHER);
    let google = rules(|a| a.allowed_email_domains = Some("example.com".into()), GOOGLE_ISSUER);
    let google_and_guest = rules(
        |a| {
            a.allowed_email_domains = Some("example.com".into());
            a.allowed_emails = Some("guest@gmail.com".into());
        },
        GOOGLE_ISSUER,
    );
    let unverified_ok = rules(
        |a| {
            a.allowed_email_domains = Some("example.com".into());
            a.require_email_verified = Some("false".into());
        },
        OTHER,
    );
    let groups_and_domain = rules(
        |a| {
            a.allowed_groups = Some("admins".into());
            a.allowed_email_domains = Some("example.com".into());
        },
        OTHER,
    );
    let with = |email: &str, change: fn(&mut Claims)| {
        let mut c = user(email);
        change(&mut c);
        c
    };
    let in_groups = |email: &str, groups: &[&str]| Claims {
        groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        ..user(email)
    };
    let cases: Vec<(&str, &Rules, Claims, Result<(), Refusal>)> = vec![
        ("domain, any case", &domains, user("ADA@EXAMPLE.COM"), Ok(())),
        (
            "second domain, written with @",
            &domains,
            user("x@corp.example"),
            Ok(()),
        ),
        (
            "suffix trick before",
            &domains,
            user("x@evil-example.com"),
            Err(EmailDomainNotAllowed),
        ),
        (
            "suffix trick after",
            &domains,
            user("x@example.com.evil"),
            Err(EmailDomainNotAllowed),
        ),
        (
            "subdomain",
            &domains,
            user("x@mail.example.com"),
            Err(EmailDomainNotAllowed),
        ),
        (
            "last @ counts",
            &domains,
            user("\"x@example.com\"@evil.test"),
            Err(EmailDomainNotAllowed),
        ),
        ("no @ at all", &domains, user("example.com"), Err(EmailDomainNotAllowed)),
        ("no email", &domains, Claims::default(), Err(EmailMissing)),
        ("empty email", &domains, user(""), Err(EmailMissing)),
        (
            "unverified",
            &domains,
            with("x@example.com", |c| c.email_verified = Some(false)),
            Err(EmailUnverified),
        ),
        (
            "verification missing",
            &domains,
            with("x@example.com", |c| c.email_verified = None),
            Err(EmailUnverified),
        ),
        (
            "unverified allowed",
            &unverified_ok,
            with("x@example.com", |c| c.email_verified = None),
            Ok(()),
        ),
        ("listed email, any case", &emails, user("ada@EXAMPLE.org"), Ok(())),
        ("unlisted email", &emails, user("eve@example.org"), Err(EmailNotAllowed)),
        (
            "listed email as domain",
            &emails,
            user("x@example.net"),
            Err(EmailNotAllowed),
        ),
        ("domain or email: domain", &both, user("x@example.com"), Ok(())),
        ("domain or email: email", &both, user("guest@gmail.com"), Ok(())),
        (
            "domain or email: neither",
            &both,
            user("x@gmail.com"),
            Err(EmailDomainNotAllowed),
        ),
        (
            "group",
            &groups,
            in_groups("x@anywhere.test", &["staff", "ops"]),
            Ok(()),
        ),
        (
            "group case matters",
            &groups,
            in_groups("x@anywhere.test", &["Admins"]),
            Err(GroupNotAllowed),
        ),
        (
            "no group",
            &groups,
            in_groups("x@anywhere.test", &[]),
            Err(GroupNotAllowed),
        ),
        (
            "groups not read",
            &groups,
            user("x@anywhere.test"),
            Err(GroupNotAllowed),
        ),
        (
            "group rule needs no email",
            &groups,
            Claims {
                groups: Some(vec!["ops".into()]),
                ..Claims::default()
            },
            Ok(()),
        ),
        (
            "group and domain",
            &groups_and_domain,
            in_groups("x@example.com", &["admins"]),
            Ok(()),
        ),
        (
            "group but not domain",
            &groups_and_domain,
            in_groups("x@other.test", &["admins"]),
            Err(EmailDomainNotAllowed),
        ),
        (
            "domain but not group",
            &groups_and_domain,
            in_groups("x@example.com", &["staff"]),
            Err(GroupNotAllowed),
        ),
        (
            "Google Workspace",
            &google,
            with("x@example.com", |c| c.hd = Some("example.com".into())),
            Ok(()),
        ),
        ("Google without hd", &google, user("x@example.com"), Err(HdNotAllowed)),
        (
            "Google, other hd",
            &google,
            with("x@example.com", |c| c.hd = Some("evil.test".into())),
            Err(HdNotAllowed),
        ),
        (
            "Google, listed guest needs no hd",
            &google_and_guest,
            user("guest@gmail.com"),
            Ok(()),
        ),
        (
            "Google, other domain",
            &google,
            with("x@evil.test", |c| c.hd = Some("example.com".into())),
            Err(EmailDomainNotAllowed),
        ),
        (
            "hd of another provider, allowed",
            &domains,
            with("x@example.com", |c| c.hd = Some("EXAMPLE.COM".into())),
            Ok(()),
        ),
        (
            "hd of another provider, not allowed",
            &domains,
            with("x@example.com", |c| c.hd = Some("evil.test".into())),
            Err(HdNotAllowed),
        ),
    ];
    for (name, rules, claims, expected) in cases {
        assert_eq!(rules.check(&claims), expected, "{name}");
    }
}

#[test]
fn no_rule_is_open_and_admits_anyone() {
    let open = Rules::from_args(&args(), &ProviderChoice::Development).unwrap();
    assert!(open.is_open());
    assert_eq!(open.check(&Claims::default()), Ok(()));
    assert!(open.wanted_claims().is_empty());
    assert!(Rules::default().is_open());
    // Blank values (`ALLOWED_EMAILS=` in a compose file) are unset.
    assert!(rules(|a| a.allowed_email_domains = Some(" , ".into()), OTHER).is_open());
    let verified_only = rules(|a| a.require_email_verified = Some("true".into()), OTHER);
    assert!(!verified_only.is_open());
    assert_eq!(verified_only.check(&user("x@y.test")), Ok(()));
    let mut unverified = user("x@y.test");
    unverified.email_verified = Some(false);
    assert_eq!(verified_only.check(&unverified), Err(Refusal::EmailUnverified));
}

#[test]
fn email_lists_are_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowed.txt");
    std::fs::write(
        &path,
        "# staff\nAda@Example.com\n\n  bob@example.net  \n# old: eve@example.org\n",
    )
    .unwrap();
    let r = rules(|a| a.allowed_emails = Some(format!("@{}", path.display())), OTHER);
    assert_eq!(r.check(&user("ada@example.com")), Ok(()));
    assert_eq!(r.check(&user("bob@example.net")), Ok(()));
    assert_eq!(r.check(&user("eve@example.org")), Err(Refusal::EmailNotAllowed));
    assert_eq!(r.check(&user("# staff")), Err(Refusal::EmailNotAllowed));
}

#[test]
fn bad_settings_name_their_variable() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# nobody yet\n\n").unwrap();
    let cases: Vec<(&str, AccessArgs)> = vec![
        (
            "ALLOWED_EMAIL_DOMAINS",
            AccessArgs {
                allowed_email_domains: Some("*.example.com".into()),
                ..args()
            },
        ),
        (
            "ALLOWED_EMAIL_DOMAINS",
            AccessArgs {
                allowed_email_domains: Some("ada@example.com".into()),
                ..args()
            },
        ),
        (
            "ALLOWED_EMAIL_DOMAINS",
            AccessArgs {
                allowed_email_domains: Some(".example.com".into()),
                ..args()
            },
        ),
        (
            "ALLOWED_EMAILS",
            AccessArgs {
                allowed_emails: Some("example.com".into()),
                ..args()
            },
        ),
        (
            "ALLOWED_EMAILS",
            AccessArgs {
                allowed_emails: Some("@/nonexistent/list.txt".into()),
                ..args()
            },
        ),
        (
            "ALLOWED_EMAILS",
            AccessArgs {
                allowed_emails: Some(format!("@{}", empty.display())),
                ..args()
            },
        ),
        (
            "ALLOWED_GROUPS",
            AccessArgs {
                allowed_groups: Some("@/nonexistent/groups.txt".into()),
                ..args()
            },
        ),
        (
            "GROUPS_CLAIM",
            AccessArgs {
                groups_claim: "realm_access..roles".into(),
                ..args()
            },
        ),
        (
            "REQUIRE_EMAIL_VERIFIED",
            AccessArgs {
                require_email_verified: Some("maybe".into()),
                ..args()
            },
        ),
    ];
    for (var, a) in cases {
        let e = Rules::from_args(&a, &provider(OTHER)).unwrap_err().to_string();
        assert!(e.contains(var), "{var}: {e}");
    }
}

fn login(claims: serde_json::Value, userinfo: serde_json::Value) -> Login {
    Login {
        id_token: VerifiedIdToken {
            subject: "s".into(),
            sid: None,
            email: Some("x@example.com".into()),
            email_verified: Some(true),
            name: Some("N".repeat(1000)),
            picture: None,
            claims: claims.as_object().unwrap().clone(),
        },
        raw_id_token: String::new(),
        access_token: crate::secret::Secret::new(String::new()),
        access_expires_at: None,
        refresh_token: None,
        userinfo_claims: userinfo.as_object().unwrap().clone(),
    }
}

#[test]
fn claims_come_from_the_id_token_then_userinfo_and_stay_small() {
    let keycloak = rules(
        |a| {
            a.allowed_groups = Some("admin".into());
            a.groups_claim = "realm_access.roles".into();
        },
        OTHER,
    );
    assert_eq!(
        keycloak.wanted_claims(),
        vec![ClaimPath::new("realm_access.roles").unwrap()]
    );
    let c = keycloak.claims_of(&login(json!({"realm_access": {"roles": ["user", "admin"]}}), json!({})));
    assert_eq!(c.groups.as_deref(), Some(&["admin".to_owned(), "user".to_owned()][..]));
    assert_eq!(keycloak.check(&c), Ok(()));
    assert_eq!(c.name.as_ref().unwrap().chars().count(), MAX_NAME_LEN);

    // The ID token lacks the claim: UserInfo's is read; one string is one group.
    let groups = rules(|a| a.allowed_groups = Some("admin".into()), OTHER);
    let c = groups.claims_of(&login(json!({}), json!({"groups": "admin", "hd": "example.com"})));
    assert_eq!(c.groups, Some(vec!["admin".to_owned()]));
    assert_eq!(c.hd.as_deref(), Some("example.com"));
    // The ID token's claim wins over UserInfo's.
    let c = groups.claims_of(&login(json!({"groups": ["staff"]}), json!({"groups": ["admin"]})));
    assert_eq!(groups.check(&c), Err(Refusal::GroupNotAllowed));

    // Thousands of groups: the allowed one is kept, the rest bounded.
    let mut many: Vec<String> = (0..5000).map(|i| format!("g{i}")).collect();
    many.push("x".repeat(10_000));
    many.push("admin".into());
    let c = groups.claims_of(&login(json!({ "groups": many }), json!({})));
    let kept = c.groups.unwrap();
    assert_eq!(kept.len(), MAX_GROUPS);
    assert_eq!(kept[0], "admin");
    assert!(kept.iter().all(|g| g.len() <= MAX_GROUP_LEN));

    // No group rule: groups are neither read nor kept.
    let domains = rules(|a| a.allowed_email_domains = Some("example.com".into()), OTHER);
    let c = domains.claims_of(&login(json!({"groups": ["admin"]}), json!({})));
    assert_eq!(c.groups, None);
    assert!(
        !groups.can_judge(&c),
        "a group rule cannot judge a session without groups"
    );
    assert!(domains.can_judge(&c));
}

#[test]
fn google_gets_the_hd_hint_for_one_domain_only() {
    let one = rules(|a| a.allowed_email_domains = Some("Example.com".into()), GOOGLE_ISSUER);
    assert_eq!(
        one.authorization_params(),
        vec![("hd".to_owned(), "example.com".to_owned())]
    );
    let two = rules(
        |a| a.allowed_email_domains = Some("a.test,b.test".into()),
        GOOGLE_ISSUER,
    );
    assert!(two.authorization_params().is_empty());
    let other = rules(|a| a.allowed_email_domains = Some("example.com".into()), OTHER);
    assert!(other.authorization_params().is_empty());
}
