//! The app behind the gateway rows: a small page for every `GET`, and large
//! bodies both ways, streamed so that this process never holds one whole.
//! The reverse proxies under test (nginx, oidc-gate, Apache) all pass
//! requests to it.
//!
//! Usage: `upstream <listen addr>`. Routes:
//! - `GET /big?bytes=N`: `N` bytes (`Content-Length: N`), made as they are sent.
//! - `POST` or `PUT` anywhere: reads the whole body, answers its length in bytes.
//! - `GET` anything else: the small page ([`PAGE`]).
//!
//! Serves until killed.

use std::collections::HashMap;
use std::process::ExitCode;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use futures_util::stream;

/// The small page: about the size of an app's small HTML page or API answer.
const PAGE: &str = concat!(
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Upstream</title>",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\n<body>",
    "<h1>The app behind the gateway</h1>\n<p>This page stands for a small page of an app ",
    "that oidc-gate, nginx or Apache protects: a dashboard's first answer, an API's JSON, a ",
    "static page. It is the same bytes for every path, so that the proxies are measured and ",
    "not the app.</p>\n<p>Large bodies: <code>GET /big?bytes=N</code> sends N bytes; a ",
    "<code>POST</code> anywhere is read to its end and answered with its length.</p>\n",
    "</body></html>\n"
);

/// The size of each piece of a large answer.
const CHUNK: usize = 256 * 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen] = args.as_slice() else {
        eprintln!("usage: upstream <listen addr>");
        return ExitCode::from(2);
    };
    let app = Router::new().route("/big", get(big)).fallback(any_path);
    let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("upstream: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /big?bytes=N`: one shared buffer sent again and again, the last piece cut.
async fn big(Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(total) = query.get("bytes").and_then(|b| b.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "bytes=N is required").into_response();
    };
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let pieces = stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            (sent < total).then(|| {
                let n = (total - sent).min(CHUNK as u64);
                (Ok::<_, std::convert::Infallible>(chunk.slice(..n as usize)), sent + n)
            })
        }
    });
    let mut response = Body::from_stream(pieces).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// The small page for a `GET`; a body read to its end for a `POST` or `PUT`.
async fn any_path(request: Request) -> Response {
    match request.method().as_str() {
        "GET" | "HEAD" => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            PAGE,
        )
            .into_response(),
        "POST" | "PUT" => {
            let mut body = request.into_body().into_data_stream();
            let mut received: u64 = 0;
            while let Some(piece) = body.next().await {
                match piece {
                    Ok(bytes) => received += bytes.len() as u64,
                    Err(e) => {
                        return (
                            StatusCode::BAD_REQUEST,
                            format!("the body broke off after {received} bytes: {e}"),
                        )
                            .into_response();
                    }
                }
            }
            received.to_string().into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}
