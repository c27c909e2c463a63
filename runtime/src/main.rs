//! `hark`: the binary edge. Parses the command line, loads config, and runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hark_actors::PolicyFile;
use hark_runtime::Config;
use hark_runtime::cli::campaigns;

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
        /// One policy file for every call [default: the built-in default policy]
        #[arg(long, conflicts_with = "policies")]
        policy: Option<PathBuf>,
        /// A folder of policy files, all live; `[routing]` in the config
        /// picks one per called number. Changes apply without a restart.
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check every provider the policy names and the Twilio account
    /// (reachability, credentials, model or voice); exit 1 on any failure.
    Doctor {
        /// Policy file [default: the built-in default policy]
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The call record store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Place an outbound call through a running node's API.
    Call(hark_runtime::cli::CallArgs),
    /// Drain a running node (as SIGTERM): no new calls, calls in progress
    /// finish, it leaves the cluster and exits.
    Drain(hark_runtime::cli::ApiArgs),
    /// The do-not-call list (through a running node's API).
    Dnc {
        #[command(subcommand)]
        command: hark_runtime::cli::DncCommand,
    },
    /// Lead lists for campaigns (through a running node's API).
    Leads {
        #[command(subcommand)]
        command: campaigns::LeadsCommand,
    },
    /// Campaigns: define, start, pause, resume, status, stats (through the API).
    Campaign {
        #[command(subcommand)]
        command: campaigns::CampaignCommand,
    },
    /// The agents calls are transferred to.
    Agent {
        #[command(subcommand)]
        command: hark_runtime::cli::AgentCommand,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Write the rows the database once refused (DATA_DIR/spool/rejected/)
    /// again, one by one; rows still refused stay there.
    ReplayRejected {
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored). Audited.
    Create {
        /// admin, ai_ops, agent or viewer
        #[arg(long)]
        role: String,
        /// Who or what it is for (unique), e.g. "ops-dashboard"
        #[arg(long)]
        name: String,
        /// Expire it after this long: 90d, 12h, 30m [default: never]
        #[arg(long)]
        expires_in: Option<String>,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke a token by name, at once (other nodes drop it from their cache
    /// within 10 s). Audited.
    Revoke {
        #[arg(long)]
        name: String,
        /// Runtime config file (TOML); HARK_* environment variables override it
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; prints every error with its field and line.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A call in text: your lines (typed, or a script) go through the same
    /// turn taking, LLM and tools as a call; prints the bot's lines and each
    /// decision (tools, slots, disposition, how the call ended).
    Simulate {
        file: PathBuf,
        /// A script: one caller line per line, `dtmf 1`, `silence 8s`
        /// [default: read lines from stdin]
        #[arg(long)]
        script: Option<PathBuf>,
        /// One JSON object per decision, per line
        #[arg(long)]
        json: bool,
        /// Simulated LLM (the policy's [sim.llm] replies) on a paused
        /// clock: instant, and no API key [default: the policy's LLM]
        #[arg(long)]
        sim: bool,
        /// Runtime config file (provider endpoints and key variables)
        #[arg(long)]
        config: Option<PathBuf>,
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
            policies,
            config,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(listen) = listen {
                cfg.listen = listen;
            }
            // A flag replaces whichever of the two the config had.
            if policy.is_some() {
                cfg.policy = policy;
                cfg.policies = None;
            }
            if policies.is_some() {
                cfg.policies = policies;
                cfg.policy = None;
            }
            hark_runtime::telemetry::init_logging();
            // Accepts, signals and upkeep only: calls run on the worker threads.
            runtime()?.block_on(hark_runtime::serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { policy, config } => {
            let mut cfg = Config::load(config.as_deref())?;
            if policy.is_some() {
                cfg.policy = policy;
            }
            let policy = cfg.load_policy()?;
            let checks = runtime()?.block_on(hark_runtime::doctor::run(&cfg, &policy, |name| {
                std::env::var(name).ok()
            }));
            println!(
                "hark doctor: policy {:?} ({})\n",
                policy.name,
                cfg.policy_origin()
            );
            print!("{}", hark_runtime::doctor::render(&checks));
            Ok(if hark_runtime::doctor::failed(&checks) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    name,
                    expires_in,
                    config,
                },
        } => {
            let expires_at = expires_in
                .as_deref()
                .map(parse_duration)
                .transpose()
                .context("--expires-in")?
                .map(|d| hark_actors::records::now_ms() + d.as_millis() as i64);
            let cfg = Config::load(config.as_deref())?;
            let role = hark_runtime::api::Role::parse(&role)
                .with_context(|| format!("--role {role:?}: use admin, ai_ops, agent or viewer"))?;
            let name = name.trim().to_owned();
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 100,
                "--name: 1 to 100 characters"
            );
            let token = runtime()?.block_on(async {
                let store = hark_runtime::store::Store::open(&cfg.database_url).await?;
                store.migrate().await?;
                let token = hark_runtime::api::new_token();
                let id = hark_runtime::api::new_token();
                store
                    .create_token(
                        id.get(5..17).unwrap_or(&id),
                        &name,
                        role.as_str(),
                        &hark_runtime::api::hash_token(&token),
                        expires_at,
                        "cli",
                    )
                    .await
                    .map_err(|e| match e {
                        hark_runtime::store::StoreError::Query(m)
                            if m.contains("UNIQUE") || m.contains("unique") =>
                        {
                            anyhow::anyhow!("a token named {name:?} exists already")
                        }
                        other => other.into(),
                    })?;
                anyhow::Ok(token)
            })?;
            eprintln!(
                "token {name:?} with role {} created; it is shown only now:",
                role.as_str()
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Revoke { name, config },
        } => {
            let cfg = Config::load(config.as_deref())?;
            let found = runtime()?.block_on(async {
                let store = hark_runtime::store::Store::open(&cfg.database_url).await?;
                store.migrate().await?;
                anyhow::Ok(store.revoke_token(&name, "cli").await?)
            })?;
            anyhow::ensure!(found, "no token named {name:?}");
            eprintln!("token {name:?} revoked");
            Ok(ExitCode::SUCCESS)
        }
        Command::Call(args) => block_on(hark_runtime::cli::call(args)),
        Command::Drain(api) => block_on(hark_runtime::cli::drain(api)),
        Command::Dnc { command } => block_on(hark_runtime::cli::dnc(command)),
        Command::Leads { command } => block_on(campaigns::leads(command)),
        Command::Campaign { command } => block_on(campaigns::campaign(command)),
        Command::Agent { command, config } => {
            let cfg = Config::load(config.as_deref())?;
            block_on(hark_runtime::cli::agent(command, &cfg.database_url))
        }
        Command::Store {
            command: StoreCommand::ReplayRejected { config },
        } => {
            let cfg = Config::load(config.as_deref())?;
            hark_runtime::telemetry::init_logging();
            let dir = cfg.data_dir.join("spool").join("rejected");
            let report = runtime()?.block_on(async {
                let store = hark_runtime::store::Store::open(&cfg.database_url).await?;
                store.migrate().await?;
                store
                    .replay_rejected(&dir)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
            })?;
            println!(
                "{}: {} row(s) written, {} still refused (kept)",
                dir.display(),
                report.written,
                report.refused
            );
            Ok(if report.refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
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
        Command::Policy {
            command:
                PolicyCommand::Simulate {
                    file,
                    script,
                    json,
                    sim,
                    config,
                },
        } => simulate(&file, script.as_deref(), json, sim, config.as_deref()),
    }
}

/// `hark policy simulate`: exit 1 when the policy or the script is invalid.
fn simulate(
    file: &std::path::Path,
    script: Option<&std::path::Path>,
    json: bool,
    sim: bool,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use hark_actors::simulate::{Decision, Simulation, script as steps};
    use std::io::{BufRead, IsTerminal, Write};
    // The call's own logs only when asked for (HARK_LOG=debug): the
    // decisions are the output.
    if std::env::var_os("HARK_LOG").is_some() {
        hark_runtime::telemetry::init_logging();
    }
    let policy = match PolicyFile::load(file) {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let scripted = match script {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read script {}", path.display()))?;
            match steps::parse(&text) {
                Ok(s) => Some(s),
                Err(e) => {
                    println!("script {}: {e}", path.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    let providers = if sim {
        hark_actors::Providers::simulated(&policy)
    } else {
        let cfg = Config::load(config)?;
        let keys = hark_actors::Keys::from_env(&cfg.providers);
        let (providers, notices) = hark_actors::Providers::build(&policy, &cfg.providers, &keys)
            .map_err(|e| anyhow::anyhow!("providers: {e}"))?;
        for notice in notices {
            eprintln!("note: {notice}; not used");
        }
        providers
    };
    // Simulated providers run on a paused clock: the call takes no time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(sim)
        .build()?;
    let print = |decisions: &[Decision]| {
        let mut out = std::io::stdout().lock();
        for d in decisions {
            let line = if json {
                serde_json::to_string(d).unwrap_or_default()
            } else {
                d.to_string()
            };
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    };
    let (mut call, opening) = rt.block_on(Simulation::start(policy, providers))?;
    print(&opening);
    match scripted {
        Some(script) => {
            for step in &script {
                print(&rt.block_on(call.step(step)));
            }
        }
        None => {
            let stdin = std::io::stdin();
            let prompt = stdin.is_terminal();
            let mut lines = stdin.lock().lines();
            while !call.ended() {
                if prompt {
                    eprint!("you> ");
                }
                let Some(line) = lines.next().transpose()? else {
                    break;
                };
                match steps::parse(&line) {
                    Ok(script) => {
                        for step in &script {
                            print(&rt.block_on(call.step(step)));
                        }
                    }
                    Err(e) => eprintln!("{}", e.reason),
                }
            }
        }
    }
    print(&rt.block_on(call.hang_up()));
    Ok(ExitCode::SUCCESS)
}

/// `90d`, `12h`, `30m`, `45s`.
fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?}: a number and a unit, like 90d or 12h"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => anyhow::bail!("{text:?}: the unit is d, h, m or s"),
    };
    anyhow::ensure!(n > 0, "{text:?}: must be more than nothing");
    Ok(std::time::Duration::from_secs(n.saturating_mul(secs)))
}

/// The single-threaded runtime the CLI's commands (and `serve`'s accept
/// loop) run on.
/// Runs a command (most go through a node's API) on a runtime of its own.
fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(command)?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}
