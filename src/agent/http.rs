//! The agent's HTTP endpoints: `/metrics` for Prometheus, `/healthz` (the process answers) and
//! `/readyz` (the repository is reachable and every streamer is receiving).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::info;

use super::metrics::AgentMetrics;
use crate::engine::StreamStatus;
use crate::repo::Repository;

/// What the endpoints read.
pub struct Served {
    pub metrics: Arc<AgentMetrics>,
    pub repo: Repository,
    pub streams: Vec<(String, StreamStatus)>,
}

/// How long `/readyz` waits for the store before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `address`; the caller learns the bound address (a port 0 is chosen by the system) before
/// serving starts, and an address in use is an error here, not later.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves the endpoints on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    served: Served,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /metrics, /healthz and /readyz");
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(served));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

async fn metrics(State(served): State<Arc<Served>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        served.metrics.encode(),
    )
}

async fn ready(State(served): State<Arc<Served>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    match tokio::time::timeout(PROBE_TIMEOUT, served.repo.probe()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("the repository is not reachable: {e}")),
        Err(_) => problems.push(format!(
            "the repository did not answer within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
    for (source, status) in &served.streams {
        if !status.is_connected() {
            problems.push(format!("the log streamer of {source} is not receiving"));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}
