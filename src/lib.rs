//! # oidc-gate
//!
//! OpenID Connect login, server-side sessions and page protection for axum
//! apps, and the `oidc-gate` binary built on them.
//!
//! ## Layout
//! - [`config`]: environment configuration, validated at start-up.
//! - [`access`]: who may sign in (allowed email domains, addresses, groups).
//! - [`provider`]: the OpenID provider: discovery, keys, code exchange, ID token checks.
//! - [`store`]: the database: users and the session index (SQLite by default).
//! - [`session`]: server-side sessions, their timeouts and the login data kept in them.
//! - [`tokens`]: the user's tokens, encrypted in the session for the app behind the gateway.
//! - [`users`]: the signed-in user and the `axum-login` backend.
//! - [`ratelimit`]: token buckets per client address on the sign-in routes.
//! - [`web`]: HTTP routes and pages.
//! - [`gateway`]: login in front of another app: reverse proxy and forward auth (oauth2-proxy's interface).
//! - [`metrics`]: Prometheus metrics and their own listener (`METRICS_LISTEN`).
//! - [`app`]: wiring it together and serving.
//! - [`logs`]: the log format (`LOG_FORMAT`); the audit events are in [`web::audit`].
//! - [`drain`]: stopping without dropping requests (`/ready`, `SHUTDOWN_GRACE`, `SHUTDOWN_TIMEOUT`).
//! - [`check`]: `oidc-gate check`: the configuration, provider and store, checked without serving.
//! - [`admin`]: `oidc-gate sessions list|end`: people's sessions, listed or ended beside the running servers.
//! - [`devprovider`]: the embedded development OpenID provider (a stand-in for a real one).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod admin;
pub mod app;
pub mod check;
pub mod clock;
pub mod config;
pub mod devprovider;
pub mod drain;
pub mod gateway;
pub mod logs;
pub mod metrics;
pub mod provider;
pub mod ratelimit;
pub mod refresh;
pub mod secret;
pub mod session;
pub mod store;
pub mod tokens;
pub mod users;
pub mod web;
