//! The wrapper every child actor of a call runs in: the live-actor count and
//! the test-only fault plan ([`crate::fault`]), in one place rather than a
//! line in every handler.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::context::CallContext;
use crate::fault::FaultPlan;
use crate::protocol::ChildKind;
use crate::util::LiveActor;

/// A child actor of a call: which one it is, for restarts and fault plans.
pub trait CallChild: Actor<Arguments = Arc<CallContext>> {
    const KIND: ChildKind;
}

/// How every child of a call runs: the actor itself, plus — in one place
/// rather than a line in every handler — the count of live call actors and
/// the test-only fault plan, checked before each message is handled.
pub struct Child<A>(pub A);

pub struct ChildState<S> {
    inner: S,
    fault: Option<Arc<FaultPlan>>,
    handled: u32,
    _live: LiveActor,
}

impl<A: CallChild> Actor for Child<A> {
    type Msg = A::Msg;
    type State = ChildState<A::State>;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let fault = ctx.fault.clone();
        let inner = self.0.pre_start(myself, ctx).await?;
        Ok(ChildState {
            inner,
            fault,
            handled: 0,
            _live: LiveActor::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.0.post_start(myself, &mut state.inner).await
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.0.post_stop(myself, &mut state.inner).await
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(plan) = &state.fault {
            plan.on_message(A::KIND, &mut state.handled);
        }
        self.0.handle(myself, msg, &mut state.inner).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.0
            .handle_supervisor_evt(myself, event, &mut state.inner)
            .await
    }
}
