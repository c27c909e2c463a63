//! Test-only fault injection: make one child actor of a call, or the task
//! that writes a bot reply, panic mid-call.
//!
//! Enabled only when the runtime's `call.fault_injection` setting is on (it is
//! off by default); a call then asks for a fault with the `hark_fault` custom
//! stream parameter, e.g. `vad:after=50:once`, `stt:after=20:always` or
//! `reply:after=1:once` (the first LLM reply of the call). This is how the
//! end-to-end tests prove that a failing child is restarted, that a failed
//! reply still ends its turn with the fallback line, and that an exhausted
//! restart budget ends the call cleanly.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::protocol::ChildKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Panic once; the restarted child runs normally.
    Once,
    /// Every incarnation of the child panics after `after` messages.
    Always,
}

/// What a plan makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// A child actor, after it has handled `after` messages.
    Child(ChildKind),
    /// The task writing an LLM reply, on the `after`-th reply of the call.
    Reply,
}

#[derive(Debug)]
pub struct FaultPlan {
    pub target: FaultTarget,
    pub after: u32,
    pub mode: FaultMode,
    fired: AtomicBool,
    replies: AtomicU32,
}

impl FaultPlan {
    /// Parses `ACTOR:after=N[:once|:always]`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(':');
        let target = match parts.next() {
            Some("reply") => FaultTarget::Reply,
            name => name
                .and_then(ChildKind::from_name)
                .map(FaultTarget::Child)
                .ok_or_else(|| format!("unknown actor in fault spec {spec:?}"))?,
        };
        let mut after = 1;
        let mut mode = FaultMode::Once;
        for part in parts {
            match part {
                "once" => mode = FaultMode::Once,
                "always" => mode = FaultMode::Always,
                _ => {
                    let n = part
                        .strip_prefix("after=")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| format!("bad fault option {part:?} in {spec:?}"))?;
                    after = n;
                }
            }
        }
        Ok(Self {
            target,
            after,
            mode,
            fired: AtomicBool::new(false),
            replies: AtomicU32::new(0),
        })
    }

    fn fire(&self) -> bool {
        match self.mode {
            FaultMode::Always => true,
            FaultMode::Once => !self.fired.swap(true, Ordering::AcqRel),
        }
    }

    /// Called by `kind` for each message it handles; panics when the plan says so.
    pub fn on_message(&self, kind: ChildKind, handled: &mut u32) {
        if self.target != FaultTarget::Child(kind) {
            return;
        }
        *handled = handled.saturating_add(1);
        if *handled < self.after {
            return;
        }
        if self.fire() {
            panic!(
                "injected fault in {} after {} messages",
                kind.as_str(),
                handled
            );
        }
    }

    /// Called at the start of each LLM reply; panics when the plan says so.
    pub fn on_reply(&self) {
        if self.target != FaultTarget::Reply {
            return;
        }
        let n = self
            .replies
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if n >= self.after && self.fire() {
            panic!("injected fault in reply {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let p = FaultPlan::parse("vad:after=50:always").unwrap();
        assert_eq!(p.target, FaultTarget::Child(ChildKind::Vad));
        assert_eq!(
            FaultPlan::parse("reply:after=2").unwrap().target,
            FaultTarget::Reply
        );
        assert_eq!(p.after, 50);
        assert_eq!(p.mode, FaultMode::Always);
        assert!(FaultPlan::parse("nobody:after=1").is_err());
        assert!(FaultPlan::parse("vad:after=x").is_err());
    }

    #[test]
    fn once_fires_once() {
        let p = FaultPlan::parse("tts:after=2:once").unwrap();
        let mut n = 0;
        p.on_message(ChildKind::Tts, &mut n);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.on_message(ChildKind::Tts, &mut n)
        }));
        assert!(r.is_err());
        let mut n2 = 10;
        p.on_message(ChildKind::Tts, &mut n2);
        p.on_message(ChildKind::Vad, &mut n2);
    }
}
