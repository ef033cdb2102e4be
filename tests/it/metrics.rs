//! Prometheus metrics (`METRICS_LISTEN`): scraped from their own listener
//! after real sign-ins, failures and gateway requests, and parsed.
//!
//! The recorder is the process's: other tests running at the same time
//! count into it too, so each test compares a scrape after with a scrape
//! before, and only ever asks that a counter grew by at least its own share.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use reqwest::StatusCode;

use crate::fake_op::FakeOp;
use crate::support::*;

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: the samples and the `# TYPE` of each family.
#[derive(Debug, Default)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the Prometheus text format strictly: any line that is not a
    /// comment or `name{label="value",…} number` fails the test.
    fn parse(text: &str) -> Self {
        let mut scrape = Scrape::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
                scrape.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name, parse_labels(body, line))
                }
            };
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name: {line}"
            );
            scrape.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        scrape
    }

    /// The value of the series `name` with exactly these labels (0 if absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map_or(0.0, |s| s.value)
    }

    /// The samples of `name` whose labels include `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .collect()
    }
}

/// `key="value",…` (values without escapes: ours never need them).
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("unclosed label value: {line}"));
        assert!(!value.contains('\\'), "escapes are not expected: {line}");
        labels.insert(key.to_owned(), value.to_owned());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    labels
}

/// Scrapes `GET /metrics` on the metrics listener of `app`.
async fn scrape(app: &TestApp) -> Scrape {
    let addr = app.metrics_addr.expect("the app serves metrics");
    let r = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    Scrape::parse(&r.text().await.unwrap())
}

async fn metrics_app() -> TestApp {
    TestApp::spawn_with(Options {
        metrics: true,
        ..Options::default()
    })
    .await
}

/// How much the series grew between two scrapes.
fn grew(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

#[tokio::test]
async fn a_sign_in_and_a_logout_are_counted_and_timed() {
    let app = metrics_app().await;
    let before = scrape(&app).await;
    let browser = Browser::new();
    let r = login(&app, &browser, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(text(browser.get(&app.url("/secret")).await).await.contains(SECRET));
    let signed_in = scrape(&app).await;

    let logins = "oidc_gate_logins_total";
    let success = [("outcome", "success"), ("reason", "ok"), ("provider", "default")];
    assert!(grew(&before, &signed_in, logins, &success) >= 1.0);
    assert!(grew(&before, &signed_in, "oidc_gate_sessions_created_total", &[]) >= 1.0);
    let requests = "oidc_gate_http_requests_total";
    for (group, status) in [("login", "3xx"), ("callback", "3xx"), ("page", "2xx")] {
        let labels = [("group", group), ("status", status)];
        assert!(grew(&before, &signed_in, requests, &labels) >= 1.0, "{group} {status}");
    }
    assert_eq!(signed_in.types[requests], "counter");
    assert_eq!(
        signed_in.value("oidc_gate_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );

    // Store latencies are real histograms: buckets up to +Inf, a count and a sum.
    let store = "oidc_gate_store_operation_seconds";
    assert_eq!(signed_in.types[store], "histogram");
    // A sign-in creates its session in the store; the signed-in page is
    // answered from the embedded store's session cache, which is no store
    // operation and is not timed.
    let create = [("backend", "sqlite"), ("operation", "session_create")];
    let buckets = signed_in.matching(&format!("{store}_bucket"), &create);
    assert!(buckets.len() > 5, "{buckets:?}");
    let inf = signed_in.value(&format!("{store}_bucket"), &[create[0], create[1], ("le", "+Inf")]);
    assert_eq!(inf, signed_in.value(&format!("{store}_count"), &create));
    assert!(grew(&before, &signed_in, &format!("{store}_count"), &create) >= 1.0);
    let load = [("backend", "sqlite"), ("operation", "session_load")];
    let cached = scrape(&app).await;
    assert!(text(browser.get(&app.url("/secret")).await).await.contains(SECRET));
    assert_eq!(
        grew(&cached, &scrape(&app).await, &format!("{store}_count"), &load),
        0.0
    );

    // The code exchange with the (development) provider, timed.
    let provider = "oidc_gate_provider_request_seconds";
    assert_eq!(signed_in.types[provider], "histogram");
    assert!(
        grew(
            &before,
            &signed_in,
            &format!("{provider}_count"),
            &[("request", "token")]
        ) >= 1.0
    );
    assert!(
        !signed_in
            .matching(&format!("{provider}_bucket"), &[("request", "discovery")])
            .is_empty()
    );

    // The Log out button, sent on to the provider's logout.
    let r = click_log_out(&browser, &app.url("")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let out = scrape(&app).await;
    let kind = [("kind", "rp_initiated")];
    assert!(grew(&signed_in, &out, "oidc_gate_logouts_total", &kind) >= 1.0);
    let ended = [("reason", "logout")];
    assert!(grew(&signed_in, &out, "oidc_gate_sessions_ended_total", &ended) >= 1.0);
    let delete = [("backend", "sqlite"), ("operation", "session_delete")];
    assert!(grew(&signed_in, &out, &format!("{store}_count"), &delete) >= 1.0);
}

#[tokio::test]
async fn a_failed_sign_in_is_counted_with_its_reason() {
    let app = metrics_app().await;
    let before = scrape(&app).await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    let r = browser.get(&callback.replace("state=", "state=x")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("state_mismatch"));
    let r = browser.get(&app.url("/callback?code=abc")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let after = scrape(&app).await;
    let logins = "oidc_gate_logins_total";
    // One provider: a sign-in is at it, even when the state names none.
    for reason in ["state_mismatch", "state_missing"] {
        let labels = [("outcome", "failure"), ("reason", reason), ("provider", "default")];
        assert!(grew(&before, &after, logins, &labels) >= 1.0, "{reason}");
    }
    let labels = [("group", "callback"), ("status", "4xx")];
    assert!(grew(&before, &after, "oidc_gate_http_requests_total", &labels) >= 2.0);
}

#[tokio::test]
async fn the_public_listener_never_serves_metrics() {
    for metrics in [true, false] {
        let app = TestApp::spawn_with(Options {
            metrics,
            ..Options::default()
        })
        .await;
        let r = reqwest::get(app.url("/metrics")).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "metrics on: {metrics}");
        let body = text(r).await;
        assert!(body.contains("Page not found"), "the app's own 404 page");
        assert!(!body.contains("oidc_gate_"), "{body}");
    }
    let app = metrics_app().await;
    let addr = app.metrics_addr.unwrap();
    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "only /metrics on the metrics listener"
    );
    // The 404 of /metrics on the public port is counted as no route, not by its path.
    reqwest::get(app.url("/metrics")).await.unwrap();
    let after = scrape(&app).await;
    let labels = [("group", "not_found"), ("status", "4xx")];
    assert!(after.value("oidc_gate_http_requests_total", &labels) >= 1.0);
    assert!(
        after
            .samples
            .iter()
            .all(|s| s.labels.values().all(|v| !v.contains("/metrics"))),
        "no raw path in a label"
    );
}

#[tokio::test]
async fn the_metrics_listener_stops_with_the_server() {
    let mut app = metrics_app().await;
    let addr = app.metrics_addr.unwrap();
    scrape(&app).await;
    app.stop().await;
    // The public server stopped; the metrics listener was closed with it.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "metrics listener still open");
}

/// The address of a gateway upstream that is down, for the `tweak` function pointer.
static DOWN: OnceLock<String> = OnceLock::new();

#[tokio::test]
async fn a_gateway_upstream_that_is_down_is_counted() {
    let down = DOWN.get_or_init(|| {
        // Bound and closed again: nothing listens there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        format!("http://{addr}")
    });
    assert!(!down.is_empty());
    let app = TestApp::spawn_with(Options {
        metrics: true,
        tweak: Some(|a| {
            a.gateway = crate::gateway::defaults();
            a.gateway.upstream_url = DOWN.get().cloned();
            a.gateway.public_paths = Some("/public".into());
        }),
        ..Options::default()
    })
    .await;
    let before = scrape(&app).await;
    let r = reqwest::get(app.url("/public/page")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let after = scrape(&app).await;
    let refused = [("reason", "upstream_refused")];
    assert!(grew(&before, &after, "oidc_gate_upstream_errors_total", &refused) >= 1.0);
    assert!(grew(&before, &after, "oidc_gate_upstream_request_seconds_count", &[]) >= 1.0);
    assert_eq!(after.types["oidc_gate_upstream_request_seconds"], "histogram");
    let labels = [("group", "upstream"), ("status", "5xx")];
    assert!(grew(&before, &after, "oidc_gate_http_requests_total", &labels) >= 1.0);
}

/// With several providers, sign-ins are counted by provider; one refused
/// before it is known which provider it is at (no state) is `unknown`.
#[tokio::test]
async fn with_several_providers_sign_ins_are_counted_by_provider() {
    let (a, b) = (FakeOp::start().await, FakeOp::start().await);
    let (_dir, file) = crate::providers::providers_file(&[&a, &b], &[]);
    let app = TestApp::spawn_with(Options {
        metrics: true,
        config_file: Some(file),
        ..Options::default()
    })
    .await;
    let before = scrape(&app).await;
    let browser = Browser::new();
    let r = browser.get(&app.url("/login?provider=b")).await;
    let at_provider = browser.get(&redirect_target(&r)).await;
    let r = browser.get(&redirect_target(&at_provider)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in at b");
    let r = browser.get(&app.url("/callback/a?code=x")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let after = scrape(&app).await;
    let logins = "oidc_gate_logins_total";
    let success = [("outcome", "success"), ("reason", "ok"), ("provider", "b")];
    assert_eq!(grew(&before, &after, logins, &success), 1.0);
    let missing = [
        ("outcome", "failure"),
        ("reason", "state_missing"),
        ("provider", "unknown"),
    ];
    assert_eq!(grew(&before, &after, logins, &missing), 1.0);
    assert!(after.matching(logins, &[("provider", "a")]).is_empty(), "nothing at a");
}
