//! End-to-end tests: the real `hark` binary, real sockets, real speech.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod access;
mod agents;
mod api;
mod bad_input;
mod campaigns;
mod cluster;
mod conversation;
mod fakes;
mod faults;
mod first_run;
mod limits;
mod outbound;
mod policies;
mod privacy;
mod providers;
mod recording;
mod records;
mod rules;
mod server;
mod store;
mod support;
mod transfer;
