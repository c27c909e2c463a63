//! Outbound calls (issue 16): the [`Dialer`] checks a number against the
//! do-not-call list and the blocklist, writes the request on record (so a
//! refusal or a crash mid-dial is never lost), asks the carrier to place the
//! call with status and answering-machine callbacks pointing back here, and
//! keeps what the call's webhooks and stream need (the lead's variables, an
//! early verdict) until the call is over.
//!
//! # Layout
//! - [`phone`] — numbers into E.164 with libphonenumber's rules.
//! - [`settings`] — the config's `[outbound]` section.
//! - the webhooks: `carriers/twilio/outbound.rs`; the API: `api/outbound.rs`,
//!   `api/dnc.rs`.

pub mod phone;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hark_actors::context::Placed;
use hark_actors::protocol::AnsweredBy;
use hark_actors::records::{PlacementMove, Record, RecordSink};
use hark_carrier::port::{CallControl, ControlError, Dial, MachineDetection};

use crate::pii::Pii;
use crate::store::outbound::{NewPlacement, Placement, is_final};
use crate::store::{Store, StoreError};
pub use settings::OutboundSettings;

/// `hark_outbound_calls_total{result}`: every placement once, by how it
/// ended: `refused_do_not_call`, `refused_blocklist`, `refused_invalid_number`,
/// `carrier_error`, or the
/// carrier's final state (`completed`, `busy`, `no_answer`, `failed`, `canceled`).
pub const OUTBOUND_CALLS: &str = "hark_outbound_calls_total";
/// `hark_outbound_answered_by_total{verdict}`: the carrier's AMD verdicts.
pub const ANSWERED_BY: &str = "hark_outbound_answered_by_total";

/// How long a stream start waits for a placement read back from the database.
const LOOKUP_WAIT: Duration = Duration::from_secs(2);

/// A request to place a call, as the API and CLI give it.
#[derive(Debug, Clone)]
pub struct Request {
    pub to: String,
    pub from: Option<String>,
    pub policy: String,
    pub variables: BTreeMap<String, String>,
    pub machine_detection: MachineDetection,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("from: no caller ID given and outbound.caller_id is not set")]
    NoCallerId,
    #[error("{0}")]
    Invalid(String),
    #[error("no carrier call control is configured (TWILIO_ACCOUNT_SID and the auth token)")]
    NoCallControl,
    #[error("the do-not-call list could not be checked, so the number was not dialed: {0}")]
    Store(#[from] StoreError),
}

/// What became of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Dialed (or, on a carrier error, on record as `failed`).
    Placed(Placement),
    /// The idempotency key was used before: that request, unchanged.
    Replayed(Placement),
    /// On a list: on record as `refused`, never dialed.
    Refused(Placement),
}

/// What the webhooks and the stream need of a call being placed.
#[derive(Clone)]
struct Pending {
    placement: Placement,
    lead: BTreeMap<String, String>,
    verdict: Option<AnsweredBy>,
    counted: bool,
}

pub struct Dialer {
    control: Option<Arc<dyn CallControl>>,
    /// Where the placements' later states go (the record writer: spooled
    /// through a database outage, never lost).
    records: Arc<dyn RecordSink>,
    /// `scheme://host` the carrier reaches this node at.
    base_url: String,
    settings: OutboundSettings,
    pending: Mutex<lru::LruCache<String, Pending>>,
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("OB{hex}")
}

/// At most this many lead variables (the request body's size bounds the rest).
const MAX_VARIABLES: usize = 50;

/// Twilio's `AnsweredBy`, as the call tree reads it.
pub fn answered_by(value: &str) -> Option<AnsweredBy> {
    Some(match value {
        "human" => AnsweredBy::Human,
        "machine_start" => AnsweredBy::Machine { ended: false },
        "machine_end_beep" | "machine_end_silence" | "machine_end_other" => {
            AnsweredBy::Machine { ended: true }
        }
        "fax" => AnsweredBy::Fax,
        "unknown" => AnsweredBy::Unknown,
        _ => return None,
    })
}

impl Dialer {
    pub fn new(
        control: Option<Arc<dyn CallControl>>,
        records: Arc<dyn RecordSink>,
        base_url: String,
        settings: OutboundSettings,
    ) -> Self {
        Self {
            control,
            records,
            base_url,
            settings,
            pending: Mutex::new(lru::LruCache::unbounded()),
        }
    }

    /// Moves placement `id` on, through the record writer.
    fn moved(
        &self,
        id: &str,
        call_sid: Option<&str>,
        state: Option<&str>,
        reason: Option<&str>,
        answered_by: Option<&str>,
    ) {
        self.records.send(Record::Placement(PlacementMove {
            id: id.to_owned(),
            call_sid: call_sid.map(str::to_owned),
            state: state.map(str::to_owned),
            reason: reason.map(str::to_owned),
            answered_by: answered_by.map(str::to_owned),
            at_ms: hark_actors::records::now_ms(),
        }));
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether calls can be placed at all (a carrier's call control is configured).
    pub fn can_dial(&self) -> bool {
        self.control.is_some()
    }

    /// `raw` in E.164, read in the configured region.
    pub fn normalise(&self, raw: &str) -> Result<String, phone::NumberError> {
        phone::e164(raw, self.settings.default_region.parse().ok())
    }

    /// Places a call, or refuses it. `policy` must already be known live.
    pub async fn place(
        &self,
        req: Request,
        by: &str,
        store: &Store,
        pii: &Pii,
    ) -> Result<Outcome, PlaceError> {
        // A number nobody can dial is refused like a listed one: on record.
        let (to, invalid) = match self.normalise(&req.to) {
            Ok(to) => (to, false),
            Err(_) => (req.to.trim().to_owned(), true),
        };
        // The caller ID is the account's own number: the carrier checks it.
        let from = match req.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => f.to_owned(),
            None if !self.settings.caller_id.is_empty() => self.settings.caller_id.clone(),
            None => return Err(PlaceError::NoCallerId),
        };
        if req.variables.len() > MAX_VARIABLES {
            return Err(PlaceError::Invalid(format!(
                "variables: at most {MAX_VARIABLES}"
            )));
        }
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(PlaceError::Invalid(
                "idempotency_key: 1 to 200 characters".into(),
            ));
        }
        let Some(control) = self.control.clone() else {
            return Err(PlaceError::NoCallControl);
        };
        let now = hark_actors::records::now_ms();
        let refusal = if invalid {
            Some("invalid_number")
        } else {
            store.dial_refusal(&to, pii).await?
        };
        let mut placement = Placement {
            id: new_id(),
            to,
            from,
            policy: req.policy,
            machine_detection: req.machine_detection.as_str().into(),
            call_sid: None,
            state: if refusal.is_some() {
                "refused"
            } else {
                "dialing"
            }
            .into(),
            reason: refusal.unwrap_or_default().into(),
            answered_by: None,
            idempotency_key: req.idempotency_key,
            created_by: by.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let variables_json = serde_json::to_string(&req.variables).unwrap_or_else(|_| "{}".into());
        let new = NewPlacement {
            placement: &placement,
            variables_json: &variables_json,
        };
        if let Some(first) = store.placement_insert(new, pii).await? {
            return Ok(Outcome::Replayed(first));
        }
        if let Some(reason) = refusal {
            metrics::counter!(OUTBOUND_CALLS, "result" => format!("refused_{reason}")).increment(1);
            tracing::info!(id = %placement.id, reason, "outbound call refused: the number is listed");
            return Ok(Outcome::Refused(placement));
        }
        let id = placement.id.clone();
        let dial = Dial {
            to: placement.to.clone(),
            from: placement.from.clone(),
            answer_url: format!("{}/twilio/outbound/answer?id={id}", self.base_url),
            status_url: Some(format!("{}/twilio/status?outbound={id}", self.base_url)),
            timeout_secs: self.settings.ring_timeout_secs,
            machine_detection: req.machine_detection,
            amd_url: Some(format!("{}/twilio/outbound/amd?id={id}", self.base_url)),
        };
        // Kept before dialing: the carrier may call back before it answers.
        crate::switchboard::put_bounded(
            &mut self.pending(),
            self.settings.max_pending,
            id.clone(),
            Pending {
                placement: placement.clone(),
                lead: req.variables,
                verdict: None,
                counted: false,
            },
        );
        match control.dial(&dial).await {
            Ok(call_sid) => {
                tracing::info!(%id, call_sid = %call_sid, "outbound call placed");
                placement.call_sid = Some(call_sid.clone());
                placement.state = "queued".into();
                if let Some(p) = self.pending().get_mut(&id) {
                    p.placement.call_sid = Some(call_sid.clone());
                }
                self.moved(&id, Some(&call_sid), Some("queued"), None, None);
            }
            Err(e) => {
                let reason = match &e {
                    ControlError::Unsupported { .. } => "carrier_unsupported".to_owned(),
                    other => other.to_string(),
                };
                tracing::warn!(%id, error = %e, "the carrier did not place the call");
                metrics::counter!(OUTBOUND_CALLS, "result" => "carrier_error").increment(1);
                self.pending().pop(&id);
                placement.state = "failed".into();
                placement.reason = reason.clone();
                self.moved(&id, None, Some("failed"), Some(&reason), None);
            }
        }
        Ok(Outcome::Placed(placement))
    }

    /// A placement still in memory, or read back from the database.
    async fn lookup(&self, id: &str, store: &Store, pii: &Pii) -> Option<Pending> {
        if let Some(p) = self.pending().get(id) {
            return Some(p.clone());
        }
        let read = tokio::time::timeout(LOOKUP_WAIT, store.placement(id, pii)).await;
        let (placement, vars) = match read {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::warn!(%id, error = %e, "placement could not be read");
                return None;
            }
            Err(_) => {
                tracing::warn!(%id, "placement read timed out");
                return None;
            }
        };
        let lead = serde_json::from_str(&vars).unwrap_or_default();
        let pending = Pending {
            counted: is_final(&placement.state),
            placement,
            lead,
            verdict: None,
        };
        crate::switchboard::put_bounded(
            &mut self.pending(),
            self.settings.max_pending,
            id.to_owned(),
            pending.clone(),
        );
        Some(pending)
    }

    /// The placement the carrier's answer webhook names, if it is this
    /// call's (`call_sid`).
    pub async fn answering(
        &self,
        id: &str,
        call_sid: &str,
        store: &Store,
        pii: &Pii,
    ) -> Option<Placement> {
        let p = self.lookup(id, store, pii).await?;
        (p.placement.call_sid.as_deref() == Some(call_sid) || p.placement.call_sid.is_none())
            .then_some(p.placement)
    }

    /// What the call tree needs when the placed call's stream starts.
    pub async fn placed(&self, id: &str, store: &Store, pii: &Pii) -> Placed {
        match self.lookup(id, store, pii).await {
            Some(p) => Placed {
                lead: p.lead,
                machine_detection: p.placement.machine_detection != MachineDetection::Off.as_str(),
                verdict: self.take_verdict(id),
            },
            None => Placed::default(),
        }
    }

    /// The carrier's status for placement `id`: on record (with the call's
    /// SID: a node that died before writing it learns it here), counted once
    /// when final.
    pub fn status(&self, id: &str, status: &str, call_sid: Option<&str>) {
        let final_now = is_final(status);
        let count = {
            let mut pending = self.pending();
            match pending.get_mut(id) {
                Some(p) => {
                    let first = final_now && !p.counted;
                    if !is_final(&p.placement.state) {
                        p.placement.state = status.to_owned();
                    }
                    p.counted |= final_now;
                    first
                }
                None => final_now,
            }
        };
        if count {
            metrics::counter!(OUTBOUND_CALLS, "result" => status.replace('-', "_")).increment(1);
        }
        self.moved(id, call_sid, Some(status), None, None);
    }

    /// Asks the carrier how placement `id`'s call stands and records it, as
    /// if its status callback had come (one that never did: this node was
    /// down when it was sent). Whether the carrier answered.
    pub async fn reconcile(&self, id: &str, call_sid: &str) -> bool {
        let Some(control) = self.control.clone() else {
            return false;
        };
        match control.status(call_sid).await {
            Ok(status) => {
                if hark_carrier::twilio::status::parse(&status).is_some() {
                    self.status(id, &status, Some(call_sid));
                }
                true
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "the carrier did not say how the call stands");
                false
            }
        }
    }

    /// The carrier's answering-machine verdict (`raw`, Twilio's word) on
    /// record; kept for a stream that has not started yet (`keep`).
    pub fn verdict(&self, id: &str, verdict: AnsweredBy, raw: &str, keep: bool) {
        self.moved(id, None, None, None, Some(raw));
        if keep && let Some(p) = self.pending().get_mut(id) {
            p.verdict = Some(verdict);
        }
    }

    /// A verdict that came while the placed call's tree was starting (after
    /// `placed` read it, before the tree could be reached).
    pub fn take_verdict(&self, id: &str) -> Option<AnsweredBy> {
        self.pending().get_mut(id).and_then(|p| p.verdict.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_verdicts_map_to_the_trees() {
        assert_eq!(answered_by("human"), Some(AnsweredBy::Human));
        assert_eq!(
            answered_by("machine_end_beep"),
            Some(AnsweredBy::Machine { ended: true })
        );
        assert_eq!(
            answered_by("machine_start"),
            Some(AnsweredBy::Machine { ended: false })
        );
        assert_eq!(answered_by("fax"), Some(AnsweredBy::Fax));
        assert_eq!(answered_by("robot"), None);
    }

    #[test]
    fn placement_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..100).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.iter().all(|i| i.len() == 34 && i.starts_with("OB")));
    }
}
