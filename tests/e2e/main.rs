//! End-to-end tests: the real `hark` binary, real sockets, real speech.

mod bad_input;
mod conversation;
mod faults;
mod server;
mod support;
