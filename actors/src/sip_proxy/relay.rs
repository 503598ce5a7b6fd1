//! Relaying to remote cluster nodes: a proxy given `[cluster] nodes` forwards each call it
//! admits to the node [`forward`] picks, statefully (the edge's server transaction toward the
//! caller, a client transaction toward the node, a CANCEL answered here and sent on as the
//! proxy's own, a node that turns a call away as unavailable replaced by the next), and
//! passes the rest of the call's messages on by their routes; a node behind proxies takes the
//! admission a trusted proxy made.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use switchboard_sip::dialog::Dialog;
use switchboard_sip::transaction::{ClientEvent, ClientTransaction, TransactionKey, cancel_for};
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Message, Method, Request, Response};

use super::forward;
use super::{ProxyState, TxnId, send};
use crate::messages::sip_cluster::Origin;

/// A request forwarded statefully: the edge's server transaction toward the caller, a client
/// transaction toward the node.
pub(super) struct Relay {
    /// The caller's transaction (none for a CANCEL the proxy sends of its own).
    pub(super) server: Option<TxnId>,
    pub(super) client: ClientTransaction,
    pub(super) node: SocketAddr,
    /// How the request goes to the node (TCP when large, see [`forward::Forwarder::over_link`]).
    pub(super) transport: Transport,
    /// The request as forwarded, until its final response (its CANCEL is built from it).
    pub(super) forwarded: Option<Request>,
    /// The caller's request headers, to answer 408 with.
    pub(super) headers: Headers,
    pub(super) answered: bool,
    pub(super) scheduled: Option<(Instant, u64)>,
    /// A new call's: when the node must have said it has it (any response), or it is given
    /// up on for the next node.
    pub(super) deadline: Option<Instant>,
    /// The INVITE of a call given up on at this node: a 2xx that comes late is ACKed and
    /// hung up with it, the call going on at the next node.
    pub(super) given_up: Option<Request>,
}

impl ProxyState {
    /// A proxy that forwards calls: a message it passes on is sent and gone (`None`); any
    /// other is handed back for the edge's usual handling.
    pub(super) fn forward(
        &mut self,
        message: Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Option<Message> {
        let hop = match message {
            Message::Response(response) => {
                // Only a response with this proxy's Via on top is its to pass on.
                let Some(branch) = self.forwarder.our_branch(&response) else {
                    return Some(Message::Response(response));
                };
                let cancel = response
                    .headers
                    .cseq()
                    .and_then(Result::ok)
                    .is_some_and(|c| c.method == Method::Cancel);
                let id = if cancel {
                    format!("{branch};cancel")
                } else {
                    branch
                };
                if let Some(relay) = self.relays.get_mut(&id) {
                    relay.client.receive(response, now);
                    self.flush_relay(&id, now);
                    return None;
                }
                if self.forwarder.probe_answered(&id, response.status, now) {
                    return None;
                }
                // A request passed on by Route (or a 2xx again after its relay ended): back by
                // Via. A probe's late answer has no Via below and goes no further.
                forward::by_via(response)?
            }
            Message::Request(request) => {
                let routed = request.headers.contains(&HeaderName::Route);
                let follows_invite =
                    matches!(request.method, Method::Cancel | Method::Ack) && !routed;
                let relayed_invite = || {
                    let key = TransactionKey::for_request(&request)?.of_invite();
                    let invite = TxnId::new(key, source, transport);
                    let branch = self.relay_of.get(&invite)?.clone();
                    Some((invite, branch))
                };
                if follows_invite && let Some((invite, branch)) = relayed_invite() {
                    // The proxy holds the INVITE's transaction: its ACK ends there, its
                    // CANCEL is answered here and sent on as the proxy's own.
                    if request.method == Method::Cancel {
                        self.cancel_relay(&request, source, &invite, &branch, now);
                        return None;
                    }
                    return Some(Message::Request(request));
                }
                let passed_on = if routed {
                    let from_node = self.forwarder.is_node(source);
                    self.forwarder.routed(request, from_node)
                } else if follows_invite {
                    self.forwarder.follow_invite(request)
                } else {
                    return Some(Message::Request(request));
                };
                match passed_on {
                    Ok(hop) => hop,
                    Err(request) => return Some(Message::Request(*request)),
                }
            }
        };
        send(&self.endpoint, hop.transport, hop.dest, hop.bytes);
        None
    }

    pub(super) fn start_relay(
        &mut self,
        id: String,
        server: Option<TxnId>,
        node: SocketAddr,
        out: Request,
        headers: Headers,
        now: Instant,
    ) {
        let (transport, out) = self.forwarder.over_link(out);
        let reliable = transport.is_reliable();
        let client = ClientTransaction::new(out.clone(), reliable, self.config.timers, now);
        let deadline = (out.method == Method::Invite && server.is_some())
            .then(|| now + self.config.forward_timeout);
        self.relays.insert(
            id.clone(),
            Relay {
                server,
                client,
                node,
                transport,
                forwarded: Some(out),
                headers,
                answered: false,
                scheduled: None,
                deadline,
                given_up: None,
            },
        );
        self.flush_relay(&id, now);
    }

    /// A CANCEL of a forwarded INVITE: 200 here, and the proxy's own CANCEL to the node
    /// while the INVITE has no final response (RFC 3261 16.10).
    pub(super) fn cancel_relay(
        &mut self,
        cancel: &Request,
        source: SocketAddr,
        invite: &TxnId,
        branch: &str,
        now: Instant,
    ) {
        let ok = Response::to_request(&cancel.headers, 200);
        send(&self.endpoint, invite.transport, source, ok.to_bytes());
        let Some(relay) = self.relays.get(branch) else {
            return;
        };
        if relay.answered || self.relays.contains_key(&format!("{branch};cancel")) {
            return;
        }
        let Some(forwarded) = relay.forwarded.as_ref() else {
            return;
        };
        let out = cancel_for(forwarded);
        let node = relay.node;
        // The proxy's own CANCEL answers no one: no caller's headers to keep.
        let none = Headers::with_capacity(0);
        self.start_relay(format!("{branch};cancel"), None, node, out, none, now);
    }

    /// Sends what a relay's client transaction queued, passes its responses to the caller's
    /// transaction, answers 408 when the node never did, and forgets it once over.
    pub(super) fn flush_relay(&mut self, id: &str, now: Instant) {
        let Some(relay) = self.relays.get_mut(id) else {
            return;
        };
        while let Some(bytes) = relay.client.poll_transmit() {
            send(&self.endpoint, relay.transport, relay.node, bytes);
        }
        let mut events = Vec::new();
        while let Some(event) = relay.client.poll_event() {
            events.push(event);
        }
        let (server, headers, node) = (relay.server.clone(), relay.headers.clone(), relay.node);
        let mut terminated = false;
        for event in events {
            match event {
                ClientEvent::Response(r) => {
                    let Some(server) = &server else {
                        if (200..300).contains(&r.status) {
                            self.hang_up_late_answer(id, &r);
                        }
                        continue;
                    };
                    if let Some(relay) = self.relays.get_mut(id) {
                        relay.deadline = None;
                    }
                    let already = self.relays.get(id).is_some_and(|r| r.answered);
                    if !already
                        && r.status == 503
                        && r.headers.get(&HeaderName::RetryAfter).is_some()
                        && self.forward_elsewhere(id, server, node, "unavailable (503)", now)
                    {
                        continue;
                    }
                    if r.status >= 200
                        && let Some(relay) = self.relays.get_mut(id)
                    {
                        relay.answered = true;
                        relay.forwarded = None;
                    }
                    if already && (200..300).contains(&r.status) {
                        // A 2xx again (the node waits for the caller's ACK): straight on.
                        if let Some(hop) = forward::by_via(r) {
                            send(&self.endpoint, hop.transport, hop.dest, hop.bytes);
                        }
                    } else {
                        self.respond(server, &forward::popped(r), now);
                    }
                }
                ClientEvent::TimedOut | ClientEvent::TransportError => {
                    if let Some(server) = &server {
                        tracing::warn!(%node, "cluster node did not answer a forwarded request: 408");
                        self.respond(server, &Response::to_request(&headers, 408), now);
                    }
                }
                ClientEvent::Terminated => terminated = true,
            }
        }
        let Some(relay) = self.relays.get_mut(id) else {
            return;
        };
        if let Some(old) = relay.scheduled.take() {
            self.relay_timers.remove(&old);
        }
        if terminated {
            if let Some(server) = &relay.server {
                self.relay_of.remove(server);
            }
            self.relays.remove(id);
            return;
        }
        let due = match (relay.client.poll_timeout(), relay.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = due {
            self.timer_seq += 1;
            relay.scheduled = Some((at, self.timer_seq));
            self.relay_timers
                .insert((at, self.timer_seq), id.to_owned());
        }
    }

    /// A node cannot take a forwarded INVITE (`why`): it turned it away as unavailable (503
    /// with Retry-After: its event spool past the high-water mark, or overloaded, where a 503
    /// of the call's own, no gateway say, has none), or it stayed silent. The node takes no new
    /// calls until a probe finds it taking them again, and the INVITE goes on to the next
    /// node, unless none is left. Whether it went.
    pub(super) fn forward_elsewhere(
        &mut self,
        id: &str,
        server: &TxnId,
        node: SocketAddr,
        why: &str,
        now: Instant,
    ) -> bool {
        self.forwarder.refused(node, now);
        let Some(relay) = self.relays.get_mut(id) else {
            return false;
        };
        let Some(forwarded) = relay
            .forwarded
            .as_ref()
            .filter(|r| r.method == Method::Invite)
        else {
            return false;
        };
        let Some(next) = self.forwarder.node_for(forwarded) else {
            return false;
        };
        // This relay ends toward its node (the client transaction acknowledges the 503) and
        // answers the caller no more; the next one does.
        let forwarded = relay.forwarded.take().expect("checked above");
        relay.answered = true;
        relay.server = None;
        let headers = relay.headers.clone();
        tracing::info!(%node, %next, "cluster node {why}: call forwarded to the next node");
        let (out, branch) = self.forwarder.again(forwarded, id);
        self.relay_of.insert(server.clone(), branch.clone());
        self.start_relay(branch, Some(server.clone()), next, out, headers, now);
        true
    }

    /// A node forwarded a new call said nothing within the forward timeout (dead, paused,
    /// cut off): the call is cancelled there and goes on to the next node, which takes the
    /// node's place in the choice of new calls until a probe finds it answering again. With
    /// no other node, the call keeps waiting on this one.
    pub(super) fn give_up_on_node(&mut self, id: &str, now: Instant) {
        let Some(relay) = self.relays.get_mut(id) else {
            return;
        };
        let (Some(server), Some(forwarded)) = (relay.server.clone(), relay.forwarded.clone())
        else {
            return;
        };
        let node = relay.node;
        let why = format!(
            "did not take a new call in time ({} ms; cancelled there)",
            self.config.forward_timeout.as_millis()
        );
        if !self.forward_elsewhere(id, &server, node, &why, now) {
            tracing::warn!(%node, "cluster node slow to take a new call, and no other node: waiting on it");
            return;
        }
        if let Some(relay) = self.relays.get_mut(id) {
            relay.given_up = Some(forwarded.clone());
        }
        // The proxy's own CANCEL answers no one: no caller's headers to keep.
        let none = Headers::with_capacity(0);
        self.start_relay(
            format!("{id};cancel"),
            None,
            node,
            cancel_for(&forwarded),
            none,
            now,
        );
    }

    /// A 2xx from a node a call was given up on, after it went on to the next node: the
    /// proxy ACKs it and hangs that dialog up, so that one Call-ID is never two calls.
    fn hang_up_late_answer(&mut self, id: &str, ok: &Response) {
        let Some(relay) = self.relays.get(id) else {
            return;
        };
        let Some(invite) = &relay.given_up else {
            return;
        };
        let Ok(mut dialog) = Dialog::as_uac(invite, ok) else {
            return;
        };
        let node = relay.node;
        tracing::warn!(%node, "a late answer from a node a call was given up on: ACKed and hung up");
        let seq = dialog.local_seq();
        let (ack, bye) = (dialog.ack(seq), dialog.request(Method::Bye));
        for (mut request, branch) in [(ack, format!("{id}a")), (bye, format!("{id}b"))] {
            // Straight to the node, which is the dialog's other end: no route to follow.
            request.headers.remove(&HeaderName::Route);
            self.forwarder.stamp_via(&mut request, &branch);
            let (transport, request) = self.forwarder.over_link(request);
            send(&self.endpoint, transport, node, request.to_bytes());
        }
    }

    /// The admission a trusted proxy made of a call it forwarded here, if it did.
    pub(super) fn admitted_by_proxy(
        &self,
        request: &Request,
        source: SocketAddr,
    ) -> Option<(Arc<crate::tenant::Tenant>, Origin)> {
        let text = request
            .headers
            .get(&HeaderName::Other(forward::ADMITTED.into()))?;
        if !self.config.trusted_proxies.contains(&source) {
            tracing::warn!(%source, "call admission claimed by an untrusted source: ignored");
            return None;
        }
        let (tenant, origin) = text.split_once(' ')?;
        let tenant = self.directory.tenants().find(|t| t.name == tenant)?.clone();
        Some((tenant, Origin::parse(origin)?))
    }
}
