//! Where each of a call's children is now. Children are respawned on
//! failure, so senders look the address up for every message instead of
//! keeping an `ActorRef` that may be dead.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ractor::{ActorRef, Message};

use crate::protocol::{
    LlmMsg, MediaInMsg, MediaOutMsg, SttMsg, SupervisorMsg, TransferMsg, TtsMsg, VadMsg,
};

/// The current address of one child. Children are respawned on failure, so
/// their senders look the address up for every message instead of keeping an
/// `ActorRef` that may be dead.
pub struct Route<M: Message>(ArcSwapOption<ActorRef<M>>);

impl<M: Message> Default for Route<M> {
    fn default() -> Self {
        Self(ArcSwapOption::empty())
    }
}

impl<M: Message> Route<M> {
    /// Sends to the child's current incarnation; false if there is none or it is gone.
    pub fn send(&self, msg: M) -> bool {
        match &*self.0.load() {
            Some(actor) => actor.send_message(msg).is_ok(),
            None => false,
        }
    }

    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0.load_full().map(|a| (*a).clone())
    }

    pub(crate) fn set(&self, actor: ActorRef<M>) {
        self.0.store(Some(Arc::new(actor)));
    }
}

#[derive(Default)]
pub struct Routes {
    pub supervisor: Route<SupervisorMsg>,
    pub transfer: Route<TransferMsg>,
    pub media_in: Route<MediaInMsg>,
    pub vad: Route<VadMsg>,
    pub stt: Route<SttMsg>,
    pub llm: Route<LlmMsg>,
    pub tts: Route<TtsMsg>,
    pub media_out: Route<MediaOutMsg>,
}
