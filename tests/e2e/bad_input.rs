//! Bad input from the Twilio side: counted by reason, logged once per call,
//! and the call goes on wherever the stream is still usable.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::Hark;

const SID: &str = "MZ00000000000000000000000000000bad";
const CALL: &str = "CA00000000000000000000000000000bad";

fn start(seq: u64) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"{seq}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"{CALL}","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}},"streamSid":"{SID}"}}"#
    )
}

fn media(seq: u64, payload: &str) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{seq}","timestamp":"{}","payload":"{payload}"}},"streamSid":"{SID}"}}"#,
        seq.wrapping_mul(20)
    )
}

/// Server media messages received within `limit`.
async fn count_media<S>(ws: &mut S, limit: Duration) -> usize
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut n = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = msg {
            n += t.as_str().contains(r#""event":"media""#) as usize;
        }
    }
    n
}

#[tokio::test]
async fn every_kind_of_bad_message_is_counted_and_the_call_goes_on() {
    let hark = Hark::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    let silence = STANDARD.encode([0xFFu8; 160]); // 20 ms of μ-law silence
    let send = |t: String| Message::text(t);
    ws.send(send(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(send(media(1, &silence))).await.unwrap(); // media before start
    ws.send(send(media(1, &silence))).await.unwrap(); // twice: logged once
    ws.send(send(start(1))).await.unwrap();
    ws.send(send("this is not json".into())).await.unwrap();
    ws.send(send(
        r#"{"event":"dance","sequenceNumber":"2","streamSid":"x"}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(send(media(2, "%%%not-base64%%%"))).await.unwrap();
    ws.send(send(start(3))).await.unwrap(); // a second start
    ws.send(send(media(4, &"A".repeat(70 * 1024))))
        .await
        .unwrap(); // over 64 KiB
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    ws.send(send(
        r#"{"event":"media","sequenceNumber":"5","streamSid":"x"}"#.into(),
    ))
    .await
    .unwrap();
    // The call goes on: the greeting plays and good media is still taken.
    for seq in 6..56 {
        ws.send(send(media(seq, &silence))).await.unwrap();
    }
    assert!(
        count_media(&mut ws, Duration::from_secs(3)).await > 5,
        "greeting did not play"
    );
    let m = hark.metrics().await;
    for (reason, n) in [
        ("media_before_start", 2.0),
        ("not_json", 1.0),
        ("unknown_event", 1.0),
        ("bad_base64", 1.0),
        ("duplicate_start", 1.0),
        ("too_large", 1.0),
        ("binary_message", 1.0),
        ("invalid_message", 1.0),
    ] {
        let series = format!("hark_bad_messages_total{{reason=\"{reason}\"}}");
        assert_eq!(m.get(&series), n, "{series}");
    }
    // 50 good frames and the one with bad base64 (a media message, just unusable).
    assert_eq!(m.get("hark_media_frames_received_total"), 51.0);
    assert_eq!(m.get("hark_calls_active"), 1.0, "call still up");
    ws.close(None).await.unwrap();
    // Each reason is logged once per call, with the call's ids.
    let logs = hark.logs();
    let lines: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("bad carrier message"))
        .collect();
    assert_eq!(lines.len(), 8, "{lines:#?}");
    let before_start = lines
        .iter()
        .find(|l| l.contains("media_before_start"))
        .unwrap();
    assert!(!before_start.contains(CALL), "no ids before start");
    let after_start = lines.iter().find(|l| l.contains("not_json")).unwrap();
    assert!(
        after_start.contains(CALL) && after_start.contains(SID),
        "{after_start}"
    );
}

#[tokio::test]
async fn a_message_too_large_to_read_ends_the_call_with_a_reason() {
    let hark = Hark::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    ws.send(Message::text(start(1))).await.unwrap();
    ws.send(Message::text(media(2, &"A".repeat(2 << 20))))
        .await
        .ok();
    let ended = hark
        .wait_metric(
            "hark_calls_ended_total{reason=\"bad_stream\"}",
            1.0,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(ended, 1.0, "{}", hark.logs());
    assert_eq!(
        hark.wait_metric("hark_calls_active", 0.0, Duration::from_secs(3))
            .await,
        0.0
    );
    assert!(hark.logs().contains("stream unusable"));
}

#[tokio::test]
async fn a_stream_without_start_is_closed() {
    let hark = Hark::start(&[("HARK_START_TIMEOUT_SECS", "1")]);
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    ))
    .await
    .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "stream without start was not closed");
    assert!(hark.logs().contains("no start message"));
    assert_eq!(
        hark.wait_metric("hark_calls_active", 0.0, Duration::from_secs(2))
            .await,
        0.0
    );
}

#[tokio::test]
async fn an_unsupported_media_format_is_refused() {
    let hark = Hark::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    let start = start(1).replace("audio/x-mulaw", "audio/l16");
    ws.send(Message::text(start)).await.unwrap();
    let m = hark
        .wait_metric(
            "hark_bad_messages_total{reason=\"unsupported_format\"}",
            1.0,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(m, 1.0);
    assert_eq!(hark.metrics().await.get("hark_call_actors"), 0.0);
}

/// Sequence numbers are the peer's: `18446744073709551615` then anything
/// must not overflow `last + 1` (a panic in MediaIn, a restart per frame).
#[tokio::test]
async fn hostile_sequence_numbers_do_not_overflow() {
    let hark = Hark::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    let silence = STANDARD.encode([0xFFu8; 160]);
    ws.send(Message::text(start(1))).await.unwrap();
    for seq in [u64::MAX, 0, u64::MAX, u64::MAX, 7] {
        ws.send(Message::text(media(seq, &silence))).await.unwrap();
    }
    for seq in 8..40 {
        ws.send(Message::text(media(seq, &silence))).await.unwrap();
    }
    assert!(count_media(&mut ws, Duration::from_secs(3)).await > 5);
    let m = hark.metrics().await;
    assert_eq!(
        m.sum("hark_actor_restarts_total", &[]),
        0.0,
        "{}",
        hark.logs()
    );
    assert!(m.get("hark_media_sequence_gaps_total") >= 4.0);
    assert_eq!(m.get("hark_calls_active"), 1.0);
}

/// A call SID is the peer's text: a line break in it must not forge a log
/// line.
#[tokio::test]
async fn a_call_sid_with_a_line_break_cannot_forge_a_log_line() {
    let hark = Hark::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    let forged = start(1).replace(
        CALL,
        "CA1\\n2026-01-01T00:00:00.000000Z  INFO FORGED: admin logged in",
    );
    ws.send(Message::text(forged)).await.unwrap();
    ws.send(Message::text("not json")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = hark.logs();
    assert!(
        logs.contains("FORGED"),
        "the call did start and log: {logs}"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("INFO FORGED") && !l.contains("CA1")),
        "{logs}"
    );
}
