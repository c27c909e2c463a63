//! TwiML for the incoming-call webhook. No I/O.

/// `<Connect><Stream>` TwiML: a bidirectional Media Stream to `stream_url`.
/// Twilio drops query strings from stream URLs, so call data travels as
/// `<Parameter>`s and arrives in `start.customParameters`.
pub fn connect_stream<'a>(
    stream_url: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    connect_stream_then("", stream_url, None, params)
}

/// `<Connect><Stream>` after `say` (if any). With `action`, Twilio requests
/// that URL when the stream ends — the cluster's chance to move a call
/// whose node was lost — instead of ending the call.
pub fn connect_stream_then<'a>(
    say: &str,
    stream_url: &str,
    action: Option<&str>,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut xml = String::with_capacity(256);
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
    if !say.is_empty() {
        xml.push_str("<Say>");
        escape_into(&mut xml, say);
        xml.push_str("</Say>");
    }
    xml.push_str("<Connect");
    if let Some(action) = action {
        xml.push_str(r#" action=""#);
        escape_into(&mut xml, action);
        xml.push('"');
    }
    xml.push_str(r#"><Stream url=""#);
    escape_into(&mut xml, stream_url);
    xml.push_str("\">");
    for (name, value) in params {
        xml.push_str(r#"<Parameter name=""#);
        escape_into(&mut xml, name);
        xml.push_str(r#"" value=""#);
        escape_into(&mut xml, value);
        xml.push_str("\"/>");
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// `<Hangup/>`: the call ends.
pub fn hang_up() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#.to_owned()
}

/// `<Reject/>`: Twilio refuses the call (the caller hears a busy signal),
/// unbilled.
pub fn reject() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>"#
        .to_owned()
}

/// The agent's whisper: the summary, then one key; the key (or none, on
/// timeout: `actionOnEmptyResult`) goes to `action`. Only the agent's leg
/// hears it.
pub fn whisper(summary: &str, key: char, timeout_secs: u64, action: &str) -> String {
    let mut xml = String::with_capacity(256 + summary.len());
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="dtmf" numDigits="1" actionOnEmptyResult="true" timeout=""#);
    xml.push_str(&timeout_secs.to_string());
    xml.push_str(r#"" action=""#);
    escape_into(&mut xml, action);
    xml.push_str(r#""><Say>"#);
    escape_into(&mut xml, summary);
    xml.push_str(" Press ");
    xml.push(key);
    xml.push_str(" to take the call.</Say></Gather></Response>");
    xml
}

/// Joins the named conference and starts it (the caller waiting there
/// hears the agent); the conference ends when this leg leaves.
pub fn join_conference(room: &str) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="true">"#,
    );
    escape_into(&mut xml, room);
    xml.push_str("</Conference></Dial></Response>");
    xml
}

/// Says `text`, then hangs up.
pub fn say_and_hang_up(text: &str) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
    if !text.is_empty() {
        xml.push_str("<Say>");
        escape_into(&mut xml, text);
        xml.push_str("</Say>");
    }
    xml.push_str("<Hangup/></Response>");
    xml
}

/// Escapes text for an XML attribute value.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_conference_and_hang_up_escape_their_text() {
        let w = whisper(
            "Bill <wrong> & \"late\"",
            '1',
            15,
            "https://h/a?call=CA1&x=2",
        );
        assert_eq!(
            w,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="dtmf" numDigits="1" actionOnEmptyResult="true" timeout="15" action="https://h/a?call=CA1&amp;x=2"><Say>Bill &lt;wrong&gt; &amp; &quot;late&quot; Press 1 to take the call.</Say></Gather></Response>"#
        );
        assert!(join_conference("hark-CA1").contains(
            r#"<Conference startConferenceOnEnter="true" endConferenceOnExit="true">hark-CA1</Conference>"#
        ));
        assert!(say_and_hang_up("").ends_with("<Response><Hangup/></Response>"));
        assert!(say_and_hang_up("बाद में").contains("<Say>बाद में</Say><Hangup/>"));
    }

    #[test]
    fn builds_connect_stream_with_parameters() {
        let xml = connect_stream(
            "wss://example.com/twilio/media",
            [("from", "+15551234567"), ("policy", "default")],
        );
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://example.com/twilio/media"><Parameter name="from" value="+15551234567"/><Parameter name="policy" value="default"/></Stream></Connect></Response>"#
        );
    }

    #[test]
    fn connect_with_a_line_first_and_an_action_when_the_stream_ends() {
        let xml = connect_stream_then(
            "One moment & thanks.",
            "wss://h/n/b/twilio/media",
            Some("https://h/twilio/stream-ended?policy=p&x=1"),
            [("hark_token", "t")],
        );
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>One moment &amp; thanks.</Say><Connect action="https://h/twilio/stream-ended?policy=p&amp;x=1"><Stream url="wss://h/n/b/twilio/media"><Parameter name="hark_token" value="t"/></Stream></Connect></Response>"#
        );
        assert_eq!(
            hang_up(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#
        );
    }

    #[test]
    fn escapes_attribute_values() {
        let xml = connect_stream("wss://h/x", [("n", r#"a"b<c>&'d"#)]);
        assert!(
            xml.contains(r#"value="a&quot;b&lt;c&gt;&amp;&apos;d""#),
            "{xml}"
        );
    }
}
