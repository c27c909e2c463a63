//! A Twilio request about a call another node holds (its status callback
//! landed here, its answering-machine verdict went to the node that placed
//! it): forwarded to that node, whose answer goes back to Twilio. Anything
//! the other node cannot be reached for is handled here, as before.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::cluster::forward;
use crate::state::AppState;

/// The other node's answer, when another live node holds `call_sid`.
pub(super) async fn forward_to_owner(
    app: &AppState,
    call_sid: &str,
    headers: &HeaderMap,
    uri: &Uri,
    params: &BTreeMap<String, String>,
) -> Option<Response> {
    let cluster = app.cluster.as_ref()?;
    // Never twice; never for a call that is here.
    if headers.contains_key(forward::HEADER) || app.switchboard.supervisor(call_sid).is_some() {
        return None;
    }
    let entry = cluster.call_entry(call_sid).await.ok()??;
    if entry.ended || entry.node == cluster.node {
        return None;
    }
    let base = cluster.node_url(&entry.node).await.ok()??;
    let path = without_node_prefix(uri.path_and_query().map_or("/", |p| p.as_str()));
    let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let (status, kind, body) =
        forward::post_form(cluster.http(), &app.stream_tokens, &base, path, &pairs).await?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    Some((status, [(header::CONTENT_TYPE, kind)], body).into_response())
}

/// `/n/{node}/twilio/…` → `/twilio/…`: the other node has its own prefix
/// (in its advertised URL).
fn without_node_prefix(path: &str) -> &str {
    match path.strip_prefix("/n/") {
        Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_prefix_comes_off() {
        assert_eq!(
            without_node_prefix("/n/node-a/twilio/status?x=1"),
            "/twilio/status?x=1"
        );
        assert_eq!(without_node_prefix("/twilio/status"), "/twilio/status");
        assert_eq!(without_node_prefix("/n/only"), "/n/only");
    }
}
