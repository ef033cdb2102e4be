//! `101 Switching Protocols` (WebSocket and any other `Upgrade`): once both
//! sides switched, the two connections are joined as a raw byte tunnel, as
//! hyper's `examples/upgrades.rs` and Go's `ReverseProxy` do. Tunnels run in
//! [`Tunnels`], which a stopping server waits for (hyper no longer tracks
//! the connection once it is upgraded).

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::failure::Failure;
use crate::drain::Tunnels;
use crate::gateway::headers;
use crate::web::AppError;

/// Answers the client's upgrade with the upstream's `101` and, once hyper
/// has written it, copies bytes both ways until either side closes.
pub(super) fn tunnel(
    mut response: hyper::Response<hyper::body::Incoming>,
    requested: &HeaderValue,
    on_client: OnUpgrade,
    tunnels: &Tunnels,
) -> Result<Response, Failure> {
    // Go's rule: the upstream may only switch to what was asked for.
    let offered = response.headers().get(hyper::header::UPGRADE);
    if !offered.is_some_and(|o| o.as_bytes().eq_ignore_ascii_case(requested.as_bytes())) {
        return Err(AppError::Upstream {
            reason: "upstream_bad_upgrade",
            detail: "101 to another protocol than the one asked for".into(),
        }
        .into());
    }
    let on_upstream = hyper::upgrade::on(&mut response);
    tunnels.spawn(async move {
        let (client, upstream) = match tokio::try_join!(on_client, on_upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(reason = "upgrade_failed", error = %e, "connection upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::info!(reason = "tunnel_closed", error = %e, "upgraded connection cut"),
        }
    });
    let (mut parts, _) = response.into_parts();
    parts.headers = headers::upstream_response_headers(&parts.headers, parts.status);
    parts.version = hyper::Version::HTTP_11;
    Ok(Response::from_parts(parts, Body::empty()))
}
