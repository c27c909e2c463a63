//! `hark`: the binary edge. Parses the command line, loads config, and runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hark_actors::PolicyFile;
use hark_runtime::Config;

#[derive(Parser)]
#[command(
    name = "hark",
    version,
    about = "Real-time voice orchestration runtime for AI phone agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Twilio calls: webhook, Media Streams WebSocket, health and metrics.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Policy file [default: policies/default.toml]
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check every provider the policy names and the Twilio account
    /// (reachability, credentials, model or voice); exit 1 on any failure.
    Doctor {
        /// Policy file [default: policies/default.toml]
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; prints every error with its field.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            policy,
            config,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(listen) = listen {
                cfg.listen = listen;
            }
            if let Some(policy) = policy {
                cfg.policy = policy;
            }
            hark_runtime::telemetry::init_logging();
            // Accepts, signals and upkeep only: calls run on the worker threads.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(hark_runtime::serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { policy, config } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(policy) = policy {
                cfg.policy = policy;
            }
            let policy = PolicyFile::load(&cfg.policy)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let checks = rt.block_on(hark_runtime::doctor::run(&cfg, &policy, |name| {
                std::env::var(name).ok()
            }));
            println!(
                "hark doctor: policy {:?} ({})\n",
                policy.name,
                cfg.policy.display()
            );
            print!("{}", hark_runtime::doctor::render(&checks));
            Ok(if hark_runtime::doctor::failed(&checks) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => {
            let mut ok = true;
            for file in files {
                match PolicyFile::load(&file) {
                    Ok(p) => println!(
                        "{}: ok (policy {:?} version {})",
                        file.display(),
                        p.name,
                        p.version
                    ),
                    Err(e) => {
                        ok = false;
                        println!("{e}");
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
