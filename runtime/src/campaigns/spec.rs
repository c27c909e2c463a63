//! A campaign's definition as the API takes it (JSON) and the database
//! keeps it: checked whole at creation, every problem named by field.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use hark_carrier::port::MachineDetection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::retry::RetryDelays;
use super::window::{self, Calendar, Window};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// A live policy's name: what the bot says and does (checked when the
    /// campaign starts).
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    pub policy: String,
    /// Caller IDs (E.164), used in turn; empty: `outbound.caller_id`.
    #[serde(default)]
    #[schema(max_items = 50, value_type = Vec<E164>)]
    pub caller_ids: Vec<String>,
    /// Lead lists whose leads the campaign calls.
    #[schema(min_items = 1, max_items = 20, value_type = Vec<ListName>)]
    pub lists: Vec<String>,
    /// `HH:MM-HH:MM` in the lead's local time (end up to `24:00`, after the
    /// start: 422 otherwise), inside the country's default
    /// (`campaigns.default_windows`), which it can only narrow.
    #[serde(default)]
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub window: Option<String>,
    /// Calling days; empty: every day.
    #[serde(default)]
    #[schema(max_items = 7, value_type = Vec<Day>)]
    pub days: Vec<String>,
    /// Local dates (`YYYY-MM-DD`) with no calls.
    #[serde(default)]
    #[schema(max_items = 366, value_type = Vec<Holiday>)]
    pub holidays: Vec<String>,
    /// Attempts per lead (a callback the lead asked for is always made).
    #[serde(default = "three")]
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: u32,
    #[serde(default)]
    pub retry: RetryDelays,
    /// Calls started per minute, across every node.
    #[serde(default = "ten")]
    #[schema(minimum = 1, maximum = 6000)]
    pub calls_per_minute: u32,
    /// Calls of this campaign in progress at once, across every node.
    #[serde(default = "ten")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent: u32,
    /// Campaigns with a higher priority are served first on each tick.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// `off`, `enable` or `detect_message_end`.
    #[serde(default = "off")]
    #[schema(value_type = Detection)]
    pub machine_detection: String,
    /// Only leads whose file said `consent = yes` are called (a lead that
    /// said no is never called either way).
    #[serde(default)]
    pub require_consent: bool,
    /// Who owns a lead once it reaches a status (`ai`, `agent:NAME` or
    /// `skill:NAME`): `{"qualified": "skill:sales"}` puts qualified leads in
    /// the queue of every agent with skill `sales`.
    #[serde(default)]
    #[schema(value_type = Owners)]
    pub owners: BTreeMap<String, String>,
}

// What the OpenAPI document says of the fields kept as text above (the
// checks in `validate` say the same).

/// A text schema with a pattern or format, for fields kept as `String`.
macro_rules! text_schema {
    ($name:ident, $doc:literal, pattern = $pattern:literal) => {
        text_schema!($name, $doc, |o: utoipa::openapi::ObjectBuilder| o
            .pattern(Some($pattern)));
    };
    ($name:ident, $doc:literal, $shape:expr) => {
        #[doc = $doc]
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let object = utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($doc));
                ($shape)(object).into()
            }
        }
        impl ToSchema for $name {}
    };
}

text_schema!(
    E164,
    "E.164: `+`, then 7 to 15 digits, the first not 0.",
    pattern = "^\\+[1-9][0-9]{6,14}$"
);
text_schema!(
    ListName,
    "A list's name.",
    pattern = "^[A-Za-z0-9_-]{1,64}$"
);
text_schema!(
    Owner,
    "An owner: `ai`, `agent:NAME` or `skill:NAME`.",
    pattern = "^(ai|(agent|skill):[^,]{1,64})$"
);
text_schema!(
    Holiday,
    "A local date.",
    |o: utoipa::openapi::ObjectBuilder| o.format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Date
    )))
);

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum Detection {
    Off,
    Enable,
    DetectMessageEnd,
}

/// Owners by lead status.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Owners {
    #[schema(value_type = Option<Owner>)]
    new: Option<String>,
    #[schema(value_type = Option<Owner>)]
    queued: Option<String>,
    #[schema(value_type = Option<Owner>)]
    attempting: Option<String>,
    #[schema(value_type = Option<Owner>)]
    contacted: Option<String>,
    #[schema(value_type = Option<Owner>)]
    qualified: Option<String>,
    #[schema(value_type = Option<Owner>)]
    not_interested: Option<String>,
    #[schema(value_type = Option<Owner>)]
    callback: Option<String>,
    #[schema(value_type = Option<Owner>)]
    voicemail: Option<String>,
    #[schema(value_type = Option<Owner>)]
    do_not_call: Option<String>,
    #[schema(value_type = Option<Owner>)]
    bad_number: Option<String>,
}

/// An owner: `ai`, `agent:NAME` or `skill:NAME`.
pub fn owner_ok(owner: &str) -> bool {
    owner == "ai"
        || ["agent:", "skill:"].iter().any(|p| {
            owner
                .strip_prefix(p)
                .is_some_and(|n| (1..=64).contains(&n.chars().count()) && !n.contains(','))
        })
}

fn three() -> u32 {
    3
}
fn ten() -> u32 {
    10
}
fn off() -> String {
    "off".into()
}

/// `name_ok`, or why not, naming `field`.
pub fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name_ok(name) {
        Ok(())
    } else {
        Err(format!("{field}: 1 to 64 of A-Z, a-z, 0-9, _ and -"))
    }
}

/// A list or campaign name: what may go in a URL path and a metric label.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl CampaignSpec {
    /// Every problem, as `field: reason`.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.policy.trim().is_empty() {
            errors.push("policy: a live policy's name".into());
        }
        for (i, id) in self.caller_ids.iter().enumerate() {
            if !crate::outbound::phone::is_e164_shape(id) {
                errors.push(format!("caller_ids[{i}]: {id:?} is not an E.164 number"));
            }
        }
        if self.lists.is_empty() || self.lists.len() > 20 {
            errors.push("lists: 1 to 20 list names".into());
        }
        for (i, l) in self.lists.iter().enumerate() {
            if let Err(e) = check_name(&format!("lists[{i}]"), l) {
                errors.push(e);
            }
        }
        if let Some(w) = &self.window
            && let Err(e) = w.parse::<Window>()
        {
            errors.push(format!("window: {e}"));
        }
        if let Err(e) = window::day_mask(&self.days) {
            errors.push(format!("days: {e}"));
        }
        for (i, h) in self.holidays.iter().enumerate() {
            if NaiveDate::parse_from_str(h, "%Y-%m-%d").is_err() {
                errors.push(format!("holidays[{i}]: {h:?} is not a date (YYYY-MM-DD)"));
            }
        }
        if !(1..=20).contains(&self.max_attempts) {
            errors.push("max_attempts: 1 to 20".into());
        }
        if !(1..=6000).contains(&self.calls_per_minute) {
            errors.push("calls_per_minute: 1 to 6000".into());
        }
        if !(1..=10_000).contains(&self.max_concurrent) {
            errors.push("max_concurrent: 1 to 10000".into());
        }
        if !(-1000..=1000).contains(&self.priority) {
            errors.push("priority: -1000 to 1000".into());
        }
        if self.detection().is_none() {
            errors.push("machine_detection: off, enable or detect_message_end".into());
        }
        for (status, owner) in &self.owners {
            if !super::retry::status::ALL.contains(&status.as_str()) {
                errors.push(format!("owners.{status}: not a lead status"));
            }
            if !owner_ok(owner) {
                errors.push(format!("owners.{status}: ai, agent:NAME or skill:NAME"));
            }
        }
        let r = &self.retry;
        for (name, secs) in [
            ("no_answer_secs", r.no_answer_secs),
            ("busy_secs", r.busy_secs),
            ("voicemail_secs", r.voicemail_secs),
            ("failed_secs", r.failed_secs),
        ] {
            if !(1..=30 * 86_400).contains(&secs) {
                errors.push(format!("retry.{name}: 1 to 2592000"));
            }
        }
        errors
    }

    /// The carrier's answering-machine detection the campaign asks for.
    pub fn detection(&self) -> Option<MachineDetection> {
        Some(match self.machine_detection.as_str() {
            "off" => MachineDetection::Off,
            "enable" => MachineDetection::Enable,
            "detect_message_end" => MachineDetection::DetectMessageEnd,
            _ => return None,
        })
    }

    /// The calendar for a lead whose country's default window is `default`.
    /// `None`: the campaign's window and the country's do not meet.
    pub fn calendar(&self, default: Window) -> Option<Calendar> {
        let narrow = self.window.as_deref().and_then(|w| w.parse().ok());
        let days = match window::day_mask(&self.days) {
            Ok(0) | Err(_) => window::EVERY_DAY,
            Ok(mask) => mask,
        };
        Some(Calendar {
            window: default.narrowed(narrow)?,
            days,
            holidays: self
                .holidays
                .iter()
                .filter_map(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").ok())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<CampaignSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_minimal_campaign_has_documented_defaults() {
        let s = spec(r#"{"policy": "sales", "lists": ["q4"]}"#).unwrap();
        assert!(s.validate().is_empty());
        assert_eq!(
            (s.max_attempts, s.calls_per_minute, s.max_concurrent),
            (3, 10, 10)
        );
        assert_eq!(s.machine_detection, "off");
        let cal = s.calendar("08:00-21:00".parse().unwrap()).unwrap();
        assert_eq!(cal.days, window::EVERY_DAY);
    }

    #[test]
    fn every_bad_field_is_named() {
        assert!(spec(r#"{"policy": "p", "lists": ["a"], "colour": 1}"#).is_err());
        let s = spec(
            r#"{"policy": " ", "lists": ["a b"], "caller_ids": ["12"], "window": "9-5",
                "days": ["funday"], "holidays": ["2026-13-01"], "max_attempts": 0,
                "calls_per_minute": 0, "max_concurrent": 0, "machine_detection": "maybe",
                "retry": {"busy_secs": 0}}"#,
        )
        .unwrap();
        let fields: Vec<String> = s
            .validate()
            .iter()
            .map(|e| e.split(':').next().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            fields,
            [
                "policy",
                "caller_ids[0]",
                "lists[0]",
                "window",
                "days",
                "holidays[0]",
                "max_attempts",
                "calls_per_minute",
                "max_concurrent",
                "machine_detection",
                "retry.busy_secs"
            ]
        );
    }

    #[test]
    fn the_campaign_window_narrows_the_countrys() {
        let s =
            spec(r#"{"policy": "p", "lists": ["a"], "window": "10:00-23:00", "days": ["sat"]}"#)
                .unwrap();
        let cal = s.calendar("08:00-21:00".parse().unwrap()).unwrap();
        assert_eq!(cal.window.to_string(), "10:00-21:00");
        assert_eq!(cal.days, 1 << 5);
        let late = spec(r#"{"policy": "p", "lists": ["a"], "window": "21:30-23:00"}"#).unwrap();
        assert_eq!(late.calendar("08:00-21:00".parse().unwrap()), None);
    }
}
