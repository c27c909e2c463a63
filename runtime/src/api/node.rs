//! The node: its name, state, calls, store and providers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::auth::Role::Viewer;
use super::{ApiError, Fail};
use crate::state::AppState;

/// This resource's routes, each with its roles and OpenAPI entry.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(node))
        .routes(routes!(drain))
}

#[derive(Serialize, ToSchema)]
pub struct Draining {
    node: String,
    /// Calls still in progress; the node exits when they are over (or
    /// after `shutdown_grace_secs`, with the policy's goodbye).
    calls: usize,
}

#[utoipa::path(post, path = "/api/v1/node/drain",
    description = "Drains this node, as SIGTERM does: no new calls (in a cluster it is placed no more), calls in progress finish, then it leaves the cluster and exits. `hark drain`. Roles: admin.",
    responses((status = 202, body = Draining), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn drain(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<(axum::http::StatusCode, Json<Draining>), Fail> {
    tracing::info!(by = %caller.name, "drain asked for through the API");
    app.lifecycle.ask_drain();
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(Draining {
            node: app.node.clone(),
            calls: app.lifecycle.active(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct NodeInfo {
    node: String,
    version: &'static str,
    /// `ready`, `draining` or `degraded`.
    status: &'static str,
    calls: usize,
    max_calls: usize,
    policy: String,
    store: &'static str,
    /// `up` or `down` (records then go to the spool).
    store_state: &'static str,
    spool_rows: u64,
    /// Each provider's last check; with the error text (which may name
    /// internal hosts) for every role but `viewer`.
    #[schema(value_type = Vec<Object>)]
    providers: serde_json::Value,
}

#[utoipa::path(get, path = "/api/v1/node",
    description = "This node's health and load. Roles: admin, ai_ops, agent, viewer.",
    responses((status = 200, body = NodeInfo), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent", "viewer"])))]
async fn node(State(app): State<Arc<AppState>>, caller: Caller) -> Result<Json<NodeInfo>, Fail> {
    let providers = if caller.role == Viewer {
        serde_json::Value::Array(app.health.public_snapshot())
    } else {
        serde_json::to_value(app.health.snapshot()).unwrap_or_default()
    };
    let status = if app.lifecycle.is_draining() {
        "draining"
    } else if !app.health.unready_roles().is_empty() {
        "degraded"
    } else {
        "ready"
    };
    Ok(Json(NodeInfo {
        node: app.node.clone(),
        version: env!("CARGO_PKG_VERSION"),
        status,
        calls: app.lifecycle.active(),
        max_calls: app.config.max_calls,
        policy: app.policies.catalog().default_name().to_owned(),
        store: match app.store.backend {
            crate::store::Backend::Postgres => "postgres",
            crate::store::Backend::Sqlite => "sqlite",
        },
        store_state: if app.store_health.is_up() {
            "up"
        } else {
            "down"
        },
        spool_rows: app.store_health.spool_rows(),
        providers,
    }))
}
