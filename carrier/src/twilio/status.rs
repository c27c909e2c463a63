//! Twilio's `CallStatus` values, normalised to the port's [`CallStatus`].

use crate::port::CallStatus;

/// The port's status for Twilio's `CallStatus` (`in-progress`, `no-answer`,
/// …); `None` for a value Twilio does not document.
pub fn parse(status: &str) -> Option<CallStatus> {
    Some(match status {
        "queued" | "initiated" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "answered" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "no-answer" => CallStatus::NoAnswer,
        "failed" => CallStatus::Failed,
        "canceled" => CallStatus::Canceled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_is_normalised_and_nothing_else() {
        for (twilio, ours, is_final) in [
            ("queued", "queued", false),
            ("initiated", "queued", false),
            ("ringing", "ringing", false),
            ("in-progress", "in_progress", false),
            ("answered", "in_progress", false),
            ("completed", "completed", true),
            ("busy", "busy", true),
            ("no-answer", "no_answer", true),
            ("failed", "failed", true),
            ("canceled", "canceled", true),
        ] {
            let s = parse(twilio).unwrap();
            assert_eq!((s.as_str(), s.is_final()), (ours, is_final), "{twilio}");
        }
        for bad in ["", "Completed", "done", "in_progress", "completed\n"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
