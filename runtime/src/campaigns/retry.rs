//! What an attempt's result means for its lead: the lead's status and
//! whether (and when) it is called again. Pure: the scheduler reads the
//! placement and the call's record, this decides.

use serde::{Deserialize, Serialize};

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    NoAnswer,
    Busy,
    /// The carrier could not place it (or it was canceled).
    Failed,
    /// Not dialed: `do_not_call`, `blocklist`, `invalid_number`.
    Refused(String),
    /// Answered: the call's disposition (`qualified`, `not_interested`,
    /// `callback`, `voicemail`, …) and, for a callback, when it starts.
    Answered {
        disposition: Option<String>,
        callback_at_ms: Option<i64>,
    },
}

impl Attempt {
    /// The result's name in counters and the API.
    pub fn name(&self) -> &str {
        match self {
            Attempt::NoAnswer => "no_answer",
            Attempt::Busy => "busy",
            Attempt::Failed => "failed",
            Attempt::Refused(_) => "refused",
            Attempt::Answered { disposition, .. } => match disposition.as_deref() {
                Some("voicemail") => "voicemail",
                _ => "answered",
            },
        }
    }
}

/// Seconds before the next attempt, by how the last one ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryDelays {
    #[schema(minimum = 1, maximum = 2592000)]
    pub no_answer_secs: u32,
    #[schema(minimum = 1, maximum = 2592000)]
    pub busy_secs: u32,
    #[schema(minimum = 1, maximum = 2592000)]
    pub voicemail_secs: u32,
    #[schema(minimum = 1, maximum = 2592000)]
    pub failed_secs: u32,
}

impl Default for RetryDelays {
    fn default() -> Self {
        Self {
            no_answer_secs: 4 * 3600,
            busy_secs: 15 * 60,
            voicemail_secs: 24 * 3600,
            failed_secs: 30 * 60,
        }
    }
}

/// A lead's status (`leads.status`).
pub mod status {
    pub const NEW: &str = "new";
    pub const QUEUED: &str = "queued";
    pub const ATTEMPTING: &str = "attempting";
    pub const CONTACTED: &str = "contacted";
    pub const QUALIFIED: &str = "qualified";
    pub const NOT_INTERESTED: &str = "not_interested";
    pub const CALLBACK: &str = "callback";
    pub const VOICEMAIL: &str = "voicemail";
    pub const DO_NOT_CALL: &str = "do_not_call";
    pub const BAD_NUMBER: &str = "bad_number";
    pub const ALL: [&str; 10] = [
        NEW,
        QUEUED,
        ATTEMPTING,
        CONTACTED,
        QUALIFIED,
        NOT_INTERESTED,
        CALLBACK,
        VOICEMAIL,
        DO_NOT_CALL,
        BAD_NUMBER,
    ];
}

/// What becomes of the lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: &'static str,
    /// When to call again (ms since the epoch); `None`: done in this campaign.
    pub retry_at_ms: Option<i64>,
    /// Why it is done without a final answer (`max_attempts`), else empty.
    pub reason: &'static str,
}

/// Decides after attempt number `attempts` (1 for the first).
pub fn decide(
    attempt: &Attempt,
    attempts: u32,
    max_attempts: u32,
    delays: &RetryDelays,
    now_ms: i64,
) -> Decision {
    let again = |status: &'static str, secs: u32| {
        if attempts < max_attempts {
            Decision {
                status,
                retry_at_ms: Some(now_ms + i64::from(secs) * 1000),
                reason: "",
            }
        } else {
            Decision {
                status,
                retry_at_ms: None,
                reason: "max_attempts",
            }
        }
    };
    let done = |status: &'static str| Decision {
        status,
        retry_at_ms: None,
        reason: "",
    };
    match attempt {
        Attempt::NoAnswer => again(status::ATTEMPTING, delays.no_answer_secs),
        Attempt::Busy => again(status::ATTEMPTING, delays.busy_secs),
        Attempt::Failed => again(status::ATTEMPTING, delays.failed_secs),
        Attempt::Refused(reason) => match reason.as_str() {
            "invalid_number" => done(status::BAD_NUMBER),
            _ => done(status::DO_NOT_CALL),
        },
        Attempt::Answered {
            disposition,
            callback_at_ms,
        } => match disposition.as_deref() {
            Some("qualified") => done(status::QUALIFIED),
            Some("not_interested") => done(status::NOT_INTERESTED),
            Some("do_not_call") => done(status::DO_NOT_CALL),
            Some("voicemail") => again(status::VOICEMAIL, delays.voicemail_secs),
            // The caller asked for it: called back even past max_attempts,
            // at the start of the window they gave (never in the past).
            Some("callback") => Decision {
                status: status::CALLBACK,
                retry_at_ms: Some(
                    callback_at_ms
                        .unwrap_or(now_ms + i64::from(delays.no_answer_secs) * 1000)
                        .max(now_ms),
                ),
                reason: "",
            },
            _ => done(status::CONTACTED),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn d(a: Attempt, n: u32) -> Decision {
        decide(&a, n, 3, &RetryDelays::default(), NOW)
    }

    #[test]
    fn each_outcome_has_its_own_delay_until_attempts_run_out() {
        let r = RetryDelays::default();
        assert_eq!(
            d(Attempt::NoAnswer, 1).retry_at_ms,
            Some(NOW + i64::from(r.no_answer_secs) * 1000)
        );
        assert_eq!(
            d(Attempt::Busy, 2).retry_at_ms,
            Some(NOW + i64::from(r.busy_secs) * 1000)
        );
        assert_eq!(
            d(Attempt::Failed, 1).retry_at_ms,
            Some(NOW + i64::from(r.failed_secs) * 1000)
        );
        let vm = Attempt::Answered {
            disposition: Some("voicemail".into()),
            callback_at_ms: None,
        };
        assert_eq!(d(vm.clone(), 1).status, status::VOICEMAIL);
        assert_eq!(
            d(vm.clone(), 1).retry_at_ms,
            Some(NOW + i64::from(r.voicemail_secs) * 1000)
        );
        let last = d(Attempt::Busy, 3);
        assert_eq!((last.retry_at_ms, last.reason), (None, "max_attempts"));
        assert_eq!(d(vm, 3).retry_at_ms, None);
    }

    #[test]
    fn answers_end_the_lead_or_schedule_its_callback() {
        let answered = |disp: &str, cb: Option<i64>| Attempt::Answered {
            disposition: Some(disp.into()),
            callback_at_ms: cb,
        };
        assert_eq!(d(answered("qualified", None), 1).status, status::QUALIFIED);
        assert_eq!(d(answered("qualified", None), 1).retry_at_ms, None);
        assert_eq!(
            d(answered("not_interested", None), 1).status,
            status::NOT_INTERESTED
        );
        assert_eq!(d(answered("incomplete", None), 1).status, status::CONTACTED);
        let cb = d(answered("callback", Some(NOW + 7_200_000)), 3);
        assert_eq!(
            (cb.status, cb.retry_at_ms),
            (status::CALLBACK, Some(NOW + 7_200_000))
        );
        // A window already past: called at once, not in the past.
        assert_eq!(
            d(answered("callback", Some(NOW - 5)), 1).retry_at_ms,
            Some(NOW)
        );
        assert_eq!(
            d(Attempt::Refused("do_not_call".into()), 1).status,
            status::DO_NOT_CALL
        );
        assert_eq!(
            d(Attempt::Refused("invalid_number".into()), 1).status,
            status::BAD_NUMBER
        );
    }
}
