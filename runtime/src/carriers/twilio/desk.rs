//! The [`TransferDesk`] on Twilio: call control through the REST API
//! ([`CallControl`]), agents from the directory (reserved in the database),
//! and the webhooks the agent's leg and a returning caller reach
//! ([`super::agent`]).
//!
//! - hold: the caller's call gets `<Dial><Conference>` for the room
//!   `hark-{CallSid}` (recorded from the start, reported to
//!   `/twilio/recording`, only if the caller consented); Twilio ends the
//!   stream (`stop`).
//! - dial the agent: `Calls.json` with `Url` = `/twilio/agent/answer`
//!   (the whisper and the key), `StatusCallback` = `/twilio/agent/status`.
//! - back to the bot: the caller's call is redirected to `/twilio/return`,
//!   which answers `<Connect><Stream>` with a new stream token: a new stream
//!   of the same call.
//! - cold: `<Dial><Number>` / `<Sip>` on the caller's call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hark_actors::CallIds;
use hark_actors::transfer::{AgentDial, AgentLeg, DeskError, Handoff, TransferDesk};
use hark_carrier::port::{CallControl, ConferenceOp, Dial, MachineDetection};

use crate::store::Store;
use crate::switchboard::{self, Switchboard};

/// Every database step of a transfer gets this long.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// The conference a call's caller waits in and its agent joins.
pub fn room(call_sid: &str) -> String {
    format!("hark-{call_sid}")
}

pub struct TwilioDesk {
    pub control: Arc<dyn CallControl>,
    pub store: Store,
    pub switchboard: Arc<Switchboard>,
    /// Where Twilio reaches this node: `https://{public_host}`, or
    /// `http://{listen address}` for local use.
    pub base_url: String,
}

fn failed(e: impl std::fmt::Display) -> DeskError {
    DeskError(e.to_string())
}

impl TwilioDesk {
    fn url(&self, path: &str, call_sid: &str) -> String {
        format!("{}{path}?call={call_sid}", self.base_url)
    }
}

#[async_trait]
impl TransferDesk for TwilioDesk {
    async fn cold(&self, call: &CallIds, to: &str) -> Result<(), DeskError> {
        self.control
            .forward(&call.call_id, to)
            .await
            .map_err(failed)
    }

    async fn reserve(
        &self,
        call: &CallIds,
        skill: &str,
        language: &str,
    ) -> Result<Option<AgentLeg>, DeskError> {
        let now = hark_actors::records::now_ms();
        let reserve = self
            .store
            .reserve_agent(&call.call_id, skill, language, now);
        let Some(name) = tokio::time::timeout(STORE_WAIT, reserve)
            .await
            .map_err(|_| DeskError("the agent directory did not answer in time".into()))?
            .map_err(failed)?
        else {
            return Ok(None);
        };
        let address = match tokio::time::timeout(STORE_WAIT, self.store.agent_address(&name)).await
        {
            Ok(Ok(Some(address))) => address,
            // Reserved but unusable: the place goes back.
            found => {
                self.release(call).await;
                return Err(DeskError(match found {
                    Ok(Ok(_)) => format!("agent {name} vanished"),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the agent directory did not answer in time".into(),
                }));
            }
        };
        Ok(Some(AgentLeg { name, address }))
    }

    async fn release(&self, call: &CallIds) {
        release(&self.store, &call.call_id, Duration::ZERO).await;
    }

    async fn hold(&self, call: &CallIds, music_url: &str, record: bool) -> Result<(), DeskError> {
        self.control
            .conference(&ConferenceOp::Join {
                call_id: call.call_id.clone(),
                room: room(&call.call_id),
                wait_url: (!music_url.is_empty()).then(|| music_url.to_owned()),
                recording_callback: record.then(|| self.url("/twilio/recording", &call.call_id)),
            })
            .await
            .map_err(failed)
    }

    async fn dial_agent(
        &self,
        call: &CallIds,
        dial: &AgentDial,
        handoff: Handoff,
    ) -> Result<String, DeskError> {
        let sid = &call.call_id;
        self.switchboard.put_handoff(sid, handoff);
        // From the number the caller dialed (a Twilio number of the account).
        let from = self
            .switchboard
            .claims(sid)
            .map(|c| c.to)
            .unwrap_or_default();
        let leg = self
            .control
            .dial(&Dial {
                to: dial.agent.address.clone(),
                from,
                answer_url: self.url("/twilio/agent/answer", sid),
                status_url: Some(self.url("/twilio/agent/status", sid)),
                timeout_secs: dial.ring.as_secs().clamp(5, 600) as u32,
                machine_detection: MachineDetection::Off,
                amd_url: None,
            })
            .await
            .map_err(failed)?;
        self.switchboard.add_leg(
            leg.clone(),
            switchboard::AgentLeg {
                call_sid: sid.clone(),
                accept_key: dial.accept_key,
                accept: dial.accept,
                wrap_up: dial.wrap_up,
                accepted: false,
            },
        );
        Ok(leg)
    }

    async fn hang_up(&self, leg: &str) {
        if let Err(e) = self.control.hang_up(leg).await {
            tracing::debug!(error = %e, "agent leg already gone");
        }
    }

    async fn back_to_bot(&self, call: &CallIds) -> Result<(), DeskError> {
        self.control
            .redirect(&call.call_id, &self.url("/twilio/return", &call.call_id))
            .await
            .map_err(failed)
    }
}

/// Releases a call's reservation: the agent is offered calls again after
/// `wrap_up`. A release the database refuses (an outage) is tried again in
/// the background, backing off to every 30 s, for [`RELEASE_RETRY_FOR`]: a
/// reservation left over keeps the agent from every call. Past that it is
/// logged, and released by hand (`hark agent state NAME available`).
pub async fn release(store: &Store, call_sid: &str, wrap_up: Duration) {
    if try_release(store, call_sid, wrap_up).await {
        return;
    }
    let store = store.clone();
    let call_sid = call_sid.to_owned();
    let retries = async move {
        let deadline = tokio::time::Instant::now() + RELEASE_RETRY_FOR;
        let mut wait = Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(wait).await;
            if try_release(&store, &call_sid, wrap_up).await {
                return;
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        tracing::error!(
            "gave up releasing an agent's reservation: release the agent by hand (hark agent state NAME available)"
        );
    };
    tokio::spawn(tracing::Instrument::in_current_span(retries));
}

/// How long a refused release is tried again.
pub const RELEASE_RETRY_FOR: Duration = Duration::from_secs(300);

/// Whether the reservation is gone (released now, or none was held).
async fn try_release(store: &Store, call_sid: &str, wrap_up: Duration) -> bool {
    let now = hark_actors::records::now_ms();
    let wrap = i64::try_from(wrap_up.as_millis()).unwrap_or(i64::MAX);
    match tokio::time::timeout(STORE_WAIT, store.release_agent(call_sid, wrap, now)).await {
        Ok(Ok(Some(agent))) => {
            tracing::info!(agent = %agent, wrap_up_secs = wrap_up.as_secs(), "agent released");
            true
        }
        Ok(Ok(None)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not release an agent's reservation: trying again");
            false
        }
        Err(_) => {
            tracing::warn!("releasing an agent's reservation timed out: trying again");
            false
        }
    }
}

/// The node's Twilio call control for `hark serve`, when the account
/// (`TWILIO_ACCOUNT_SID` and the auth token) is configured.
pub fn control_from_config(
    config: &crate::config::Config,
    auth_token: Option<&hark_actors::providers::Secret>,
) -> Option<Arc<dyn CallControl>> {
    let token = auth_token?;
    let sid = std::env::var(super::rest::ACCOUNT_SID_ENV)
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(Arc::new(super::rest::TwilioRest::new(
        &config.providers.twilio,
        sid,
        token.clone(),
    )))
}

/// `scheme://host` the carrier reaches this node at: `https://public_host`,
/// else the address it listens on.
pub fn base_url(config: &crate::config::Config, listening: std::net::SocketAddr) -> String {
    match &config.public_host {
        Some(host) => format!("https://{host}"),
        None => format!("http://{listening}"),
    }
}

/// The desk for `hark serve`: with call control; without it, transfers
/// only say the escalation line.
pub fn from_control(
    control: Option<Arc<dyn CallControl>>,
    base_url: String,
    store: &Store,
    switchboard: &Arc<Switchboard>,
) -> Option<Arc<dyn TransferDesk>> {
    Some(Arc::new(TwilioDesk {
        control: control?,
        store: store.clone(),
        switchboard: Arc::clone(switchboard),
        base_url,
    }))
}
