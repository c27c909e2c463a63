//! The result of a run: a table on the terminal, a JSON document, and the
//! figures thresholds are checked against.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::{Model, Profile, RunResult, Sample};
use crate::server::HarkFigures;
use crate::stats::{Counters, Percentiles, Recorder, Totals};
use crate::threshold::Threshold;

#[derive(Debug, Clone, Serialize)]
pub struct CountersReport {
    pub calls_started: u64,
    pub calls_completed: u64,
    pub failed_calls: u64,
    pub failed_connects: u64,
    pub turns: u64,
    pub unanswered_turns: u64,
    pub barge_ins: u64,
    pub missed_barge_ins: u64,
    pub stale_frames: u64,
    pub protocol_errors: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Webhook answers without a stream (`--webhook`).
    pub calls_refused: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerReport {
    pub peak_active: u64,
    pub idle_rss_kb: Option<u64>,
    pub peak_rss_kb: Option<u64>,
    /// Mean CPU (% of one core) while at least 95% of the peak calls were up.
    pub plateau_cpu_pct: Option<f64>,
    pub cpu_per_call_pct: Option<f64>,
    pub rss_per_call_kb: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    pub threshold: String,
    pub ok: bool,
    pub actual: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub scenario: String,
    pub model: Model,
    pub profile: Profile,
    pub elapsed_secs: f64,
    pub counters: CountersReport,
    /// Milliseconds.
    pub latency_ms: Totals,
    pub server: ServerReport,
    pub hark: Option<HarkFigures>,
    pub thresholds: Vec<ThresholdResult>,
    pub errors: Vec<String>,
    /// With `--webhook`: calls per node their TwiML streamed to.
    pub spread: std::collections::BTreeMap<String, u64>,
    pub timeline: Vec<Sample>,
}

fn server_report(result: &RunResult) -> ServerReport {
    let peak = result.timeline.iter().map(|s| s.active).max().unwrap_or(0);
    let plateau: Vec<&Sample> = result
        .timeline
        .iter()
        .filter(|s| peak > 0 && s.active as f64 >= 0.95 * peak as f64)
        .collect();
    let cpu: Vec<f64> = plateau.iter().filter_map(|s| s.server_cpu_pct).collect();
    let plateau_cpu = (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / cpu.len() as f64);
    let peak_rss = plateau.iter().filter_map(|s| s.server_rss_kb).max();
    ServerReport {
        peak_active: peak,
        idle_rss_kb: result.idle_rss_kb,
        peak_rss_kb: peak_rss,
        plateau_cpu_pct: plateau_cpu,
        cpu_per_call_pct: plateau_cpu.filter(|_| peak > 0).map(|c| c / peak as f64),
        rss_per_call_kb: match (peak_rss, result.idle_rss_kb) {
            (Some(p), Some(i)) if peak > 0 => Some(p.saturating_sub(i) as f64 / peak as f64),
            _ => None,
        },
    }
}

/// What was run.
pub struct RunInfo {
    pub url: String,
    pub scenario: String,
    pub model: Model,
    pub profile: Profile,
}

impl Report {
    pub fn build(
        info: RunInfo,
        rec: &Recorder,
        result: RunResult,
        hark: Option<HarkFigures>,
        thresholds: &[Threshold],
    ) -> Self {
        let c = &rec.counters;
        let g = Counters::get;
        let mut report = Self {
            url: info.url,
            scenario: info.scenario,
            model: info.model,
            profile: info.profile,
            elapsed_secs: result.elapsed.as_secs_f64(),
            counters: CountersReport {
                calls_started: g(&c.calls_started),
                calls_completed: g(&c.calls_completed),
                failed_calls: g(&c.calls_failed),
                failed_connects: g(&c.failed_connects),
                turns: g(&c.turns),
                unanswered_turns: g(&c.unanswered_turns),
                barge_ins: g(&c.barge_ins),
                missed_barge_ins: g(&c.missed_barge_ins),
                stale_frames: g(&c.stale_frames),
                protocol_errors: g(&c.protocol_errors),
                frames_sent: g(&c.frames_sent),
                frames_received: g(&c.frames_received),
                calls_refused: g(&c.calls_refused),
            },
            latency_ms: rec.totals(),
            server: server_report(&result),
            hark,
            thresholds: Vec::new(),
            errors: rec.errors(),
            spread: rec.spread(),
            timeline: result.timeline,
        };
        report.thresholds = thresholds
            .iter()
            .map(|t| {
                let actual = report.metric(&t.metric);
                ThresholdResult {
                    threshold: t.describe(actual),
                    ok: t.check(actual),
                    actual,
                }
            })
            .collect();
        report
    }

    /// A figure by threshold name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let pct = |p: &Percentiles, which: &str| -> Option<f64> {
            if p.count == 0 {
                return None;
            }
            Some(match which {
                "p50" => p.p50,
                "p90" => p.p90,
                "p99" => p.p99,
                "p999" => p.p999,
                _ => p.max,
            })
        };
        let l = &self.latency_ms;
        let c = &self.counters;
        if let Some((family, which)) = name.rsplit_once('_') {
            let p = match family {
                "response" => Some(&l.response),
                "barge_in" => Some(&l.barge_in),
                "send_lateness" => Some(&l.send_lateness),
                "placement" => Some(&l.placement),
                _ => None,
            };
            if let Some(p) = p {
                return pct(p, which);
            }
        }
        Some(match name {
            "stale_frames" => c.stale_frames as f64,
            "unanswered_turns" => c.unanswered_turns as f64,
            "missed_barge_ins" => c.missed_barge_ins as f64,
            "protocol_errors" => c.protocol_errors as f64,
            "failed_connects" => c.failed_connects as f64,
            "failed_calls" => c.failed_calls as f64,
            "calls_refused" => c.calls_refused as f64,
            "calls_completed" => c.calls_completed as f64,
            "turns" => c.turns as f64,
            "peak_active" => self.server.peak_active as f64,
            "server_cpu_per_call" => return self.server.cpu_per_call_pct,
            "server_rss_per_call" => return self.server.rss_per_call_kb,
            _ => return None,
        })
    }

    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.counters;
        let _ = writeln!(
            out,
            "\nhark-loadtest: scenario {} against {} ({:?} model, {:.0}s)",
            self.scenario, self.url, self.model, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "calls: {} started, {} completed, {} failed, {} failed connects; peak {} concurrent",
            c.calls_started,
            c.calls_completed,
            c.failed_calls,
            c.failed_connects,
            self.server.peak_active
        );
        let _ = writeln!(
            out,
            "turns: {}  unanswered: {}  barge-ins: {} (missed {})  stale frames: {}  protocol errors: {}",
            c.turns,
            c.unanswered_turns,
            c.barge_ins,
            c.missed_barge_ins,
            c.stale_frames,
            c.protocol_errors
        );
        let _ = writeln!(
            out,
            "\n{:<16} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [
            ("response", &self.latency_ms.response),
            ("barge-in", &self.latency_ms.barge_in),
            ("send lateness", &self.latency_ms.send_lateness),
            ("connect", &self.latency_ms.connect),
            ("placement", &self.latency_ms.placement),
        ] {
            if p.count == 0 && name == "placement" {
                continue;
            }
            let _ = writeln!(
                out,
                "{name:<16} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        if !self.spread.is_empty() {
            let _ = write!(out, "\nplaced per node:");
            for (node, n) in &self.spread {
                let _ = write!(out, " {node}={n}");
            }
            let _ = writeln!(out, "  refused={}", c.calls_refused);
        }
        let s = &self.server;
        if let Some(cpu) = s.plateau_cpu_pct {
            let _ = writeln!(
                out,
                "\nserver: {:.1}% of a core at {} calls = {:.4}% per call; RSS {} MB idle, {} MB at peak = {:.1} KB per call",
                cpu,
                s.peak_active,
                s.cpu_per_call_pct.unwrap_or(0.0),
                s.idle_rss_kb.unwrap_or(0) / 1024,
                s.peak_rss_kb.unwrap_or(0) / 1024,
                s.rss_per_call_kb.unwrap_or(0.0)
            );
        }
        if let Some(h) = &self.hark {
            let _ = write!(out, "hark /metrics:");
            for key in [
                "hark_calls_total",
                "hark_barge_ins_total",
                "hark_media_frames_received_total",
                "hark_media_frames_sent_total",
            ] {
                if let Some(v) = h.deltas.get(key) {
                    let _ = write!(out, " {key}=+{v:.0}");
                }
            }
            let drops: f64 = h
                .deltas
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("hark_audio_frames_dropped_total")
                        || k.starts_with("hark_bad_messages_total")
                })
                .map(|(_, v)| v)
                .sum();
            let _ = write!(out, " dropped+bad=+{drops:.0}");
            if let (Some(p50), Some(p99)) = (h.turn_response_p50_ms, h.turn_response_p99_ms) {
                let _ = write!(out, " turn_response p50={p50:.0}ms p99={p99:.0}ms");
            }
            let _ = writeln!(out);
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nfirst errors:");
            for e in self.errors.iter().take(5) {
                let _ = writeln!(out, "  {e}");
            }
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out, "\nthresholds:");
            for t in &self.thresholds {
                let _ = writeln!(
                    out,
                    "  {} {}",
                    if t.ok { "✓" } else { "✗ FAILED" },
                    t.threshold
                );
            }
        }
        out
    }
}
