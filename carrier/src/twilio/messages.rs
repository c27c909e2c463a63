//! Twilio Media Streams messages, typed, both directions. No I/O.
//!
//! Shapes follow Twilio's "Media Streams – WebSocket Messages" page: Twilio
//! sends `connected`, `start`, `media`, `dtmf`, `mark` (echo) and `stop`; the
//! server sends `media`, `mark` and `clear`. Counters and timestamps travel as
//! JSON strings (`"sequenceNumber":"4"`), which [`StrNum`] models.
//!
//! Parsing goes through one flat envelope struct rather than serde's
//! internally-tagged enums (which buffer every message into an intermediate
//! tree): one pass, and `payload` stays borrowed from the frame.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::port::BadInput as BadMessage;

/// An integer Twilio sends as a JSON string. Parsing also accepts a bare
/// number; serializing always writes a string, as Twilio does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StrNum(pub u64);

impl Serialize for StrNum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StrNum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrNum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer as a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrNum, E> {
                v.parse()
                    .map(StrNum)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrNum, E> {
                Ok(StrNum(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

impl Default for MediaFormat {
    fn default() -> Self {
        Self {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        }
    }
}

impl MediaFormat {
    /// The only format a bidirectional stream carries.
    pub fn is_mulaw_8k_mono(&self) -> bool {
        self.encoding == "audio/x-mulaw" && self.sample_rate == 8000 && self.channels == 1
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    #[serde(default)]
    pub account_sid: String,
    pub stream_sid: String,
    pub call_sid: String,
    #[serde(default)]
    pub tracks: Vec<String>,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaBody<'a> {
    #[serde(borrow, default = "inbound")]
    pub track: Cow<'a, str>,
    #[serde(default)]
    pub chunk: StrNum,
    #[serde(default)]
    pub timestamp: StrNum,
    /// Base64 of raw μ-law 8 kHz mono.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

fn inbound() -> Cow<'static, str> {
    Cow::Borrowed("inbound")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtmfBody<'a> {
    #[serde(borrow, default)]
    pub track: Cow<'a, str>,
    #[serde(borrow)]
    pub digit: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkBody<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopBody<'a> {
    #[serde(borrow, default)]
    pub account_sid: Cow<'a, str>,
    #[serde(borrow, default)]
    pub call_sid: Cow<'a, str>,
}

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioEvent<'a> {
    Connected {
        protocol: Cow<'a, str>,
        version: Cow<'a, str>,
    },
    #[serde(rename_all = "camelCase")]
    Start {
        sequence_number: StrNum,
        start: StartMeta,
        stream_sid: Cow<'a, str>,
    },
    #[serde(rename_all = "camelCase")]
    Media {
        sequence_number: StrNum,
        media: MediaBody<'a>,
        stream_sid: Cow<'a, str>,
    },
    #[serde(rename_all = "camelCase")]
    Dtmf {
        stream_sid: Cow<'a, str>,
        sequence_number: StrNum,
        dtmf: DtmfBody<'a>,
    },
    #[serde(rename_all = "camelCase")]
    Mark {
        sequence_number: StrNum,
        stream_sid: Cow<'a, str>,
        mark: MarkBody<'a>,
    },
    #[serde(rename_all = "camelCase")]
    Stop {
        sequence_number: StrNum,
        stop: StopBody<'a>,
        stream_sid: Cow<'a, str>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutMedia<'a> {
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// A message from the server (Hark) to Twilio.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum HarkMessage<'a> {
    #[serde(rename_all = "camelCase")]
    Media {
        stream_sid: Cow<'a, str>,
        media: OutMedia<'a>,
    },
    #[serde(rename_all = "camelCase")]
    Mark {
        stream_sid: Cow<'a, str>,
        mark: MarkBody<'a>,
    },
    #[serde(rename_all = "camelCase")]
    Clear { stream_sid: Cow<'a, str> },
}

fn classify(e: serde_json::Error) -> BadMessage {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => BadMessage::NotJson(e.to_string()),
        Category::Data => BadMessage::Invalid(e.to_string()),
    }
}

fn need<T>(v: Option<T>, event: &str, field: &str) -> Result<T, BadMessage> {
    v.ok_or_else(|| BadMessage::Invalid(format!("{event} without {field}")))
}

/// Every field any Twilio message can have; one pass over the JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    sequence_number: Option<StrNum>,
    #[serde(borrow)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    start: Option<StartMeta>,
    #[serde(borrow)]
    media: Option<MediaBody<'a>>,
    #[serde(borrow)]
    dtmf: Option<DtmfBody<'a>>,
    #[serde(borrow)]
    mark: Option<MarkBody<'a>>,
    #[serde(borrow)]
    stop: Option<StopBody<'a>>,
}

impl<'a> TwilioEvent<'a> {
    /// Parses one text frame from Twilio. Never panics; every failure is a
    /// [`BadMessage`] naming why.
    pub fn parse(text: &'a str) -> Result<Self, BadMessage> {
        let env: Envelope<'a> = serde_json::from_str(text).map_err(classify)?;
        let event = env.event.as_ref();
        let seq = || need(env.sequence_number, event, "sequenceNumber");
        let sid = |s: Option<Cow<'a, str>>| need(s, event, "streamSid");
        Ok(match event {
            "connected" => TwilioEvent::Connected {
                protocol: env.protocol.unwrap_or(Cow::Borrowed("Call")),
                version: env.version.unwrap_or(Cow::Borrowed("1.0.0")),
            },
            "start" => {
                let start = need(env.start, event, "start")?;
                TwilioEvent::Start {
                    sequence_number: seq()?,
                    stream_sid: env
                        .stream_sid
                        .unwrap_or_else(|| Cow::Owned(start.stream_sid.clone())),
                    start,
                }
            }
            "media" => TwilioEvent::Media {
                sequence_number: seq()?,
                media: need(env.media, event, "media")?,
                stream_sid: sid(env.stream_sid)?,
            },
            "dtmf" => TwilioEvent::Dtmf {
                sequence_number: seq()?,
                dtmf: need(env.dtmf, event, "dtmf")?,
                stream_sid: sid(env.stream_sid)?,
            },
            "mark" => TwilioEvent::Mark {
                sequence_number: seq()?,
                mark: need(env.mark, event, "mark")?,
                stream_sid: sid(env.stream_sid)?,
            },
            "stop" => TwilioEvent::Stop {
                sequence_number: seq()?,
                stop: env.stop.unwrap_or(StopBody {
                    account_sid: Cow::Borrowed(""),
                    call_sid: Cow::Borrowed(""),
                }),
                stream_sid: sid(env.stream_sid)?,
            },
            other => return Err(BadMessage::UnknownEvent(other.chars().take(32).collect())),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TwilioEvent::Connected { .. } => "connected",
            TwilioEvent::Start { .. } => "start",
            TwilioEvent::Media { .. } => "media",
            TwilioEvent::Dtmf { .. } => "dtmf",
            TwilioEvent::Mark { .. } => "mark",
            TwilioEvent::Stop { .. } => "stop",
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Serializes into a new string of `capacity` bytes: one allocation per
    /// message on hot paths (a simulated caller sends 50 a second).
    pub fn to_json_sized(&self, capacity: usize) -> String {
        let mut out = Vec::with_capacity(capacity);
        let _ = serde_json::to_writer(&mut out, self);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarkEnvelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    stream_sid: Cow<'a, str>,
    #[serde(borrow)]
    media: Option<OutMedia<'a>>,
    #[serde(borrow)]
    mark: Option<MarkBody<'a>>,
}

impl<'a> HarkMessage<'a> {
    /// Parses a server message (used by Twilio simulators: tests and the loadtest).
    pub fn parse(text: &'a str) -> Result<Self, BadMessage> {
        let env: HarkEnvelope<'a> = serde_json::from_str(text).map_err(classify)?;
        let event = env.event.as_ref();
        Ok(match event {
            "media" => HarkMessage::Media {
                media: need(env.media, event, "media")?,
                stream_sid: env.stream_sid,
            },
            "mark" => HarkMessage::Mark {
                mark: need(env.mark, event, "mark")?,
                stream_sid: env.stream_sid,
            },
            "clear" => HarkMessage::Clear {
                stream_sid: env.stream_sid,
            },
            other => return Err(BadMessage::UnknownEvent(other.chars().take(32).collect())),
        })
    }

    /// Serializes into `out` (cleared first), so a writer can reuse one buffer.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.clear();
        // Writing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Examples as printed on Twilio's "Media Streams - WebSocket Messages" page.
    const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","streamSid":"MZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","callSid":"CAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"FirstName":"Jane","LastName":"Doe","RemoteParty":"Bob"}},"streamSid":"MZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    const MEDIA: &str = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDBc1qZSLiIaHjJWtLRQMCAYHCxIqtpeNiYeHio+hRx0PCQcHCQ8gzp2PioiHiY2cfCgRDAgGBw0VLrOUjIiGh4qRo08dDgkHBwoPIc6dj4qIh4mNm3wqEgwIBwcMFC+1lYuIhoaKkKRJHQ4JBwYJDyDRnI6KiIeJjp2BKxIMCAcHDBQsupWLiIaHipCkTB0OCQcGCg8gx5yOioiHiY2cbykRDAgG"},"streamSid":"MZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    const DTMF: &str = r#"{"event":"dtmf","streamSid":"MZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
    const MARK: &str = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","mark":{"name":"my label"}}"#;
    const STOP: &str = r#"{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","callSid":"CAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"streamSid":"MZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

    #[test]
    fn parses_every_documented_example() {
        assert!(matches!(
            TwilioEvent::parse(CONNECTED),
            Ok(TwilioEvent::Connected { .. })
        ));
        let TwilioEvent::Start {
            start,
            sequence_number,
            ..
        } = TwilioEvent::parse(START).unwrap()
        else {
            panic!()
        };
        assert_eq!(sequence_number, StrNum(1));
        assert_eq!(start.custom_parameters["FirstName"], "Jane");
        assert!(start.media_format.is_mulaw_8k_mono());
        let TwilioEvent::Media {
            media,
            sequence_number,
            ..
        } = TwilioEvent::parse(MEDIA).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (sequence_number, media.chunk, media.timestamp),
            (StrNum(3), StrNum(1), StrNum(5))
        );
        assert!(
            matches!(media.payload, Cow::Borrowed(_)),
            "payload is borrowed, not copied"
        );
        let TwilioEvent::Dtmf { dtmf, .. } = TwilioEvent::parse(DTMF).unwrap() else {
            panic!()
        };
        assert_eq!(dtmf.digit, "1");
        let TwilioEvent::Mark { mark, .. } = TwilioEvent::parse(MARK).unwrap() else {
            panic!()
        };
        assert_eq!(mark.name, "my label");
        assert!(matches!(
            TwilioEvent::parse(STOP),
            Ok(TwilioEvent::Stop { .. })
        ));
    }

    #[test]
    fn serializes_back_to_the_documented_shape() {
        for text in [CONNECTED, START, MEDIA, DTMF, MARK, STOP] {
            let event = TwilioEvent::parse(text).unwrap();
            let again: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
            let original: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(again, original, "{text}");
            assert_eq!(TwilioEvent::parse(&event.to_json()).unwrap(), event);
        }
    }

    #[test]
    fn counters_are_strings_on_the_wire() {
        let json = TwilioEvent::parse(MEDIA).unwrap().to_json();
        assert!(json.contains(r#""sequenceNumber":"3""#), "{json}");
        assert!(json.contains(r#""timestamp":"5""#), "{json}");
    }

    #[test]
    fn server_messages_have_twilios_shape() {
        let mut out = Vec::new();
        HarkMessage::Media {
            stream_sid: "MZ1".into(),
            media: OutMedia {
                payload: "AAA=".into(),
            },
        }
        .write_json(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"AAA="}}"#
        );
        HarkMessage::Mark {
            stream_sid: "MZ1".into(),
            mark: MarkBody { name: "3.1".into() },
        }
        .write_json(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"3.1"}}"#
        );
        HarkMessage::Clear {
            stream_sid: "MZ1".into(),
        }
        .write_json(&mut out);
        let text = std::str::from_utf8(&out).unwrap().to_owned();
        assert_eq!(text, r#"{"event":"clear","streamSid":"MZ1"}"#);
        assert_eq!(
            HarkMessage::parse(&text).unwrap(),
            HarkMessage::Clear {
                stream_sid: "MZ1".into()
            }
        );
    }

    #[test]
    fn bad_input_is_classified() {
        let reason = |t: &str| TwilioEvent::parse(t).unwrap_err().reason();
        assert_eq!(reason("not json"), "not_json");
        assert_eq!(reason("{\"event\":"), "not_json");
        assert_eq!(reason("[1,2]"), "invalid_message");
        assert_eq!(reason("{}"), "invalid_message");
        assert_eq!(
            reason(r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ"}"#),
            "invalid_message"
        );
        assert_eq!(
            reason(
                r#"{"event":"media","sequenceNumber":"x","streamSid":"MZ","media":{"payload":""}}"#
            ),
            "invalid_message"
        );
        assert_eq!(reason(r#"{"event":"dance"}"#), "unknown_event");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = TwilioEvent::parse(&s);
            let _ = HarkMessage::parse(&s);
        }

        #[test]
        fn media_round_trips(seq in 0u64..u64::MAX, chunk in 0u64..1_000_000, payload in "[A-Za-z0-9+/]{0,64}") {
            let e = TwilioEvent::Media {
                sequence_number: StrNum(seq),
                media: MediaBody { track: "inbound".into(), chunk: StrNum(chunk), timestamp: StrNum(chunk * 20), payload: payload.into() },
                stream_sid: "MZ1".into(),
            };
            let json = e.to_json();
            proptest::prop_assert_eq!(TwilioEvent::parse(&json).unwrap(), e);
        }
    }
}
