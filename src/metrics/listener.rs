//! The metrics listener (`METRICS_LISTEN`): `GET /metrics` in the Prometheus
//! text format, and nothing else. It is a listener of its own, so that the
//! public one never serves metrics and the address can stay private.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the task is dropped (the server
/// aborts it when it stops). Every other path is a 404.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) -> std::io::Result<()> {
    let router = Router::new().route("/metrics", get(render)).with_state(handle);
    axum::serve(listener, router).await
}

async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], handle.render())
}
