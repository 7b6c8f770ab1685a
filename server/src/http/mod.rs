//! The node's HTTP endpoint (`--http-port`): what operators and orchestrators look at.
//!
//! - `/metrics`: Prometheus text (see [`metrics`]), computed at scrape time from the counters
//!   the data path keeps anyway, so serving it costs the data path nothing.
//! - `/healthz`: the process is up and serving HTTP.
//! - `/readyz`: every shard replicated here has a leader and this node's replica has applied
//!   what it knows to be committed; 503 with the reasons otherwise.
//! - `/cluster.json`: the cluster as this node sees it (see [`cluster_view`]).
//! - `/`: a self-contained status page that draws `/cluster.json`.

pub mod cluster_view;
pub mod metrics;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::cluster::status::GroupStatus;
use crate::node::{group_shard, Node};
use crate::rpc::META_GROUP;

const STATUS_PAGE: &str = include_str!("status.html");

/// A follower this many entries behind what it knows is committed still counts as caught up
/// (it applies them within milliseconds; a stricter bound would flap under load).
const READY_APPLY_LAG: u64 = 1000;

/// Binds the HTTP port (all interfaces `--bind` names).
pub async fn bind(bind: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((bind, port)).await
}

/// Serves HTTP until the node shuts down.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let shutdown = node.shutdown.clone();
    let app = Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/cluster.json", get(cluster_json))
        .with_state(node);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "HTTP endpoint stopped");
    }
}

async fn status_page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn metrics_text(State(node): State<Arc<Node>>) -> Response {
    match metrics::render(&node) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(node): State<Arc<Node>>) -> Response {
    match not_ready_reasons(&node) {
        reasons if reasons.is_empty() => (StatusCode::OK, "ready\n").into_response(),
        reasons => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", reasons.join("\n")),
        )
            .into_response(),
    }
}

async fn cluster_json(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        cluster_view::ClusterView::of(&node).to_json(),
    )
        .into_response()
}

/// Why this node is not ready: no metadata replica, a hosted group without a leader, or a
/// replica that has not applied what it knows is committed.
pub fn not_ready_reasons(node: &Node) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.shutdown.is_cancelled() {
        reasons.push("shutting down".to_owned());
    }
    if node.replica(META_GROUP).is_none() {
        reasons.push("no replica of the metadata group yet".to_owned());
    }
    for replica in node.replicas() {
        let status = GroupStatus::of(&replica);
        let name = if replica.group == META_GROUP {
            "metadata group".to_owned()
        } else {
            format!("shard {}", group_shard(replica.group))
        };
        if status.leader.is_none() {
            reasons.push(format!("{name} has no leader"));
        } else if status.applied + READY_APPLY_LAG < status.committed {
            reasons.push(format!(
                "{name} is catching up (applied {} of {} committed)",
                status.applied, status.committed
            ));
        }
    }
    reasons
}
