//! `hark-loadtest`: simulated Twilio callers, speaking real speech, against
//! any Media Streams URL. See the README's "Load testing" section.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hark_loadtest::plot;
use hark_loadtest::report::{Report, RunInfo};
use hark_loadtest::run::{self, Model, Profile, RunConfig, Stage};
use hark_loadtest::scenario::{BUILT_IN, Scenario};
use hark_loadtest::server::{HarkFigures, Scrape};
use hark_loadtest::stats::Recorder;
use hark_loadtest::threshold::Threshold;

#[derive(Parser)]
#[command(
    name = "hark-loadtest",
    version,
    about = "Simulated Twilio callers speaking real audio against a Media Streams URL",
    after_help = "Examples:\n  hark-loadtest --calls 50 --duration 30s --threshold 'stale_frames==0'\n  hark-loadtest --stage 30s:500 --stage 5m:2000 --stage 30s:0 --pid $(pgrep -f 'hark serve') --plot run.svg\n  hark-loadtest --rate 20 --duration 2m --scenario barge-in\n  hark-loadtest --webhook http://hark.example.com/twilio/voice --rate 500 --duration 10s --placement-only"
)]
struct Args {
    /// Media Streams WebSocket URL
    #[arg(long, default_value = "ws://127.0.0.1:8080/twilio/media")]
    url: String,
    /// Built-in scenario name or a scenario TOML file
    #[arg(long, default_value = "conversation")]
    scenario: String,
    /// Closed model: hold this many concurrent calls
    #[arg(long, conflicts_with_all = ["rate", "stage"])]
    calls: Option<u32>,
    /// Open model: start this many calls per second
    #[arg(long, conflicts_with = "stage")]
    rate: Option<f64>,
    /// How long --calls or --rate runs
    #[arg(long, default_value = "30s", value_parser = run::parse_duration)]
    duration: std::time::Duration,
    /// Ramp stage DURATION:TARGET (repeatable), like k6; targets are concurrent calls, or calls/s with --open
    #[arg(long, value_parser = Stage::parse)]
    stage: Vec<Stage>,
    /// Stage targets are arrival rates (calls/s) instead of concurrent calls
    #[arg(long, requires = "stage")]
    open: bool,
    /// New connections per second at most
    #[arg(long, default_value_t = 500.0)]
    max_connects_per_sec: f64,
    /// Pass/fail criterion (repeatable), e.g. 'response_p99<550ms', 'stale_frames==0'
    #[arg(long, value_parser = Threshold::parse)]
    threshold: Vec<Threshold>,
    /// Write the full report (with the per-second timeline) as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw latency percentiles and active calls over time (.svg or .png)
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The server's process id: sample its CPU and RSS
    #[arg(long)]
    pid: Option<u32>,
    /// The server's Prometheus endpoint: report its hark_* figures for the run
    #[arg(long)]
    metrics_url: Option<String>,
    /// No progress lines
    #[arg(long)]
    quiet: bool,
    /// Threads running callers (0: one per core)
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// List the built-in scenarios and exit
    #[arg(long)]
    list_scenarios: bool,
    /// Start each call at this voice webhook (e.g. a cluster's
    /// http://host/twilio/voice) and stream where its TwiML says; reports
    /// the webhook's latency and the calls per node
    #[arg(long)]
    webhook: Option<String>,
    /// Sign webhook requests (X-Twilio-Signature) with this auth token
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        hide_env_values = true,
        requires = "webhook"
    )]
    twilio_auth_token: Option<String>,
    /// With --webhook: only ask the webhook (placement latency); open no stream
    #[arg(long, requires = "webhook")]
    placement_only: bool,
}

fn main() -> ExitCode {
    // Two rustls providers may be compiled in (a workspace build): pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    if args.list_scenarios {
        for (name, text) in BUILT_IN {
            let desc = Scenario::parse(text, name)
                .map(|s| s.description)
                .unwrap_or_default();
            println!("{name:<14} {desc}");
        }
        return ExitCode::SUCCESS;
    }
    let scenario = match Scenario::load(&args.scenario) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (model, profile) = match (args.calls, args.rate, args.stage.is_empty()) {
        (Some(n), _, _) => (
            Model::Closed,
            Profile {
                start: n as f64,
                stages: vec![Stage {
                    duration: args.duration,
                    target: n as f64,
                }],
            },
        ),
        (_, Some(r), _) => (
            Model::Open,
            Profile {
                start: r,
                stages: vec![Stage {
                    duration: args.duration,
                    target: r,
                }],
            },
        ),
        (_, _, false) => (
            if args.open {
                Model::Open
            } else {
                Model::Closed
            },
            Profile {
                start: 0.0,
                stages: args.stage.clone(),
            },
        ),
        _ => (
            Model::Closed,
            Profile {
                start: 10.0,
                stages: vec![Stage {
                    duration: args.duration,
                    target: 10.0,
                }],
            },
        ),
    };
    // The controller, sampler and scrapes; callers get their own threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let before = match &args.metrics_url {
            Some(url) => match Scrape::fetch(url).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("warning: cannot scrape {e}; continuing without server metrics");
                    None
                }
            },
            None => None,
        };
        let rec = Arc::new(Recorder::default());
        if !args.quiet {
            eprintln!(
                "hark-loadtest: {} ({:?}, peak {}{}, {:.0}s) against {}",
                scenario.name,
                model,
                profile.peak(),
                if model == Model::Open {
                    " calls/s"
                } else {
                    " calls"
                },
                profile.total().as_secs_f64(),
                args.url
            );
        }
        let result = run::run(
            RunConfig {
                url: args.url.clone(),
                scenario: Arc::clone(&scenario),
                model,
                profile: profile.clone(),
                max_connects_per_sec: args.max_connects_per_sec,
                pid: args.pid,
                progress: !args.quiet,
                threads: args.threads,
                webhook: args.webhook.clone().map(|url| {
                    hark_loadtest::webhook::Webhook::new(url, args.twilio_auth_token.clone())
                }),
                placement_only: args.placement_only,
            },
            Arc::clone(&rec),
        )
        .await;
        let hark = match (&args.metrics_url, before) {
            (Some(url), Some(before)) => Scrape::fetch(url)
                .await
                .ok()
                .map(|after| HarkFigures::between(&before, &after)),
            _ => None,
        };
        let info = RunInfo {
            url: args.url.clone(),
            scenario: scenario.name.clone(),
            model,
            profile,
        };
        let report = Report::build(info, &rec, result, hark, &args.threshold);
        print!("{}", report.table());
        if let Some(path) = &args.json {
            match serde_json::to_string_pretty(&report) {
                Ok(json) => {
                    if let Err(e) = std::fs::write(path, json) {
                        eprintln!("error: {}: {e}", path.display());
                    }
                }
                Err(e) => eprintln!("error: report: {e}"),
            }
        }
        if let Some(path) = &args.plot
            && let Err(e) = plot::write(&report, path)
        {
            eprintln!("error: plot: {e}");
        }
        if report.passed() {
            ExitCode::SUCCESS
        } else {
            let failed: Vec<_> = report
                .thresholds
                .iter()
                .filter(|t| !t.ok)
                .map(|t| t.threshold.as_str())
                .collect();
            eprintln!("thresholds failed: {}", failed.join("; "));
            ExitCode::FAILURE
        }
    })
}
