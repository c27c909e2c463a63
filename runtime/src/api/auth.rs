//! Who is calling: bearer tokens (stored as SHA-256 hashes) with one role
//! each, checked by the [`Caller`] extractor against the roles the matched
//! route declares (its `#[utoipa::path]` security scopes), then the
//! per-token rate limit. Failed authentications per address, and the token
//! lookup cache.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::Fail;
use crate::state::AppState;

/// `hark_api_requests_total{route, method}`.
pub const API_REQUESTS: &str = "hark_api_requests_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    AiOps,
    Agent,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "ai_ops" => Some(Role::AiOps),
            "agent" => Some(Role::Agent),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::AiOps => "ai_ops",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }
}

/// The caller of a request: a token's name and role.
pub struct Caller {
    pub name: String,
    pub role: Role,
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token: `hark_` and 32 random bytes, URL-safe base64.
pub fn new_token() -> String {
    use base64::Engine;
    format!(
        "hark_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::pii::random::<32>())
    )
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Fail;

    /// Authenticates, authorizes for the matched route (its declared
    /// roles), and applies the rate limit.
    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let matched = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let route = matched.and_then(|path| super::route(parts.method.as_str(), path));
        let Some(route) = route else {
            // A handler with a `Caller` but no declared roles: nobody may.
            return Err(Fail(
                StatusCode::FORBIDDEN,
                "no roles for this route".into(),
            ));
        };
        metrics::counter!(API_REQUESTS, "route" => route.path.clone(), "method" => route.method)
            .increment(1);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Fail(
                    StatusCode::UNAUTHORIZED,
                    "missing bearer token (Authorization: Bearer …)".into(),
                )
            })?;
        let hash = hash_token(token);
        let found = match app.tokens.get(&hash) {
            Some(found) => found,
            None => {
                let found = app.store.token(&hash).await?;
                app.tokens.put(&hash, found.clone());
                found
            }
        };
        let (name, role, expires_at) = found
            .ok_or_else(|| Fail(StatusCode::UNAUTHORIZED, "unknown or revoked token".into()))?;
        if expires_at.is_some_and(|t| t <= hark_actors::records::now_ms()) {
            return Err(Fail(StatusCode::UNAUTHORIZED, "token expired".into()));
        }
        let role = Role::parse(&role)
            .ok_or_else(|| Fail(StatusCode::FORBIDDEN, "token has no valid role".into()))?;
        if !route.roles.contains(&role) {
            return Err(Fail(
                StatusCode::FORBIDDEN,
                format!(
                    "role {} may not {} {}",
                    role.as_str(),
                    route.method,
                    route.path
                ),
            ));
        }
        if !app.api_limit.admit(&name).await {
            return Err(Fail(
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded; slow down".into(),
            ));
        }
        Ok(Caller { name, role })
    }
}
