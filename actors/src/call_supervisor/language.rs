//! Switching the call's language: the lines, the voices (next sentence)
//! and the STT session (next utterance) follow.

use super::SupervisorState;
use crate::metrics as m;
use crate::protocol::SttMsg;
use crate::turns::Lines;

/// The fixed lines the turn controller says, in `policy`'s language.
pub(super) fn lines(policy: &crate::policy::PolicyFile) -> Lines {
    Lines {
        greeting: policy.greeting.clone(),
        fallback: policy.fallback_line.clone(),
        goodbye: policy.goodbye.clone(),
        apology: policy.apology.clone(),
    }
}

impl SupervisorState {
    /// Goes on in `code`: its lines from now on, its voices for the next
    /// sentence, its STT for the next utterance.
    pub(super) fn switch_language(&mut self, code: &str, how: &'static str) {
        let before = self.ctx.spoken();
        if !self.ctx.switch_language(code) {
            return;
        }
        let now = self.ctx.spoken();
        self.turns.set_lines(lines(&now.policy));
        self.rules.set_language(&now.policy);
        if before.policy.stt != now.policy.stt {
            self.ctx.routes.stt.send(SttMsg::Renew);
        }
        metrics::counter!(m::RULE_DECISIONS, "rule" => "language", "action" => how).increment(1);
        self.ctx
            .recorder
            .event("language", format!("{code} by {how}"));
        tracing::info!(parent: &self.ctx.span, language = code, how, "the call goes on in another language");
    }
}
