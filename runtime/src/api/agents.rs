//! The agent directory: list, add or change, and availability (changes
//! audited). Transfers reserve agents from it (issue 15).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad};
use crate::state::AppState;
use crate::store::agents::{Agent, STATES};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, add_agent))
        .routes(routes!(set_state))
}

/// An agent as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    name: String,
    /// E.164 number or `sip:` URI.
    address: String,
    skills: Vec<String>,
    languages: Vec<String>,
    max_calls: i64,
    /// `available`, `busy`, `offline`, `wrap_up`.
    state: String,
    /// Calls reserved to the agent now.
    active_calls: i64,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        Self {
            name: a.name,
            address: a.address,
            skills: a.skills,
            languages: a.languages,
            max_calls: a.max_calls,
            state: a.state,
            active_calls: a.active_calls,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    /// E.164 (`+15551234567`) or a `sip:` URI.
    #[schema(pattern = "^(\\+[1-9][0-9]{6,14}|sip:[^\\s@]+@[^\\s@]+)$")]
    address: String,
    /// Comma-separated, e.g. `billing,sales`.
    #[serde(default)]
    #[schema(pattern = "^([A-Za-z0-9._-]{1,64}(,[A-Za-z0-9._-]{1,64})*)?$")]
    skills: String,
    /// Comma-separated language codes, e.g. `en,hi`.
    #[serde(default)]
    #[schema(pattern = "^([A-Za-z0-9._-]{1,64}(,[A-Za-z0-9._-]{1,64})*)?$")]
    languages: String,
    /// 1–100, default 1 (`13.0` is read as 13, as JSON Schema's integers are).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100)]
    max_calls: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewState {
    /// `available`, `busy`, `offline`, `wrap_up`.
    #[schema(pattern = "^(available|busy|offline|wrap_up)$")]
    state: String,
}

fn words(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Fail> {
    b.map(|Json(t)| t)
        .map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))
}

#[utoipa::path(get, path = "/api/v1/agents",
    description = "The agents calls can be transferred to, with their availability and calls now. Roles: admin, ai_ops, agent.",
    responses((status = 200, body = Vec<AgentView>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent"])))]
async fn list_agents(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Json<Vec<AgentView>>, Fail> {
    Ok(Json(
        app.store
            .agents()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/agents", request_body = NewAgent,
    description = "Adds an agent (it starts offline) or changes one's address, skills, languages and max calls. Audited. Roles: admin.",
    responses((status = 201), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn add_agent(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    b: Result<Json<NewAgent>, JsonRejection>,
) -> Result<StatusCode, Fail> {
    let b = body(b)?;
    let agent = Agent {
        name: b.name,
        address: b.address,
        skills: words(&b.skills),
        languages: words(&b.languages),
        max_calls: match b.max_calls {
            None => 1,
            Some(n) if n.fract() == 0.0 && (1.0..=100.0).contains(&n) => n as i64,
            Some(n) => return Err(bad(format!("max_calls: {n} is not a whole number 1-100"))),
        },
        state: "offline".into(),
        active_calls: 0,
        last_assigned_at: 0,
        wrap_up_until: 0,
    };
    let errors = agent.check();
    if !errors.is_empty() {
        return Err(bad(errors.join("; ")));
    }
    app.store
        .upsert_agent(&agent, hark_actors::records::now_ms())
        .await?;
    app.store
        .audit(&caller.name, "save_agent", &agent.name, "")
        .await?;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(post, path = "/api/v1/agents/{name}/state", request_body = NewState, params(("name" = String, Path, description = "The agent's name")),
    description = "Sets an agent's availability. Audited. Roles: admin, agent.",
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin", "agent"])))]
async fn set_state(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    b: Result<Json<NewState>, JsonRejection>,
) -> Result<StatusCode, Fail> {
    let b = body(b)?;
    if !STATES.contains(&b.state.as_str()) {
        return Err(bad(format!(
            "state: {:?} is not one of {STATES:?}",
            b.state
        )));
    }
    if !app
        .store
        .set_agent_state(&name, &b.state, hark_actors::records::now_ms())
        .await?
    {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!("no agent named {name:?}"),
        ));
    }
    app.store
        .audit(&caller.name, "agent_state", &name, &b.state)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
