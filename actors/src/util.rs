//! Guards that tie tasks and gauges to an actor's state.
//!
//! An actor's state is dropped however the actor ends — stopped, killed with
//! its supervisor, or panicked (when `post_stop` does not run) — so anything
//! that must not outlive the actor is owned by a guard in its state.

use metrics::Gauge;
use tokio::task::JoinHandle;

/// Aborts the task when dropped: the actor's in-flight work dies with it.
#[derive(Debug)]
pub struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    pub fn spawn<F>(future: F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        Self(tokio::spawn(future))
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl From<JoinHandle<()>> for AbortOnDrop {
    fn from(handle: JoinHandle<()>) -> Self {
        Self(handle)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a live call actor in `hark_call_actors` for as long as it exists.
#[derive(Debug)]
pub struct LiveActor(Gauge);

impl LiveActor {
    pub fn new() -> Self {
        let g = metrics::gauge!(crate::metrics::CALL_ACTORS);
        g.increment(1.0);
        Self(g)
    }
}

impl Default for LiveActor {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LiveActor {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Text from outside (a call SID from a `start` message, a path parameter,
/// a model's tool name) as logs may show it: control characters and the
/// like escaped, so a `\n` in a call SID cannot forge a log line.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                std::fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn outside_text_cannot_forge_a_log_line() {
        let sid = "CA1\n2026-11-26T00:00:00Z  INFO forged: admin logged in\r\u{1b}[31m";
        let shown = Escaped(sid).to_string();
        assert!(!shown.contains(['\n', '\r', '\u{1b}']), "{shown}");
        assert!(shown.starts_with("CA1\\n2026"), "{shown}");
        assert_eq!(Escaped("CA0123 नमस्ते").to_string(), "CA0123 नमस्ते");
    }
}
