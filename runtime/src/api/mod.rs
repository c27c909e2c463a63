//! The admin API (`/api/v1`, JSON): calls and transcripts, the blocklist,
//! policies, the node. Bearer tokens (stored as SHA-256 hashes) carry one
//! role each; every route names the roles it admits — 401 without a valid
//! token, 403 with the wrong role, 429 over the per-token rate. Transcript
//! reads and every change are written to the audit log. The OpenAPI
//! document at `/api/v1/openapi.json` is generated from these handlers.
//!
//! Each route is declared once, on its handler: `#[utoipa::path]` gives its
//! method, path, OpenAPI entry and roles (the `bearer` security scopes);
//! `routes!` registers it with the router and the document together; the
//! [`auth::Caller`] extractor admits exactly those roles.
//!
//! # Layout
//! - [`auth`] — roles, tokens, the `Caller` extractor; [`limits`] — the
//!   token cache and failed authentications per address.
//! - One file per resource: [`calls`], [`recordings`] (a call's
//!   recording, `Range`), [`personal_data`] (erasure on request),
//!   [`agents`], [`transfers`] (hand a call on, its handoff), [`outbound`]
//!   (place a call, follow its state), [`dnc`] (the do-not-call list),
//!   [`leads`] (lead lists, an agent's queue), [`campaigns`] (define, run,
//!   analytics), [`blocklist`],
//!   [`policies`], [`node`], [`tokens`], [`audit`].

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;
use crate::store::StoreError;

pub mod agents;
pub mod audit;
pub mod auth;
pub mod blocklist;
pub mod calls;
pub mod campaigns;
pub mod dnc;
pub mod leads;
pub mod limits;
pub mod node;
pub mod outbound;
pub mod personal_data;
pub mod policies;
pub mod recordings;
pub mod tokens;
pub mod transfers;

pub use auth::{Caller, Role, hash_token, new_token};
pub use limits::{AuthFailures, TokenCache};

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

pub struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unreachable; try again".into(),
            )
        } else {
            tracing::error!(error = %e, "admin API query failed");
            Fail(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        }
    }
}

fn bad(message: impl Into<String>) -> Fail {
    Fail(StatusCode::BAD_REQUEST, message.into())
}

pub(crate) fn query_error(e: QueryRejection) -> Fail {
    bad(format!("bad query string: {}", e.body_text()))
}

/// Every route with its handler and OpenAPI entry, from each resource.
fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(document_base())
        .merge(calls::routes())
        .merge(recordings::routes())
        .merge(personal_data::routes())
        .merge(agents::routes())
        .merge(transfers::routes())
        .merge(blocklist::routes())
        .merge(outbound::routes())
        .merge(dnc::routes())
        .merge(leads::routes())
        .merge(campaigns::routes())
        .merge(policies::routes())
        .merge(node::routes())
        .merge(tokens::routes())
        .merge(audit::routes())
}

/// The admin API's router (its `/api/v1/…` routes, the OpenAPI document,
/// JSON 404s) under its guard.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let (router, _) = api().split_for_parts();
    router
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/{*rest}",
            any(|| async { Fail(StatusCode::NOT_FOUND, "no such route".into()) }),
        )
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// The OpenAPI document, generated from the handlers.
pub fn document() -> &'static OpenApi {
    static DOC: LazyLock<OpenApi> = LazyLock::new(|| api().split_for_parts().1);
    &DOC
}

async fn openapi() -> Json<OpenApi> {
    Json(document().clone())
}

fn document_base() -> OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Hark admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Calls, transcripts, blocklist, policies and the node. Bearer tokens with roles (`hark token create`); each operation's `bearer` scopes are the roles it admits."))
                .build(),
        )
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    doc
}

/// A route of the admin API and the roles it admits.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub method: &'static str,
    pub path: String,
    pub roles: Vec<Role>,
}

/// Every route with its roles, read from the document: the same place the
/// handlers declare them, so the checks, the README's table and the tests'
/// role matrix cannot drift apart.
pub fn routes() -> &'static [Route] {
    static ROUTES: LazyLock<Vec<Route>> = LazyLock::new(|| {
        let doc = serde_json::to_value(document()).unwrap_or_default();
        let mut routes = Vec::new();
        if let Some(paths) = doc["paths"].as_object() {
            for (path, item) in paths {
                for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                    let op = &item[method.to_lowercase()];
                    if !op.is_object() {
                        continue;
                    }
                    let roles = op["security"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|req| req["bearer"].as_array())
                        .flatten()
                        .filter_map(|r| r.as_str().and_then(Role::parse))
                        .collect();
                    routes.push(Route {
                        method,
                        path: path.clone(),
                        roles,
                    });
                }
            }
        }
        routes
    });
    &ROUTES
}

/// The route `method path` (as matched), if the API declares it.
pub(crate) fn route(method: &str, path: &str) -> Option<&'static Route> {
    routes()
        .iter()
        .find(|r| r.method == method && r.path == path)
}

/// Longest an admin API request may take (database queries included).
pub const API_DEADLINE: Duration = Duration::from_secs(10);

/// Around every `/api/v1` request: refuses a client past its failed
/// authentications, counts new failures, and puts a deadline on the whole
/// request (a slow database answers 503, not never).
pub async fn guard(
    State(app): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let client = req
        .extensions()
        .get::<crate::http_limits::ClientAddr>()
        .map(|c| c.0);
    if let Some(client) = client
        && !app.auth_failures.allowed(client)
    {
        return Fail(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address; wait a minute".into(),
        )
        .into_response();
    }
    let res = match tokio::time::timeout(API_DEADLINE, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!("admin API request took longer than its deadline");
            return Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took too long (is the database slow?); try again".into(),
            )
            .into_response();
        }
    };
    if res.status() == StatusCode::UNAUTHORIZED
        && let Some(client) = client
    {
        app.auth_failures.failed(client);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_roles_and_admin_has_all() {
        let routes = routes();
        assert_eq!(routes.len(), 42, "{routes:?}");
        for r in routes {
            assert!(!r.roles.is_empty(), "{} {}", r.method, r.path);
            assert!(r.roles.contains(&Role::Admin), "{} {}", r.method, r.path);
        }
        assert_eq!(
            route("POST", "/api/v1/blocklist").map(|r| r.roles.clone()),
            Some(vec![Role::Admin, Role::Agent])
        );
        assert_eq!(route("GET", "/api/v1/nowhere"), None);
    }
}
