//! Policies: every file in the policy folder (live or refused, with its
//! errors and routes), a live policy as it runs, and reload (a rescan: a bad
//! file is refused with every error; its previous version stays live).

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::auth::Role::{Admin, AiOps};
use super::{ApiError, Fail};
use crate::policies::{Change, Source};
use crate::state::AppState;

/// This resource's routes, each with its roles and OpenAPI entry.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_policies))
        .routes(routes!(get_policy))
        .routes(routes!(reload_policy))
}

#[derive(Serialize, ToSchema)]
pub struct PolicyInfo {
    name: String,
    /// The live version; empty when the file has never been valid.
    version: String,
    /// The file's name (no directory), or "(built in)".
    file: String,
    /// New calls can get it.
    active: bool,
    /// Numbers that match no route get it.
    default: bool,
    /// Whether the file on disk is valid (when not, the live version, if
    /// any, is the last valid one).
    valid: bool,
    /// What is wrong with it, with fields and lines (admin and ai_ops
    /// only: errors may quote the file).
    errors: Vec<String>,
    /// Called numbers and prefixes routed to it.
    routes: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/policies",
    description = "Every policy: each file in the policy folder (live or refused, with its errors) and the built-in default when it is in use; which is the default and which numbers route to each. Roles: admin, ai_ops, agent, viewer.",
    responses((status = 200, body = Vec<PolicyInfo>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent", "viewer"])))]
async fn list_policies(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<PolicyInfo>>, Fail> {
    let details = matches!(caller.role, Admin | AiOps);
    let catalog = app.policies.catalog();
    let routing = app.policies.routing();
    let routes = |name: &str| -> Vec<String> {
        routing
            .numbers
            .iter()
            .filter(|(_, p)| *p == name)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut out: Vec<PolicyInfo> = catalog
        .live()
        .filter(|l| l.file.is_none())
        .map(|l| PolicyInfo {
            name: l.policy.name.clone(),
            version: l.policy.version.clone(),
            file: "(built in)".into(),
            active: true,
            default: l.policy.name == catalog.default_name(),
            valid: true,
            errors: Vec::new(),
            routes: routes(&l.policy.name),
        })
        .collect();
    out.extend(catalog.files().iter().map(|(file, state)| {
        let active = state
            .serving
            .as_deref()
            .is_some_and(|n| catalog.get(n).is_some());
        PolicyInfo {
            name: state.name.clone(),
            version: state.version.clone(),
            file: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            active,
            default: active && state.serving.as_deref() == Some(catalog.default_name()),
            valid: state.errors.is_empty(),
            errors: if details {
                state.errors.clone()
            } else {
                Vec::new()
            },
            routes: routes(&state.name),
        }
    }));
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/policies/{name}", params(("name" = String, Path, description = "Policy name")),
    description = "A live policy, as new calls get it. Roles: admin, ai_ops.",
    responses((status = 200, body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn get_policy(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, Fail> {
    let catalog = app.policies.catalog();
    let Some(live) = catalog.get(&name) else {
        return Err(not_live(&name));
    };
    serde_json::to_value(&*live.policy)
        .map(Json)
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn not_live(name: &str) -> Fail {
    Fail(StatusCode::NOT_FOUND, format!("no policy {name:?} is live"))
}

#[derive(Serialize, ToSchema)]
pub struct Reloaded {
    name: String,
    version: String,
    /// Calls already in progress keep the policy they started with.
    note: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Rejected {
    error: String,
    /// Each problem with its field and line.
    errors: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/policies/{name}/reload", params(("name" = String, Path, description = "A policy's name (live, or the stem of a refused file)")),
    description = "Reads the policy folder again now (the folder watcher does the same on every change) and reports this policy. A bad file is refused with every error and its previous version stays live; calls in progress are never touched. The built-in policy has no file to re-read (409). Audited. Roles: admin, ai_ops.",
    responses((status = 200, body = Reloaded), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = Rejected)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn reload_policy(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Fail> {
    let before = app.policies.catalog();
    let known = before.get(&name).is_some() || before.files().values().any(|f| f.name == name);
    if !known {
        return Err(not_live(&name));
    }
    if app.policies.source() == &Source::BuiltIn {
        return Err(Fail(
            StatusCode::CONFLICT,
            "the live policy is the one built into hark; start it with --policy FILE or --policies DIR (or HARK_POLICY, HARK_POLICIES) to reload policies from files".into(),
        ));
    }
    let default_before = app.policies.default_live();
    let policies = Arc::clone(&app.policies);
    let changes = tokio::task::spawn_blocking(move || policies.rescan())
        .await
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let after = app.policies.catalog();
    let file = after
        .files()
        .iter()
        .find(|(_, f)| f.name == name || f.serving.as_deref() == Some(name.as_str()));
    let Some((path, state)) = file else {
        // Its file went: it no longer takes calls.
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!("policy {name:?} has no file any more; new calls get the default"),
        ));
    };
    if !state.errors.is_empty() {
        tracing::warn!(policy = %name, errors = state.errors.len(), "policy reload refused; the live version stays");
        app.store
            .audit(
                &caller.name,
                "reload_policy_refused",
                &name,
                &state.errors.join("; "),
            )
            .await?;
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(Rejected {
                error: format!(
                    "policy file {} is not valid; the live policy is unchanged",
                    path.display()
                ),
                errors: state.errors.clone(),
            }),
        )
            .into_response());
    }
    let applied = changes
        .iter()
        .any(|c| matches!(c, Change::Applied { name: n, .. } if *n == state.name));
    app.store
        .audit(
            &caller.name,
            "reload_policy",
            &name,
            &format!("version {}", state.version),
        )
        .await?;
    tracing::info!(policy = %state.name, version = %state.version, by = %caller.name, applied, "policy reloaded");
    let default_after = app.policies.default_live();
    if !Arc::ptr_eq(&default_before, &default_after) {
        // Health checks follow the default policy's providers.
        app.health.replace(&default_after.providers);
    }
    Ok(Json(Reloaded {
        name: state.name.clone(),
        version: state.version.clone(),
        note: "new calls use it; calls in progress keep theirs",
    })
    .into_response())
}
