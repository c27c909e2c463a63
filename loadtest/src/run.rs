//! Arrival of calls over time and the run loop.
//!
//! Like k6: a profile is a start value and stages `DURATION:TARGET`, the target
//! moving linearly from the previous one over each stage. In the closed model
//! the target is concurrent calls (a call that ends is replaced; excess calls
//! are hung up on ramp-down); in the open model it is new calls per second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use hark_workers::Workers;

use crate::caller::{Caller, CallerOptions};
use crate::scenario::Scenario;
use crate::server::ProcSampler;
use crate::stats::{Counters, IntervalLatency, Recorder};
use crate::webhook::{Answer, Webhook};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stage {
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub target: f64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parses `90s`, `5m`, `1h`, `250ms`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("bad duration {text:?} (use e.g. 30s, 5m, 1m30s, 500ms)");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(err)?;
        let value: f64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

impl Stage {
    /// Parses `DURATION:TARGET`, e.g. `30s:500`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (d, t) = text
            .split_once(':')
            .ok_or_else(|| format!("stage {text:?} is not DURATION:TARGET"))?;
        let target: f64 = t
            .trim()
            .parse()
            .map_err(|_| format!("stage {text:?}: bad target"))?;
        if !(target >= 0.0 && target.is_finite()) {
            return Err(format!("stage {text:?}: target must be >= 0"));
        }
        Ok(Self {
            duration: parse_duration(d)?,
            target,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub start: f64,
    pub stages: Vec<Stage>,
}

impl Profile {
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The target at `t`, or `None` once the profile is over.
    pub fn at(&self, t: Duration) -> Option<f64> {
        let mut from = self.start;
        let mut begin = Duration::ZERO;
        for s in &self.stages {
            if t < begin + s.duration {
                let f = (t - begin).as_secs_f64() / s.duration.as_secs_f64().max(1e-9);
                return Some(from + (s.target - from) * f);
            }
            from = s.target;
            begin += s.duration;
        }
        None
    }

    pub fn peak(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.start, f64::max)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    Closed,
    Open,
}

pub struct RunConfig {
    pub url: String,
    pub scenario: Arc<Scenario>,
    pub model: Model,
    pub profile: Profile,
    /// New connections per second at most (connect storms hurt both sides).
    pub max_connects_per_sec: f64,
    pub pid: Option<u32>,
    pub progress: bool,
    /// Caller threads (0: one per core).
    pub threads: usize,
    /// Start each call at this voice webhook (the stream goes where it says).
    pub webhook: Option<Webhook>,
    /// With a webhook: only ask it (placement latency), open no stream.
    pub placement_only: bool,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: f64,
    pub target: f64,
    pub active: u64,
    pub calls_started: u64,
    #[serde(flatten)]
    pub latency: IntervalLatency,
    pub server_cpu_pct: Option<f64>,
    pub server_rss_kb: Option<u64>,
}

pub struct RunResult {
    pub elapsed: Duration,
    pub timeline: Vec<Sample>,
    /// Server RSS before the first call.
    pub idle_rss_kb: Option<u64>,
}

/// Runs the load and returns its timeline; counters and histograms are in `rec`.
pub async fn run(cfg: RunConfig, rec: Arc<Recorder>) -> RunResult {
    // Callers run thread-per-core like Hark: each stays on one thread.
    let workers = match Workers::start(cfg.threads) {
        Ok(w) => w,
        Err(e) => {
            rec.error(format!("cannot start worker threads: {e}"));
            return RunResult {
                elapsed: Duration::ZERO,
                timeline: Vec::new(),
                idle_rss_kb: None,
            };
        }
    };
    let mut sampler = cfg.pid.map(ProcSampler::new);
    let idle_rss_kb = sampler
        .as_mut()
        .and_then(|s| s.sample().map(|(_, rss)| rss));
    let start = Instant::now();
    let tick = Duration::from_millis(50);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let mut calls: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut next_id = 0u64;
    let mut owed = 0.0f64; // open model: arrivals due but not started
    let mut connect_budget = 0.0f64;
    let mut timeline = Vec::new();
    let mut next_sample = start + Duration::from_secs(1);
    let mut last_target = cfg.profile.start;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let elapsed = now - start;
        while let Ok(id) = done_rx.try_recv() {
            calls.remove(&id);
        }
        order.retain(|id| calls.contains_key(id));
        let Some(target) = cfg.profile.at(elapsed) else {
            break;
        };
        last_target = target;
        connect_budget = (connect_budget + cfg.max_connects_per_sec * tick.as_secs_f64())
            .min(cfg.max_connects_per_sec.max(1.0));
        let to_start = match cfg.model {
            Model::Closed => {
                let want = target.round() as usize;
                while calls.len() > want {
                    // Ramp-down: hang up the newest calls.
                    let Some(id) = order.pop() else { break };
                    if let Some(stop) = calls.remove(&id) {
                        let _ = stop.send(());
                    }
                }
                want.saturating_sub(calls.len())
            }
            Model::Open => {
                owed += target * tick.as_secs_f64();
                let n = owed.floor();
                owed -= n;
                n as usize
            }
        };
        let allowed = (to_start as f64).min(connect_budget.floor()) as usize;
        connect_budget -= allowed as f64;
        for _ in 0..allowed {
            let (stop_tx, stop_rx) = oneshot::channel();
            let id = next_id;
            next_id += 1;
            calls.insert(id, stop_tx);
            order.push(id);
            let opts = CallerOptions {
                record: false,
                recorder: Some(Arc::clone(&rec)),
                ..CallerOptions::numbered(&cfg.url, id)
            };
            let start = Start {
                webhook: cfg.webhook.clone(),
                placement_only: cfg.placement_only,
            };
            workers.spawn(one_call(
                opts,
                start,
                Arc::clone(&cfg.scenario),
                Arc::clone(&rec),
                stop_rx,
                done_tx.clone(),
                id,
            ));
        }
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            let server = sampler.as_mut().and_then(ProcSampler::sample);
            let s = Sample {
                t: elapsed.as_secs_f64(),
                target,
                active: Counters::get(&rec.counters.active),
                calls_started: Counters::get(&rec.counters.calls_started),
                latency: rec.take_interval(),
                server_cpu_pct: server.map(|(cpu, _)| cpu),
                server_rss_kb: server.map(|(_, rss)| rss),
            };
            if cfg.progress && (timeline.len() + 1) % 5 == 0 {
                progress(&s, &rec);
            }
            timeline.push(s);
        }
    }
    // The profile is over: hang up what is left and let it close.
    let _ = last_target;
    for (_, stop) in calls.drain() {
        let _ = stop.send(());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Counters::get(&rec.counters.active) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    RunResult {
        elapsed: start.elapsed(),
        timeline,
        idle_rss_kb,
    }
}

fn progress(s: &Sample, rec: &Recorder) {
    let t = rec.totals();
    let c = &rec.counters;
    let server = match (s.server_cpu_pct, s.server_rss_kb) {
        (Some(cpu), Some(rss)) => format!(" server cpu={cpu:.0}% rss={}MB", rss / 1024),
        _ => String::new(),
    };
    eprintln!(
        "[{:>6.1}s] active={:<5} started={:<6} response_p99={:.0}ms barge_in_p99={:.0}ms lateness_p99={:.1}ms stale={} unanswered={} failed={}{server}",
        s.t,
        s.active,
        s.calls_started,
        t.response.p99,
        t.barge_in.p99,
        t.send_lateness.p99,
        Counters::get(&c.stale_frames),
        Counters::get(&c.unanswered_turns),
        Counters::get(&c.failed_connects) + Counters::get(&c.calls_failed),
    );
}

/// How a call starts: straight at the stream, or at the webhook first.
struct Start {
    webhook: Option<Webhook>,
    placement_only: bool,
}

/// Asks the webhook where call `opts` goes; `None`: no stream to open
/// (refused, failed, or only placement is measured).
async fn place(
    webhook: &Webhook,
    mut opts: CallerOptions,
    only: bool,
    rec: &Recorder,
) -> Option<CallerOptions> {
    let c = &rec.counters;
    let from = format!("+1415{:07}", fnv(&opts.call_sid) % 10_000_000);
    let t0 = Instant::now();
    match webhook.ask(&opts.call_sid, &from, "+14155550100").await {
        Ok(Answer::Stream { url, params }) => {
            rec.placed(t0.elapsed(), Some(&crate::webhook::node_of(&url)));
            if only {
                Counters::add(&c.calls_completed, 1);
                return None;
            }
            opts.url = url;
            opts.custom_parameters = params;
            Some(opts)
        }
        Ok(Answer::Refused) => {
            rec.placed(t0.elapsed(), None);
            Counters::add(&c.calls_refused, 1);
            None
        }
        Err(e) => {
            Counters::add(&c.failed_connects, 1);
            rec.error(e);
            None
        }
    }
}

/// A caller number per call SID, stable and spread (callers' limits are per number).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

async fn one_call(
    opts: CallerOptions,
    start: Start,
    scenario: Arc<Scenario>,
    rec: Arc<Recorder>,
    stop: oneshot::Receiver<()>,
    done: mpsc::UnboundedSender<u64>,
    id: u64,
) {
    let c = &rec.counters;
    let opts = match &start.webhook {
        Some(webhook) => match place(webhook, opts, start.placement_only, &rec).await {
            Some(opts) => opts,
            None => {
                let _ = done.send(id);
                return;
            }
        },
        None => opts,
    };
    let t0 = Instant::now();
    let caller = match Caller::connect(opts).await {
        Ok(caller) => caller,
        Err(e) => {
            Counters::add(&c.failed_connects, 1);
            rec.error(e.to_string());
            let _ = done.send(id);
            return;
        }
    };
    rec.connect(t0.elapsed());
    Counters::add(&c.calls_started, 1);
    Counters::add(&c.active, 1);
    let outcome = tokio::select! {
        r = scenario.run(&caller, &rec) => r,
        _ = stop => Ok(()),
    };
    caller.hangup();
    caller.wait_closed(Duration::from_secs(5)).await;
    {
        let st = caller.state();
        Counters::add(&c.stale_frames, st.stale_frames);
        Counters::add(&c.protocol_errors, st.protocol_errors);
        Counters::add(&c.frames_sent, st.frames_sent);
        Counters::add(&c.frames_received, st.media_frames);
        if let Some(sample) = &st.protocol_error_sample {
            rec.error(format!("protocol error: {sample}"));
        }
    }
    match outcome {
        Ok(()) => Counters::add(&c.calls_completed, 1),
        Err(e) => {
            Counters::add(&c.calls_failed, 1);
            rec.error(e);
        }
    }
    c.active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let _ = done.send(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn stages_ramp_linearly_like_k6() {
        let p = Profile {
            start: 0.0,
            stages: ["10s:100", "20s:100", "10s:0"]
                .iter()
                .map(|s| Stage::parse(s).unwrap())
                .collect(),
        };
        assert_eq!(p.total(), Duration::from_secs(40));
        assert_eq!(p.at(Duration::from_secs(5)), Some(50.0));
        assert_eq!(p.at(Duration::from_secs(15)), Some(100.0));
        assert_eq!(p.at(Duration::from_secs(35)), Some(50.0));
        assert_eq!(p.at(Duration::from_secs(40)), None);
        assert_eq!(p.peak(), 100.0);
        assert!(Stage::parse("10s").is_err());
        assert!(Stage::parse("10s:-1").is_err());
    }
}
