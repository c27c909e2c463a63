//! CLI subcommands with more to them than a call into the library:
//! `hark agent` (the agent directory).

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
