//! Twilio Media Streams as a [`StreamCodec`]: Twilio's JSON in, port events
//! out; the call's commands in, Twilio's `media`, `mark` and `clear` out.
//!
//! One value per stream keeps the stream SID and reused buffers: decoding a
//! `media` frame base64-decodes into a buffer the stream owns, and encoding
//! writes into reused strings, so the per-frame path does not allocate
//! beyond the frame it hands to the socket.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::ids;
use super::messages::{HarkMessage, MarkBody, OutMedia, TwilioEvent};
use crate::port::{
    BadInput, Capabilities, Checkpoint, Command, Decoded, Event, Frame, Outgoing, StreamCodec,
    StreamStart,
};

/// One Twilio Media Stream, from Hark's side.
pub struct TwilioStream {
    /// Set by `start`; every later message must carry it.
    stream_sid: Option<String>,
    /// Reused base64 output buffer for inbound audio.
    decoded: Vec<u8>,
    b64: String,
    name: String,
    json: Vec<u8>,
}

impl StreamCodec for TwilioStream {
    const CARRIER: &'static str = "twilio";

    fn new() -> Self {
        Self {
            stream_sid: None,
            decoded: Vec::with_capacity(160),
            b64: String::with_capacity(1200),
            name: String::with_capacity(24),
            json: Vec::with_capacity(1400),
        }
    }

    fn decode<'a>(&'a mut self, frame: Frame<'a>) -> Result<Decoded<'a>, BadInput> {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary(_) => return Err(BadInput::Binary),
        };
        let event = TwilioEvent::parse(text)?;
        let Some(ours) = self.stream_sid.as_deref() else {
            return match event {
                TwilioEvent::Start { start, .. } => {
                    if !start.media_format.is_mulaw_8k_mono() {
                        return Err(BadInput::UnsupportedFormat(format!(
                            "{:?}",
                            start.media_format
                        )));
                    }
                    if !ids::is_call_sid(&start.call_sid) {
                        return Err(BadInput::BadCallId(start.call_sid));
                    }
                    self.stream_sid = Some(start.stream_sid.clone());
                    Ok(Decoded::Start(StreamStart {
                        call_id: start.call_sid,
                        stream_id: start.stream_sid,
                        capabilities: Capabilities::TWILIO,
                        params: start.custom_parameters,
                    }))
                }
                TwilioEvent::Connected { .. } => Ok(Decoded::Ignored { what: "connected" }),
                TwilioEvent::Media { .. } => Err(BadInput::MediaBeforeStart),
                other => Err(BadInput::Invalid(format!("{} before start", other.name()))),
            };
        };
        let check = |sid: &Cow<'_, str>| {
            if sid.as_ref() == ours {
                Ok(())
            } else {
                Err(BadInput::WrongStream)
            }
        };
        Ok(match event {
            TwilioEvent::Media {
                sequence_number,
                media,
                stream_sid,
            } => {
                check(&stream_sid)?;
                self.decoded.clear();
                STANDARD
                    .decode_vec(media.payload.as_bytes(), &mut self.decoded)
                    .map_err(|_| BadInput::BadBase64)?;
                Decoded::Event(Event::Audio {
                    seq: sequence_number.0,
                    payload: &self.decoded,
                })
            }
            TwilioEvent::Dtmf {
                sequence_number,
                dtmf,
                stream_sid,
            } => {
                check(&stream_sid)?;
                let mut chars = dtmf.digit.chars();
                match (chars.next(), chars.next()) {
                    (Some(d), None) if d.is_ascii_digit() || "*#ABCD".contains(d) => {
                        Decoded::Event(Event::Dtmf {
                            seq: sequence_number.0,
                            digit: d,
                        })
                    }
                    _ => {
                        return Err(BadInput::Invalid(format!("dtmf digit {:?}", dtmf.digit)));
                    }
                }
            }
            TwilioEvent::Mark {
                sequence_number,
                mark,
                stream_sid,
            } => {
                check(&stream_sid)?;
                // Only Hark's own marks mean anything.
                match Checkpoint::parse(&mark.name) {
                    Some(checkpoint) => Decoded::Event(Event::Played {
                        seq: sequence_number.0,
                        checkpoint,
                    }),
                    None => Decoded::Ignored {
                        what: "a foreign mark",
                    },
                }
            }
            TwilioEvent::Stop { .. } => Decoded::Event(Event::Stop),
            TwilioEvent::Start { .. } => return Err(BadInput::DuplicateStart),
            TwilioEvent::Connected { .. } => Decoded::Ignored {
                what: "connected after start",
            },
        })
    }

    fn encode(&mut self, command: Command) -> Outgoing {
        let sid = Cow::Borrowed(self.stream_sid.as_deref().unwrap_or_default());
        let msg = match command {
            Command::Audio(audio) => {
                self.b64.clear();
                STANDARD.encode_string(&audio, &mut self.b64);
                HarkMessage::Media {
                    stream_sid: sid,
                    media: OutMedia {
                        payload: Cow::Borrowed(&self.b64),
                    },
                }
            }
            Command::Checkpoint(id) => {
                self.name.clear();
                let _ = write!(self.name, "{id}");
                HarkMessage::Mark {
                    stream_sid: sid,
                    mark: MarkBody {
                        name: Cow::Borrowed(&self.name),
                    },
                }
            }
            Command::Clear => HarkMessage::Clear { stream_sid: sid },
            Command::Close { reason } => return Outgoing::Close { code: 1000, reason },
        };
        msg.write_json(&mut self.json);
        // The frame owns its bytes; the buffer is re-made at the size it had.
        let cap = self.json.capacity();
        let json = std::mem::replace(&mut self.json, Vec::with_capacity(cap));
        Outgoing::Text(String::from_utf8(json).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const SID: &str = "MZ00000000000000000000000000000001";
    const CALL: &str = "CA00000000000000000000000000000001";

    fn start(call: &str, encoding: &str) -> String {
        format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"{call}","tracks":["inbound"],"customParameters":{{"k":"v"}},"mediaFormat":{{"encoding":"{encoding}","sampleRate":8000,"channels":1}}}}}}"#
        )
    }

    fn started() -> TwilioStream {
        let mut s = TwilioStream::new();
        let text = start(CALL, "audio/x-mulaw");
        assert!(matches!(
            s.decode(Frame::Text(&text)),
            Ok(Decoded::Start(_))
        ));
        s
    }

    #[test]
    fn a_start_gives_the_call_its_ids_capabilities_and_parameters() {
        let mut s = TwilioStream::new();
        let text = start(CALL, "audio/x-mulaw");
        let Ok(Decoded::Start(st)) = s.decode(Frame::Text(&text)) else {
            panic!()
        };
        assert_eq!((st.call_id.as_str(), st.stream_id.as_str()), (CALL, SID));
        assert_eq!(st.capabilities, Capabilities::TWILIO);
        assert_eq!(st.params["k"], "v");
    }

    #[test]
    fn a_start_with_another_format_or_a_foreign_call_id_is_refused() {
        let text = start(CALL, "audio/x-alaw");
        assert!(matches!(
            TwilioStream::new().decode(Frame::Text(&text)),
            Err(BadInput::UnsupportedFormat(_))
        ));
        for bad in ["", "XY123", "CA", "CA12\\n34", "CA12 34"] {
            let text = start(bad, "audio/x-mulaw");
            assert!(
                matches!(
                    TwilioStream::new().decode(Frame::Text(&text)),
                    Err(BadInput::BadCallId(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages_before_start_are_refused_and_after_it_must_be_this_streams() {
        let mut s = TwilioStream::new();
        let media = format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"{SID}","media":{{"payload":"//8="}}}}"#
        );
        assert_eq!(
            s.decode(Frame::Text(&media)),
            Err(BadInput::MediaBeforeStart)
        );
        let mut s = started();
        assert_eq!(
            s.decode(Frame::Text(&media)),
            Ok(Decoded::Event(Event::Audio {
                seq: 2,
                payload: &[0xff, 0xff]
            }))
        );
        let other = media.replace(SID, "MZother");
        assert_eq!(s.decode(Frame::Text(&other)), Err(BadInput::WrongStream));
        assert_eq!(s.decode(Frame::Binary(b"x")), Err(BadInput::Binary));
    }

    #[test]
    fn dtmf_marks_and_stop_become_port_events() {
        let mut s = started();
        let dtmf = format!(
            r##"{{"event":"dtmf","sequenceNumber":"3","streamSid":"{SID}","dtmf":{{"track":"inbound_track","digit":"#"}}}}"##
        );
        assert_eq!(
            s.decode(Frame::Text(&dtmf)),
            Ok(Decoded::Event(Event::Dtmf { seq: 3, digit: '#' }))
        );
        for bad in ["12", "x", "١", ""] {
            let text = dtmf.replace("\"#\"", &format!("{bad:?}"));
            assert!(
                matches!(s.decode(Frame::Text(&text)), Err(BadInput::Invalid(_))),
                "{bad:?}"
            );
        }
        let mark = format!(
            r#"{{"event":"mark","sequenceNumber":"4","streamSid":"{SID}","mark":{{"name":"7.2"}}}}"#
        );
        assert_eq!(
            s.decode(Frame::Text(&mark)),
            Ok(Decoded::Event(Event::Played {
                seq: 4,
                checkpoint: Checkpoint { turn: 7, seq: 2 }
            }))
        );
        let foreign = mark.replace("7.2", "greeting");
        assert!(matches!(
            s.decode(Frame::Text(&foreign)),
            Ok(Decoded::Ignored { .. })
        ));
        let stop = format!(
            r#"{{"event":"stop","sequenceNumber":"5","streamSid":"{SID}","stop":{{"accountSid":"AC1","callSid":"{CALL}"}}}}"#
        );
        assert_eq!(
            s.decode(Frame::Text(&stop)),
            Ok(Decoded::Event(Event::Stop))
        );
        let again = start(CALL, "audio/x-mulaw");
        assert_eq!(s.decode(Frame::Text(&again)), Err(BadInput::DuplicateStart));
    }

    #[test]
    fn commands_become_twilios_messages() {
        let mut s = started();
        let Outgoing::Text(media) = s.encode(Command::Audio(Bytes::from_static(&[0xff, 0xff])))
        else {
            panic!()
        };
        assert_eq!(
            media,
            format!(r#"{{"event":"media","streamSid":"{SID}","media":{{"payload":"//8="}}}}"#)
        );
        let Outgoing::Text(mark) = s.encode(Command::Checkpoint(Checkpoint { turn: 3, seq: 9 }))
        else {
            panic!()
        };
        assert_eq!(
            mark,
            format!(r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":"3.9"}}}}"#)
        );
        let Outgoing::Text(clear) = s.encode(Command::Clear) else {
            panic!()
        };
        assert_eq!(clear, format!(r#"{{"event":"clear","streamSid":"{SID}"}}"#));
        assert_eq!(
            s.encode(Command::Close { reason: "stop" }),
            Outgoing::Close {
                code: 1000,
                reason: "stop"
            }
        );
    }
}
