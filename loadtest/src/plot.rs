//! A picture of a run: latency percentiles over time (log scale) above,
//! active calls and server CPU below. Written as SVG by hand; PNG is the SVG
//! rendered by resvg (text needs a system font, e.g. DejaVu).

use std::fmt::Write as _;
use std::path::Path;

use crate::report::Report;
use crate::run::Sample;
use crate::stats::Percentiles;

const W: f64 = 1000.0;
const H: f64 = 720.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const PLOT_W: f64 = W - LEFT - RIGHT;

struct Panel {
    top: f64,
    height: f64,
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    dash: bool,
    points: Vec<Option<(f64, f64)>>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws series as polylines, breaking at missing points.
fn lines(out: &mut String, series: &[Series<'_>], x: &dyn Fn(f64) -> f64, y: &dyn Fn(f64) -> f64) {
    for s in series {
        let dash = if s.dash {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, out: &mut String| {
            if run.len() > 1 {
                let _ = writeln!(
                    out,
                    r#"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"/>"#,
                    s.color,
                    run.join(" ")
                );
            } else if run.len() == 1 {
                let (px, py) = run[0].split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    out,
                    r#"<circle cx="{px}" cy="{py}" r="2" fill="{}"/>"#,
                    s.color
                );
            }
            run.clear();
        };
        for p in &s.points {
            match p {
                Some((t, v)) => run.push(format!("{:.1},{:.1}", x(*t), y(*v))),
                None => flush(&mut run, out),
            }
        }
        flush(&mut run, out);
    }
}

fn legend(out: &mut String, series: &[Series<'_>], top: f64) {
    let mut lx = LEFT + 10.0;
    for s in series {
        let dash = if s.dash {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{top}" x2="{}" y2="{top}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="12">{}</text>"#,
            lx + 20.0,
            s.color,
            lx + 25.0,
            top + 4.0,
            esc(s.name)
        );
        lx += 30.0 + 7.0 * s.name.len() as f64;
    }
}

fn frame(out: &mut String, p: &Panel, title: &str) {
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{}" width="{PLOT_W}" height="{}" fill="#fafafa" stroke="#999"/><text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"##,
        p.top,
        p.height,
        p.top - 8.0,
        esc(title)
    );
}

fn nice_step(span: f64, ticks: f64) -> f64 {
    let raw = (span / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn pick(
    s: &Sample,
    f: impl Fn(&Sample) -> &Percentiles,
    q: impl Fn(&Percentiles) -> f64,
) -> Option<(f64, f64)> {
    let p = f(s);
    (p.count > 0).then(|| (s.t, q(p).max(0.01)))
}

/// The run as an SVG document.
pub fn svg(report: &Report) -> String {
    let tl = &report.timeline;
    let t_max = tl.last().map_or(1.0, |s| s.t).max(1.0);
    let x = |t: f64| LEFT + t / t_max * PLOT_W;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif"><rect width="{W}" height="{H}" fill="white"/>"#
    );
    let c = &report.counters;
    let title = format!(
        "hark-loadtest · {} · peak {} calls · {} turns · stale {} · unanswered {}",
        report.scenario, report.server.peak_active, c.turns, c.stale_frames, c.unanswered_turns
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="16">{}</text>"#,
        esc(&title)
    );

    // Latency panel, log scale.
    let lat = Panel {
        top: 60.0,
        height: 330.0,
    };
    frame(&mut out, &lat, "latency (ms, log scale) per 1 s interval");
    let series = [
        Series {
            name: "response p50",
            color: "#1f77b4",
            dash: true,
            points: tl
                .iter()
                .map(|s| pick(s, |s| &s.latency.response, |p| p.p50))
                .collect(),
        },
        Series {
            name: "response p99",
            color: "#1f77b4",
            dash: false,
            points: tl
                .iter()
                .map(|s| pick(s, |s| &s.latency.response, |p| p.p99))
                .collect(),
        },
        Series {
            name: "barge-in p99",
            color: "#d62728",
            dash: false,
            points: tl
                .iter()
                .map(|s| pick(s, |s| &s.latency.barge_in, |p| p.p99))
                .collect(),
        },
        Series {
            name: "send lateness p99",
            color: "#2ca02c",
            dash: false,
            points: tl
                .iter()
                .map(|s| pick(s, |s| &s.latency.lateness, |p| p.p99))
                .collect(),
        },
    ];
    let hi = series
        .iter()
        .flat_map(|s| s.points.iter().flatten().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let (lo_exp, hi_exp) = (-1i32, (hi.log10().ceil() as i32).max(1));
    let y_lat = |v: f64| {
        let f = (v.max(0.1).log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
        lat.top + lat.height - f.clamp(0.0, 1.0) * lat.height
    };
    for e in lo_exp..=hi_exp {
        let v = 10f64.powi(e);
        let yy = y_lat(v);
        let label = if e < 0 {
            format!("{v}")
        } else {
            format!("{v:.0}")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    lines(&mut out, &series, &x, &y_lat);
    legend(&mut out, &series, lat.top + lat.height + 22.0);

    // Calls panel.
    let calls = Panel {
        top: 450.0,
        height: 220.0,
    };
    frame(
        &mut out,
        &calls,
        "active calls (and server CPU, % of one core)",
    );
    let peak = tl
        .iter()
        .map(|s| s.active as f64)
        .chain(tl.iter().map(|s| s.target))
        .fold(1.0f64, f64::max);
    let step = nice_step(peak, 5.0);
    let top_v = (peak / step).ceil() * step;
    let y_calls = |v: f64| calls.top + calls.height - v / top_v * calls.height;
    let mut v = 0.0;
    while v <= top_v + 1e-9 {
        let yy = y_calls(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{v:.0}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let mut call_series = vec![
        Series {
            name: "active calls",
            color: "#9467bd",
            dash: false,
            points: tl.iter().map(|s| Some((s.t, s.active as f64))).collect(),
        },
        Series {
            name: "target",
            color: "#9467bd",
            dash: true,
            points: tl.iter().map(|s| Some((s.t, s.target))).collect(),
        },
    ];
    lines(&mut out, &call_series, &x, &y_calls);
    if tl.iter().any(|s| s.server_cpu_pct.is_some()) {
        let cpu_top = tl
            .iter()
            .filter_map(|s| s.server_cpu_pct)
            .fold(100.0f64, f64::max);
        let y_cpu = |v: f64| calls.top + calls.height - v / cpu_top * calls.height;
        let cpu = Series {
            name: "server CPU %",
            color: "#ff7f0e",
            dash: false,
            points: tl
                .iter()
                .map(|s| s.server_cpu_pct.map(|c| (s.t, c)))
                .collect(),
        };
        lines(&mut out, std::slice::from_ref(&cpu), &x, &y_cpu);
        for frac in [0.0, 0.5, 1.0] {
            let v = cpu_top * frac;
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{:.1}" font-size="11" fill="#ff7f0e">{v:.0}%</text>"##,
                LEFT + PLOT_W + 6.0,
                y_cpu(v) + 4.0
            );
        }
        call_series.push(cpu);
    }
    legend(&mut out, &call_series, calls.top + calls.height + 22.0);

    // Time axis under both panels.
    let t_step = nice_step(t_max, 10.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let xx = x(t);
        for p in [&lat, &calls] {
            let _ = writeln!(
                out,
                r##"<line x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{}" stroke="#eee"/>"##,
                p.top,
                p.top + p.height
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{xx:.1}" y="{}" font-size="11" text-anchor="middle">{t:.0}s</text>"#,
            calls.top + calls.height + 40.0
        );
        t += t_step;
    }
    out.push_str("</svg>\n");
    out
}

/// Writes the plot; the extension picks the format (`.svg` or `.png`).
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    let doc = svg(report);
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => std::fs::write(path, doc).map_err(|e| format!("{}: {e}", path.display())),
        Some("png") => {
            let mut opt = resvg::usvg::Options::default();
            opt.fontdb_mut().load_system_fonts();
            let tree = resvg::usvg::Tree::from_str(&doc, &opt).map_err(|e| e.to_string())?;
            let size = tree.size().to_int_size();
            let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
                .ok_or("cannot allocate the image")?;
            resvg::render(
                &tree,
                resvg::tiny_skia::Transform::default(),
                &mut pixmap.as_mut(),
            );
            pixmap
                .save_png(path)
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        _ => Err(format!("{}: use a .svg or .png file name", path.display())),
    }
}
