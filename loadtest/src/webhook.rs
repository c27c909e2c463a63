//! Calls that start as Twilio starts them: the voice webhook first (signed
//! when an auth token is given), then the Media Stream its TwiML names —
//! in a cluster, on whichever node placed it. The webhook's latency and
//! where each call went are part of the report.

use std::collections::BTreeMap;
use std::time::Duration;

use hark_carrier::twilio::signature;

/// The voice webhook of a node (or of the cluster's public address).
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    /// Twilio's auth token: requests carry `X-Twilio-Signature` with it.
    pub auth_token: Option<String>,
    pub http: reqwest::Client,
}

/// What the webhook answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `<Connect><Stream>`: where, with which parameters.
    Stream {
        url: String,
        params: BTreeMap<String, String>,
    },
    /// No stream (`<Reject/>`, a busy line): the call was refused.
    Refused,
}

impl Webhook {
    pub fn new(url: String, auth_token: Option<String>) -> Self {
        Self {
            url,
            auth_token,
            http: reqwest::Client::new(),
        }
    }

    /// Asks the webhook about call `call_sid` from `from`.
    pub async fn ask(&self, call_sid: &str, from: &str, to: &str) -> Result<Answer, String> {
        let params: Vec<(String, String)> = [
            ("CallSid", call_sid),
            ("AccountSid", "AC000000000000000000000000000acc0"),
            ("From", from),
            ("To", to),
            ("Direction", "inbound"),
            ("CallStatus", "ringing"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // As a TLS-terminating proxy would say: the scheme the request came in on.
        let proto = if self.url.starts_with("https:") {
            "https"
        } else {
            "http"
        };
        let mut req = self
            .http
            .post(&self.url)
            .header("X-Forwarded-Proto", proto)
            .form(&params)
            .timeout(Duration::from_secs(10));
        if let Some(token) = &self.auth_token {
            req = req.header(
                "X-Twilio-Signature",
                signature::sign(token, &self.url, &params),
            );
        }
        let res = req.send().await.map_err(|e| format!("webhook: {e}"))?;
        let status = res.status();
        let body = res.text().await.map_err(|e| format!("webhook: {e}"))?;
        if !status.is_success() {
            return Err(format!("webhook: HTTP {status}: {}", body.trim()));
        }
        Ok(parse(&body))
    }
}

/// The stream of a TwiML answer (as Hark writes it: attributes in double
/// quotes, escaped).
pub fn parse(xml: &str) -> Answer {
    let Some(stream) = xml.split("<Stream ").nth(1) else {
        return Answer::Refused;
    };
    let Some(url) = attribute(stream, "url") else {
        return Answer::Refused;
    };
    let body = stream.split("</Stream>").next().unwrap_or("");
    let params = body
        .split("<Parameter ")
        .skip(1)
        .filter_map(|p| Some((attribute(p, "name")?, attribute(p, "value")?)))
        .collect();
    Answer::Stream { url, params }
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = tag.get(start..)?;
    let end = rest.find('"')?;
    Some(unescape(rest.get(..end)?))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The node a stream URL names: its host and port, and a `/n/NAME` path if any.
pub fn node_of(stream_url: &str) -> String {
    let rest = stream_url.split_once("://").map_or(stream_url, |(_, r)| r);
    rest.strip_suffix("/twilio/media")
        .unwrap_or(rest)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stream_and_its_parameters() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://h/twilio/stream-ended?policy=p"><Stream url="ws://127.0.0.2:9/n/b/twilio/media"><Parameter name="policy" value="p&amp;q"/><Parameter name="hark_token" value="v1.x.y"/></Stream></Connect></Response>"#;
        let Answer::Stream { url, params } = parse(xml) else {
            panic!("a stream")
        };
        assert_eq!(url, "ws://127.0.0.2:9/n/b/twilio/media");
        assert_eq!(params["policy"], "p&q");
        assert_eq!(params["hark_token"], "v1.x.y");
        assert_eq!(node_of(&url), "127.0.0.2:9/n/b");
        assert_eq!(
            parse(r#"<Response><Say>Busy.</Say><Hangup/></Response>"#),
            Answer::Refused
        );
        assert_eq!(parse("<Response><Reject/></Response>"), Answer::Refused);
    }
}
