//! Pass/fail criteria, like k6 thresholds: `response_p99<350ms`,
//! `stale_frames==0`, `server_cpu_per_call<=0.05%`.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => (a - b).abs() < 1e-9,
            Op::Ne => (a - b).abs() >= 1e-9,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// One threshold; `value` is in the metric's base unit (ms, %, KB, count).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub metric: String,
    pub op: Op,
    pub value: f64,
    pub text: String,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The metrics thresholds may name, with their unit.
pub const METRICS: &[(&str, &str)] = &[
    ("response_p50", "ms"),
    ("response_p90", "ms"),
    ("response_p99", "ms"),
    ("response_p999", "ms"),
    ("response_max", "ms"),
    ("barge_in_p50", "ms"),
    ("barge_in_p90", "ms"),
    ("barge_in_p99", "ms"),
    ("barge_in_p999", "ms"),
    ("barge_in_max", "ms"),
    ("send_lateness_p50", "ms"),
    ("send_lateness_p99", "ms"),
    ("send_lateness_p999", "ms"),
    ("send_lateness_max", "ms"),
    ("placement_p50", "ms"),
    ("placement_p99", "ms"),
    ("placement_max", "ms"),
    ("stale_frames", ""),
    ("unanswered_turns", ""),
    ("missed_barge_ins", ""),
    ("protocol_errors", ""),
    ("failed_connects", ""),
    ("failed_calls", ""),
    ("calls_refused", ""),
    ("calls_completed", ""),
    ("turns", ""),
    ("peak_active", ""),
    ("server_cpu_per_call", "%"),
    ("server_rss_per_call", "KB"),
];

impl Threshold {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (pos, len, op) = ops
            .iter()
            .filter_map(|(s, op)| t.find(s).map(|p| (p, s.len(), *op)))
            .min_by_key(|(p, len, _)| (*p, std::cmp::Reverse(*len)))
            .ok_or_else(|| format!("threshold {text:?}: no comparison (<, <=, >, >=, ==, !=)"))?;
        let metric = t[..pos].trim().to_owned();
        let Some((_, unit)) = METRICS.iter().find(|(m, _)| *m == metric) else {
            let names: Vec<_> = METRICS.iter().map(|(m, _)| *m).collect();
            return Err(format!(
                "threshold {text:?}: unknown metric {metric:?} (known: {})",
                names.join(", ")
            ));
        };
        let raw = t[pos + len..].trim();
        let split = raw
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(raw.len());
        let number: f64 = raw[..split]
            .parse()
            .map_err(|_| format!("threshold {text:?}: bad number {raw:?}"))?;
        let given = raw[split..].trim().to_lowercase();
        let scale = match (*unit, given.as_str()) {
            (_, "") => 1.0,
            ("ms", "ms") | ("%", "%") | ("KB", "kb") => 1.0,
            ("ms", "us" | "µs") => 0.001,
            ("ms", "s") => 1000.0,
            ("KB", "mb") => 1024.0,
            ("KB", "b") => 1.0 / 1024.0,
            _ => {
                return Err(format!(
                    "threshold {text:?}: unit {given:?} does not fit {metric} ({unit})"
                ));
            }
        };
        Ok(Self {
            metric,
            op,
            value: number * scale,
            text: t.to_owned(),
        })
    }

    /// Whether it holds for `actual`; `None` (no data, e.g. no `--pid`) fails.
    pub fn check(&self, actual: Option<f64>) -> bool {
        actual.is_some_and(|a| self.op.holds(a, self.value))
    }

    pub fn describe(&self, actual: Option<f64>) -> String {
        let unit = METRICS
            .iter()
            .find(|(m, _)| *m == self.metric)
            .map_or("", |(_, u)| *u);
        match actual {
            Some(a) => format!(
                "{} (actual {a:.3}{unit}, limit {} {}{unit})",
                self.text,
                self.op.as_str(),
                self.value
            ),
            None => format!("{} (no data: needs --pid for server figures)", self.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k6_style_expressions() {
        let t = Threshold::parse("response_p99<350ms").unwrap();
        assert_eq!(
            (t.metric.as_str(), t.op, t.value),
            ("response_p99", Op::Lt, 350.0)
        );
        let t = Threshold::parse("barge_in_p99 <= 0.15s").unwrap();
        assert_eq!((t.op, t.value), (Op::Le, 150.0));
        let t = Threshold::parse("stale_frames==0").unwrap();
        assert!(t.check(Some(0.0)) && !t.check(Some(1.0)));
        let t = Threshold::parse("server_rss_per_call<150KB").unwrap();
        assert_eq!(t.value, 150.0);
        assert!(!t.check(None));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Threshold::parse("response_p99 350ms").is_err());
        assert!(
            Threshold::parse("latency<3ms")
                .unwrap_err()
                .contains("known")
        );
        assert!(Threshold::parse("stale_frames==x").is_err());
        assert!(Threshold::parse("response_p99<3KB").is_err());
    }
}
