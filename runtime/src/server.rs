//! HTTP and WebSocket routes, all on one listener:
//!
//! | route | what |
//! |---|---|
//! | `POST /twilio/voice` | Twilio's incoming-call webhook; answers `<Connect><Stream>` TwiML |
//! | `POST /twilio/status` | Twilio's call status callback |
//! | `GET /twilio/media` | the bidirectional Media Streams WebSocket |
//! | `/api/v1/…` | the admin API |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | the node takes calls: 503 while draining or while a role (stt, llm, tts) has no healthy provider; 200 `degraded` while the cluster's Redis is away (the node serves on its own) |
//! | `GET /metrics` | Prometheus text format |

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hark_actors::Keys;
use hark_actors::metrics as m;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::cluster::live_calls::LiveCalls;
use crate::config::Config;
use crate::health::ProviderHealth;
use crate::http_limits::{ConnLimits, REFUSED_RESPONSE, WriteDeadline};
use crate::lifecycle::Lifecycle;
use crate::policies::Policies;
use crate::state::AppState;
use crate::workers::Workers;

/// TCP keepalive on every accepted socket: a peer that vanished without a
/// FIN is found within about `IDLE + INTERVAL * RETRIES`.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

pub fn router(state: Arc<AppState>, limits: Arc<ConnLimits>) -> Router {
    Router::new()
        .merge(crate::carriers::twilio::routes())
        .nest("/n/{node}", crate::carriers::twilio::node_routes())
        .merge(crate::api::router(Arc::clone(&state)))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            crate::http_limits::guard,
        ))
        .with_state(state)
}

pub(crate) fn refuse(code: StatusCode, message: &str) -> Response {
    (code, format!("{message}\n")).into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let draining = app.lifecycle.is_draining();
    let unready = app.health.unready_roles();
    // Redis away: the node serves on its own (placements here, limits
    // in-process), so it stays in rotation, marked degraded.
    let cluster_down = app.cluster.as_ref().is_some_and(|c| !c.is_up());
    let status = if draining {
        "draining"
    } else if !unready.is_empty() || cluster_down {
        "degraded"
    } else {
        "ready"
    };
    let body = serde_json::json!({
        "status": status,
        "calls": app.lifecycle.active(),
        "policy": app.policies.catalog().default_name(),
        "unready_roles": unready,
        "providers": app.health.public_snapshot(),
        // A database that is down does not stop calls (records spool), so
        // it does not fail readiness; it is shown here.
        "store": {
            "state": if app.store_health.is_up() { "up" } else { "down" },
            "spool_rows": app.store_health.spool_rows(),
        },
        "cluster": app.cluster.as_ref().map(|c| c.status()),
    });
    let code = if draining || !unready.is_empty() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    let tasks: usize = app
        .runtimes
        .iter()
        .map(|rt| rt.metrics().num_alive_tasks())
        .sum();
    metrics::gauge!(m::RUNTIME_TASKS).set(tasks as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Policy(#[from] crate::policies::LoadError),
    // Causes are in the messages, not `source`s: the error chain prints each once.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("providers: {0}")]
    Providers(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Pii(#[from] crate::pii::PiiError),
    #[error("spool in {path}: {error}")]
    Spool {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("metrics recorder: {0}")]
    Metrics(String),
    #[error(transparent)]
    Recordings(#[from] crate::recordings::RecordingError),
    #[error(
        "refusing to serve on {addr} without Twilio signatures: {env} is not set, so anyone who can reach this address could start calls (and paid provider sessions). Set {env}, listen on a loopback address, or set allow_unsigned_requests = true (HARK_ALLOW_UNSIGNED_REQUESTS=true) to accept that"
    )]
    Unsigned { addr: SocketAddr, env: String },
    #[error("stream token key: {0}")]
    TokenKey(String),
    #[error("config: {0}")]
    Config(String),
    #[error("server failed: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for ServeError {
    fn from(e: std::io::Error) -> Self {
        ServeError::Io(e)
    }
}

/// Runs `hark serve` until SIGTERM/SIGINT and a graceful drain.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let keys = Keys::from_env(&config.providers);
    let twilio_auth_token = keys.get(&config.providers.twilio).cloned();
    if twilio_auth_token.is_none()
        && !config.listen.ip().is_loopback()
        && !config.allow_unsigned_requests
    {
        return Err(ServeError::Unsigned {
            addr: config.listen,
            env: config.providers.twilio.api_key_env.clone(),
        });
    }
    let (stream_tokens, token_source) =
        crate::stream_token::key_for(&config.data_dir, config.is_shared_database())
            .map_err(ServeError::TokenKey)?;
    let limits = ConnLimits::new(&config.http).map_err(ServeError::Config)?;
    let source = config
        .policy_source()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let (policies, notices) = Policies::load(
        source,
        config.routing.clone(),
        config.providers.clone(),
        keys.clone(),
    )?;
    let policies = Arc::new(policies);
    let default = policies.default_live();
    let metrics = crate::telemetry::install_metrics().map_err(ServeError::Metrics)?;
    let pii = Arc::new(crate::pii::load(&config)?);
    let store = crate::store::Store::open(&config.database_url).await?;
    crate::store::startup::migrate_at_start(&store, &config)
        .await
        .map_err(ServeError::Config)?;
    crate::store::startup::check_pii_keys(&store, &pii).await?;
    let spool_dir = config.data_dir.join("spool");
    let spool =
        crate::store::spool::Spool::open(&spool_dir).map_err(|error| ServeError::Spool {
            path: spool_dir.clone(),
            error,
        })?;
    if !spool.is_empty() {
        tracing::info!(
            rows = spool.len(),
            "replaying records an earlier run spooled"
        );
    }
    // The writer and the webhooks' lookups each get their own pool: a flood
    // of API requests (or bad tokens) cannot delay a record or a call.
    let writer_store = crate::store::Store::open_with(&config.database_url, 2).await?;
    let lookups = crate::store::Store::open_with(&config.database_url, 4).await?;
    let writer = crate::store::writer::Writer::start(writer_store, spool, Arc::clone(&pii));
    // Calls this node left open when it last went down (SIGKILL, a crash)
    // end now, before it takes new ones.
    hark_actors::records::RecordSink::send(
        &*writer.queue,
        hark_actors::records::Record::NodeRestarted {
            node: config.node_name(),
            at_ms: hark_actors::records::now_ms(),
        },
    );
    // Recordings: what an earlier run left is encoded and uploaded first.
    let recordings = crate::recordings::Recordings::start(
        config.recordings.clone(),
        &config.data_dir,
        Arc::clone(&pii),
        writer.queue.clone(),
    )?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| ServeError::Bind {
            addr: config.listen,
            error,
        })?;
    let addr = listener.local_addr()?;
    crate::telemetry::print_banner(
        addr,
        &config,
        &policies,
        &notices,
        twilio_auth_token.is_some(),
        token_source,
    );
    // Checked in the background: a provider that is down must not stop the
    // node from starting; /readyz and the logs say which one it is.
    let health = ProviderHealth::new(&default.providers);
    drop(default);
    let _checks = health.spawn(
        config.providers.health_check_interval(),
        config.providers.connect_timeout() * 2,
    );

    let workers = Workers::start(config.worker_threads)?;
    let mut runtimes = workers.handles();
    runtimes.push(tokio::runtime::Handle::current());
    let lifecycle = Lifecycle::new(config.max_calls);
    if twilio_auth_token.is_none() {
        tracing::warn!(
            listen = %addr,
            "{} is not set: Twilio requests are NOT verified (fine for local development, never for a public number)",
            config.providers.twilio.api_key_env
        );
    }
    let switchboard = Arc::new(crate::switchboard::Switchboard::default());
    let control =
        crate::carriers::twilio::desk::control_from_config(&config, twilio_auth_token.as_ref());
    let base_url = crate::carriers::twilio::desk::base_url(&config, addr);
    let desk = crate::carriers::twilio::desk::from_control(
        control.clone(),
        base_url.clone(),
        &store,
        &switchboard,
    );
    let dialer = Arc::new(crate::outbound::Dialer::new(
        control,
        writer.queue.clone(),
        base_url,
        config.outbound.clone(),
    ));
    let cluster = crate::cluster::join::start(
        &config,
        addr,
        &lifecycle,
        &policies,
        &workers.handles(),
        &writer,
    )
    .map_err(ServeError::Config)?;
    let (caller_limit, api_limit) = crate::cluster::join::limiters(&config, cluster.as_ref());
    let state = Arc::new(AppState {
        cluster: cluster.clone(),
        switchboard,
        desk,
        dialer,
        config: config.clone(),
        policies: Arc::clone(&policies),
        store: store.clone(),
        lookups,
        store_health: Arc::clone(&writer.queue.health),
        pii: Arc::clone(&pii),
        twilio_auth_token,
        caller_limit,
        stream_tokens,
        live_calls: Arc::new(LiveCalls::default()),
        api_limit,
        tokens: crate::api::TokenCache::default(),
        auth_failures: crate::api::AuthFailures::new(config.api_auth_failures_per_minute),
        health,
        node: config.node_name(),
        records: writer.queue.clone(),
        recordings: Arc::clone(&recordings),
        record_queue: writer.queue.clone(),
        metrics,
        lifecycle: Arc::clone(&lifecycle),
        runtimes,
    });
    crate::jobs::spawn_purge(Arc::clone(&state));
    crate::campaigns::scheduler::spawn(Arc::clone(&state));
    let health = Arc::clone(&state.health);
    // Health checks follow the default policy's providers.
    let _watch =
        crate::policies::watch::spawn(policies, config.policy_watch_debounce(), move |d| {
            health.replace(&d.providers);
        });
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let goodbye = config.call.goodbye_timeout() + Duration::from_secs(5);
    let drained = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = lifecycle.drain_asked() => {}
        }
        tracing::info!(
            calls = lifecycle.active(),
            grace_secs = grace.as_secs(),
            "shutting down: no new calls; waiting for calls in progress"
        );
        lifecycle.begin_drain();
        if let Some(cluster) = &cluster {
            cluster.drain().await;
        }
        if !lifecycle.wait_idle(grace).await {
            tracing::info!(
                calls = lifecycle.active(),
                "grace period over: ending remaining calls with a goodbye"
            );
            lifecycle.end_grace();
            if !lifecycle.wait_idle(goodbye).await {
                tracing::warn!(calls = lifecycle.active(), "calls still open at exit");
            }
        }
        if let Some(cluster) = &cluster {
            cluster.leave().await;
        }
        tracing::info!("shutdown complete");
    };
    tracing::info!(workers = workers.len(), "serving");
    accept(
        listener,
        router(state, Arc::clone(&limits)),
        &workers,
        &limits,
        config.write_timeout(),
        drained,
    )
    .await;
    // Calls are over: their recordings' last audio reaches the disk (encoded
    // now or at the next start), then their last records are written (or spooled).
    recordings.flush(Duration::from_secs(5)).await;
    writer.finish(Duration::from_secs(10)).await;
    Ok(())
}

/// No Nagle delays on small real-time frames; keepalive finds peers that
/// vanished without a FIN.
pub fn tune_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Accepts connections until `stop` completes, handing each to the
/// least-loaded worker, where it is served (HTTP/1.1 with upgrades).
async fn accept(
    listener: TcpListener,
    app: Router,
    workers: &Workers,
    limits: &Arc<ConnLimits>,
    write_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let idle = limits.settings().idle_timeout();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let ticket = match limits.admit(peer) {
            Ok(ticket) => ticket,
            Err(why) => {
                tracing::debug!(%peer, reason = why.as_str(), "connection refused");
                let _ = stream.try_write(REFUSED_RESPONSE);
                continue;
            }
        };
        tune_socket(&stream);
        // The socket is registered with this runtime's reactor; the worker re-registers it.
        let Ok(std) = stream.into_std() else {
            continue;
        };
        // Every request of the connection carries its ticket (the media
        // upgrade keeps it for as long as the call lasts).
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Arc::clone(&ticket));
                req
            },
        ));
        workers.spawn(async move {
            let Ok(stream) = TcpStream::from_std(std) else {
                return;
            };
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .serve_connection(
                    TokioIo::new(WriteDeadline::new(stream, write_timeout)),
                    service,
                )
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
