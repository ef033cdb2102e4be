//! Counting HTTP requests by route group and status class, when metrics
//! are on.
//!
//! The group comes from the matched route (never the raw path), so a scan of
//! random paths adds no series. Each (group, class) counter is registered
//! once and then only incremented: no allocation or lookup per request.

use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use metrics::{Counter, counter};

use super::names;

/// What part of oidc-gate a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// Starting a sign-in: `/login`, the gateway's `/oauth2/start` and `/oauth2/sign_in`.
    Login,
    /// The provider's answer: `/callback`, `/oauth2/callback`.
    Callback,
    /// The Log out button: `/logout`, `/oauth2/sign_out`.
    Logout,
    /// The provider's back-channel logout.
    BackchannelLogout,
    /// The provider's front-channel logout.
    FrontchannelLogout,
    /// A web server asking about a request: `/oauth2/auth`.
    ForwardAuth,
    /// The gateway's `/oauth2/userinfo`.
    Userinfo,
    /// `/ping`, `/ready`, `/healthz`.
    Health,
    /// The stylesheet.
    Static,
    /// Any other route: the app's pages and an embedding app's own routes.
    Page,
    /// Passed to the gateway's upstream (reverse proxy mode).
    Upstream,
    /// No route: the 404 page.
    NotFound,
}

impl RouteGroup {
    const ALL: [RouteGroup; 12] = [
        RouteGroup::Login,
        RouteGroup::Callback,
        RouteGroup::Logout,
        RouteGroup::BackchannelLogout,
        RouteGroup::FrontchannelLogout,
        RouteGroup::ForwardAuth,
        RouteGroup::Userinfo,
        RouteGroup::Health,
        RouteGroup::Static,
        RouteGroup::Page,
        RouteGroup::Upstream,
        RouteGroup::NotFound,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RouteGroup::Login => "login",
            RouteGroup::Callback => "callback",
            RouteGroup::Logout => "logout",
            RouteGroup::BackchannelLogout => "backchannel_logout",
            RouteGroup::FrontchannelLogout => "frontchannel_logout",
            RouteGroup::ForwardAuth => "forward_auth",
            RouteGroup::Userinfo => "userinfo",
            RouteGroup::Health => "health",
            RouteGroup::Static => "static",
            RouteGroup::Page => "page",
            RouteGroup::Upstream => "upstream",
            RouteGroup::NotFound => "not_found",
        }
    }

    /// The group of a request whose matched route is `matched` (`None`: the
    /// fallback answered, which is `fallback`). `base` is where oidc-gate's
    /// own routes live: empty in the app, `ROUTE_PREFIX` in the gateway.
    pub fn of(matched: Option<&str>, base: &str, fallback: RouteGroup) -> RouteGroup {
        let Some(path) = matched else { return fallback };
        if matches!(path, "/ping" | "/ready" | "/healthz") {
            return RouteGroup::Health;
        }
        if base.is_empty() {
            return match path {
                "/login" => RouteGroup::Login,
                "/callback" | "/callback/{provider}" => RouteGroup::Callback,
                "/logout" => RouteGroup::Logout,
                "/backchannel-logout" => RouteGroup::BackchannelLogout,
                "/frontchannel-logout" => RouteGroup::FrontchannelLogout,
                "/static/style.css" => RouteGroup::Static,
                _ => RouteGroup::Page,
            };
        }
        match path.strip_prefix(base) {
            Some("/start" | "/sign_in") => RouteGroup::Login,
            Some("/callback" | "/callback/{provider}") => RouteGroup::Callback,
            Some("/sign_out") => RouteGroup::Logout,
            Some("/backchannel-logout") => RouteGroup::BackchannelLogout,
            Some("/frontchannel-logout") => RouteGroup::FrontchannelLogout,
            Some("/auth") => RouteGroup::ForwardAuth,
            Some("/userinfo") => RouteGroup::Userinfo,
            Some("/static/style.css") => RouteGroup::Static,
            _ => RouteGroup::Page,
        }
    }
}

/// The class of a status: `1xx` to `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClass(u8);

impl StatusClass {
    const LABELS: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    /// The class of `status`.
    pub fn of(status: StatusCode) -> Self {
        // `StatusCode` is 100..=999; 6xx to 9xx are counted as 5xx.
        Self((status.as_u16() / 100).clamp(1, 5) as u8 - 1)
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        Self::LABELS[self.0 as usize]
    }
}

/// The counters, one per (group, class), each registered on first use.
/// One table for the process, like the recorder they are registered with.
struct Counters([OnceLock<Counter>; RouteGroup::ALL.len() * StatusClass::LABELS.len()]);

static COUNTERS: Counters = Counters([const { OnceLock::new() }; RouteGroup::ALL.len() * StatusClass::LABELS.len()]);

impl Counters {
    fn increment(&self, group: RouteGroup, class: StatusClass) {
        let slot = group as usize * StatusClass::LABELS.len() + class.0 as usize;
        self.0[slot]
            .get_or_init(|| counter!(names::HTTP_REQUESTS, "group" => group.label(), "status" => class.label()))
            .increment(1);
    }
}

/// Counts answers in `oidc_gate_http_requests_total` by route group and
/// status class. Not a layer of its own: the request layer
/// ([`crate::web::RequestLayer`]), which already reads the matched route and
/// waits for the answer, counts through it, so counting adds no service,
/// future or allocation to a request. Build it after [`super::install`].
#[derive(Clone, Debug)]
pub struct RequestCounter {
    base: Arc<str>,
    fallback: RouteGroup,
}

impl RequestCounter {
    /// For routes under `base` (see [`RouteGroup::of`]) whose fallback is `fallback`.
    pub fn new(base: &str, fallback: RouteGroup) -> Self {
        Self {
            base: base.into(),
            fallback,
        }
    }

    /// The group of a request whose matched route is `matched`.
    pub fn group(&self, matched: Option<&str>) -> RouteGroup {
        RouteGroup::of(matched, &self.base, self.fallback)
    }

    /// Counts one answer of `group` with `status`.
    pub fn count(group: RouteGroup, status: StatusCode) {
        COUNTERS.increment(group, StatusClass::of(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_groups_of_the_app_and_the_gateway() {
        use RouteGroup::*;
        let cases: &[(Option<&str>, &str, RouteGroup, RouteGroup)] = &[
            (Some("/login"), "", NotFound, Login),
            (Some("/callback"), "", NotFound, Callback),
            (Some("/callback/{provider}"), "", NotFound, Callback),
            (Some("/logout"), "", NotFound, Logout),
            (Some("/backchannel-logout"), "", NotFound, BackchannelLogout),
            (Some("/frontchannel-logout"), "", NotFound, FrontchannelLogout),
            (Some("/static/style.css"), "", NotFound, Static),
            (Some("/healthz"), "", NotFound, Health),
            (Some("/secret"), "", NotFound, Page),
            (Some("/"), "", NotFound, Page),
            // An embedding app's own route that looks like the gateway's.
            (Some("/start"), "", NotFound, Page),
            (None, "", NotFound, NotFound),
            (Some("/oauth2/start"), "/oauth2", Upstream, Login),
            (Some("/oauth2/sign_in"), "/oauth2", Upstream, Login),
            (Some("/oauth2/callback"), "/oauth2", Upstream, Callback),
            (Some("/oauth2/sign_out"), "/oauth2", Upstream, Logout),
            (Some("/oauth2/auth"), "/oauth2", Upstream, ForwardAuth),
            (Some("/oauth2/userinfo"), "/oauth2", Upstream, Userinfo),
            (
                Some("/oauth2/backchannel-logout"),
                "/oauth2",
                Upstream,
                BackchannelLogout,
            ),
            (
                Some("/oauth2/frontchannel-logout"),
                "/oauth2",
                Upstream,
                FrontchannelLogout,
            ),
            (Some("/oauth2/static/style.css"), "/oauth2", Upstream, Static),
            (Some("/ping"), "/oauth2", Upstream, Health),
            (Some("/ready"), "/oauth2", Upstream, Health),
            // The app's paths mean nothing under the gateway's prefix.
            (Some("/login"), "/oauth2", Upstream, Page),
            (None, "/oauth2", Upstream, Upstream),
            (None, "/oauth2", NotFound, NotFound),
        ];
        for &(matched, base, fallback, want) in cases {
            assert_eq!(
                RouteGroup::of(matched, base, fallback),
                want,
                "{matched:?} under {base:?}"
            );
        }
    }

    #[test]
    fn status_classes() {
        for (status, want) in [
            (101, "1xx"),
            (200, "2xx"),
            (204, "2xx"),
            (303, "3xx"),
            (404, "4xx"),
            (429, "4xx"),
            (502, "5xx"),
            (599, "5xx"),
            (999, "5xx"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(StatusClass::of(status).label(), want, "{status}");
        }
    }

    #[test]
    fn every_group_has_its_own_slot() {
        for (i, group) in RouteGroup::ALL.iter().enumerate() {
            assert_eq!(*group as usize, i, "{group:?}");
        }
    }
}
