//! Hark's runtime: the `hark` server around the per-call actor trees —
//! config, Twilio protocol, HTTP and WebSocket, metrics, graceful shutdown.

pub mod api;
pub mod config;
pub mod doctor;
pub mod health;
pub mod http_limits;
pub mod lifecycle;
pub mod live_calls;
pub mod media_stream;
pub mod pii;
pub mod server;
pub mod store;
pub mod stream_token;
pub mod telemetry;
pub mod twilio;
pub mod webhooks;
pub mod workers;

pub use config::Config;
pub use server::{ServeError, serve};
