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

#[cfg(test)]
mod tests {
    use super::*;

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
