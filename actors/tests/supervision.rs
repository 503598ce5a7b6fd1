//! The root supervisor's policy, with the systems' real actors under it: a call-state shard
//! that is killed is started again under its name and call events go on reaching their stream;
//! a killed `rq` (whose waiting calls a restart would drop) stops the node, naming it.

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorCell, Message};
use switchboard_actors::call_state::MemorySnapshots;
use switchboard_actors::events::{EventSink, TOPIC_CALLTHREAD};
use switchboard_actors::messages::call_state::{
    CallEvent, CallEventKind, CallStateMsg, CallThreads,
};
use switchboard_actors::messages::rq::{Rq, RqMsg};
use switchboard_actors::supervisor::{Fatal, Supervisor};
use switchboard_actors::tenant::{Directory, demo_tenant};
use switchboard_proto::events::CallThread;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(5);

/// The supervisor's children that take messages of type `M`.
fn children<M: Message>(supervisor: &Supervisor) -> Vec<ActorCell> {
    supervisor
        .cell()
        .get_children()
        .into_iter()
        .filter(|c| c.is_message_type_of::<M>() == Some(true))
        .collect()
}

/// Waits until `done` holds, or fails saying `what`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn released(call: &str) -> CallEvent {
    CallEvent {
        tenant: "demo".into(),
        kind: CallEventKind::Released,
        call: CallThread {
            call_id: call.into(),
            thread_id: call.into(),
            ..CallThread::default()
        },
        at_ms: 1,
        snapshot: None,
        index: Vec::new(),
        unindex: Vec::new(),
        dns: Vec::new(),
        left: Vec::new(),
        former_thread: None,
    }
}

async fn still_running(fatal: &watch::Receiver<Option<Fatal>>) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*fatal.borrow(), None, "the node must not stop");
}

#[tokio::test]
async fn a_killed_call_state_shard_is_started_again_and_events_go_on() {
    let (supervisor, fatal) = Supervisor::start().await.expect("supervisor");
    let events = EventSink::memory();
    let threads = CallThreads::spawn(
        events.clone(),
        Arc::new(MemorySnapshots::default()),
        None,
        1,
        &supervisor,
    )
    .await
    .expect("call state");
    let stored = |events: &EventSink| {
        events
            .as_memory()
            .map_or(0, |m| m.events("demo", TOPIC_CALLTHREAD).len())
    };
    threads.record(released("before"));
    until("the first event is stored", || stored(&events) == 1).await;

    let shards = children::<CallStateMsg>(&supervisor);
    assert_eq!(shards.len(), 1);
    let old = shards[0].get_id();
    shards[0].kill();
    until("a shard is running again", || {
        children::<CallStateMsg>(&supervisor)
            .iter()
            .any(|c| c.get_id() != old)
    })
    .await;
    threads.record(released("after"));
    until("the event after the restart is stored", || {
        stored(&events) == 2
    })
    .await;
    still_running(&fatal).await;
    supervisor.stopping();
    threads.stop();
}

#[tokio::test]
async fn a_killed_rq_stops_the_node_naming_it() {
    let (supervisor, mut fatal) = Supervisor::start().await.expect("supervisor");
    let directory = Arc::new(Directory::new(&[demo_tenant()]).expect("demo"));
    let _rq = Rq::spawn(directory, &supervisor).await.expect("rq");
    let rq = children::<RqMsg>(&supervisor);
    assert_eq!(rq.len(), 1);
    still_running(&fatal).await;
    rq[0].kill();
    let stopped = tokio::time::timeout(WAIT, fatal.wait_for(Option::is_some))
        .await
        .expect("the node is told to stop")
        .expect("the supervisor runs")
        .clone()
        .expect("why");
    assert_eq!(stopped.system, "rq");
}

#[tokio::test]
async fn the_node_stopping_on_purpose_is_no_failure() {
    let (supervisor, fatal) = Supervisor::start().await.expect("supervisor");
    let directory = Arc::new(Directory::new(&[demo_tenant()]).expect("demo"));
    let rq = Rq::spawn(directory, &supervisor).await.expect("rq");
    supervisor.stopping();
    rq.stop();
    until("rq stops", || children::<RqMsg>(&supervisor).is_empty()).await;
    still_running(&fatal).await;
}
