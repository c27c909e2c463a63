//! Phone numbers from people and files, read with libphonenumber's rules
//! (the `phonenumber` crate) into E.164.

use phonenumber::country::Id;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{0:?} is not a phone number")]
    Unreadable(String),
    #[error("{0:?} is not a valid number in its region")]
    Invalid(String),
}

/// `raw` in E.164 (`+14155550100`). A number without `+` is read in
/// `region`; with none, only `+` numbers are accepted.
pub fn e164(raw: &str, region: Option<Id>) -> Result<String, NumberError> {
    let raw = raw.trim();
    let number =
        phonenumber::parse(region, raw).map_err(|_| NumberError::Unreadable(raw.to_owned()))?;
    if !phonenumber::is_valid(&number) {
        return Err(NumberError::Invalid(raw.to_owned()));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Whether `s` has E.164's shape: `+`, then 7 to 15 digits, the first not
/// 0 (the API schemas' pattern; whether anyone can dial it is [`e164`]'s call).
pub fn is_e164_shape(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or_default();
    (7..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Where an E.164 number is: its region (`US`, `IN`; empty when
/// libphonenumber names none) and its time zones as libphonenumber lists
/// them (IANA names joined by `&`; empty when unknown).
pub fn locate(e164: &str) -> (String, String) {
    let region = phonenumber::parse(None, e164)
        .ok()
        .and_then(|n| n.country().id())
        .map(|id| id.as_ref().to_owned())
        .unwrap_or_default();
    let zones = namba::parse(e164)
        .ok()
        .and_then(|n| namba::TimeZones::for_number(&n))
        .map(|z| {
            z.iter()
                .filter(|name| *name != "Etc/Unknown")
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    (region, zones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_located_with_libphonenumbers_zones() {
        assert_eq!(
            locate("+14155550100"),
            ("US".into(), "America/Los_Angeles".into())
        );
        assert_eq!(
            locate("+919876543210"),
            ("IN".into(), "Asia/Calcutta".into())
        );
        assert_eq!(locate("+442079460000").0, "GB");
        assert_eq!(locate("nonsense"), (String::new(), String::new()));
        assert_eq!(
            locate("+14165550100"),
            ("CA".into(), "America/Toronto".into())
        );
        // International freephone: a valid number in no zone at all.
        assert!(e164("+80012345678", None).is_ok());
        assert_eq!(locate("+80012345678"), (String::new(), String::new()));
    }

    #[test]
    fn numbers_are_read_into_e164_in_their_region() {
        let us = Some(Id::US);
        assert_eq!(e164("+1 (415) 555-0100", None).unwrap(), "+14155550100");
        assert_eq!(e164("415-555-0100", us).unwrap(), "+14155550100");
        assert_eq!(e164("098765 43210", Some(Id::IN)).unwrap(), "+919876543210");
        assert_eq!(e164("+91 98765 43210", us).unwrap(), "+919876543210");
        assert!(matches!(
            e164("4155550100", None),
            Err(NumberError::Unreadable(_))
        ));
        assert!(e164("+1 415 555", None).is_err());
        assert!(e164("call me", us).is_err());
        assert!(e164("+999 1234 5678", None).is_err());
        assert!(e164("", us).is_err());
        assert!(e164("१२३", us).is_err());
    }
}
