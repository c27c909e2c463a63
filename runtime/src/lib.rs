//! Hark's runtime: the `hark` server around the per-call actor trees —
//! config, carriers, HTTP and WebSocket, metrics, graceful shutdown.
//!
//! # Layout
//!
//! - `main.rs` — the binary edge: `hark serve | doctor | token | policy |
//!   store | agent | call | dnc | leads | campaign | drain`; [`cli`] — `hark
//!   agent`'s, `hark call`'s, `hark dnc`'s, `hark drain`'s, `hark leads`'
//!   and `hark campaign`'s subcommands.
//! - [`config`] — the runtime config (defaults ← file ← `HARK_*` ← flags).
//! - [`server`] — start-up checks, the accept loop (connection limits, TCP
//!   keepalive, one connection per worker thread) and the router.
//! - [`workers`] — thread-per-core: N single-threaded runtimes (the
//!   `hark-workers` crate, re-exported).
//! - [`http_limits`] — connection caps, trusted proxies, request deadlines.
//! - [`carriers`] — the carrier-neutral stream session (`stream.rs`: a
//!   carrier's events into the call, its commands out) and one folder per
//!   carrier (`twilio/`: voice and status webhooks with signatures,
//!   blocklist and caller limits; the stream upgrade; the REST client as
//!   call control; `desk.rs` and `agent.rs`: transfers — hold, the agent's
//!   leg and whisper, the caller's return; `outbound.rs`: a placed call's
//!   answer and answering-machine verdict; `placement.rs`: where a new
//!   call's stream goes and the `<Connect action>` when one ends;
//!   `owner.rs`: requests for a call on another node; `request.rs`: host,
//!   signature and TwiML plumbing every Twilio route shares).
//! - [`switchboard`] — this node's calls by SID (a call outlives its
//!   streams; a new stream of a call away attaches to its tree), agent
//!   legs, handoffs.
//! - [`outbound`] — placing calls: numbers into E.164, the do-not-call
//!   list and blocklist checked first, the carrier asked with status and
//!   answering-machine callbacks, what each placed call's stream needs.
//! - [`campaigns`] — lead files, calling windows, retries by outcome,
//!   campaign definitions and the durable scheduler every node runs.
//! - [`policies`] — the live policies (every valid file in the folder), the
//!   routing table (called number → policy), rescans and the folder watcher.
//! - [`stream_token`] — the token that binds a stream to its webhook (codec).
//! - [`cluster`] — state the nodes share, behind small traits: live calls
//!   (one stream per call), the caller limiter, the API rate limiter
//!   (in-process, or in Redis); the Redis registry (heartbeat, placement by
//!   queue depth, call → node, lost nodes), forwarding between nodes.
//! - [`twilio`] — Twilio's wire formats (messages, stream codec, TwiML,
//!   signatures, ids; no I/O; from the `hark-carrier` crate, re-exported).
//! - [`lifecycle`] — admission (`max_calls`) and graceful shutdown.
//! - [`store`] — call records (PostgreSQL / SQLite), the writer and its
//!   spool; `erasure.rs`: recordings on record, erasure on request.
//! - [`recordings`] — call recordings from the call's blocks to object
//!   storage: the disk thread, the low-priority Opus encoder pool, sealing
//!   (chunked AEAD), the ordered uploader, reading back by range.
//! - [`pii`] — encryption of personal data at rest, key files.
//! - [`api`] — the admin API (`/api/v1`): one file per resource, each route
//!   declared once on its handler (roles, router and OpenAPI together).
//! - [`state`] — `AppState`, what the parts of a node share (a leaf).
//! - [`jobs`] — background jobs (the retention purges: transcripts, recordings).
//! - [`health`], [`doctor`] — provider checks; [`telemetry`] — logs, metrics, banner.

pub mod api;
pub mod campaigns;
pub mod carriers;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod doctor;
pub mod health;
pub mod http_limits;
pub mod jobs;
pub mod lifecycle;
pub mod outbound;
pub mod pii;
pub mod policies;
pub mod recordings;
pub mod server;
pub mod state;
pub mod store;
pub mod stream_token;
pub mod switchboard;
pub mod telemetry;
pub use hark_carrier::twilio;
pub use hark_workers as workers;

pub use config::Config;
pub use server::{ServeError, serve};
