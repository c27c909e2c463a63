//! `hark doctor`: checks every provider the policy names, and the Twilio
//! account, the way `hark serve` will use them — reachability, credentials,
//! model or voice — and says what is live, what is simulated and what fails.

use std::fmt::Write as _;
use std::time::Duration;

use crate::carriers::twilio::rest::{ACCOUNT_SID_ENV, TwilioRest};
use hark_actors::{Keys, PolicyFile, Providers};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Simulated,
    Skipped,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Simulated => "simulated",
            Status::Skipped => "skipped",
            Status::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub role: &'static str,
    pub provider: String,
    pub status: Status,
    pub detail: String,
}

/// Runs every check. `lookup` reads the environment (a map in tests).
pub async fn run(
    config: &Config,
    policy: &PolicyFile,
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<Check> {
    let keys = Keys::from_lookup(&config.providers, &lookup);
    let mut out = Vec::new();
    match Providers::build(policy, &config.providers, &keys) {
        Err(e) => out.push(Check {
            role: "policy",
            provider: policy.name.clone(),
            status: Status::Failed,
            detail: e,
        }),
        Ok((providers, notices)) => {
            out.extend(notices.into_iter().map(|n| Check {
                role: n.role,
                provider: n.provider,
                status: Status::Failed,
                detail: format!("{} is not set", n.missing_key),
            }));
            let limit = config.providers.connect_timeout() * 2;
            let described = providers.describe();
            for ((_, _, simulated), (role, name, result)) in
                described.into_iter().zip(providers.check(limit).await)
            {
                let (status, detail) = match result {
                    Ok(_) if simulated => {
                        (Status::Simulated, "canned replies, synthetic audio".into())
                    }
                    Ok(detail) => (Status::Ok, detail),
                    Err(e) => (Status::Failed, e.to_string()),
                };
                out.push(Check {
                    role,
                    provider: name.to_owned(),
                    status,
                    detail,
                });
            }
        }
    }
    out.push(twilio(config, &keys, &lookup).await);
    out
}

async fn twilio(config: &Config, keys: &Keys, lookup: impl Fn(&str) -> Option<String>) -> Check {
    let endpoint = &config.providers.twilio;
    let sid = lookup(ACCOUNT_SID_ENV).filter(|s| !s.is_empty());
    let token = keys.get(endpoint);
    let (status, detail) = match (sid, token) {
        (None, None) => (
            Status::Skipped,
            format!("{ACCOUNT_SID_ENV} and {} not set", endpoint.api_key_env),
        ),
        (Some(_), None) => (
            Status::Failed,
            format!("{} is not set", endpoint.api_key_env),
        ),
        (None, Some(_)) => (Status::Failed, format!("{ACCOUNT_SID_ENV} is not set")),
        (Some(sid), Some(token)) => {
            let rest = TwilioRest::new(endpoint, sid, token.clone());
            match tokio::time::timeout(Duration::from_secs(15), rest.check_account()).await {
                Ok(Ok(detail)) => (Status::Ok, detail),
                Ok(Err(e)) => (Status::Failed, e.to_string()),
                Err(_) => (Status::Failed, "timed out".into()),
            }
        }
    };
    Check {
        role: "twilio",
        provider: "account".into(),
        status,
        detail,
    }
}

/// The checks as an aligned table.
pub fn render(checks: &[Check]) -> String {
    let w = checks
        .iter()
        .map(|c| c.provider.len())
        .max()
        .unwrap_or(0)
        .max("PROVIDER".len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<w$} {:<10} DETAIL",
        "ROLE", "PROVIDER", "STATE"
    );
    for c in checks {
        let _ = writeln!(
            out,
            "{:<7} {:<w$} {:<10} {}",
            c.role,
            c.provider,
            c.status.as_str(),
            c.detail
        );
    }
    let failed = checks.iter().filter(|c| c.status == Status::Failed).count();
    let simulated = checks
        .iter()
        .filter(|c| c.status == Status::Simulated)
        .count();
    let _ = match failed {
        0 if simulated > 0 => writeln!(
            out,
            "\nno failures; {simulated} simulated (no real calls on those roles)"
        ),
        0 => writeln!(out, "\nall checks passed"),
        n => writeln!(out, "\n{n} check(s) failed"),
    };
    out
}

pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(text: &str) -> PolicyFile {
        PolicyFile::parse(text, "t.toml", "t").unwrap()
    }

    #[tokio::test]
    async fn a_simulated_policy_needs_no_keys_and_twilio_is_skipped() {
        let checks = run(
            &Config::default(),
            &policy("[providers]\nstt = [\"sim\"]\nllm = [\"sim\"]\ntts = [\"sim\"]\n"),
            |_| None,
        )
        .await;
        assert!(!failed(&checks), "{}", render(&checks));
        assert!(checks[..3].iter().all(|c| c.status == Status::Simulated));
        assert_eq!(checks[3].status, Status::Skipped);
        assert!(render(&checks).contains("3 simulated"));
    }

    #[tokio::test]
    async fn a_missing_key_and_half_twilio_credentials_fail() {
        let env: HashMap<&str, &str> = [("TWILIO_ACCOUNT_SID", "AC1")].into();
        let checks = run(
            &Config::default(),
            &policy("[providers]\nstt = [\"sim\"]\nllm = [\"openai\"]\ntts = [\"sim\"]\n"),
            |k| env.get(k).map(|v| v.to_string()),
        )
        .await;
        let table = render(&checks);
        assert!(failed(&checks));
        assert!(table.contains("OPENAI_API_KEY is not set"), "{table}");
        assert!(table.contains("TWILIO_AUTH_TOKEN is not set"), "{table}");
        assert!(table.contains("2 check(s) failed"), "{table}");
    }
}
