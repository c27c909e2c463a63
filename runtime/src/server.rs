//! HTTP and WebSocket routes, all on one listener:
//!
//! | route | what |
//! |---|---|
//! | `POST /twilio/voice` | Twilio's incoming-call webhook; answers `<Connect><Stream>` TwiML |
//! | `GET /twilio/media` | the bidirectional Media Streams WebSocket |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | the node takes calls: 503 while draining or while a role (stt, llm, tts) has no healthy provider |
//! | `GET /metrics` | Prometheus text format |

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hark_actors::metrics as m;
use hark_actors::{Keys, PolicyFile, Providers};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};

use crate::workers::Workers;

use crate::config::Config;
use crate::health::ProviderHealth;
use crate::lifecycle::Lifecycle;

/// The policy calls start with, and its providers. Swapped whole by a
/// policy reload; calls in progress keep the one they started with.
pub struct Live {
    pub policy: Arc<PolicyFile>,
    pub providers: Providers,
}

pub struct AppState {
    pub config: Config,
    pub live: arc_swap::ArcSwap<Live>,
    pub health: Arc<ProviderHealth>,
    /// This node's name on records.
    pub node: String,
    /// Where calls' records go (the store's writer queue).
    pub records: Arc<dyn hark_actors::records::RecordSink>,
    pub metrics: PrometheusHandle,
    pub lifecycle: Arc<Lifecycle>,
    /// Runtimes whose tasks `hark_runtime_alive_tasks` counts.
    pub runtimes: Vec<tokio::runtime::Handle>,
    pub store: crate::store::Store,
    pub pii: Arc<crate::pii::Pii>,
    /// Twilio's auth token: when set, every Twilio request must be signed.
    pub twilio_auth_token: Option<hark_actors::providers::Secret>,
    pub caller_limit: crate::webhooks::CallerLimit,
    pub api_limit: crate::api::RateLimit,
}

impl AppState {
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/twilio/voice", post(crate::webhooks::voice))
        .route("/twilio/status", post(crate::webhooks::status))
        .route("/twilio/media", get(crate::webhooks::media))
        .nest("/api/v1", crate::api::router())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

pub(crate) fn refuse(code: StatusCode, message: &str) -> Response {
    (code, format!("{message}\n")).into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let draining = app.lifecycle.is_draining();
    let unready = app.health.unready_roles();
    let status = if draining {
        "draining"
    } else if !unready.is_empty() {
        "degraded"
    } else {
        "ready"
    };
    let body = serde_json::json!({
        "status": status,
        "calls": app.lifecycle.active(),
        "policy": app.live().policy.name,
        "unready_roles": unready,
        "providers": app.health.snapshot(),
    });
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
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
    Policy(#[from] hark_actors::PolicyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("providers: {0}")]
    Providers(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Pii(#[from] crate::pii::PiiError),
    #[error("spool in {path}: {source}")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("metrics recorder: {0}")]
    Metrics(String),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs `hark serve` until SIGTERM/SIGINT and a graceful drain.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let policy = Arc::new(PolicyFile::load(&config.policy)?);
    let keys = Keys::from_env(&config.providers);
    let (providers, notices) =
        Providers::build(&policy, &config.providers, &keys).map_err(ServeError::Providers)?;
    let metrics = crate::telemetry::install_metrics().map_err(ServeError::Metrics)?;
    let pii = Arc::new(crate::pii::load(&config)?);
    let store = crate::store::Store::open(&config.database_url).await?;
    let spool_dir = config.data_dir.join("spool");
    let spool =
        crate::store::spool::Spool::open(&spool_dir).map_err(|source| ServeError::Spool {
            path: spool_dir.clone(),
            source,
        })?;
    if !spool.is_empty() {
        tracing::info!(
            rows = spool.len(),
            "replaying records an earlier run spooled"
        );
    }
    let writer = crate::store::writer::Writer::start(store.clone(), spool, Arc::clone(&pii));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    crate::telemetry::print_banner(addr, &config, &policy, &providers, &notices);
    // Checked in the background: a provider that is down must not stop the
    // node from starting; /readyz and the logs say which one it is.
    let health = ProviderHealth::new(&providers);
    let _checks = health.spawn(
        providers.clone(),
        config.providers.health_check_interval(),
        config.providers.connect_timeout() * 2,
    );

    let workers = Workers::start(config.worker_threads)?;
    let mut runtimes = workers.handles();
    runtimes.push(tokio::runtime::Handle::current());
    let lifecycle = Lifecycle::new(config.max_calls);
    let twilio_auth_token = keys.get(&config.providers.twilio).cloned();
    if twilio_auth_token.is_none() {
        tracing::warn!(
            "{} is not set: Twilio requests are NOT verified (fine for local development, never for a public number)",
            config.providers.twilio.api_key_env
        );
    }
    let state = Arc::new(AppState {
        config: config.clone(),
        live: arc_swap::ArcSwap::from_pointee(Live {
            policy,
            providers: providers.clone(),
        }),
        store: store.clone(),
        pii: Arc::clone(&pii),
        twilio_auth_token,
        caller_limit: crate::webhooks::CallerLimit::new(config.caller_calls_per_hour),
        api_limit: crate::api::RateLimit::new(config.api_requests_per_second),
        health,
        node: config.node_name(),
        records: writer.queue.clone(),
        metrics,
        lifecycle: Arc::clone(&lifecycle),
        runtimes,
    });
    crate::api::spawn_purge(Arc::clone(&state));
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let goodbye = config.call.goodbye_timeout() + Duration::from_secs(5);
    let drained = async move {
        shutdown_signal().await;
        tracing::info!(
            calls = lifecycle.active(),
            grace_secs = grace.as_secs(),
            "shutting down: no new calls; waiting for calls in progress"
        );
        lifecycle.begin_drain();
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
        tracing::info!("shutdown complete");
    };
    tracing::info!(workers = workers.len(), "serving");
    accept(listener, router(state), &workers, drained).await;
    // Calls are over: write (or spool) their last records.
    writer.finish(Duration::from_secs(10)).await;
    Ok(())
}

/// Accepts connections until `stop` completes, handing each to the
/// least-loaded worker, where it is served (HTTP/1.1 with upgrades).
async fn accept(
    listener: TcpListener,
    app: Router,
    workers: &Workers,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
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
        // Real-time audio: no Nagle delays on small frames.
        let _ = stream.set_nodelay(true);
        // The socket is registered with this runtime's reactor; the worker re-registers it.
        let Ok(std) = stream.into_std() else {
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        workers.spawn(async move {
            let Ok(stream) = TcpStream::from_std(std) else {
                return;
            };
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
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
