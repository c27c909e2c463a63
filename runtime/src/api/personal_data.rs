//! Erasure on request (GDPR, CCPA): a person's — every call with their
//! number — or one call's recordings, transcripts, numbers, slot values and
//! DTMF, wherever this node keeps them: the database, the record spool and
//! `rejected/`, recordings waiting on disk, object storage. The blocklist
//! stays (it is why the person is not called again). An audit row says
//! what was removed, without the number.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::blocklist::check_number;
use super::calls::check_sid;
use super::{ApiError, Fail, query_error};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(erase_person))
        .routes(routes!(erase_call))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PersonQuery {
    /// The person's number, E.164 (`%2B15551234567` in a URL: a bare `+` reads as a space).
    #[param(pattern = "^\\+[1-9][0-9]{6,14}$")]
    number: String,
}

/// What an erasure removed.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Erasure {
    /// Calls whose personal data was erased.
    calls: u64,
    /// Turns whose text was erased.
    turns: u64,
    /// DTMF and other private event details erased.
    events: u64,
    /// Outcomes whose slot values were erased.
    outcomes: u64,
    /// Recordings deleted (storage, or waiting on this node).
    recordings: u64,
    /// Rows not yet in the database (spool, `rejected/`) erased.
    spooled_rows: u64,
    /// Campaign leads whose number and fields were erased (their status
    /// stays: why they are not called again).
    leads: u64,
}

async fn erase(
    app: &AppState,
    caller: &Caller,
    mut calls: BTreeSet<String>,
    number_hash: Option<String>,
    scope: &'static str,
) -> Result<Erasure, Fail> {
    // The spool first: it may name calls the database does not have yet.
    let queue = Arc::clone(&app.record_queue);
    let (calls, spooled) = tokio::task::spawn_blocking(move || {
        let n = queue.erase(&mut calls, number_hash.as_deref());
        (calls, n)
    })
    .await
    .map_err(|_| Fail(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()))?;
    let spooled = spooled.map_err(|e| {
        tracing::error!(error = %e, "cannot erase from the record spool");
        Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the record spool cannot be rewritten; nothing was erased from it — try again".into(),
        )
    })?;
    let calls: Vec<String> = calls.into_iter().collect();
    let erased = app
        .store
        .erase_calls(&calls, hark_actors::records::now_ms())
        .await?;
    // Every call's object key, whatever the table says: a recording stored
    // just now may not be on record yet.
    let recs = &app.recordings;
    let mut keys: Vec<String> = calls.iter().map(|c| recs.storage().key_for(c)).collect();
    keys.extend(erased.recordings.iter().cloned());
    keys.sort();
    keys.dedup();
    let local = recs.erase(&calls, &keys, true).await?;
    let out = Erasure {
        calls: calls.len() as u64,
        turns: erased.turns,
        events: erased.events,
        outcomes: erased.outcomes,
        // On record, or still on this node (not yet on record).
        recordings: (erased.recordings.len() as u64).max(local),
        spooled_rows: spooled,
        leads: 0,
    };
    metrics::counter!(crate::recordings::ERASURES, "scope" => scope).increment(1);
    app.store
        .audit(
            &caller.name,
            "erase_personal_data",
            if scope == "person" { "person" } else { calls.first().map_or("", String::as_str) },
            &format!(
                "{scope}: {} calls, {} turns, {} private details, {} outcomes, {} recordings, {} spooled rows",
                out.calls, out.turns, out.events, out.outcomes, out.recordings, out.spooled_rows
            ),
        )
        .await?;
    tracing::info!(
        scope,
        calls = out.calls,
        recordings = out.recordings,
        "personal data erased on request"
    );
    Ok(out)
}

#[utoipa::path(delete, path = "/api/v1/personal-data", params(PersonQuery),
    description = "Erases a person's personal data: recordings, transcripts, numbers, slot values and DTMF of every call from or to the number, and the number and fields of their campaign leads — in the database, the spool, rejected rows and recordings waiting for storage. The blocklist stays. Audited (without the number). Roles: admin.",
    responses((status = 200, body = Erasure), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn erase_person(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<PersonQuery>, QueryRejection>,
) -> Result<Json<Erasure>, Fail> {
    let number = q.map_err(query_error)?.0.number;
    // A `+` left unencoded in the URL arrives as a space.
    let number = match number.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => number,
    };
    let number = check_number(&number)?;
    let hash = app.pii.hash_number(&number);
    app.store.erase_placements_to(&hash).await?;
    let leads = app.store.erase_leads_to(&hash).await?;
    let calls: BTreeSet<String> = app
        .store
        .calls_of_number(&hash)
        .await?
        .into_iter()
        .collect();
    let mut out = erase(&app, &caller, calls, Some(hash), "person").await?;
    out.leads = leads;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/api/v1/calls/{call_sid}/personal-data", params(("call_sid" = String, Path, description = "Twilio's CallSid", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "Erases one call's personal data: its recording, transcript, numbers, slot values and DTMF, wherever kept. Audited. Roles: admin.",
    responses((status = 200, body = Erasure), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn erase_call(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<Json<Erasure>, Fail> {
    check_sid(&sid)?;
    if app.store.call(&sid, &app.pii, true).await?.is_none() {
        return Err(Fail(StatusCode::NOT_FOUND, format!("no call {sid}")));
    }
    let calls = BTreeSet::from([sid]);
    Ok(Json(erase(&app, &caller, calls, None, "call").await?))
}
