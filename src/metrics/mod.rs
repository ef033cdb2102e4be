//! Prometheus metrics: what is counted and timed, under which names, and
//! the separate listener that serves them (`METRICS_LISTEN`).
//!
//! Code anywhere in the crate records through the `metrics` facade (the
//! functions here, so that every name and label lives in this module); the
//! recorder is `metrics-exporter-prometheus`, installed for the whole
//! process by the first [`install`] (an app started with metrics). Without
//! it, recording costs next to nothing and nothing is kept. Latencies are
//! real Prometheus histograms ([`LATENCY_BUCKETS`]), not summaries.
//!
//! Label values are fixed sets (route groups, reason codes, operation
//! names), never raw paths or user input, so the number of series stays
//! bounded.

mod listener;
mod requests;
mod store;

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use listener::serve;
pub use requests::{RequestCounter, RouteGroup, StatusClass};
pub use store::{StoreMetrics, StoreOp};

/// Upper bounds (seconds) of the latency histograms' buckets: from a cached
/// session load (well under a millisecond) to a provider at its timeout.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// The metric names, each with what it measures.
pub mod names {
    /// Gauge, `version`: always 1; the version is the label.
    pub const BUILD_INFO: &str = "oidc_gate_build_info";
    /// Counter, `group`, `status`: HTTP requests answered, by route group and status class.
    pub const HTTP_REQUESTS: &str = "oidc_gate_http_requests_total";
    /// Counter, `outcome`, `reason`: sign-ins completed (`success`), failed or refused.
    pub const LOGINS: &str = "oidc_gate_logins_total";
    /// Counter, `kind`: logouts, by how they came.
    pub const LOGOUTS: &str = "oidc_gate_logouts_total";
    /// Counter: sessions signed in.
    pub const SESSIONS_CREATED: &str = "oidc_gate_sessions_created_total";
    /// Counter, `reason`: signed-in sessions ended.
    pub const SESSIONS_ENDED: &str = "oidc_gate_sessions_ended_total";
    /// Histogram, `backend`, `operation`: store operations' latency.
    pub const STORE_OPERATION_SECONDS: &str = "oidc_gate_store_operation_seconds";
    /// Counter, `backend`, `operation`: store operations that failed or timed out.
    pub const STORE_ERRORS: &str = "oidc_gate_store_errors_total";
    /// Histogram, `request`: requests to the OpenID provider.
    pub const PROVIDER_REQUEST_SECONDS: &str = "oidc_gate_provider_request_seconds";
    /// Counter, `request`, `reason`: provider requests that failed.
    pub const PROVIDER_ERRORS: &str = "oidc_gate_provider_errors_total";
    /// Histogram: the gateway's upstream, until its response headers.
    pub const UPSTREAM_REQUEST_SECONDS: &str = "oidc_gate_upstream_request_seconds";
    /// Counter, `reason`: requests the upstream failed (502/504 and the like).
    pub const UPSTREAM_ERRORS: &str = "oidc_gate_upstream_errors_total";
    /// Counter, `route`: requests refused by a rate limit (429).
    pub const RATE_LIMITED: &str = "oidc_gate_rate_limited_total";
}

/// The process's recorder: installed once, then shared by every app.
static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls
/// return the same handle) and sets the build info. Fails only when another
/// `metrics` recorder was installed first (by an embedding program).
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|e| format!("another metrics recorder is installed: {e}"))?;
            describe();
            gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Ok(handle)
        })
        .clone()
}

/// Folds histogram samples into buckets every few seconds (rendering does
/// too; this bounds memory between scrapes). Runs until dropped.
pub async fn upkeep_forever(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// The `# HELP` lines.
fn describe() {
    use names::*;
    describe_gauge!(BUILD_INFO, "Build information: always 1, the version is the label.");
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route group and status class."
    );
    describe_counter!(
        LOGINS,
        "Sign-ins, by outcome (success, failure, refused) and reason code."
    );
    describe_counter!(
        LOGOUTS,
        "Logouts, by kind (button, rp_initiated, back_channel, front_channel, timeout)."
    );
    describe_counter!(SESSIONS_CREATED, "Sessions signed in.");
    describe_counter!(SESSIONS_ENDED, "Signed-in sessions ended, by reason.");
    describe_histogram!(
        STORE_OPERATION_SECONDS,
        Unit::Seconds,
        "Latency of store operations, by backend and operation."
    );
    describe_counter!(
        STORE_ERRORS,
        "Store operations that failed or timed out, by backend and operation."
    );
    describe_histogram!(
        PROVIDER_REQUEST_SECONDS,
        Unit::Seconds,
        "Latency of requests to the OpenID provider, by request."
    );
    describe_counter!(
        PROVIDER_ERRORS,
        "Requests to the OpenID provider that failed, by request and reason."
    );
    describe_histogram!(
        UPSTREAM_REQUEST_SECONDS,
        Unit::Seconds,
        "Latency of the gateway's upstream until its response headers."
    );
    describe_counter!(UPSTREAM_ERRORS, "Requests the gateway's upstream failed, by reason.");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit (429), by route.");
}

/// How a sign-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Signed in.
    Success,
    /// The callback failed (the reason is the error page's code).
    Failure,
    /// The access rules refused the user (the reason is the refusal's code).
    Refused,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::Failure => "failure",
            LoginOutcome::Refused => "refused",
        }
    }
}

/// Counts a sign-in at `provider` (its id; [`UNKNOWN_PROVIDER`] when the
/// callback names none of several); `reason` is a reason code (`ok` for a
/// success).
pub fn login(outcome: LoginOutcome, reason: &'static str, provider: &str) {
    let labels = [
        ("outcome", outcome.label().into()),
        ("reason", reason.into()),
        ("provider", provider.to_owned()),
    ];
    counter!(names::LOGINS, &labels).increment(1);
    if outcome == LoginOutcome::Success {
        counter!(names::SESSIONS_CREATED).increment(1);
    }
}

/// The `provider` of a sign-in refused before it was known which of
/// several providers it was at (no `state`, or one of no login in progress).
pub const UNKNOWN_PROVIDER: &str = "unknown";

/// How a logout came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutKind {
    /// The Log out button, ended here only (the provider has no `end_session_endpoint`).
    Button,
    /// The Log out button, and the browser sent on to the provider's logout.
    RpInitiated,
    /// The provider's back-channel logout token.
    BackChannel,
    /// The provider's front-channel logout (a browser sent by it).
    FrontChannel,
    /// The session's idle timeout or maximum age, seen on its next request.
    Timeout,
    /// The provider refused to refresh the session's tokens (the grant
    /// revoked, the user disabled), or a refreshed ID token was invalid.
    Refresh,
}

impl LogoutKind {
    fn label(self) -> &'static str {
        match self {
            LogoutKind::Button => "button",
            LogoutKind::RpInitiated => "rp_initiated",
            LogoutKind::BackChannel => "back_channel",
            LogoutKind::FrontChannel => "front_channel",
            LogoutKind::Timeout => "timeout",
            LogoutKind::Refresh => "refresh",
        }
    }
}

/// Counts a logout.
pub fn logout(kind: LogoutKind) {
    counter!(names::LOGOUTS, "kind" => kind.label()).increment(1);
}

/// Counts `n` signed-in sessions ended for `reason` (`logout`,
/// `back_channel`, `front_channel`, `session_idle`, `session_max_age`, or an access refusal's code).
pub fn sessions_ended(reason: &'static str, n: u64) {
    if n > 0 {
        counter!(names::SESSIONS_ENDED, "reason" => reason).increment(n);
    }
}

/// Counts a request refused by a rate limit on `route` (a route group such
/// as `login` or `callback`, never a raw path).
pub fn rate_limited(route: &'static str) {
    counter!(names::RATE_LIMITED, "route" => route).increment(1);
}

/// A request to the OpenID provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderRequest {
    /// The discovery document.
    Discovery,
    /// The JSON Web Key Set.
    Jwks,
    /// The code exchange at the token endpoint.
    Token,
    /// The UserInfo endpoint.
    Userinfo,
    /// Token revocation at logout (RFC 7009), one per token.
    Revocation,
    /// Token introspection of an opaque bearer token.
    Introspection,
    /// A refresh token redeemed at the token endpoint.
    Refresh,
}

impl ProviderRequest {
    fn label(self) -> &'static str {
        match self {
            ProviderRequest::Discovery => "discovery",
            ProviderRequest::Jwks => "jwks",
            ProviderRequest::Token => "token",
            ProviderRequest::Userinfo => "userinfo",
            ProviderRequest::Revocation => "revocation",
            ProviderRequest::Introspection => "introspection",
            ProviderRequest::Refresh => "refresh",
        }
    }
}

/// Runs a request to the provider, recording its latency, and its reason
/// code (`reason` of the error) when it failed.
pub async fn timed_provider<T, E>(
    request: ProviderRequest,
    reason: impl FnOnce(&E) -> &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let result = fut.await;
    let label = request.label();
    histogram!(names::PROVIDER_REQUEST_SECONDS, "request" => label).record(start.elapsed().as_secs_f64());
    if let Err(e) = &result {
        counter!(names::PROVIDER_ERRORS, "request" => label, "reason" => reason(e)).increment(1);
    }
    result
}

/// Records one request to the gateway's upstream: its latency until the
/// response headers, and its reason code when it failed.
pub fn upstream_request(elapsed: Duration, error: Option<&'static str>) {
    histogram!(names::UPSTREAM_REQUEST_SECONDS).record(elapsed.as_secs_f64());
    if let Some(reason) = error {
        counter!(names::UPSTREAM_ERRORS, "reason" => reason).increment(1);
    }
}
