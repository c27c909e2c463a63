//! The agent directory and reservations (issue 15's first step): who calls
//! can be handed to, whether they are free, and reserving one atomically —
//! one transaction, never two calls to one agent past its `max_calls`,
//! chosen by skill and language, least recently used first.

use sqlx::Row as _;

use super::{Backend, Store, StoreError};

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

/// An agent's availability.
pub const STATES: [&str; 4] = ["available", "busy", "offline", "wrap_up"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    /// An E.164 number or a `sip:` URI.
    pub address: String,
    pub skills: Vec<String>,
    pub languages: Vec<String>,
    pub max_calls: i64,
    pub state: String,
    pub active_calls: i64,
    pub last_assigned_at: i64,
    pub wrap_up_until: i64,
}

/// `,a,b,`: a list a `LIKE '%,a,%'` can search.
fn list(items: &[String]) -> String {
    let mut out = String::from(",");
    for i in items {
        out.push_str(i);
        out.push(',');
    }
    out
}

fn unlist(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Agent {
    /// Problems with this agent as given (CLI, API): `field: reason`.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        if !plain(&self.name) {
            errors.push("name: 1-64 letters, digits, '-', '_', '.'".to_owned());
        }
        let digits = self.address.strip_prefix('+').unwrap_or_default();
        let e164 = (7..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        let sip = self
            .address
            .strip_prefix("sip:")
            .is_some_and(|rest| rest.contains('@') && !rest.contains(char::is_whitespace));
        if !(e164 || sip) {
            errors.push(format!(
                "address: {:?} is neither an E.164 number (+15551234567) nor a sip: URI",
                self.address
            ));
        }
        for (field, items) in [("skills", &self.skills), ("languages", &self.languages)] {
            if let Some(bad) = items.iter().find(|s| !plain(s)) {
                errors.push(format!("{field}: {bad:?} is not a plain word"));
            }
        }
        if !(1..=100).contains(&self.max_calls) {
            errors.push(format!("max_calls: {} is not 1-100", self.max_calls));
        }
        if !STATES.contains(&self.state.as_str()) {
            errors.push(format!("state: {:?} is not one of {STATES:?}", self.state));
        }
        errors
    }
}

impl Store {
    /// Adds an agent, or changes one (its counters and state stay).
    pub async fn upsert_agent(&self, a: &Agent, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (name, address, skills, languages, max_calls, state, active_calls, last_assigned_at, wrap_up_until, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, $7) \
             ON CONFLICT (name) DO UPDATE SET address = excluded.address, skills = excluded.skills, \
             languages = excluded.languages, max_calls = excluded.max_calls, updated_at = excluded.updated_at",
        )
        .bind(&a.name)
        .bind(&a.address)
        .bind(list(&a.skills))
        .bind(list(&a.languages))
        .bind(a.max_calls)
        .bind(&a.state)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(())
    }

    pub async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, address, skills, languages, max_calls, state, active_calls, last_assigned_at, wrap_up_until \
             FROM agents ORDER BY name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(Agent {
                    name: r.try_get("name").map_err(err)?,
                    address: r.try_get("address").map_err(err)?,
                    skills: unlist(&r.try_get::<String, _>("skills").map_err(err)?),
                    languages: unlist(&r.try_get::<String, _>("languages").map_err(err)?),
                    max_calls: r.try_get("max_calls").map_err(err)?,
                    state: r.try_get("state").map_err(err)?,
                    active_calls: r.try_get("active_calls").map_err(err)?,
                    last_assigned_at: r.try_get("last_assigned_at").map_err(err)?,
                    wrap_up_until: r.try_get("wrap_up_until").map_err(err)?,
                })
            })
            .collect()
    }

    /// One agent's address (E.164 or `sip:`), if there is such an agent.
    pub async fn agent_address(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT address FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| r.try_get("address").map_err(err)).transpose()
    }

    /// Sets an agent's availability; false if there is no such agent.
    pub async fn set_agent_state(
        &self,
        name: &str,
        state: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        if !STATES.contains(&state) {
            return Err(StoreError::Query(format!(
                "state {state:?} is not one of {STATES:?}"
            )));
        }
        let done = sqlx::query("UPDATE agents SET state = $2, updated_at = $3 WHERE name = $1")
            .bind(name)
            .bind(state)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Reserves the least recently used available agent with `skill` and
    /// `language` (empty: any) for `call_sid`, in one transaction: the
    /// agent's row is locked (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite
    /// writes one at a time), so two calls never get the last place of one
    /// agent. `None` when nobody is free.
    pub async fn reserve_agent(
        &self,
        call_sid: &str,
        skill: &str,
        language: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        // The same choice on both; PostgreSQL also locks the row it picks.
        const PICK: &str = "SELECT name FROM agents WHERE state = 'available' AND active_calls < max_calls \
             AND wrap_up_until <= $1 AND ($2 = '' OR skills LIKE $3) AND ($4 = '' OR languages LIKE $5) \
             ORDER BY last_assigned_at, name LIMIT 1";
        const PICK_LOCKED: &str = "SELECT name FROM agents WHERE state = 'available' AND active_calls < max_calls \
             AND wrap_up_until <= $1 AND ($2 = '' OR skills LIKE $3) AND ($4 = '' OR languages LIKE $5) \
             ORDER BY last_assigned_at, name LIMIT 1 FOR UPDATE SKIP LOCKED";
        let pick = match self.backend {
            Backend::Postgres => PICK_LOCKED,
            Backend::Sqlite => PICK,
        };
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(pick)
            .bind(now_ms)
            .bind(skill)
            .bind(format!("%,{skill},%"))
            .bind(language)
            .bind(format!("%,{language},%"))
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let name: String = row.try_get("name").map_err(err)?;
        let taken = sqlx::query(
            "UPDATE agents SET active_calls = active_calls + 1, last_assigned_at = $2 \
             WHERE name = $1 AND active_calls < max_calls",
        )
        .bind(&name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if taken.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO agent_reservations (call_sid, agent, reserved_at) VALUES ($1, $2, $3)",
        )
        .bind(call_sid)
        .bind(&name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Some(name))
    }

    /// Releases a call's reservation: the agent has one call fewer and is
    /// not chosen again for `wrap_up_ms`. The agent released, if any.
    pub async fn release_agent(
        &self,
        call_sid: &str,
        wrap_up_ms: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT agent FROM agent_reservations WHERE call_sid = $1 AND released_at IS NULL",
        )
        .bind(call_sid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let agent: String = row.try_get("agent").map_err(err)?;
        sqlx::query("UPDATE agent_reservations SET released_at = $2 WHERE call_sid = $1")
            .bind(call_sid)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(
            "UPDATE agents SET active_calls = CASE WHEN active_calls > 0 THEN active_calls - 1 ELSE 0 END, \
             wrap_up_until = $2 WHERE name = $1",
        )
        .bind(&agent)
        .bind(now_ms + wrap_up_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Some(agent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, address: &str) -> Agent {
        Agent {
            name: name.into(),
            address: address.into(),
            skills: vec!["billing".into()],
            languages: vec!["en".into()],
            max_calls: 1,
            state: "available".into(),
            active_calls: 0,
            last_assigned_at: 0,
            wrap_up_until: 0,
        }
    }

    #[test]
    fn agents_are_checked_field_by_field() {
        assert!(agent("asha", "+14155550100").check().is_empty());
        assert!(
            agent("desk.2", "sip:desk2@pbx.example.com")
                .check()
                .is_empty()
        );
        let mut bad = agent("a b", "555");
        bad.max_calls = 0;
        bad.state = "asleep".into();
        bad.skills = vec!["bill ing".into()];
        let errors = bad.check().join("; ");
        for field in ["name", "address", "skills", "max_calls", "state"] {
            assert!(errors.contains(field), "{field}: {errors}");
        }
        assert_eq!(unlist(&list(&["a".into(), "b".into()])), ["a", "b"]);
    }
}
