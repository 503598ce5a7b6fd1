//! The tenant actor: owns the configuration and publishes each new snapshot to subscribers.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};
use tokio::sync::watch;

use super::Directory;

#[derive(Debug)]
pub struct TenantActor;

pub enum TenantMsg {
    /// A receiver that always holds the current snapshot, for readers that are not actors
    /// (the gRPC services): no message per read, and a way to wait for a version.
    Follow(RpcReplyPort<watch::Receiver<Arc<Directory>>>),
    /// Replaces the configuration and tells every subscriber.
    Replace(Arc<Directory>),
}

pub struct TenantState {
    /// Holds the current snapshot, for followers.
    latest: watch::Sender<Arc<Directory>>,
    changed: Arc<OutputPort<Arc<Directory>>>,
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    /// The initial snapshot and the port subscribers listen on.
    type Arguments = (Arc<Directory>, Arc<OutputPort<Arc<Directory>>>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (current, changed): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(TenantState {
            latest: watch::Sender::new(current),
            changed,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TenantMsg::Follow(reply) => {
                let _ = reply.send(state.latest.subscribe());
            }
            TenantMsg::Replace(next) => {
                tracing::info!(
                    tenants = next.tenants().count(),
                    "tenant configuration replaced"
                );
                state.latest.send_replace(next.clone());
                state.changed.send(next);
            }
        }
        Ok(())
    }
}
