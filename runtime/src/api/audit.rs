//! The audit log, newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad, query_error};
use crate::state::AppState;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use utoipa::IntoParams;

use crate::store::queries::AuditEntry;

/// This resource's routes, each with its roles and OpenAPI entry.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    description = "The audit log, newest first: transcript reads, exports, blocklist and policy changes, purges. Roles: admin.",
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn audit(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, Fail> {
    let limit = q.map_err(query_error)?.0.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!("limit: {limit} is outside 1..=1000")));
    }
    Ok(Json(app.store.audit_log(limit).await?))
}
