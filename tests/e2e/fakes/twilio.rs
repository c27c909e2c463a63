//! Twilio's REST API, the one call `hark doctor` makes:
//! `GET /2010-04-01/Accounts/{AccountSid}.json` with HTTP basic auth
//! (account SID and auth token).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;

use super::Server;

pub struct Twilio {
    server: Server,
}

struct Account {
    sid: String,
    token: String,
}

impl Twilio {
    pub async fn start(sid: &str, token: &str) -> Self {
        let account = Arc::new(Account {
            sid: sid.to_owned(),
            token: token.to_owned(),
        });
        let router = Router::new()
            .route("/2010-04-01/Accounts/{file}", get(account_json))
            .with_state(account);
        Self {
            server: Server::start(router).await,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

async fn account_json(
    State(account): State<Arc<Account>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", account.sid, account.token))
    );
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    let sid = file.strip_suffix(".json").unwrap_or(&file);
    if !authorized || sid != account.sid {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            })),
        )
            .into_response();
    }
    axum::Json(json!({
        "sid": account.sid,
        "friendly_name": "Hark tests",
        "status": "active",
        "type": "Full",
        "owner_account_sid": account.sid,
        "date_created": "Sat, 21 Nov 2026 00:00:00 +0000",
        "uri": format!("/2010-04-01/Accounts/{}.json", account.sid),
    }))
    .into_response()
}
