//! What every Twilio request goes through: the host and scheme it came in
//! at, its `X-Twilio-Signature` (or, forwarded by another node, its
//! `X-Hark-Forward`), and the TwiML answer.

use std::collections::BTreeMap;

use axum::extract::Form;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hark_carrier::twilio::signature;

use crate::carriers::SIGNATURE_FAILURES;
use crate::cluster::forward;
use crate::http_limits::ClientAddr;
use crate::server::refuse;
use crate::state::AppState;

/// `direction` as records keep it: Twilio's `Direction`, `inbound` if absent.
pub(super) fn direction(params: &BTreeMap<String, String>) -> String {
    match params.get("Direction").map(String::as_str) {
        None | Some("") => "inbound".into(),
        Some(d) => d.to_owned(),
    }
}

/// The host Twilio reached us at: `public_host`, else the `Host` header.
pub(super) fn host(app: &AppState, headers: &HeaderMap) -> Option<String> {
    app.config
        .public_host
        .clone()
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|h| !h.is_empty() && !h.contains(['/', '"', '<', ' ']))
}

/// `https`, unless a proxy says the request came in as plain `http`.
pub(super) fn scheme(
    headers: &HeaderMap,
    secure: &'static str,
    plain: &'static str,
) -> &'static str {
    match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("http") => plain,
        _ => secure,
    }
}

/// The URL Twilio requested, as it signed it.
pub(super) fn request_url(
    headers: &HeaderMap,
    uri: &Uri,
    host: &str,
    secure: &'static str,
    plain: &'static str,
) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{}://{host}{path}", scheme(headers, secure, plain))
}

/// Checks the signature of a request to `url`; `Some` is the 403 to answer.
pub(super) fn check(
    app: &AppState,
    route: &'static str,
    headers: &HeaderMap,
    url: &str,
    params: &[(String, String)],
    client: Option<ClientAddr>,
) -> Option<Response> {
    let token = app.twilio_auth_token.as_ref()?;
    // Forwarded by another node, which checked Twilio's signature.
    if let Some(fwd) = headers.get(forward::HEADER) {
        let ok = fwd.to_str().is_ok_and(|h| {
            forward::verify(
                &app.stream_tokens,
                crate::stream_token::now_secs(),
                h,
                forward::path_of(url),
                params,
            )
        });
        if ok {
            return None;
        }
        metrics::counter!(SIGNATURE_FAILURES, "route" => route, "reason" => "forward").increment(1);
        tracing::warn!(
            route,
            "a forwarded request's X-Hark-Forward did not verify; refused"
        );
        return Some(refuse(StatusCode::FORBIDDEN, "invalid X-Hark-Forward"));
    }
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let ok = given.is_some_and(|sig| signature::verify(token.expose(), url, params, sig));
    if ok {
        return None;
    }
    let reason = if given.is_some() { "wrong" } else { "missing" };
    metrics::counter!(SIGNATURE_FAILURES, "route" => route, "reason" => reason).increment(1);
    let client = client.map(|c| c.0.to_string()).unwrap_or_default();
    tracing::warn!(
        route,
        reason,
        %client,
        "Twilio signature check failed; request refused"
    );
    Some(refuse(StatusCode::FORBIDDEN, "invalid X-Twilio-Signature"))
}

/// Checks a Twilio form request's host and signature; the URL base it
/// came in at (`scheme://host`, for links in the TwiML answered), or the
/// refusal to answer.
pub(super) fn verified(
    app: &AppState,
    route: &'static str,
    headers: &HeaderMap,
    uri: &Uri,
    params: &BTreeMap<String, String>,
    client: Option<ClientAddr>,
) -> Result<String, Box<Response>> {
    let Some(host) = host(app, headers) else {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "no usable Host header",
        )));
    };
    let url = request_url(headers, uri, &host, "https", "http");
    if let Some(refused) = check(app, route, headers, &url, &pairs(params), client) {
        return Err(Box::new(refused));
    }
    Ok(format!("{}://{host}", scheme(headers, "https", "http")))
}

pub(super) fn pairs(params: &BTreeMap<String, String>) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A TwiML answer.
pub(super) fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

pub(super) type Params = Form<BTreeMap<String, String>>;
