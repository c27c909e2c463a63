//! Twilio's ids. A call SID is `CA` followed by 32 hex digits; Hark checks
//! the prefix and the alphabet (and bounds the length) rather than the exact
//! count, so local tools and test fakes may use short SIDs, while anything
//! that could break a log line, a URL or a key (spaces, line breaks,
//! non-ASCII, kilobytes of text) is refused before a call starts.

/// Longest call SID accepted (Twilio's are 34 characters).
pub const MAX_SID_LEN: usize = 64;

/// Whether `sid` has the shape of a Twilio call SID.
pub fn is_call_sid(sid: &str) -> bool {
    is_sid(sid, "CA")
}

/// Whether `sid` is `prefix` followed by 1 to `MAX_SID_LEN - 2` ASCII
/// letters and digits.
pub fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() <= MAX_SID_LEN
        && sid
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sids_have_the_prefix_and_alphabet_twilio_uses() {
        assert!(is_call_sid("CA0123456789abcdef0123456789abcdef"));
        assert!(is_call_sid("CA1"));
        for bad in [
            "",
            "CA",
            "MZ123",
            "ca123",
            "CA12 3",
            "CA1\n2",
            "CAé1",
            &format!("CA{}", "1".repeat(63)),
        ] {
            assert!(!is_call_sid(bad), "{bad:?}");
        }
    }
}
