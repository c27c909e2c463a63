//! Twilio's REST API (`/2010-04-01`), with the account SID and auth token as
//! HTTP basic credentials. `hark doctor` checks the account with it.

use std::time::Duration;

use crate::providers::{Endpoint, ProviderError, Secret};

pub const ACCOUNT_SID_ENV: &str = "TWILIO_ACCOUNT_SID";

pub struct TwilioRest {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: Secret,
}

impl TwilioRest {
    pub fn new(endpoint: &Endpoint, account_sid: String, auth_token: Secret) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: endpoint.http_base().to_owned(),
            account_sid,
            auth_token,
        }
    }

    /// Fetches the account: credentials valid and the account active.
    pub async fn check_account(&self) -> Result<String, ProviderError> {
        let res = self
            .http
            .get(format!(
                "{}/2010-04-01/Accounts/{}.json",
                self.base, self.account_sid
            ))
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = res.status().as_u16();
        if status != 200 {
            return Err(ProviderError::from_status(
                status,
                &format!("account {}", self.account_sid),
            ));
        }
        let account: serde_json::Value = res
            .json()
            .await
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let name = account["friendly_name"].as_str().unwrap_or("?");
        match account["status"].as_str() {
            Some("active") => Ok(format!("account {name:?} active")),
            other => Err(ProviderError::Auth(format!(
                "account {name:?} is {}",
                other.unwrap_or("in an unknown state")
            ))),
        }
    }
}
