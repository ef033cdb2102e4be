//! The log: `LOG_FORMAT=text` (the default; coloured only on a terminal) or
//! `json` (one JSON object a line, for log shippers), filtered by `RUST_LOG`.
//!
//! Every line of a request carries the `request` span's fields (method,
//! route, request id, client address); the audit events are the `audit`
//! target ([`crate::web::audit`]).

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{ConfigError, err};

/// The filter without `RUST_LOG`. The session and login layers open a
/// `call` span of their own on every request: off, as it costs CPU on every
/// request and says nothing the `request` span does not (their warnings
/// and errors still show).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_sessions=warn,axum_login=warn";

/// `LOG_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, the event's
    /// fields (`message` among them) at the top level, and `spans`, the
    /// spans it is in with their fields, outermost (the request's) first.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json` (any case, spaces trimmed; empty is `text`).
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(err(format!("LOG_FORMAT must be text or json, got `{raw}`."))),
        }
    }
}

/// The log subscriber: `format` to `writer`, filtered by `filter`, in colour
/// when `ansi` (text only).
pub fn subscriber<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// `RUST_LOG`, or `default` (the server's is [`DEFAULT_FILTER`]) when it is
/// unset or invalid.
pub fn env_filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_ones_name_the_variable() {
        assert_eq!(LogFormat::parse("text").unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(" JSON ").unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::parse("").unwrap(), LogFormat::Text);
        let e = LogFormat::parse("logfmt").unwrap_err();
        assert_eq!(e.to_string(), "LOG_FORMAT must be text or json, got `logfmt`.");
    }
}
