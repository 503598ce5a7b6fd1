//! For tests: an actor that stands for another system and passes on what it is told, as
//! its test reads it, through a channel.

use ractor::{Actor, ActorProcessingErr, ActorRef, Message};
use tokio::sync::mpsc;

/// Passes each message it gets through `pick`, and what comes out to the channel.
pub(crate) struct Probe<M, T> {
    pick: fn(M) -> Option<T>,
}

impl<M: Message, T: Send + Sync + 'static> Probe<M, T> {
    /// A probe that passes on what `pick` takes of its messages; the channel to read.
    pub(crate) async fn spawn(
        pick: fn(M) -> Option<T>,
    ) -> (ActorRef<M>, mpsc::UnboundedReceiver<T>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Probe { pick }, tx).await.expect("probe");
        (actor, rx)
    }
}

impl<M: Message, T: Send + Sync + 'static> Actor for Probe<M, T> {
    type Msg = M;
    type State = mpsc::UnboundedSender<T>;
    type Arguments = mpsc::UnboundedSender<T>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = (self.pick)(message) {
            let _ = tx.send(t);
        }
        Ok(())
    }
}
