//! What the load did to the server: its CPU and memory (`--pid`, from
//! `/proc`) and its own `hark_*` figures (`--metrics-url`).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// Samples a process's CPU use (% of one core since the last sample) and RSS.
pub struct ProcSampler {
    pid: u32,
    last: Option<(u64, Instant)>,
}

impl ProcSampler {
    pub fn new(pid: u32) -> Self {
        Self { pid, last: None }
    }

    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name (which may contain spaces) start at ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// `(cpu % of one core since the previous sample, RSS in KiB)`; the first
    /// sample's CPU is 0.
    pub fn sample(&mut self) -> Option<(f64, u64)> {
        let ticks = self.cpu_ticks()?;
        let rss = self.rss_kb()?;
        let now = Instant::now();
        let cpu = match self.last {
            Some((t0, at)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                (ticks.saturating_sub(t0)) as f64 / TICKS_PER_SEC / secs * 100.0
            }
            None => 0.0,
        };
        self.last = Some((ticks, now));
        Some((cpu, rss))
    }
}

/// A scrape of a Prometheus text endpoint: series → value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    pub async fn fetch(url: &str) -> Result<Self, String> {
        let body = reqwest::get(url)
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Self::parse(&body))
    }

    /// The value of a series (name plus labels, as printed); 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    pub fn has(&self, series: &str) -> bool {
        self.0.contains_key(series)
    }

    /// The sum of every series of metric `name` whose labels include all of
    /// `labels` (`[("provider", "sim")]`); 0 when none match.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .filter(|(l, _)| labels.iter().all(|(k, v)| label(l, k) == Some(v)))
            .map(|(_, v)| v)
            .sum()
    }

    /// `(labels, value)` of every series of metric `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.0.iter().filter_map(move |(k, v)| {
            let (n, labels) = match k.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
                None => (k.as_str(), ""),
            };
            (n == name).then_some((labels, *v))
        })
    }
}

/// The value of label `key` in a printed label set (`a="1",b="2"`).
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let end = after.find('"')?;
        if k.trim_start_matches(',') == key {
            return Some(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    None
}

/// Hark's own figures over a run: counter deltas, gauges at the end, and
/// quantiles of its turn-response histogram.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HarkFigures {
    pub deltas: BTreeMap<String, f64>,
    pub turn_response_p50_ms: Option<f64>,
    pub turn_response_p99_ms: Option<f64>,
}

impl HarkFigures {
    pub fn between(before: &Scrape, after: &Scrape) -> Self {
        let deltas = after
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("hark_") && !k.contains("_bucket"))
            .map(|(k, v)| (k.clone(), v - before.get(k)))
            .collect();
        let buckets = |s: &Scrape| -> Vec<(f64, f64)> {
            // Summed over every label set (one per provider pipeline).
            let mut b: Vec<(f64, f64)> = Vec::new();
            for (labels, v) in s.series("hark_turn_response_seconds_bucket") {
                let le = match label(labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                match b.iter_mut().find(|(l, _)| *l == le) {
                    Some(slot) => slot.1 += v,
                    None => b.push((le, v)),
                }
            }
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            b
        };
        let (b0, b1) = (buckets(before), buckets(after));
        let delta: Vec<(f64, f64)> = b1
            .iter()
            .map(|(le, v)| {
                (
                    *le,
                    v - b0.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1),
                )
            })
            .collect();
        Self {
            deltas,
            turn_response_p50_ms: quantile(&delta, 0.5).map(|s| s * 1000.0),
            turn_response_p99_ms: quantile(&delta, 0.99).map(|s| s * 1000.0),
        }
    }
}

/// Prometheus-style `histogram_quantile` over cumulative buckets (linear
/// interpolation inside the bucket).
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let span = count - prev.1;
            let f = if span > 0.0 {
                (rank - prev.1) / span
            } else {
                0.0
            };
            return Some(prev.0 + (le - prev.0) * f);
        }
        prev = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let mut s = ProcSampler::new(std::process::id());
        let (cpu, rss) = s.sample().unwrap();
        assert_eq!(cpu, 0.0);
        assert!(rss > 0);
    }

    #[test]
    fn histogram_quantiles_from_bucket_deltas() {
        let before = Scrape::parse(
            "hark_turn_response_seconds_bucket{le=\"0.5\"} 10\nhark_turn_response_seconds_bucket{le=\"1\"} 10\nhark_turn_response_seconds_bucket{le=\"+Inf\"} 10\nhark_calls_total 5\n",
        );
        let after = Scrape::parse(
            "hark_turn_response_seconds_bucket{le=\"0.5\"} 10\nhark_turn_response_seconds_bucket{le=\"1\"} 110\nhark_turn_response_seconds_bucket{le=\"+Inf\"} 110\nhark_calls_total 15\n",
        );
        let f = HarkFigures::between(&before, &after);
        assert_eq!(f.deltas["hark_calls_total"], 10.0);
        assert_eq!(
            after.sum("hark_turn_response_seconds_bucket", &[("le", "1")]),
            110.0
        );
        // All 100 new observations fall in (0.5, 1]: the median interpolates to 0.75 s.
        assert!((f.turn_response_p50_ms.unwrap() - 750.0).abs() < 1e-6);
    }
}
