//! `hark-loadtest`: simulated Twilio callers against a Media Streams URL.
//!
//! This first version runs one fixed scenario per caller — wait for the
//! greeting, ask, get a reply, ask again and barge in on the reply — and
//! prints response and barge-in latency percentiles.

use std::process::ExitCode;
use std::time::Duration;

use hark_loadtest::fixtures::speech;
use hark_loadtest::{Caller, CallerOptions};
use tokio::time::Instant;

struct Args {
    url: String,
    calls: u64,
    ramp: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "ws://127.0.0.1:8080/twilio/media".into(),
        calls: 10,
        ramp: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--calls" => args.calls = value()?.parse().map_err(|e| format!("--calls: {e}"))?,
            "--ramp-secs" => {
                args.ramp = Duration::from_secs_f64(
                    value()?.parse().map_err(|e| format!("--ramp-secs: {e}"))?,
                )
            }
            "-h" | "--help" => {
                return Err(
                    "usage: hark-loadtest [--url WS_URL] [--calls N] [--ramp-secs S]".into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[derive(Default)]
struct Outcome {
    response: Vec<Duration>,
    barge_in: Vec<Duration>,
    stale_frames: u64,
    unanswered: u64,
    errors: Vec<String>,
}

const QUIET: Duration = Duration::from_millis(400);
const LIMIT: Duration = Duration::from_secs(20);

async fn one_call(url: String, n: u64) -> Outcome {
    let mut out = Outcome::default();
    let caller = match Caller::connect(CallerOptions {
        record: true,
        ..CallerOptions::numbered(&url, n)
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(e.to_string());
            return out;
        }
    };
    let (Some(order), Some(interrupt)) = (speech("order"), speech("interrupt")) else {
        out.errors.push("fixtures missing".into());
        return out;
    };
    if !caller.wait_idle(QUIET, LIMIT).await {
        out.errors.push("greeting never ended".into());
    }
    for _ in 0..2 {
        // A plain turn.
        let Ok(asked) = caller.say(order).await else {
            break;
        };
        match caller
            .wait_media_since(asked.ended, Duration::from_secs(5))
            .await
        {
            Some(first) => out.response.push(first - asked.ended),
            None => out.unanswered += 1,
        }
        caller.wait_idle(QUIET, LIMIT).await;
        // A turn the caller interrupts 800 ms into the reply.
        let Ok(asked) = caller.say(order).await else {
            break;
        };
        let Some(first) = caller
            .wait_media_since(asked.ended, Duration::from_secs(5))
            .await
        else {
            out.unanswered += 1;
            continue;
        };
        out.response.push(first - asked.ended);
        tokio::time::sleep_until(first + Duration::from_millis(800)).await;
        let clears = caller.state().clears.len();
        let window = caller.say_later(interrupt);
        let cleared = caller
            .wait_until(Duration::from_secs(3), |s| s.clears.len() > clears)
            .await;
        let Ok(spoken) = window.await else { break };
        if cleared {
            let at = caller.state().clears[clears];
            out.barge_in
                .push(at.saturating_duration_since(spoken.started));
        } else {
            out.errors.push("no clear after barge-in".into());
        }
        caller.wait_idle(QUIET, LIMIT).await;
    }
    caller.hangup();
    caller.wait_closed(Duration::from_secs(3)).await;
    let st = caller.state();
    out.stale_frames = st.stale_frames;
    if st.protocol_errors > 0 {
        out.errors
            .push(format!("protocol errors: {:?}", st.protocol_error_sample));
    }
    out
}

fn percentiles(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!("{name:<10} no samples");
        return;
    }
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_millis();
    println!(
        "{name:<10} n={:<5} p50={}ms p90={}ms p99={}ms max={}ms",
        v.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let gap = args.ramp / args.calls.max(1) as u32;
    let mut tasks = Vec::new();
    for n in 0..args.calls {
        tokio::time::sleep_until(start + gap * n as u32).await;
        tasks.push(tokio::spawn(one_call(args.url.clone(), n)));
    }
    let mut all = Outcome::default();
    for t in tasks {
        match t.await {
            Ok(o) => {
                all.response.extend(o.response);
                all.barge_in.extend(o.barge_in);
                all.stale_frames += o.stale_frames;
                all.unanswered += o.unanswered;
                all.errors.extend(o.errors);
            }
            Err(e) => all.errors.push(e.to_string()),
        }
    }
    println!(
        "calls={} elapsed={:.1}s",
        args.calls,
        start.elapsed().as_secs_f64()
    );
    percentiles("response", all.response);
    percentiles("barge-in", all.barge_in);
    println!(
        "stale_frames={} unanswered={} errors={}",
        all.stale_frames,
        all.unanswered,
        all.errors.len()
    );
    for e in all.errors.iter().take(5) {
        println!("  error: {e}");
    }
    if all.stale_frames > 0 || all.unanswered > 0 || !all.errors.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
