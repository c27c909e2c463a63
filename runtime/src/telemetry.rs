//! Logs, metrics and the start-up banner.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use hark_actors::Notice;
use hark_actors::metrics as m;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;

/// Logs go to stderr; `HARK_LOG` (an `EnvFilter` directive) sets the level, default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Installs the Prometheus recorder. Histograms get explicit buckets (the
/// exporter would render summaries otherwise), and a task runs upkeep.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(m::TURN_RESPONSE.into()),
            m::TURN_RESPONSE_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            Matcher::Full(m::TRANSFER_CONNECT.into()),
            m::TRANSFER_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            Matcher::Full(crate::cluster::redis::PLACEMENT_SECONDS.into()),
            crate::cluster::redis::PLACEMENT_BUCKETS,
        )
        .map_err(|e| e.to_string())?;
    for stage in [
        m::STT_FINAL,
        m::LLM_FIRST_TOKEN,
        m::TTS_FIRST_BYTE,
        crate::store::writer::WRITE_SECONDS,
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(stage.into()), m::STAGE_BUCKETS)
            .map_err(|e| e.to_string())?;
    }
    let handle = builder.install_recorder().map_err(|e| e.to_string())?;
    m::describe();
    crate::store::writer::describe_metrics();
    describe_runtime_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Help text for the metrics the runtime itself exports.
fn describe_runtime_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        crate::carriers::CALLS_REJECTED,
        "Calls refused, by reason: blocked, rate_limited (webhook), bad_token, duplicate_call (stream)."
    );
    describe_counter!(
        crate::carriers::SIGNATURE_FAILURES,
        "Twilio requests refused for a missing or wrong X-Twilio-Signature, by route and reason."
    );
    describe_counter!(
        crate::carriers::stream::DTMF_DROPPED,
        "DTMF digits dropped for exceeding the call's call.dtmf_per_second."
    );
    describe_counter!(
        crate::http_limits::REFUSED,
        "Connections and requests refused by an HTTP listener limit, by reason."
    );
    describe_counter!(
        crate::policies::POLICY_RELOADS,
        "Policy file changes read by a rescan (folder watcher or reload API), by result: applied, invalid (refused; the old version stays live), providers (its providers cannot be built), removed."
    );
    describe_gauge!(
        crate::policies::POLICIES_LIVE,
        "Policies new calls can get (valid files in the policy folder, or the built-in default)."
    );
    describe_gauge!(
        crate::http_limits::CONNECTIONS,
        "HTTP connections open, calls included."
    );
}

/// A database URL without its password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// What a person starting `hark serve` needs to know, on stdout.
pub fn print_banner(
    addr: SocketAddr,
    config: &Config,
    policies: &crate::policies::Policies,
    notices: &[Notice],
    signed: bool,
    token_source: &str,
) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "hark {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "  twilio webhook  POST http://{addr}/twilio/voice");
    let _ = writeln!(out, "  media stream    ws://{addr}/twilio/media");
    let _ = writeln!(out, "  metrics         http://{addr}/metrics");
    let _ = writeln!(
        out,
        "  admin API       http://{addr}/api/v1 (tokens: hark token create)"
    );
    let _ = writeln!(
        out,
        "  records         {}",
        redact_url(&config.database_url)
    );
    let r = &config.recordings;
    let store = match r.storage {
        crate::recordings::StorageKind::Local => format!(
            "local ({})",
            config.data_dir.join("recordings/objects").display()
        ),
        crate::recordings::StorageKind::S3 => format!("s3://{}/{}", r.bucket, r.prefix),
    };
    let _ = writeln!(out, "  recordings      {store}");
    let env = &config.providers.twilio.api_key_env;
    let signatures = if signed {
        "verified".to_owned()
    } else {
        format!("NOT verified ({env} not set)")
    };
    let _ = writeln!(out, "  twilio requests {signatures}");
    let _ = writeln!(out, "  stream tokens   key {token_source}");
    if !signed && !addr.ip().is_loopback() {
        // Only reachable with allow_unsigned_requests = true.
        let _ = writeln!(
            out,
            "  WARNING: UNSIGNED REQUESTS ACCEPTED ON {addr} (allow_unsigned_requests): anyone who can reach this address can start calls; set {env}"
        );
        tracing::warn!(%addr, "unsigned Twilio requests accepted on a non-loopback address (allow_unsigned_requests)");
    }
    let default = policies.default_live();
    let (policy, providers) = (&default.policy, &default.providers);
    let catalog = policies.catalog();
    // The default first.
    let others = catalog.live().filter(|l| l.policy.name != policy.name);
    for live in std::iter::once(&default).chain(others) {
        let _ = writeln!(
            out,
            "  policy          {} v{} ({})",
            live.policy.name,
            live.policy.version,
            live.file
                .as_deref()
                .map_or_else(|| "built in".into(), |f| f.display().to_string())
        );
    }
    for (file, state) in catalog.files().iter().filter(|(_, s)| !s.errors.is_empty()) {
        let _ = writeln!(
            out,
            "  WARNING: {} refused ({} errors, see the log): not live",
            file.display(),
            state.errors.len()
        );
    }
    let routes = &policies.routing().numbers;
    if !routes.is_empty() {
        let _ = writeln!(
            out,
            "  routing         {} numbers or prefixes",
            routes.len()
        );
    }
    let mut simulated = false;
    for (role, name, sim) in providers.describe() {
        simulated |= sim;
        let state = if sim { "SIMULATED" } else { "live" };
        let _ = writeln!(out, "  {role:<15} {name} ({state})");
    }
    for notice in notices {
        tracing::warn!(role = notice.role, provider = %notice.provider, missing = %notice.missing_key, "provider named by the policy has no API key; not used");
        let _ = writeln!(out, "  WARNING: {notice} — not used");
    }
    if simulated {
        let sims: Vec<&str> = providers
            .describe()
            .into_iter()
            .filter(|(_, _, sim)| *sim)
            .map(|(role, _, _)| role)
            .collect();
        tracing::warn!(roles = ?sims, "SIMULATED providers in use: callers get canned replies and synthetic audio");
        let _ = writeln!(
            out,
            "  note: simulated providers answer with canned text and synthetic audio, not real speech"
        );
    }
    if config.call.fault_injection {
        let _ = writeln!(out, "  WARNING: call.fault_injection is on (test only)");
    }
    let _ = out.flush();
    tracing::info!(%addr, policy = %policy.name, "hark serving");
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact_url("postgres://hark:s3cret@db:5432/hark"),
            "postgres://hark:***@db:5432/hark"
        );
        assert_eq!(
            redact_url("postgres://hark@db/hark"),
            "postgres://hark@db/hark"
        );
        assert_eq!(
            redact_url("sqlite://hark-data/hark.db?mode=rwc"),
            "sqlite://hark-data/hark.db?mode=rwc"
        );
    }
}
