//! Where a new call's stream goes — this node alone, or the node the
//! cluster picks — and `POST /twilio/stream-ended`, the `<Connect action>`
//! Twilio requests when a stream ends: `<Hangup/>` for a call Hark ended
//! (or whose node is alive and saw its stream go), the call moved to a live
//! node, with the policy's `reconnect_line`, when its node was lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use hark_actors::PolicyFile;
use hark_carrier::twilio::{ids, twiml};

use super::request::{Params, direction, verified, xml};
use crate::cluster::redis::{Placement, policy_tag};
use crate::http_limits::ClientAddr;
use crate::state::AppState;
use crate::stream_token::{self, StreamClaims};

/// How long a node has to answer `/healthz` before it counts as lost.
const ALIVE_WAIT: Duration = Duration::from_millis(500);

/// A new stream's destination.
pub(super) enum Target {
    Stream {
        /// `ws(s)://…/twilio/media` of the node.
        url: String,
        /// Twilio's request when the stream ends (cluster mode).
        action: Option<String>,
    },
    /// Every node is full or draining.
    Busy,
}

/// `http(s)://host[/path]` → `ws(s)://host[/path]/twilio/media`.
pub(super) fn stream_url(base: &str) -> String {
    format!("{}/twilio/media", base.replacen("http", "ws", 1))
}

/// Where the stream of `call_sid` goes; `base` is the URL this request came
/// in at (`scheme://host`), `exclude` a node that must not get it.
pub(super) async fn target(
    app: &AppState,
    base: &str,
    call_sid: &str,
    policy: &PolicyFile,
    query: &str,
    exclude: &str,
) -> Target {
    let Some(cluster) = &app.cluster else {
        return Target::Stream {
            url: stream_url(base),
            action: None,
        };
    };
    // The action comes back to whichever node the public address reaches;
    // a stream goes to its node's own advertised URL (this one's too:
    // behind a shared host name the public address may reach another).
    let action = Some(format!("{base}/twilio/stream-ended?{query}"));
    let tag = policy_tag(&policy.name, &policy.version);
    match cluster.place(call_sid, &tag, exclude).await {
        Placement::Node { url, .. } => Target::Stream {
            url: stream_url(&url),
            action,
        },
        Placement::Fallback => Target::Stream {
            url: stream_url(&cluster.url),
            action,
        },
        Placement::Full => Target::Busy,
    }
}

/// `say`, then `<Connect><Stream>` to `url` with a token minted now.
pub(super) fn connect(
    app: &AppState,
    say: &str,
    url: &str,
    action: Option<&str>,
    mut claims: StreamClaims,
) -> Response {
    claims.exp = stream_token::now_secs().saturating_add(app.config.stream_token_ttl_secs);
    let token = app.stream_tokens.sign(&claims);
    xml(twiml::connect_stream_then(
        say,
        url,
        action,
        [
            ("policy", claims.policy.as_str()),
            (stream_token::PARAM, token.as_str()),
        ],
    ))
}

/// The `<Connect action>` query naming the policy (and placement) a call
/// runs with, so a takeover keeps them.
pub(super) fn action_query(policy: &str, outbound: Option<&str>) -> String {
    match outbound {
        Some(id) => format!("policy={policy}&outbound={id}"),
        None => format!("policy={policy}"),
    }
}

pub async fn stream_ended(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    client: Option<Extension<ClientAddr>>,
    axum::extract::Form(params): Params,
) -> Response {
    let base = match verified(
        &app,
        "stream_ended",
        &headers,
        &uri,
        &params,
        client.map(|c| c.0),
    ) {
        Ok(base) => base,
        Err(refused) => return *refused,
    };
    let hang_up = || xml(twiml::hang_up());
    let call_sid = params.get("CallSid").map_or("", String::as_str);
    let Some(cluster) = app.cluster.as_ref().filter(|_| ids::is_call_sid(call_sid)) else {
        return hang_up();
    };
    let entry = match cluster.call_entry(call_sid).await {
        Ok(Some(entry)) => entry,
        // Unknown, or Redis away: nothing says the caller should go on.
        Ok(None) | Err(_) => return hang_up(),
    };
    if entry.ended || entry.node == cluster.node || node_answers(&app, &entry.node).await {
        return hang_up();
    }
    // The call's node is gone and the caller is still there: a live node
    // takes the call over from its records.
    let Ok(index) = cluster.next_stream(call_sid).await else {
        return hang_up();
    };
    let named = query.get("policy").map(String::as_str);
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let live = app.policies.route(&get("To"), named);
    let outbound = query.get("outbound").cloned();
    let again = action_query(&live.policy.name, outbound.as_deref());
    let Target::Stream { url, action } =
        target(&app, &base, call_sid, &live.policy, &again, &entry.node).await
    else {
        return xml(twiml::say_and_hang_up(&live.policy.busy_line));
    };
    tracing::warn!(call_sid = %hark_actors::util::Escaped(call_sid), lost = %entry.node, "the call's node is lost: moving the caller to a live node");
    metrics::counter!(TAKEOVERS).increment(1);
    let from = get("From");
    let claims = StreamClaims {
        call_sid: call_sid.to_owned(),
        from: super::caller_identity(&from).unwrap_or(from),
        to: get("To"),
        direction: direction(&params),
        policy: live.policy.name.clone(),
        policy_version: live.policy.version.clone(),
        exp: 0,
        outbound,
        resume: Some(index),
    };
    connect(
        &app,
        &live.policy.reconnect_line,
        &url,
        action.as_deref(),
        claims,
    )
}

/// `hark_cluster_takeovers_total`: calls moved off a lost node.
pub const TAKEOVERS: &str = "hark_cluster_takeovers_total";

/// Whether node `id` is registered and answers `/healthz` now.
async fn node_answers(app: &AppState, id: &str) -> bool {
    let Some(cluster) = &app.cluster else {
        return false;
    };
    let Ok(Some(url)) = cluster.node_url(id).await else {
        return false;
    };
    cluster
        .http()
        .get(format!("{url}/healthz"))
        .timeout(ALIVE_WAIT)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_follow_the_advertised_scheme_and_path() {
        assert_eq!(
            stream_url("http://127.0.0.2:8080"),
            "ws://127.0.0.2:8080/twilio/media"
        );
        assert_eq!(
            stream_url("https://hark.example.com/n/node-a"),
            "wss://hark.example.com/n/node-a/twilio/media"
        );
    }
}
