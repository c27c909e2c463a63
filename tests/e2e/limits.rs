//! Streams that die or misbehave, and clients that hold connections: none
//! of them lives forever or grows without bound, and other calls go on.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::fakes::Fakes;
use crate::support::{GREETING, Hark, QUIET, speech};

const SID: &str = "MZ0000000000000000000000000000limit";

fn start(call: &str) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"{call}","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}},"streamSid":"{SID}"}}"#
    )
}

#[tokio::test]
async fn a_stream_that_goes_silent_is_ended_after_media_timeout() {
    let hark = Hark::start(&[("HARK_MEDIA_TIMEOUT_SECS", "1")]);
    // A caller that keeps sending media (as Twilio does, silence included) stays.
    let alive = hark.caller(600).await;
    // A peer that sends `start` and then nothing (gone without a FIN).
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    ws.send(Message::text(start("CA00000000000000000000000000000601")))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                _ => {}
            }
        }
    })
    .await
    .expect("a silent stream was never ended");
    assert_eq!(closed.as_deref(), Some("media_timeout"));
    assert_eq!(
        hark.wait_metric(
            "hark_calls_ended_total{reason=\"media_timeout\"}",
            1.0,
            Duration::from_secs(3)
        )
        .await,
        1.0
    );
    assert!(alive.state().closed.is_none(), "a live call was ended");
    assert_eq!(hark.metrics().await.get("hark_calls_active"), 1.0);
}

#[tokio::test]
async fn a_call_at_its_maximum_duration_hears_the_goodbye_and_ends() {
    let hark = Hark::start(&[("HARK_CALL__MAX_DURATION_SECS", "3")]);
    let caller = hark.caller(610).await;
    let connected = caller.connected_at();
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let (code, reason) = caller
        .wait_closed(Duration::from_secs(20))
        .await
        .expect("the call outlived its maximum");
    assert_eq!((code, reason.as_str()), (Some(1000), "max_duration"));
    let st = caller.state();
    let goodbye = st
        .first_media_since(connected + Duration::from_secs(3))
        .expect("no goodbye");
    assert!(st.audio_since(goodbye) > Duration::from_secs(2));
}

/// 100,000 DTMF messages (and as many forged mark echoes) as fast as a
/// socket takes them: the digits the call accepts, the LLM requests, the
/// rows written and Hark's memory all stay bounded, and a caller beside it
/// is answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtmf_flood_stays_bounded_and_a_call_beside_it_is_answered() {
    let fakes = Fakes::start().await;
    let data = crate::support::temp_dir("hark-flood");
    let db = format!("sqlite://{}/hark.db?mode=rwc", data.display());
    let hark = Hark::start_live(
        &fakes,
        &[
            ("HARK_DATA_DIR", data.to_str().unwrap()),
            ("HARK_DATABASE_URL", &db),
        ],
    );
    let normal = hark.caller(620).await;
    assert!(normal.wait_idle(QUIET, GREETING).await);
    let rss_before = hark.rss();
    let chats_before = fakes.openai.chat_requests().len();

    let flood_call = "CA00000000000000000000000000000621";
    let (mut ws, _) = tokio_tungstenite::connect_async(hark.media_url())
        .await
        .unwrap();
    ws.send(Message::text(start(flood_call))).await.unwrap();
    let began = tokio::time::Instant::now();
    let flood = async {
        for i in 0..100_000u64 {
            let seq = i + 2;
            let msg = if i % 2 == 0 {
                format!(
                    r#"{{"event":"dtmf","streamSid":"{SID}","sequenceNumber":"{seq}","dtmf":{{"track":"inbound_track","digit":"{}"}}}}"#,
                    i % 10
                )
            } else {
                format!(
                    r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{SID}","mark":{{"name":"1.{i}"}}}}"#
                )
            };
            ws.feed(Message::text(msg)).await.unwrap();
            if i % 500 == 0 {
                ws.flush().await.unwrap();
            }
        }
        ws.flush().await.unwrap();
        ws
    };
    // The normal caller talks while the flood runs.
    let talk = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = normal.say(speech("order")).await.unwrap();
        normal
            .wait_media_since(asked.ended, Duration::from_secs(10))
            .await
    };
    let (mut ws, answered) = tokio::join!(flood, talk);
    assert!(
        answered.is_some(),
        "the call beside the flood was not answered"
    );
    // Let the flooded call settle — every digit read and judged, those let
    // through counted by the supervisor (behind MediaIn: a loaded machine
    // may take seconds) — then hang it up. A digit passes the limit only
    // between the first message and now: the window of the bound.
    let mut last = None;
    let m = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = hark.metrics().await;
        let seen = m.get("hark_dtmf_total") + m.get("hark_dtmf_dropped_total");
        if last == Some(seen) || began.elapsed() > Duration::from_secs(60) {
            break m;
        }
        last = Some(seen);
    };
    let window = began.elapsed();
    ws.send(Message::text(format!(
        r#"{{"event":"stop","sequenceNumber":"200000","stop":{{"accountSid":"AC1","callSid":"{flood_call}"}},"streamSid":"{SID}"}}"#
    )))
    .await
    .unwrap();
    let accepted = m.get("hark_dtmf_total");
    let dropped = m.get("hark_dtmf_dropped_total");
    eprintln!("dtmf flood: {accepted} digits accepted, {dropped} dropped in {window:?}");
    // 10 a second, bursts of 10.
    let bound = 10.0 * window.as_secs_f64() + 10.0;
    assert!(accepted <= bound, "{accepted} digits in {window:?}");
    // Digits do get through, at least the first burst: forged marks fill
    // their own backlog, not the digits'.
    assert!(accepted >= 10.0, "{accepted}");
    assert!(dropped >= 50_000.0 - bound, "{dropped} dropped");
    // Every accepted digit is a turn, and at most one LLM request.
    let chats = fakes.openai.chat_requests().len() - chats_before;
    assert!(chats as f64 <= accepted + 2.0, "{chats} LLM requests");
    let rss_after = hark.rss();
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after}"
    );
    // Rows: the flooded call's events and turns, bounded by the digits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = count_rows(&db, flood_call).await;
    assert!(
        (rows as f64) <= 3.0 * accepted + 10.0,
        "{rows} rows for {accepted} digits"
    );
    assert!(!hark.logs().contains("panicked"), "{}", hark.logs());
}

async fn count_rows(db: &str, call: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::sqlite::SqliteConnection::connect(db).await.unwrap();
    let mut total = 0;
    for table in ["call_events", "turns"] {
        let n: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE call_sid = ?"
        )))
        .bind(call)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        total += n.0;
    }
    total
}

/// A TCP connection from `from` (a loopback address) to `hark`.
async fn connect_from(hark: &Hark, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(hark.addr.parse().unwrap()).await.unwrap()
}

/// What the server sends before it closes (or `None` if it keeps the
/// connection open past `limit`).
async fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(limit, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn connections_are_capped_per_client_and_in_total() {
    let hark = Hark::start(&[
        ("HARK_HTTP__MAX_CONNECTIONS_PER_CLIENT", "3"),
        ("HARK_HTTP__MAX_CONNECTIONS", "6"),
        ("HARK_MAX_CALLS", "6"),
    ]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&hark, "127.0.0.1").await);
    }
    // The fourth idle connection from the same address is refused.
    let mut fourth = connect_from(&hark, "127.0.0.1").await;
    let answer = read_until_closed(&mut fourth, Duration::from_secs(3)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 503")),
        "{answer:?}"
    );
    // Another address is not affected.
    for _ in 0..3 {
        held.push(connect_from(&hark, "127.0.0.2").await);
    }
    // Now the node is at its total.
    let mut seventh = connect_from(&hark, "127.0.0.3").await;
    let answer = read_until_closed(&mut seventh, Duration::from_secs(3)).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 503")));
    let m = hark_metrics_via(&mut held).await;
    assert_eq!(
        m.get("hark_http_refused_total{reason=\"max_connections_per_client\"}"),
        1.0
    );
    assert_eq!(
        m.get("hark_http_refused_total{reason=\"max_connections\"}"),
        1.0
    );
    drop(held);
    // Closed connections give their places back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        hark.http()
            .get(hark.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Reads /metrics over one of the held connections (the node is full).
async fn hark_metrics_via(held: &mut [TcpStream]) -> hark_loadtest::server::Scrape {
    let conn = &mut held[0];
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_closed(conn, Duration::from_secs(5))
        .await
        .unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    hark_loadtest::server::Scrape::parse(body)
}

#[tokio::test]
async fn calls_do_not_count_against_their_clients_cap() {
    let hark = Hark::start(&[("HARK_HTTP__MAX_CONNECTIONS_PER_CLIENT", "2")]);
    let mut calls = Vec::new();
    for n in 0..4 {
        calls.push(hark.caller(630 + n).await);
    }
    for c in &calls {
        assert!(c.wait_idle(QUIET, GREETING).await);
    }
    // Four calls from one address, and HTTP still answers it.
    assert_eq!(
        hark.http()
            .get(hark.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn idle_connections_and_slow_request_heads_are_closed() {
    let hark = Hark::start(&[("HARK_HTTP__IDLE_TIMEOUT_SECS", "1")]);
    // Connected, never a byte.
    let mut idle = connect_from(&hark, "127.0.0.1").await;
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(4))
            .await
            .is_some(),
        "an idle connection was kept"
    );
    // A request head trickled a byte at a time.
    let mut slow = connect_from(&hark, "127.0.0.1").await;
    let trickle = async {
        for b in b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        false
    };
    let cut = tokio::time::timeout(Duration::from_secs(6), trickle).await;
    assert_eq!(cut, Ok(true), "a slow request head was not cut off");
}

#[tokio::test]
async fn a_trickled_or_oversized_body_is_refused_before_any_handler_reads_it() {
    let hark = Hark::start(&[("HARK_HTTP__BODY_TIMEOUT_SECS", "1")]);
    let mut conn = connect_from(&hark, "127.0.0.1").await;
    conn.write_all(
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nCallSid=CA1",
    )
    .await
    .unwrap();
    let began = tokio::time::Instant::now();
    let answer = read_until_closed(&mut conn, Duration::from_secs(5))
        .await
        .expect("a trickled body held the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(3));
    // Over the size limit: refused on its Content-Length, unread.
    let mut big = connect_from(&hark, "127.0.0.1").await;
    big.write_all(
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 102400\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut big, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let m = hark.metrics().await;
    assert_eq!(
        m.get("hark_http_refused_total{reason=\"body_timeout\"}"),
        1.0
    );
    assert_eq!(
        m.get("hark_http_refused_total{reason=\"body_too_large\"}"),
        1.0
    );
}

/// Behind a proxy every caller shares its address: a trusted proxy is not
/// capped per connection, and the client its `X-Forwarded-For` names is
/// capped instead. From anyone else the header means nothing.
#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let hark = Hark::start(&[
        ("HARK_HTTP__MAX_CONNECTIONS_PER_CLIENT", "2"),
        ("HARK_HTTP__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#),
        ("HARK_HTTP__BODY_TIMEOUT_SECS", "3"),
    ]);
    // The proxy (127.0.0.1) holds many connections.
    let mut proxy = Vec::new();
    for _ in 0..5 {
        proxy.push(connect_from(&hark, "127.0.0.1").await);
    }
    // Two slow requests in flight for client 203.0.113.7 through it...
    let head = b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Length: 50\r\n\r\nCall";
    proxy[0].write_all(head).await.unwrap();
    proxy[1].write_all(head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...and a third is refused with 429, on its own.
    proxy[2].write_all(head).await.unwrap();
    let answer = read_until_closed(&mut proxy[2], Duration::from_secs(2)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 429")),
        "{answer:?}"
    );
    // Another client through the same proxy is served.
    let res = hark
        .http()
        .get(hark.url("/healthz"))
        .header("X-Forwarded-For", "198.51.100.2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A peer that is not a trusted proxy is capped by its own address
    // (its connections are refused before any header is read).
    let mut stranger = Vec::new();
    for _ in 0..2 {
        stranger.push(connect_from(&hark, "127.0.0.2").await);
    }
    let mut third = connect_from(&hark, "127.0.0.2").await;
    let answer = read_until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 503")),
        "{answer:?}"
    );
}

#[test]
fn accepted_sockets_get_tcp_keepalive() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        hark_runtime::server::tune_socket(&server);
        let s = socket2::SockRef::from(&server);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
        assert!(server.nodelay().unwrap());
    });
}
