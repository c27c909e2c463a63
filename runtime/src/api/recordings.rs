//! A call's recording: `audio/ogg`, decrypted as it streams, with `Range`
//! so a browser can seek. Every read is audited.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::calls::check_sid;
use super::{ApiError, Fail};
use crate::recordings::sealed::{Header, MAX_HEADER};
use crate::recordings::{Location, RecordingError};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(recording))
}

/// Plaintext bytes decrypted per step of a stream (16 chunks).
const STEP: u64 = 16 * crate::recordings::sealed::CHUNK as u64;

impl From<RecordingError> for Fail {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::NotFound => Fail(StatusCode::NOT_FOUND, "no recording".into()),
            RecordingError::Storage(_) | RecordingError::Io(_) => {
                tracing::warn!(error = %e, "recording read failed");
                Fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "recording storage is unreachable; try again".into(),
                )
            }
            RecordingError::Seal(e) => {
                tracing::error!(error = %e, "recording cannot be opened");
                Fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "recording cannot be opened".into(),
                )
            }
        }
    }
}

/// What a `Range` header asks of a `len`-byte body (see [`parse_range`]).
fn wanted(headers: &HeaderMap, len: u64) -> Option<Result<Range<u64>, ()>> {
    parse_range(headers.get(header::RANGE)?.to_str().ok()?, len)
}

/// A `Range` header's value against a `len`-byte body: `None` for the
/// whole body (several ranges, or one we don't parse: RFC 9110 lets a
/// server ignore those), `Some(Err)` when nothing of it exists; a range
/// returned is non-empty and within the body.
pub fn parse_range(value: &str, len: u64) -> Option<Result<Range<u64>, ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            len.saturating_sub(n)..len
        }
        (false, _) => {
            let start: u64 = a.parse().ok()?;
            let end = if b.is_empty() {
                len
            } else {
                let e: u64 = b.parse().ok()?;
                if e < start {
                    return None;
                }
                e.saturating_add(1).min(len)
            };
            if start >= len {
                return Some(Err(()));
            }
            start..end
        }
        (true, true) => return None,
    };
    Some(Ok(range))
}

#[utoipa::path(get, path = "/api/v1/calls/{call_sid}/recording", params(("call_sid" = String, Path, description = "Twilio's CallSid", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "The call's recording as Ogg Opus (left: the caller, right: the bot as the caller heard it). `Range` works (one range), so players can seek. Every read is audited. 404 when the call has no recording (no consent, not recorded, erased); 409 while it is still being made. Roles: admin, ai_ops, agent.",
    responses((status = 200, content_type = "audio/ogg", body = Vec<u8>), (status = 206, content_type = "audio/ogg", body = Vec<u8>), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 416, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent"])))]
async fn recording(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    check_sid(&sid)?;
    let row = app.store.recording(&sid).await?.ok_or_else(|| {
        Fail(
            StatusCode::NOT_FOUND,
            format!("call {sid} has no recording"),
        )
    })?;
    let recs = &app.recordings;
    let at = match row.state.as_str() {
        "recording" | "encoding" => {
            return Err(Fail(
                StatusCode::CONFLICT,
                format!("the recording of {sid} is still being made; try again shortly"),
            ));
        }
        "deleted" => {
            return Err(Fail(
                StatusCode::NOT_FOUND,
                format!("the recording of {sid} was deleted"),
            ));
        }
        state => recs.locate(&sid, state, &row.object_key).ok_or_else(|| {
            Fail(
                StatusCode::NOT_FOUND,
                format!("call {sid} has no recording"),
            )
        })?,
    };
    let store = recs.storage();
    let sealed_len = store.size(&at).await?;
    let head = store.read(&at, 0..MAX_HEADER.min(sealed_len)).await?;
    let header = Header::parse(&head).map_err(RecordingError::from)?;
    let len = header.plain_len(sealed_len).map_err(RecordingError::from)?;
    let (status, range) = match wanted(&headers, len) {
        None => (StatusCode::OK, 0..len),
        Some(Ok(r)) => (StatusCode::PARTIAL_CONTENT, r),
        Some(Err(())) => {
            let mut res = Fail(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the recording is {len} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
    };
    // Audited before a byte is sent.
    app.store
        .audit(
            &caller.name,
            "read_recording",
            &sid,
            &format!(
                "{} bytes {}-{}",
                caller.role.as_str(),
                range.start,
                range.end.saturating_sub(1)
            ),
        )
        .await?;
    // The first step is read now, so a storage failure is an error status,
    // not a cut stream; the rest streams a step at a time.
    let first_end = (range.start + STEP).min(range.end);
    let first = read_plain(&app, &at, &header, range.start..first_end, len).await?;
    let rest = futures::stream::unfold(
        (Arc::clone(&app), at, header, first_end, range.end),
        move |(app, at, header, pos, end)| async move {
            if pos >= end {
                return None;
            }
            let next = (pos + STEP).min(end);
            match read_plain(&app, &at, &header, pos..next, len).await {
                Ok(bytes) => Some((
                    Ok::<Bytes, std::io::Error>(bytes),
                    (app, at, header, next, end),
                )),
                Err(_) => Some((
                    Err(std::io::Error::other("recording read failed")),
                    (app, at, header, end, end),
                )),
            }
        },
    );
    let body = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(first) });
    let mut res = Response::new(Body::from_stream(futures::StreamExt::chain(body, rest)));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/ogg"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{len}",
            range.start,
            range.end.saturating_sub(1)
        ))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

/// Plaintext `range` of a sealed recording: fetches and opens only the
/// chunks it covers.
async fn read_plain(
    app: &AppState,
    at: &Location,
    header: &Header,
    range: Range<u64>,
    len: u64,
) -> Result<Bytes, RecordingError> {
    let (chunks, bytes) = header.span(&range, len);
    let sealed = app.recordings.storage().read(at, bytes).await?;
    let plain = header.open(app.recordings.pii(), chunks, &sealed, &range, len)?;
    Ok(Bytes::from(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Option<Result<Range<u64>, ()>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        wanted(&h, len)
    }

    #[test]
    fn ranges_as_browsers_send_them() {
        assert_eq!(wanted(&HeaderMap::new(), 10), None);
        assert_eq!(range("bytes=0-", 10), Some(Ok(0..10)));
        assert_eq!(range("bytes=2-4", 10), Some(Ok(2..5)));
        assert_eq!(range("bytes=5-100", 10), Some(Ok(5..10)));
        assert_eq!(range("bytes=-3", 10), Some(Ok(7..10)));
        assert_eq!(range("bytes=-30", 10), Some(Ok(0..10)));
        assert_eq!(range("bytes=10-", 10), Some(Err(())));
        assert_eq!(range("bytes=-0", 10), Some(Err(())));
        // Ignored, as RFC 9110 allows: the whole body.
        for v in [
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=4-2",
            "bytes=x-",
            "bytes=-",
        ] {
            assert_eq!(range(v, 10), None, "{v}");
        }
    }
}
