//! The ceiling: a bare axum handler that answers `GET /secret` with the very
//! bytes and headers oidc-gate's secret page had, with no session, no login
//! check, no logging. What oidc-gate serves is measured against this, built
//! with the same axum, hyper and tokio (one `Cargo.lock`) and run the same way.
//!
//! Usage: `ceiling <listen addr> <body file> <headers file>`; the headers file
//! holds `name: value` lines. Serves until killed.

use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::routing::get;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, body_file, headers_file] = args.as_slice() else {
        eprintln!("usage: ceiling <listen addr> <body file> <headers file>");
        return ExitCode::from(2);
    };
    let body = match std::fs::read(body_file) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("ceiling: cannot read {body_file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let headers = match std::fs::read_to_string(headers_file).map(|text| parse_headers(&text)) {
        Ok(Some(h)) => h,
        Ok(None) => {
            eprintln!("ceiling: {headers_file} has a line that is not `name: value`");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("ceiling: cannot read {headers_file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new().route("/secret", get(move || async move { (headers, body) }));
    let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ceiling: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `name: value` lines into a header map; `None` if a line is malformed.
fn parse_headers(text: &str) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, value) = line.split_once(':')?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        let value = HeaderValue::from_str(value.trim()).ok()?;
        map.append(name, value);
    }
    Some(map)
}
