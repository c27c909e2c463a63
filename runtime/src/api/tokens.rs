//! API tokens: the list (never a token or its hash) and revocation (audited).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail};
use crate::state::AppState;
use axum::extract::Path;

use crate::store::queries::TokenInfo;

/// This resource's routes, each with its roles and OpenAPI entry.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens))
        .routes(routes!(revoke_token))
}

#[utoipa::path(get, path = "/api/v1/tokens",
    description = "The API tokens: name, role, created, expiry (never the token or its hash). Roles: admin.",
    responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn list_tokens(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Json<Vec<TokenInfo>>, Fail> {
    Ok(Json(app.store.tokens().await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path, description = "The token's name")),
    description = "Revokes a token at once on this node (other nodes within 10 s). Audited. Roles: admin.",
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn revoke_token(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Fail> {
    if !app.store.revoke_token(&name, &caller.name).await? {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!("no token named {name:?}"),
        ));
    }
    app.tokens.clear();
    tracing::info!(token = %hark_actors::util::Escaped(&name), by = %hark_actors::util::Escaped(&caller.name), "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
