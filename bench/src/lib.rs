//! Benchmarks live in `benches/hot_paths.rs`; this crate has no library code.
