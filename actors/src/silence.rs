//! The supervisor's silence timer: how long the caller has said nothing
//! while the bot is quiet too. It runs only while both are quiet and a
//! rule wants to know (the consent answer, idle re-prompts), from when both
//! went quiet, and stops at the first sound from either.

use std::time::Duration;

use ractor::ActorRef;

use crate::protocol::SupervisorMsg;
use crate::util::AbortOnDrop;

#[derive(Default)]
pub struct SilenceWatch {
    timer: Option<AbortOnDrop>,
    /// Which timer is current: an older one's message is ignored.
    armed: u64,
}

impl SilenceWatch {
    /// Starts the timer when the call turns `quiet` (and a rule gives a
    /// limit), stops it when it does not; a running timer keeps running.
    pub fn update(&mut self, quiet: bool, after: Option<Duration>, me: &ActorRef<SupervisorMsg>) {
        match (quiet, after, &self.timer) {
            (true, Some(after), None) => {
                self.armed += 1;
                let armed = self.armed;
                let me = me.clone();
                self.timer = Some(AbortOnDrop::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = me.send_message(SupervisorMsg::Silence { armed });
                }));
            }
            (false, _, Some(_)) | (_, None, Some(_)) => self.stop(),
            _ => {}
        }
    }

    /// Whether `armed` is the current timer's message; it is then spent.
    pub fn fired(&mut self, armed: u64) -> bool {
        let current = armed == self.armed && self.timer.is_some();
        if current {
            self.timer = None;
        }
        current
    }

    fn stop(&mut self) {
        self.timer = None;
        self.armed += 1;
    }
}
