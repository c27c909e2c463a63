//! Calls: the list (filters, pagination), one call with its events, its
//! consent decisions, its transcript (audited), the CSV export (audited).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad, query_error};
use crate::state::AppState;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;

use super::auth::Role::Viewer;
use crate::store::queries::{CallFilter, CallSummary, ConsentView, EventView, TurnView};

/// This resource's routes, each with its roles and OpenAPI entry.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_calls))
        .routes(routes!(get_call))
        .routes(routes!(consent))
        .routes(routes!(transcript))
        .routes(routes!(export_csv))
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
    /// `qualified`, or a disposition a policy lists (`callback`, `not_interested`…).
    #[param(pattern = "^[a-z0-9_]{1,32}$")]
    disposition: Option<String>,
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
        let is_label = |d: &str| {
            (1..=32).contains(&d.len())
                && d.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if let Some(d) = self.disposition.as_deref().filter(|d| !is_label(d)) {
            return Err(bad(format!(
                "disposition: {d:?} is not a disposition (lower-case letters, digits and '_')"
            )));
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
            disposition: self.disposition,
            from: self.from,
            to: self.to,
            limit,
            offset,
        })
    }
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
    security(("bearer" = ["admin", "ai_ops", "agent", "viewer"])))]
async fn list_calls(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<CallQuery>, QueryRejection>,
) -> Result<Json<CallPage>, Fail> {
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

pub(super) fn check_sid(sid: &str) -> Result<(), Fail> {
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
    security(("bearer" = ["admin", "ai_ops", "agent", "viewer"])))]
async fn get_call(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<Json<CallDetail>, Fail> {
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

/// What the caller allowed: every decision, and whether the call may be
/// recorded after the last one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Consent {
    call_sid: String,
    /// Whether the last decision allows recording (`accepted`,
    /// `not_required`); `false` when none was made. A policy with
    /// `recording = "never"` records nothing whatever this says.
    allows_recording: bool,
    decisions: Vec<ConsentView>,
}

#[utoipa::path(get, path = "/api/v1/calls/{call_sid}/consent", params(("call_sid" = String, Path, description = "Twilio's CallSid", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "The call's consent-to-record decisions: asked when, the answer, how it came (speech, dtmf, silence, not_asked), when. Roles: admin, ai_ops, agent, viewer.",
    responses((status = 200, body = Consent), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent", "viewer"])))]
async fn consent(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(sid): Path<String>,
) -> Result<Json<Consent>, Fail> {
    check_sid(&sid)?;
    if app.store.call(&sid, &app.pii, true).await?.is_none() {
        return Err(Fail(StatusCode::NOT_FOUND, format!("no call {sid}")));
    }
    let decisions = app.store.consents(&sid).await?;
    let allows_recording = decisions
        .last()
        .is_some_and(|d| d.answer == "accepted" || d.answer == "not_required");
    Ok(Json(Consent {
        call_sid: sid,
        allows_recording,
        decisions,
    }))
}

#[utoipa::path(get, path = "/api/v1/calls/{call_sid}/transcript", params(("call_sid" = String, Path, description = "Twilio's CallSid", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "What was said, turn by turn (the heard part of interrupted bot turns too). Every read is audited. Roles: admin, ai_ops, agent.",
    responses((status = 200, body = Transcript), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent"])))]
async fn transcript(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<Json<Transcript>, Fail> {
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
    security(("bearer" = ["admin", "ai_ops"])))]
async fn export_csv(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<CallQuery>, QueryRejection>,
) -> Result<Response, Fail> {
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
        "call_sid,direction,from,to,policy,policy_version,node,started_at,ended_at,end_reason,duration_ms,outcome,disposition,callback_start,callback_end\n",
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
            c.disposition.unwrap_or_default(),
            c.callback_start.unwrap_or_default(),
            c.callback_end.unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
