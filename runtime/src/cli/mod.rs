//! CLI subcommands with more to them than a call into the library:
//! `hark agent` (the agent directory, on the database); `hark call`,
//! `hark dnc` and `hark drain` (through a running node's admin API, so the
//! node that places the call is the one its webhooks and stream reach);
//! [`campaigns`]: `hark leads` and `hark campaign` (also through the API).

pub mod campaigns;

use clap::Subcommand;

use crate::store::agents::{Agent, STATES};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Add an agent, or change one's address, skills, languages, max calls.
    Add {
        #[arg(long)]
        name: String,
        /// An E.164 number (+15551234567) or a sip: URI
        #[arg(long)]
        address: String,
        /// Comma-separated, e.g. billing,sales
        #[arg(long, value_delimiter = ',')]
        skills: Vec<String>,
        /// Comma-separated language codes, e.g. en,hi
        #[arg(long, value_delimiter = ',')]
        languages: Vec<String>,
        #[arg(long, default_value_t = 1)]
        max_calls: i64,
    },
    /// List agents: name, address, state, calls now / max, skills, languages.
    List,
    /// Set an agent's availability: available, busy, offline or wrap_up.
    State { name: String, state: String },
}

pub async fn agent(command: AgentCommand, database_url: &str) -> anyhow::Result<()> {
    let store = crate::store::Store::open(database_url).await?;
    store.migrate().await?;
    let now = hark_actors::records::now_ms();
    match command {
        AgentCommand::Add {
            name,
            address,
            skills,
            languages,
            max_calls,
        } => {
            let a = Agent {
                name,
                address,
                skills,
                languages,
                max_calls,
                state: "offline".into(),
                active_calls: 0,
                last_assigned_at: 0,
                wrap_up_until: 0,
            };
            let errors = a.check();
            anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
            store.upsert_agent(&a, now).await?;
            eprintln!(
                "agent {:?} saved (a new agent starts offline: `hark agent state {} available`)",
                a.name, a.name
            );
        }
        AgentCommand::List => {
            for a in store.agents().await? {
                println!(
                    "{}\t{}\t{}\t{}/{}\t{}\t{}",
                    a.name,
                    a.address,
                    a.state,
                    a.active_calls,
                    a.max_calls,
                    a.skills.join(","),
                    a.languages.join(",")
                );
            }
        }
        AgentCommand::State { name, state } => {
            let states = STATES;
            anyhow::ensure!(
                states.contains(&state.as_str()),
                "state {state:?}: use one of {states:?}"
            );
            anyhow::ensure!(
                store.set_agent_state(&name, &state, now).await?,
                "no agent named {name:?}"
            );
            eprintln!("agent {name:?} is {state}");
        }
    }
    Ok(())
}

/// Where `hark call` and `hark dnc` reach a running node's admin API.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The node's base URL
    #[arg(long, env = "HARK_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// An admin API token (`hark token create`; admin or ai_ops; admin to drain)
    #[arg(long, env = "HARK_API_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// `hark drain`: the node stops taking calls and exits once they are over.
pub async fn drain(api: ApiArgs) -> anyhow::Result<()> {
    let (status, body) = api_request(&api, reqwest::Method::POST, "/node/drain", None).await?;
    answered(status, &body)
}

/// `hark call`: places an outbound call through the node's API.
#[derive(clap::Args)]
pub struct CallArgs {
    /// The number to call: E.164 (+14155550100), or national in the node's
    /// `outbound.default_region`
    pub to: String,
    /// A live policy's name [default: the node's default policy]
    #[arg(long)]
    pub policy: Option<String>,
    /// The caller ID [default: the node's `outbound.caller_id`]
    #[arg(long)]
    pub from: Option<String>,
    /// A lead variable, `{caller.NAME}` in the prompt: --var name=Priya (repeat)
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// off, enable or detect_message_end
    #[arg(long, default_value = "off")]
    pub machine_detection: String,
    /// Retrying with the same key places no second call
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: write NAME=VALUE"))
}

#[derive(Subcommand)]
pub enum DncCommand {
    /// Add every number in FILE (one per line, or CSV with the number
    /// first; `#` comments and blank lines skipped); bad rows are reported.
    Import {
        file: std::path::PathBuf,
        #[arg(long, default_value = "imported")]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add one number.
    Add {
        number: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the do-not-call list.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a number off the list (admin).
    Remove {
        number: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub(crate) async fn api_request(
    api: &ApiArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let url = format!("{}/api/v1{path}", api.api.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&api.token)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, json))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Prints the answer; an error answer is the command's error.
pub(crate) fn answered(status: u16, body: &serde_json::Value) -> anyhow::Result<()> {
    if (200..300).contains(&status) {
        if !body.is_null() && body != &serde_json::Value::String(String::new()) {
            println!("{}", pretty(body));
        }
        return Ok(());
    }
    let why = body["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| pretty(body));
    anyhow::bail!("HTTP {status}: {why}")
}

pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    let variables: serde_json::Map<String, serde_json::Value> = args
        .vars
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let mut body = serde_json::json!({
        "to": args.to,
        "variables": variables,
        "machine_detection": args.machine_detection,
    });
    for (k, v) in [
        ("policy", args.policy),
        ("from", args.from),
        ("idempotency_key", args.idempotency_key),
    ] {
        if let Some(v) = v {
            body[k] = serde_json::Value::String(v);
        }
    }
    let (status, answer) =
        api_request(&args.api, reqwest::Method::POST, "/calls", Some(body)).await?;
    if status == 409 {
        anyhow::bail!(
            "not dialed: the number is on the {} list (on record as {})",
            match answer["reason"].as_str() {
                Some("do_not_call") => "do-not-call",
                _ => "block",
            },
            answer["id"].as_str().unwrap_or("?")
        );
    }
    answered(status, &answer)
}

/// The numbers in an import file, with their line numbers.
pub fn import_rows(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let first = line
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            let skip = first.is_empty()
                || first.starts_with('#')
                || (i == 0 && !first.chars().any(|c| c.is_ascii_digit()));
            (!skip).then(|| (i + 1, first.to_owned()))
        })
        .collect()
}

pub async fn dnc(command: DncCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match command {
        DncCommand::Import { file, reason, api } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let rows = import_rows(&text);
            anyhow::ensure!(!rows.is_empty(), "{}: no numbers in it", file.display());
            let mut added = 0;
            let mut bad = 0;
            for chunk in rows.chunks(10_000) {
                let numbers: Vec<&str> = chunk.iter().map(|(_, n)| n.as_str()).collect();
                let body =
                    serde_json::json!({"numbers": numbers, "reason": reason, "source": "import"});
                let (status, answer) = api_request(&api, Method::POST, "/dnc", Some(body)).await?;
                if status != 201 && status != 200 {
                    return answered(status, &answer);
                }
                added += answer["added"].as_u64().unwrap_or(0);
                for e in answer["errors"].as_array().into_iter().flatten() {
                    bad += 1;
                    let row = e["row"].as_u64().unwrap_or(0) as usize;
                    let line = chunk.get(row.saturating_sub(1)).map_or(0, |(l, _)| *l);
                    eprintln!(
                        "{}:{line}: {}",
                        file.display(),
                        e["reason"].as_str().unwrap_or("unreadable")
                    );
                }
            }
            eprintln!("{added} numbers on the do-not-call list; {bad} rows could not be read");
            anyhow::ensure!(bad == 0 || added > 0, "nothing imported");
            Ok(())
        }
        DncCommand::Add {
            number,
            reason,
            api,
        } => {
            let body = serde_json::json!({"numbers": [number], "reason": reason});
            let (status, answer) = api_request(&api, Method::POST, "/dnc", Some(body)).await?;
            answered(status, &answer)
        }
        DncCommand::List { api } => {
            let (status, answer) = api_request(&api, Method::GET, "/dnc", None).await?;
            answered(status, &answer)
        }
        DncCommand::Remove { number, api } => {
            let path = format!("/dnc/{}", number.replace('+', "%2B"));
            let (status, answer) = api_request(&api, Method::DELETE, &path, None).await?;
            answered(status, &answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_files_give_their_numbers_with_line_numbers() {
        let text =
            "number,name\n+14155550100,Asha\n\n# a comment\n\"415-555-0101\",Ravi\nnot a number\n";
        assert_eq!(
            import_rows(text),
            [
                (2, "+14155550100".to_owned()),
                (5, "415-555-0101".to_owned()),
                (6, "not a number".to_owned())
            ]
        );
        assert!(parse_var("name=प्रिया").is_ok());
        assert!(parse_var("=x").is_err());
        assert!(parse_var("name").is_err());
    }
}
