//! Policies: the files beside the live one, the live policy, and reload
//! (a bad file is refused with every error; the old policy stays live).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail};
use crate::state::AppState;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};

use super::auth::Role::{Admin, AiOps};
use crate::state::Live;

/// `hark_policy_reloads_total{result}`: `applied`, `invalid` (the file was
/// refused; the old version stays live), `providers` (its providers could
/// not be built).
pub const POLICY_RELOADS: &str = "hark_policy_reloads_total";

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
    version: String,
    /// The file's name (no directory).
    file: String,
    /// Calls start with this one.
    active: bool,
    /// Whether the file on disk is valid (when not, the live one stays).
    valid: bool,
    /// What is wrong with it, with fields and lines (admin and ai_ops
    /// only: errors may quote the file).
    errors: Vec<String>,
}

/// Policy files next to the configured one (none for the built-in policy).
fn policy_files(app: &AppState) -> Vec<std::path::PathBuf> {
    let Some(policy) = &app.config.policy else {
        return Vec::new();
    };
    let dir = policy
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut files: Vec<_> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        &dir
    })
    .map(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect()
    })
    .unwrap_or_default();
    files.sort();
    files
}

fn policy_errors(e: &hark_actors::PolicyError) -> Vec<String> {
    match e {
        hark_actors::PolicyError::Invalid { errors, .. } => {
            errors.iter().map(ToString::to_string).collect()
        }
        other => vec![other.to_string()],
    }
}

#[utoipa::path(get, path = "/api/v1/policies",
    description = "Policy files in the policy directory, which one is live, and any errors. Roles: admin, ai_ops, agent, viewer.",
    responses((status = 200, body = Vec<PolicyInfo>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent", "viewer"])))]
async fn list_policies(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<PolicyInfo>>, Fail> {
    let details = matches!(caller.role, Admin | AiOps);
    let live = app.live();
    let Some(configured) = &app.config.policy else {
        return Ok(Json(vec![PolicyInfo {
            name: live.policy.name.clone(),
            version: live.policy.version.clone(),
            file: "(built in)".into(),
            active: true,
            valid: true,
            errors: Vec::new(),
        }]));
    };
    let file_name = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let active_file = std::fs::canonicalize(configured).ok();
    let out = policy_files(&app)
        .into_iter()
        .map(|file| {
            let active = std::fs::canonicalize(&file).ok() == active_file;
            match hark_actors::PolicyFile::load(&file) {
                Ok(p) => PolicyInfo {
                    name: p.name,
                    version: p.version,
                    file: file_name(&file),
                    active,
                    valid: true,
                    errors: Vec::new(),
                },
                Err(e) => PolicyInfo {
                    name: if active {
                        live.policy.name.clone()
                    } else {
                        file.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    },
                    version: if active {
                        live.policy.version.clone()
                    } else {
                        String::new()
                    },
                    file: file_name(&file),
                    active,
                    valid: false,
                    errors: if details {
                        policy_errors(&e)
                    } else {
                        Vec::new()
                    },
                },
            }
        })
        .collect();
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/policies/{name}", params(("name" = String, Path, description = "Policy name")),
    description = "The live policy, as running (only the live one can be read). Roles: admin, ai_ops.",
    responses((status = 200, body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn get_policy(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, Fail> {
    let live = app.live();
    if live.policy.name != name {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!(
                "no live policy {name:?}; the live one is {:?}",
                live.policy.name
            ),
        ));
    }
    serde_json::to_value(&*live.policy)
        .map(Json)
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
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
    /// Each problem with its field.
    errors: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/policies/{name}/reload", params(("name" = String, Path, description = "The live policy's name")),
    description = "Re-reads the live policy's file. A bad file is refused with every error and the old policy stays live; calls in progress are never touched. The built-in policy has no file to re-read (409). Audited. Roles: admin, ai_ops.",
    responses((status = 200, body = Reloaded), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = Rejected)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn reload_policy(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Fail> {
    let live = app.live();
    if live.policy.name != name {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!(
                "no live policy {name:?}; the live one is {:?}",
                live.policy.name
            ),
        ));
    }
    let Some(file) = &app.config.policy else {
        return Err(Fail(
            StatusCode::CONFLICT,
            "the live policy is the one built into hark; start it with --policy FILE (or HARK_POLICY) to reload a policy from a file".into(),
        ));
    };
    let policy = match hark_actors::PolicyFile::load(file) {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!(POLICY_RELOADS, "result" => "invalid").increment(1);
            let errors = policy_errors(&e);
            tracing::warn!(policy = %name, errors = errors.len(), "policy reload refused; the live version stays");
            app.store
                .audit(
                    &caller.name,
                    "reload_policy_refused",
                    &name,
                    &errors.join("; "),
                )
                .await?;
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(Rejected {
                    error: format!(
                        "policy file {} is not valid; the live policy is unchanged",
                        file.display()
                    ),
                    errors,
                }),
            )
                .into_response());
        }
    };
    let keys = hark_actors::Keys::from_env(&app.config.providers);
    let (providers, _) = hark_actors::Providers::build(&policy, &app.config.providers, &keys)
        .map_err(|e| {
            metrics::counter!(POLICY_RELOADS, "result" => "providers").increment(1);
            Fail(StatusCode::UNPROCESSABLE_ENTITY, format!("providers: {e}"))
        })?;
    let reloaded = Reloaded {
        name: policy.name.clone(),
        version: policy.version.clone(),
        note: "new calls use it; calls in progress keep theirs",
    };
    app.store
        .audit(
            &caller.name,
            "reload_policy",
            &name,
            &format!("version {}", policy.version),
        )
        .await?;
    tracing::info!(policy = %policy.name, version = %policy.version, by = %caller.name, "policy reloaded");
    metrics::counter!(POLICY_RELOADS, "result" => "applied").increment(1);
    // Health checks follow the providers calls now start with.
    app.health.replace(&providers);
    app.live.store(Arc::new(Live {
        policy: Arc::new(policy),
        providers,
    }));
    Ok(Json(reloaded).into_response())
}
