//! TwiML for the incoming-call webhook. No I/O.

/// `<Connect><Stream>` TwiML: a bidirectional Media Stream to `stream_url`.
/// Twilio drops query strings from stream URLs, so call data travels as
/// `<Parameter>`s and arrives in `start.customParameters`.
pub fn connect_stream<'a>(
    stream_url: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut xml = String::with_capacity(256);
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#);
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

/// `<Reject/>`: Twilio refuses the call (the caller hears a busy signal),
/// unbilled.
pub fn reject() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>"#
        .to_owned()
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
    fn escapes_attribute_values() {
        let xml = connect_stream("wss://h/x", [("n", r#"a"b<c>&'d"#)]);
        assert!(
            xml.contains(r#"value="a&quot;b&lt;c&gt;&amp;&apos;d""#),
            "{xml}"
        );
    }
}
