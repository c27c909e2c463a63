//! The admin API (`/api/v1`, JSON): calls and transcripts, the blocklist,
//! policies, the node. Bearer tokens (stored as SHA-256 hashes) carry one
//! role each; every route names the roles it admits — 401 without a valid
//! token, 403 with the wrong role, 429 over the per-token rate. Transcript
//! reads and every change are written to the audit log. The OpenAPI
//! document at `/api/v1/openapi.json` is generated from these handlers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::server::{AppState, Live};
use crate::store::StoreError;
use crate::store::queries::{
    AuditEntry, BlockEntry, CallFilter, CallSummary, EventView, TokenInfo, TurnView,
};

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

use Role::{Admin, Agent, AiOps, Viewer};
const ALL: &[Role] = &[Admin, AiOps, Agent, Viewer];

/// Who may do what. One table, so the README, the OpenAPI descriptions and
/// the tests' role matrix all read the same thing.
pub const ROUTES: &[(&str, &str, &[Role])] = &[
    ("GET", "/api/v1/calls", ALL),
    ("GET", "/api/v1/calls/export.csv", &[Admin, AiOps]),
    ("GET", "/api/v1/calls/{call_sid}", ALL),
    (
        "GET",
        "/api/v1/calls/{call_sid}/transcript",
        &[Admin, AiOps, Agent],
    ),
    ("GET", "/api/v1/blocklist", &[Admin, AiOps, Agent]),
    ("POST", "/api/v1/blocklist", &[Admin, Agent]),
    ("DELETE", "/api/v1/blocklist/{number}", &[Admin]),
    ("GET", "/api/v1/policies", ALL),
    ("GET", "/api/v1/policies/{name}", &[Admin, AiOps]),
    ("POST", "/api/v1/policies/{name}/reload", &[Admin, AiOps]),
    ("GET", "/api/v1/node", ALL),
    ("GET", "/api/v1/audit", &[Admin]),
    ("GET", "/api/v1/tokens", &[Admin]),
    ("DELETE", "/api/v1/tokens/{name}", &[Admin]),
];

fn roles_for(method: &str, route: &str) -> &'static [Role] {
    ROUTES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map_or(&[], |(_, _, roles)| roles)
}

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

/// Authenticates, authorizes for `route`, and applies the rate limit.
async fn admit(
    app: &AppState,
    headers: &HeaderMap,
    method: &'static str,
    route: &'static str,
) -> Result<Caller, Fail> {
    metrics::counter!(API_REQUESTS, "route" => route, "method" => method).increment(1);
    let token = headers
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
    let (name, role, expires_at) =
        found.ok_or_else(|| Fail(StatusCode::UNAUTHORIZED, "unknown or revoked token".into()))?;
    if expires_at.is_some_and(|t| t <= hark_actors::records::now_ms()) {
        return Err(Fail(StatusCode::UNAUTHORIZED, "token expired".into()));
    }
    let role = Role::parse(&role)
        .ok_or_else(|| Fail(StatusCode::FORBIDDEN, "token has no valid role".into()))?;
    if !roles_for(method, route).contains(&role) {
        return Err(Fail(
            StatusCode::FORBIDDEN,
            format!("role {} may not {method} {route}", role.as_str()),
        ));
    }
    if !app.api_limit.admit(&name) {
        return Err(Fail(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; slow down".into(),
        ));
    }
    Ok(Caller { name, role })
}

/// Token lookups, cached briefly (misses too): a flood of bad tokens does
/// not become a flood of queries. A revocation through this node clears it;
/// other nodes see it within [`TOKEN_CACHE_TTL`].
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Option<TokenRow>, Instant)>>,
}

/// A token's name, role and expiry (ms since the epoch).
type TokenRow = (String, String, Option<i64>);

pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
const TOKEN_CACHE_MAX: usize = 10_000;

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Option<TokenRow>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(found, _)| found.clone())
    }

    fn put(&self, hash: &str, found: Option<TokenRow>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(hash.to_owned(), (found, Instant::now()));
    }

    /// Forgets every cached lookup (after a revocation).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Failed authentications per client address: past the limit in a window,
/// the client gets 429 without a lookup until the window passes.
pub struct AuthFailures {
    per_minute: u32,
    seen: Mutex<HashMap<std::net::IpAddr, (u32, Instant)>>,
}

const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may try to authenticate now.
    pub fn allowed(&self, client: std::net::IpAddr) -> bool {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(&client)
            .is_none_or(|(n, since)| *n < self.per_minute || since.elapsed() >= AUTH_FAILURE_WINDOW)
    }

    pub fn failed(&self, client: std::net::IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= 100_000 {
            seen.retain(|_, (_, since)| since.elapsed() < AUTH_FAILURE_WINDOW);
        }
        let entry = seen.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= AUTH_FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
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

/// A token bucket per token name.
pub struct RateLimit {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl crate::cluster::RateLimiter for RateLimit {
    fn admit(&self, who: &str) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let burst = self.per_second * 2.0;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = b.entry(who.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/calls", get(list_calls))
        .route("/calls/export.csv", get(export_csv))
        .route("/calls/{call_sid}", get(get_call))
        .route("/calls/{call_sid}/transcript", get(transcript))
        .route("/blocklist", get(list_blocklist).post(add_block))
        .route("/blocklist/{number}", delete(remove_block))
        .route("/policies", get(list_policies))
        .route("/policies/{name}", get(get_policy))
        .route("/policies/{name}/reload", post(reload_policy))
        .route("/node", get(node))
        .route("/tokens", get(list_tokens))
        .route("/tokens/{name}", delete(revoke_token))
        .route("/audit", get(audit))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { Fail(StatusCode::NOT_FOUND, "no such route".into()) })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallQuery {
    /// `active` or `ended`.
    #[param(pattern = "^(active|ended)$")]
    status: Option<String>,
    /// `inbound`, `outbound-api`, `outbound-dial`.
    direction: Option<String>,
    /// Started at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Started before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    policy: Option<String>,
    /// An outcome slot and its value, `SLOT:VALUE`, e.g. `plan:pro` or
    /// `interested:true` (values are matched by keyed hash, never stored in clear).
    #[param(pattern = "^[^:]+:.*$")]
    outcome: Option<String>,
    /// The caller's number (E.164).
    from: Option<String>,
    /// The called number (E.164).
    to: Option<String>,
    /// Default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Default 0.
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<i64>,
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<i64>, Fail> {
    let Some(v) = v.as_deref() else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| {
            bad(format!(
                "{name}: {v:?} is not an RFC 3339 time like 2026-11-21T10:00:00Z"
            ))
        })
}

impl CallQuery {
    fn filter(self) -> Result<CallFilter, Fail> {
        if let Some(s) = &self.status
            && !["active", "ended"].contains(&s.as_str())
        {
            return Err(bad(format!("status: {s:?} is not active or ended")));
        }
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(bad(format!("limit: {limit} is outside 1..=500")));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=1_000_000_000).contains(&offset) {
            return Err(bad(format!("offset: {offset} is outside 0..=1000000000")));
        }
        let outcome = match self.outcome {
            None => None,
            Some(o) => {
                let Some((slot, value)) = o.split_once(':').filter(|(s, _)| !s.is_empty()) else {
                    return Err(bad(format!(
                        "outcome: {o:?} is not SLOT:VALUE (e.g. plan:pro, interested:true)"
                    )));
                };
                // `true`, `3`, `"pro"` as JSON; anything else is a string.
                let value = serde_json::from_str(value)
                    .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
                Some((slot.to_owned(), value))
            }
        };
        Ok(CallFilter {
            since: time_param("since", &self.since)?,
            until: time_param("until", &self.until)?,
            status: self.status,
            direction: self.direction,
            policy: self.policy,
            outcome,
            from: self.from,
            to: self.to,
            limit,
            offset,
        })
    }
}

fn query_error(e: QueryRejection) -> Fail {
    bad(format!("bad query string: {}", e.body_text()))
}

#[derive(Serialize, ToSchema)]
pub struct CallPage {
    calls: Vec<CallSummary>,
    /// Calls matching the filters, across pages.
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(get, path = "/api/v1/calls", params(CallQuery),
    description = "Calls, newest first, with filters and pagination. Roles: admin, ai_ops, agent, viewer (numbers masked for viewer).",
    responses((status = 200, body = CallPage), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 429, body = ApiError)),
    security(("bearer" = [])))]
async fn list_calls(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<CallQuery>, QueryRejection>,
) -> Result<Json<CallPage>, Fail> {
    let caller = admit(&app, &headers, "GET", "/api/v1/calls").await?;
    let f = q.map_err(query_error)?.0.filter()?;
    let (calls, total) = app
        .store
        .list_calls(&f, &app.pii, caller.role == Viewer)
        .await?;
    Ok(Json(CallPage {
        calls,
        total,
        limit: f.limit,
        offset: f.offset,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct CallDetail {
    #[serde(flatten)]
    call: CallSummary,
    events: Vec<EventView>,
}

fn check_sid(sid: &str) -> Result<(), Fail> {
    if sid.is_empty()
        || sid.len() > 64
        || !sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "call_sid: letters, digits, '-' and '_' only (at most 64)",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/calls/{call_sid}", params(("call_sid" = String, Path, description = "Twilio's CallSid", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "One call with its events. Roles: admin, ai_ops, agent, viewer.",
    responses((status = 200, body = CallDetail), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
async fn get_call(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Result<Json<CallDetail>, Fail> {
    let caller = admit(&app, &headers, "GET", "/api/v1/calls/{call_sid}").await?;
    check_sid(&sid)?;
    let call = app
        .store
        .call(&sid, &app.pii, caller.role == Viewer)
        .await?
        .ok_or_else(|| Fail(StatusCode::NOT_FOUND, format!("no call {sid}")))?;
    let events = app
        .store
        .events(&sid, &app.pii, caller.role == Viewer)
        .await?;
    Ok(Json(CallDetail { call, events }))
}

#[derive(Serialize, ToSchema)]
pub struct Transcript {
    call_sid: String,
    turns: Vec<TurnView>,
}

#[utoipa::path(get, path = "/api/v1/calls/{call_sid}/transcript", params(("call_sid" = String, Path, description = "Twilio's CallSid", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "What was said, turn by turn (the heard part of interrupted bot turns too). Every read is audited. Roles: admin, ai_ops, agent.",
    responses((status = 200, body = Transcript), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
async fn transcript(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Result<Json<Transcript>, Fail> {
    let caller = admit(&app, &headers, "GET", "/api/v1/calls/{call_sid}/transcript").await?;
    check_sid(&sid)?;
    if app.store.call(&sid, &app.pii, true).await?.is_none() {
        return Err(Fail(StatusCode::NOT_FOUND, format!("no call {sid}")));
    }
    // Audited before it is shown: no read without a trace.
    app.store
        .audit(&caller.name, "read_transcript", &sid, caller.role.as_str())
        .await?;
    let turns = app.store.transcript(&sid, &app.pii).await?;
    Ok(Json(Transcript {
        call_sid: sid,
        turns,
    }))
}

#[utoipa::path(get, path = "/api/v1/calls/export.csv", params(CallQuery),
    description = "The calls matching the filters as CSV (up to `limit`, default 50, max 500 per page). Audited. Roles: admin, ai_ops.",
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
async fn export_csv(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<CallQuery>, QueryRejection>,
) -> Result<Response, Fail> {
    let caller = admit(&app, &headers, "GET", "/api/v1/calls/export.csv").await?;
    let f = q.map_err(query_error)?.0.filter()?;
    let (calls, _) = app.store.list_calls(&f, &app.pii, false).await?;
    app.store
        .audit(
            &caller.name,
            "export_calls",
            "calls",
            &format!("{} rows", calls.len()),
        )
        .await?;
    let mut csv = String::from(
        "call_sid,direction,from,to,policy,policy_version,node,started_at,ended_at,end_reason,duration_ms,outcome\n",
    );
    for c in calls {
        let fields = [
            c.call_sid,
            c.direction.unwrap_or_default(),
            c.from.unwrap_or_default(),
            c.to.unwrap_or_default(),
            c.policy.unwrap_or_default(),
            c.policy_version.unwrap_or_default(),
            c.node.unwrap_or_default(),
            c.started_at.map(|v| v.to_string()).unwrap_or_default(),
            c.ended_at.map(|v| v.to_string()).unwrap_or_default(),
            c.end_reason.unwrap_or_default(),
            c.duration_ms.map(|v| v.to_string()).unwrap_or_default(),
            c.outcome.map(|v| v.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}

/// Quotes a CSV field; a cell a spreadsheet would run as a formula — one
/// starting with `=`, `@`, TAB or CR, or with `+`/`-` unless it is a plain
/// number like `+15551234567` — is defused with a leading `'`.
fn csv_field(f: &str) -> String {
    let signed_number = f
        .strip_prefix(['+', '-'])
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
    let f =
        if f.starts_with(['=', '@', '\t', '\r']) || (f.starts_with(['+', '-']) && !signed_number) {
            format!("'{f}")
        } else {
            f.to_owned()
        };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[utoipa::path(get, path = "/api/v1/blocklist",
    description = "Blocked numbers. Roles: admin, ai_ops, agent.",
    responses((status = 200, body = Vec<BlockEntry>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
async fn list_blocklist(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<BlockEntry>>, Fail> {
    admit(&app, &headers, "GET", "/api/v1/blocklist").await?;
    Ok(Json(app.store.blocklist(&app.pii).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    /// E.164, e.g. `+15551234567`.
    #[schema(pattern = "^\\+[1-9][0-9]{6,14}$")]
    number: String,
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    reason: String,
}

/// E.164: `+`, then 7 to 15 digits, the first not 0.
fn check_number(n: &str) -> Result<String, Fail> {
    let digits = n.strip_prefix('+').unwrap_or_default();
    let ok = (7..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        return Err(bad(format!(
            "number: {n:?} is not an E.164 number like +15551234567"
        )));
    }
    Ok(n.to_owned())
}

#[utoipa::path(post, path = "/api/v1/blocklist", request_body = NewBlock,
    description = "Blocks a number: its calls get <Reject/>. Audited. Roles: admin, agent.",
    responses((status = 201, body = BlockEntry), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = [])))]
async fn add_block(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<NewBlock>, JsonRejection>,
) -> Result<(StatusCode, Json<BlockEntry>), Fail> {
    let caller = admit(&app, &headers, "POST", "/api/v1/blocklist").await?;
    let Json(body) =
        body.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let number = check_number(&body.number)?;
    let reason = body.reason.trim();
    if reason.is_empty() || body.reason.chars().count() > 500 {
        return Err(bad("reason: 1 to 500 characters, not all blank"));
    }
    let entry = app
        .store
        .block(&number, reason, &caller.name, &app.pii)
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[utoipa::path(delete, path = "/api/v1/blocklist/{number}", params(("number" = String, Path, description = "E.164 number", pattern = "^\\+[1-9][0-9]{6,14}$")),
    description = "Unblocks a number. Audited. Roles: admin.",
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
async fn remove_block(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Result<StatusCode, Fail> {
    let caller = admit(&app, &headers, "DELETE", "/api/v1/blocklist/{number}").await?;
    let number = check_number(&number)?;
    if !app.store.unblock(&number, &caller.name, &app.pii).await? {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "that number is not blocked".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
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
    security(("bearer" = [])))]
async fn list_policies(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<PolicyInfo>>, Fail> {
    let caller = admit(&app, &headers, "GET", "/api/v1/policies").await?;
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
    security(("bearer" = [])))]
async fn get_policy(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, Fail> {
    admit(&app, &headers, "GET", "/api/v1/policies/{name}").await?;
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
    security(("bearer" = [])))]
async fn reload_policy(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Fail> {
    let caller = admit(&app, &headers, "POST", "/api/v1/policies/{name}/reload").await?;
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
            let errors = policy_errors(&e);
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
        .map_err(|e| Fail(StatusCode::UNPROCESSABLE_ENTITY, format!("providers: {e}")))?;
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
    // Health checks follow the providers calls now start with.
    app.health.replace(&providers);
    app.live.store(Arc::new(Live {
        policy: Arc::new(policy),
        providers,
    }));
    Ok(Json(reloaded).into_response())
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
    security(("bearer" = [])))]
async fn node(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<NodeInfo>, Fail> {
    let caller = admit(&app, &headers, "GET", "/api/v1/node").await?;
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
        policy: app.live().policy.name.clone(),
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

#[utoipa::path(get, path = "/api/v1/tokens",
    description = "The API tokens: name, role, created, expiry (never the token or its hash). Roles: admin.",
    responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
async fn list_tokens(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenInfo>>, Fail> {
    admit(&app, &headers, "GET", "/api/v1/tokens").await?;
    Ok(Json(app.store.tokens().await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path, description = "The token's name")),
    description = "Revokes a token at once on this node (other nodes within 10 s). Audited. Roles: admin.",
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
async fn revoke_token(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, Fail> {
    let caller = admit(&app, &headers, "DELETE", "/api/v1/tokens/{name}").await?;
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
    security(("bearer" = [])))]
async fn audit(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, Fail> {
    admit(&app, &headers, "GET", "/api/v1/audit").await?;
    let limit = q.map_err(query_error)?.0.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!("limit: {limit} is outside 1..=1000")));
    }
    Ok(Json(app.store.audit_log(limit).await?))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Hark admin API", description = "Calls, transcripts, blocklist, policies and the node. Bearer tokens with roles (`hark token create`)."),
    paths(list_calls, export_csv, get_call, transcript, list_blocklist, add_block, remove_block, list_policies, get_policy, reload_policy, node, audit, list_tokens, revoke_token),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Deletes transcripts older than `retention_days`, hourly, and audits it.
pub fn spawn_purge(app: Arc<AppState>) {
    if app.config.retention_days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff =
                hark_actors::records::now_ms() - app.config.retention_days as i64 * 86_400_000;
            match app.store.purge_personal(cutoff).await {
                Ok(n) => {
                    let _ = app
                        .store
                        .audit(
                            "hark",
                            "purge_personal_data",
                            "calls",
                            &format!(
                                "older than {} days: {} turns, {} events, {} outcomes erased",
                                app.config.retention_days, n.turns, n.events, n.outcomes
                            ),
                        )
                        .await;
                    if n != crate::store::queries::Purged::default() {
                        tracing::info!(
                            turns = n.turns,
                            events = n.events,
                            outcomes = n.outcomes,
                            "erased personal data past retention"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed; will retry in an hour")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::RateLimiter;

    #[test]
    fn every_route_has_roles_and_admin_has_all() {
        for (m, r, roles) in ROUTES {
            assert!(!roles.is_empty(), "{m} {r}");
            assert!(roles.contains(&Admin), "{m} {r}");
        }
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (m, r, _) in ROUTES {
            let op = &doc["paths"][*r][m.to_lowercase()];
            assert!(op.is_object(), "{m} {r} missing from the OpenAPI document");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("+15551234567"), "+15551234567");
        assert_eq!(csv_field("-3"), "-3");
        assert_eq!(csv_field("+SUM(A1)"), "'+SUM(A1)");
        assert_eq!(csv_field("-"), "'-");
        // TAB and CR also start formulas in some spreadsheets.
        assert_eq!(csv_field("\t=cmd()"), "'\t=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\"'\r=cmd()\"");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_allows_bursts_then_refills() {
        let l = RateLimit::new(2);
        assert!((0..4).all(|_| l.admit("t")));
        assert!(!l.admit("t"));
        assert!(l.admit("other"));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.admit("t"));
    }
}
