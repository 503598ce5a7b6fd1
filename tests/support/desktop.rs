//! A desktop as GWS is one, for the end-to-end tests: following the tenant's (or an agent's)
//! event stream over gRPC, and what the tests read of its events; with the SIP peers'
//! answers the desktop's requests call for.

use std::time::Duration;

use switchboard_proto::events::Payload;
use switchboard_proto::voice as pb;
use switchboard_sip::Method;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::peer::{Peer, sdp};
use super::with_key;

type Events = pb::events_client::EventsClient<Channel>;

pub type Seen = (&'static str, String, String, pb::StreamEvent);

/// Follows the tenant's (or an agent's) stream in the background.
pub async fn follow(
    channel: Channel,
    key: &str,
    agent: &str,
    cursor: &str,
) -> mpsc::Receiver<Seen> {
    let mut events = Events::new(channel);
    let mut stream = events
        .subscribe(with_key(
            key,
            pb::SubscribeRequest {
                agent_id: agent.into(),
                cursor: cursor.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("subscribed")
        .into_inner();
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let e = match stream.message().await {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(status) => {
                    eprintln!("event stream ended: {status:?}");
                    return;
                }
            };
            let (which, event) = match &e.change {
                Some(pb::stream_event::Change::AgentStateChanged(ev)) => ("agent", ev),
                Some(pb::stream_event::Change::DnStateChanged(ev)) => ("dn", ev),
                Some(pb::stream_event::Change::CallStateChanged(ev)) => ("call", ev),
                Some(pb::stream_event::Change::Error(ev)) => ("error", ev),
                None => continue,
            };
            let kind = event.kind.clone();
            if tx.send((which, kind, e.cursor.clone(), e)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The next `n` events within a few seconds each.
pub async fn take(rx: &mut mpsc::Receiver<Seen>, n: usize) -> Vec<Seen> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(8), rx.recv()).await {
            Ok(Some(seen)) => got.push(seen),
            _ => panic!(
                "{} of {n} events came: {:?}",
                got.len(),
                got.iter().map(|s| s.1.as_str()).collect::<Vec<_>>()
            ),
        }
    }
    got
}

/// Nothing more arrives for a moment.
pub async fn quiet(rx: &mut mpsc::Receiver<Seen>) {
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("unexpected event {} {}", extra.0, extra.1);
    }
}

pub fn kinds(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(|s| format!("{} {}", s.0, s.1)).collect()
}

/// The change a stream event carries, and its call or agent payload.
pub fn payload(seen: &Seen) -> &Payload {
    let event = match &seen.3.change {
        Some(
            pb::stream_event::Change::AgentStateChanged(e)
            | pb::stream_event::Change::DnStateChanged(e)
            | pb::stream_event::Change::CallStateChanged(e)
            | pb::stream_event::Change::Error(e),
        ) => e,
        None => panic!("an event"),
    };
    event.payload.as_ref().expect("a payload")
}

pub fn call_of(seen: &Seen) -> &switchboard_proto::events::CallThread {
    match payload(seen) {
        Payload::Call(c) => c,
        other => panic!("a call event, not {other:?}"),
    }
}

pub fn agent_of(seen: &Seen) -> &switchboard_proto::events::AgentState {
    match payload(seen) {
        Payload::Agent(a) => a,
        other => panic!("an agent event, not {other:?}"),
    }
}

/// `peer` answers the next `n` BYEs.
pub fn answer_byes(peer: &Peer, n: usize) {
    for _ in 0..n {
        let bye = peer
            .request(Method::Bye, Duration::from_secs(5))
            .expect("a BYE");
        peer.answer(&bye, 200, None);
    }
}

/// The next `n` INVITEs `peer` receives, each answered `200` with a session on `port`; the
/// re-INVITEs (with a To tag) and the new INVITEs apart.
pub fn answer_invites(peer: &Peer, n: usize, port: u16) -> Vec<switchboard_sip::Request> {
    (0..n)
        .map(|_| {
            let invite = peer
                .request(Method::Invite, Duration::from_secs(5))
                .expect("an INVITE");
            peer.answer(&invite, 200, Some(&sdp(port)));
            invite
        })
        .collect()
}
