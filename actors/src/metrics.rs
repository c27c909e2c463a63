//! Metric names. Prometheus conventions: `hark_` prefix, base units in the
//! name, `_total` for counters, and only bounded label values (never a call id).
//!
//! Hot paths hold metric handles in their state instead of calling the
//! `counter!` macro per frame, which would hash the key every time.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const CALLS_ACTIVE: &str = "hark_calls_active";
pub const CALLS_TOTAL: &str = "hark_calls_total";
pub const CALLS_ENDED: &str = "hark_calls_ended_total";
/// `{policy, disposition}`: both bounded (the policies in the folder, the
/// dispositions each lists).
pub const CALL_DISPOSITIONS: &str = "hark_call_dispositions_total";
/// `{rule, action}`: a rule enforced on a live call (`profanity`: `warned`,
/// `ended`; `consent`: `asked`, `asked_again`; `idle`: `reprompted`, `ended`;
/// `escalation`: the reason).
pub const RULE_DECISIONS: &str = "hark_rule_decisions_total";
/// `{result}`: `accepted`, `declined`, `unclear`, `not_required`.
pub const CONSENT: &str = "hark_consent_total";
/// `{reason}`: `keyword`, `not_understood`, `sentiment`, `tool`, `dtmf`, `api`.
pub const TRANSFER_REQUESTS: &str = "hark_transfer_requests_total";
/// `{kind, result}`: `cold`/`warm`; `connected`, `no_answer`, `declined`,
/// `no_agent`, `failed`, `abandoned`.
pub const TRANSFERS: &str = "hark_transfers_total";
/// `{kind}`: from the request to the caller connected (cold: redirected;
/// warm: the agent accepted).
pub const TRANSFER_CONNECT: &str = "hark_transfer_connect_seconds";
pub const CALL_ACTORS: &str = "hark_call_actors";
pub const FRAMES_RECEIVED: &str = "hark_media_frames_received_total";
pub const FRAMES_SENT: &str = "hark_media_frames_sent_total";
pub const SEQUENCE_GAPS: &str = "hark_media_sequence_gaps_total";
pub const FRAMES_DROPPED: &str = "hark_audio_frames_dropped_total";
pub const BARGE_INS: &str = "hark_barge_ins_total";
pub const BAD_MESSAGES: &str = "hark_bad_messages_total";
pub const ACTOR_RESTARTS: &str = "hark_actor_restarts_total";
pub const DTMF: &str = "hark_dtmf_total";
pub const TURN_RESPONSE: &str = "hark_turn_response_seconds";
pub const PROVIDER_ERRORS: &str = "hark_provider_errors_total";
pub const PROVIDER_RECONNECTS: &str = "hark_provider_reconnects_total";
pub const STT_FINAL: &str = "hark_stt_final_seconds";
pub const LLM_FIRST_TOKEN: &str = "hark_llm_first_token_seconds";
pub const TTS_FIRST_BYTE: &str = "hark_tts_first_byte_seconds";
pub const TOOL_CALLS: &str = "hark_tool_calls_total";
pub const RUNTIME_TASKS: &str = "hark_runtime_alive_tasks";
pub const PROVIDER_UP: &str = "hark_provider_up";

/// Buckets for `hark_turn_response_seconds`: dense around typical endpointing
/// (300–800 ms) where SLOs are set.
pub const TURN_RESPONSE_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.51, 0.52, 0.53, 0.55, 0.6, 0.65, 0.7, 0.8, 1.0, 1.25,
    1.5, 2.0, 3.0, 5.0,
];

/// Buckets for the per-stage latency histograms (STT final, LLM first token,
/// TTS first byte): 25 ms to 10 s.
pub const STAGE_BUCKETS: &[f64] = &[
    0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// Buckets for `hark_transfer_connect_seconds`: a redirect takes a REST
/// round trip; a warm transfer rings a person.
pub const TRANSFER_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0,
];

/// Registers help text for every metric (shown as `# HELP` on `/metrics`).
pub fn describe() {
    describe_gauge!(CALLS_ACTIVE, "Calls in progress on this node.");
    describe_counter!(CALLS_TOTAL, "Calls started on this node.");
    describe_counter!(CALLS_ENDED, "Calls ended, by reason.");
    describe_counter!(
        RULE_DECISIONS,
        "Rules enforced on live calls, by rule and action (profanity: warned, ended; consent: asked, asked_again; idle: reprompted, ended)."
    );
    describe_counter!(
        TRANSFER_REQUESTS,
        "Requests to transfer a call to a person, by what raised them (keyword, not_understood, sentiment, tool, dtmf)."
    );
    describe_counter!(
        CONSENT,
        "Consent-to-record decisions, by result (accepted, declined, unclear, not_required)."
    );
    describe_counter!(
        CALL_DISPOSITIONS,
        "Calls with an outcome, by policy and disposition (qualified, or one the policy lists)."
    );
    describe_gauge!(
        CALL_ACTORS,
        "Live per-call actors (children and supervisors)."
    );
    describe_counter!(
        FRAMES_RECEIVED,
        "Carrier media messages received (one with an unusable payload included)."
    );
    describe_counter!(FRAMES_SENT, "Media messages (20 ms frames) sent to Twilio.");
    describe_counter!(SEQUENCE_GAPS, "Gaps in Twilio's message sequence numbers.");
    describe_counter!(
        FRAMES_DROPPED,
        "Inbound audio frames dropped because an actor's queue was full, by stage."
    );
    describe_counter!(
        BARGE_INS,
        "Bot turns interrupted by the caller while audio was playing."
    );
    describe_counter!(
        BAD_MESSAGES,
        "Malformed or out-of-order Twilio messages, by reason."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        "Per-call child actors restarted after a failure, by actor."
    );
    describe_counter!(DTMF, "DTMF digits received.");
    describe_histogram!(
        TURN_RESPONSE,
        Unit::Seconds,
        "End of caller speech to the first bot audio frame sent."
    );
    describe_counter!(PROVIDER_ERRORS, "Provider failures, by provider and kind.");
    describe_counter!(
        PROVIDER_RECONNECTS,
        "Streaming sessions re-opened after a failure, by provider."
    );
    describe_histogram!(
        STT_FINAL,
        Unit::Seconds,
        "End of caller speech to the final transcript, by provider."
    );
    describe_histogram!(
        LLM_FIRST_TOKEN,
        Unit::Seconds,
        "LLM request to first token, by provider."
    );
    describe_histogram!(
        TTS_FIRST_BYTE,
        Unit::Seconds,
        "Sentence to first synthesized audio, by provider."
    );
    describe_counter!(TOOL_CALLS, "Tool calls by the LLM, by tool and outcome.");
    describe_counter!(TRANSFERS, "Transfers carried out, by kind and result.");
    describe_histogram!(
        TRANSFER_CONNECT,
        Unit::Seconds,
        "From a transfer request to the caller connected (cold: redirected; warm: agent accepted)."
    );
    describe_gauge!(RUNTIME_TASKS, "Tokio tasks alive in the runtime.");
    describe_gauge!(
        PROVIDER_UP,
        "1 when the provider's last health check passed (simulated providers always 1), by role and provider."
    );
    // Unlabelled series exist from the start, so dashboards and rate() see 0, not "no data".
    for gauge in [CALLS_ACTIVE, CALL_ACTORS] {
        metrics::gauge!(gauge).set(0.0);
    }
    for counter in [
        CALLS_TOTAL,
        FRAMES_RECEIVED,
        FRAMES_SENT,
        SEQUENCE_GAPS,
        BARGE_INS,
        DTMF,
    ] {
        metrics::counter!(counter).absolute(0);
    }
}
