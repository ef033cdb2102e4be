//! Integration tests: the real app on 127.0.0.1:0, driven over HTTP.

mod fake_op;
mod support;

mod access;
mod admin_sessions;
mod bearer;
mod certification;
mod check;
mod cli;
mod drain;
mod exposure;
mod frontchannel;
mod gateway;
mod gateway_proxy;
mod instances;
mod library;
mod login;
mod login_writes;
mod logs;
mod metrics;
mod own_sessions;
mod providers;
mod ratelimit;
mod redis_ha;
mod refresh;
mod revocation;
mod scale;
mod sessions;
mod stores;
