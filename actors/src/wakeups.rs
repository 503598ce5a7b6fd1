//! One timer for many actors. An actor asks to be woken at an instant, under a key of its
//! own, and is sent a message then. A call waits on some deadline for nearly all its life (the
//! next probe, a retransmission); a sleeping task for each, as `send_after` spawns, would cost
//! a good part of what the call itself costs, so the node's calls share this one task instead.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use ractor::{ActorRef, Message};
use tokio::sync::mpsc;

enum Ask<M: Message> {
    At(u64, Instant, ActorRef<M>),
    Forget(u64),
}

/// The handle through which actors ask; clones share the one timer task, which ends when
/// the last clone is dropped.
pub struct Wakeups<M: Message> {
    tx: mpsc::UnboundedSender<Ask<M>>,
}

impl<M: Message> Clone for Wakeups<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<M: Message> std::fmt::Debug for Wakeups<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups").finish_non_exhaustive()
    }
}

impl<M: Message> Wakeups<M> {
    /// Starts the timer task (on the current Tokio runtime); `wake` makes the message sent
    /// for a key.
    pub fn start(wake: fn(u64) -> M) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, wake));
        Self { tx }
    }

    /// Wakes `actor` at `at`, unless `key` already waits for an earlier instant (the earlier
    /// one stands; the actor asks again for the next after it is woken).
    pub fn at(&self, key: u64, at: Instant, actor: &ActorRef<M>) {
        let _ = self.tx.send(Ask::At(key, at, actor.clone()));
    }

    /// Forgets `key` (its actor stopped), so that nothing keeps the actor's reference.
    pub fn forget(&self, key: u64) {
        let _ = self.tx.send(Ask::Forget(key));
    }
}

async fn run<M: Message>(mut rx: mpsc::UnboundedReceiver<Ask<M>>, wake: fn(u64) -> M) {
    // The instant each key waits for, and a queue of instants that may be stale (a key that
    // moved earlier, or was forgotten): an entry counts only while it matches the key's.
    let mut waiting: HashMap<u64, (Instant, ActorRef<M>)> = HashMap::new();
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    loop {
        let next = queue.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            ask = rx.recv() => match ask {
                Some(Ask::At(key, at, actor)) => match waiting.entry(key) {
                    Entry::Occupied(mut e) => {
                        if at < e.get().0 {
                            e.insert((at, actor));
                            queue.push(Reverse((at, key)));
                        }
                    }
                    Entry::Vacant(e) => {
                        e.insert((at, actor));
                        queue.push(Reverse((at, key)));
                    }
                },
                Some(Ask::Forget(key)) => {
                    waiting.remove(&key);
                    if waiting.is_empty() {
                        // Nothing waits: the stale instants can go, and the memory of a burst.
                        queue.clear();
                        queue.shrink_to(64);
                        waiting.shrink_to(64);
                    }
                }
                None => return,
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                while let Some(Reverse((at, key))) = queue.peek().copied() {
                    if at > now {
                        break;
                    }
                    queue.pop();
                    if let Entry::Occupied(e) = waiting.entry(key)
                        && e.get().0 == at
                    {
                        let (_, actor) = e.remove();
                        let _ = actor.cast(wake(key));
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::mpsc::UnboundedSender;

    use super::*;

    struct Recorder;

    impl Actor for Recorder {
        type Msg = Instant;
        type State = UnboundedSender<Instant>;
        type Arguments = UnboundedSender<Instant>;

        async fn pre_start(
            &self,
            _: ActorRef<Instant>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _: ActorRef<Instant>,
            at: Instant,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let _ = tx.send(at);
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_earliest_instant_asked_wakes_once_and_a_forgotten_key_never() {
        let (tx, mut woken) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Recorder, tx).await.expect("spawn");
        let wakeups = Wakeups::start(|_| Instant::now());
        let start = Instant::now();
        wakeups.at(1, start + Duration::from_millis(400), &actor);
        wakeups.at(1, start + Duration::from_millis(100), &actor);
        wakeups.at(2, start + Duration::from_millis(150), &actor);
        wakeups.forget(2);
        let first = woken.recv().await.expect("woken");
        assert!(first >= start + Duration::from_millis(100), "woken early");
        // Key 1 waited for 100 ms, not 400; key 2 was forgotten: nothing more comes.
        let more = tokio::time::timeout(Duration::from_millis(600), woken.recv()).await;
        assert!(more.is_err(), "woken again at {more:?}");
        actor.stop(None);
    }
}
