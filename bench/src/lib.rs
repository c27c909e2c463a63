//! Benchmarks of Hark's hot paths; this crate has no library code.
//!
//! # Layout
//!
//! - `benches/hot_paths.rs` — criterion: the inbound frame (JSON, base64,
//!   μ-law, VAD), the outbound chunk, actor hops, barge-in through a whole
//!   call tree (`cargo bench -p hark-bench --bench hot_paths`).
//! - `src/bin/loopback-floor.rs` — the machine's transport cost without
//!   Hark; `src/bin/store-throughput.rs` — how fast the record writer
//!   stores and a spool replays.
