//! What a call adopted from a dead node does: it is found with no message of its own (its
//! timers only), probes its legs on from CSeq numbers above the dead node's, and is held,
//! resumed, transferred and hung up as it would have been where it began.

use std::time::{Duration, Instant};

use super::Desktop;
use super::support::peer::{Answering, Peer, answered_call, raw_phone, routed_in_dialog, sdp};
use super::support::store::Store;
use super::support::{DEMO_KEY, Server, log_in, with_key};
use switchboard_proto::voice as pb;
use switchboard_sip::{HeaderName, Method, Request, Response};

/// The highest CSeq number among `requests`.
fn top_cseq(requests: &[Request]) -> u32 {
    requests
        .iter()
        .filter_map(|r| r.headers.cseq().and_then(Result::ok).map(|c| c.seq))
        .max()
        .unwrap_or(0)
}

/// A re-INVITE from the SBC through the proxy in the dialog of `ok`, offering `body`.
fn sbc_reinvite(sbc: &Peer, ok: &Response, call_id: &str, cseq: u32, body: &str) -> String {
    let head = routed_in_dialog(sbc, ok, call_id, "INVITE", cseq);
    let head = head.trim_end_matches("Content-Length: 0\r\n\r\n");
    format!(
        "{head}Contact: <sip:sbc@127.0.0.2:{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        sbc.port(),
        body.len()
    )
}

/// The phone's own request within the dialog of `invite`, through the proxy that recorded
/// its route.
fn phone_in_dialog(phone: &Peer, invite: &Request, method: &str, cseq: u32, extra: &str) -> String {
    let route = invite
        .headers
        .get(&HeaderName::RecordRoute)
        .expect("Record-Route");
    phone.in_dialog(invite, method, cseq, &format!("Route: {route}\r\n{extra}"))
}

/// The node of `nodes` running one call.
fn running_one(nodes: &[Server]) -> usize {
    assert!(
        super::support::eventually(Duration::from_secs(5), || nodes
            .iter()
            .any(|n| super::failover::calls_on(n) == 1.0)),
        "a node runs the call"
    );
    usize::from(super::failover::calls_on(&nodes[0]) != 1.0)
}

/// A call through a proxy to 1001, probed every second, whose node is killed (SIGKILL): the
/// other node adopts it with no message of its own (the sweep), and probes both legs on,
/// above the CSeq numbers the dead node's probes reached. Then the SBC holds and resumes it,
/// the phone transfers it (a blind REFER) to 1002, and the SBC hangs up: each request reaches
/// its far end, and the call ends once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_adopted_on_its_timers_is_held_resumed_transferred_and_hung_up() {
    let store = Store::db(25);
    let (proxy, mut nodes) =
        super::proxy::proxy_and_nodes_with(&store, 2, 300, "[calls]\nprobe_secs = 1\n");
    // Agent a1001 is logged in at 1001, its desktop on the proxy's gRPC.
    let channel = super::support::grpc(&proxy).await;
    log_in(&mut Desktop::new(channel.clone()), &["1001"], false).await;
    let sbc = Peer::sbc(&proxy);
    let (p1001, p1002) = (raw_phone(&proxy, "1001"), raw_phone(&proxy, "1002"));
    let call_id = "adopted-call";
    let (invite, ok) = answered_call(&proxy, &sbc, &p1001, "1001", call_id);
    sbc.send(&routed_in_dialog(&sbc, &ok, call_id, "ACK", 1));
    let began = Instant::now();
    let (sbc, p1001, p1002) = (
        Answering::start(sbc),
        Answering::start(p1001),
        Answering::start(p1002),
    );
    let dead = running_one(&nodes);
    // The dead node's probes raise the legs' CSeq numbers past what its snapshot holds.
    assert!(
        super::support::eventually(Duration::from_secs(5), || p1001
            .requests(began, Method::Options)
            .len()
            >= 2),
        "the phone is probed"
    );
    nodes[dead].kill();
    let killed = Instant::now();
    let before = (
        top_cseq(&sbc.requests(began, Method::Options)),
        top_cseq(&p1001.requests(began, Method::Options)),
    );
    let adopter = &nodes[1 - dead];
    assert!(
        super::support::eventually(Duration::from_secs(15), || adopter
            .log_text()
            .contains("call adopted")),
        "the call is adopted with no message of its own\n{}",
        adopter.log_text()
    );
    // The adopter probes both legs, with numbers above the dead node's.
    for (peer, was, who) in [(&sbc, before.0, "SBC"), (&p1001, before.1, "phone")] {
        assert!(
            super::support::eventually(Duration::from_secs(5), || !peer
                .requests(killed, Method::Options)
                .is_empty()),
            "the adopter probes the {who}"
        );
        let now = top_cseq(&peer.requests(killed, Method::Options));
        assert!(now > was, "the {who}'s probes go on above {was}: {now}");
    }

    // Held, and resumed, by the SBC.
    for (cseq, direction) in [(2, "sendonly"), (3, "sendrecv")] {
        let asked = Instant::now();
        let offer = format!("{}a={direction}\r\n", sdp(4000));
        sbc.sender()
            .send(&sbc_reinvite(sbc.sender(), &ok, call_id, cseq, &offer));
        let reinvite = p1001
            .request(asked, Method::Invite, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("the phone is offered {direction}\n{}", adopter.log_text()));
        assert!(String::from_utf8_lossy(&reinvite.body).contains(direction));
        p1001.sender().answer(&reinvite, 200, Some(&sdp(5000)));
        let answered = sbc
            .final_response(asked, Method::Invite, Duration::from_secs(5))
            .expect("the SBC's re-INVITE is answered");
        assert_eq!(answered.status, 200, "{direction}");
        sbc.sender()
            .send(&routed_in_dialog(sbc.sender(), &ok, call_id, "ACK", cseq));
        p1001
            .request(asked, Method::Ack, Duration::from_secs(5))
            .expect("the phone's answer is acknowledged");
    }

    // The agent holds and retrieves the call from the desktop: the caller is offered the
    // session the dead node last sent it, on hold and then not.
    let call = store
        .call_events()
        .iter()
        .find_map(|(_, e)| e["callId"].as_str().map(str::to_owned))
        .expect("the call's id");
    let mut calls = pb::calls_client::CallsClient::new(channel);
    for (what, direction) in [("hold", "a=inactive"), ("retrieve", "a=sendrecv")] {
        let asked = Instant::now();
        // Asked again while the last ACK is still on its way ("try again").
        for attempt in 0.. {
            let request = with_key(
                DEMO_KEY,
                pb::CallRequest {
                    agent_id: "a1001".into(),
                    call_id: call.clone(),
                    ..Default::default()
                },
            );
            let done = match what {
                "hold" => calls.hold(request).await,
                _ => calls.retrieve(request).await,
            };
            match done {
                Ok(_) => break,
                Err(e) if e.message().contains("try again") && attempt < 20 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{what}: {e}\n{}", adopter.log_text()),
            }
        }
        // Each party is offered what it was last sent, set on hold and back.
        for (peer, sent, port, who) in [(&sbc, 5000, 4000, "SBC"), (&p1001, 4000, 5000, "phone")] {
            let offer = peer
                .request(asked, Method::Invite, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("the {who} is offered the {what}"));
            let body = String::from_utf8_lossy(&offer.body).into_owned();
            assert!(
                body.contains(direction) && body.contains(&format!("m=audio {sent}")),
                "{what}: {body}"
            );
            peer.sender().answer(&offer, 200, Some(&sdp(port)));
        }
        // The re-offer is over once both answers are acknowledged: a REFER sent before
        // that finds the call between two sessions and is refused (NOTIFY 503), as it
        // would be from a phone.
        for (peer, who) in [(&sbc, "SBC"), (&p1001, "phone")] {
            peer.request(asked, Method::Ack, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("the {who}'s answer to the {what} is acknowledged"));
        }
    }

    assert!(
        super::support::eventually(Duration::from_secs(5), || store
            .call_events()
            .iter()
            .any(|(k, _)| k == "Retrieved")),
        "the call is retrieved"
    );

    // The phone transfers the caller to 1002 (a blind REFER).
    let asked = Instant::now();
    p1001.sender().send(&phone_in_dialog(
        p1001.sender(),
        &invite,
        "REFER",
        20,
        "Refer-To: <sip:1002@demo.local>\r\n",
    ));
    let accepted = p1001
        .final_response(asked, Method::Refer, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the REFER is answered\n{}", adopter.log_text()));
    assert_eq!(accepted.status, 202);
    p1001
        .request(asked, Method::Bye, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the transferring phone is hung up\n{}", adopter.log_text()));
    let rung = p1002
        .request(asked, Method::Invite, Duration::from_secs(5))
        .expect("1002 rings");
    p1002.sender().answer(&rung, 200, Some(&sdp(6000)));
    let offered = sbc
        .request(asked, Method::Invite, Duration::from_secs(5))
        .expect("the caller is offered 1002");
    assert!(String::from_utf8_lossy(&offered.body).contains("m=audio 6000"));
    sbc.sender().answer(&offered, 200, Some(&sdp(4000)));
    p1002
        .request(asked, Method::Ack, Duration::from_secs(5))
        .expect("1002 gets the caller's answer");

    // The SBC hangs up: 1002 hears it.
    let asked = Instant::now();
    sbc.sender()
        .send(&routed_in_dialog(sbc.sender(), &ok, call_id, "BYE", 4));
    let bye = sbc
        .final_response(asked, Method::Bye, Duration::from_secs(5))
        .expect("the BYE is answered");
    assert_eq!(bye.status, 200);
    p1002
        .request(asked, Method::Bye, Duration::from_secs(5))
        .expect("1002 is hung up");
    let closing: Vec<String> = store
        .call_events()
        .into_iter()
        .filter(|(k, _)| k == "Released")
        .map(|(_, e)| e["cause"].to_string())
        .collect();
    assert_eq!(closing.len(), 1, "{closing:?}");
}

/// An offer of many codecs: some 1,700 bytes of INVITE, more than UDP safely carries.
fn large_offer() -> String {
    let mut offer = sdp(4000);
    for pt in 96..126 {
        offer.push_str(&format!(
            "a=rtpmap:{pt} codec-{pt}/48000/2\r\na=fmtp:{pt} x=1\r\n"
        ));
    }
    offer
}

/// The proxy and nodes speak TCP for requests over 1,300 bytes: a call set up with a large
/// INVITE runs on a node reached over TCP, which is killed (SIGKILL); the SBC's large
/// re-INVITE (sent again each second, as a UDP client would) goes to the other node over TCP,
/// which adopts the call and offers the phone the hold over TCP through the proxy; the
/// answer reaches the SBC on the caller's leg, over TCP to the proxy as well.
#[test]
fn a_call_on_tcp_between_proxy_and_node_fails_over_with_large_requests() {
    let store = Store::db(26);
    let (proxy, mut nodes) = super::proxy::proxy_and_nodes_with(&store, 2, 300, "");
    let sbc = Peer::sbc(&proxy);
    let phone = raw_phone(&proxy, "1001");
    let call_id = "large-failover";
    let invite =
        super::support::peer::sbc_invite(sbc.port(), &proxy, "1001", call_id, &large_offer());
    assert!(invite.len() > 1_300, "{}", invite.len());
    sbc.send(&invite);
    let rung = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the phone rings");
    phone.answer(&rung, 200, Some(&sdp(5000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("answered");
    assert_eq!(ok.status, 200);
    sbc.send(&routed_in_dialog(&sbc, &ok, call_id, "ACK", 1));
    let (sbc, phone) = (Answering::start(sbc), Answering::start(phone));
    let dead = running_one(&nodes);
    nodes[dead].kill();
    let adopter_port = nodes[1 - dead].sip.port().to_string();

    let hold = format!("{}a=sendonly\r\n", large_offer());
    let reinvite = sbc_reinvite(sbc.sender(), &ok, call_id, 2, &hold);
    assert!(reinvite.len() > 1_300, "{}", reinvite.len());
    let asked = Instant::now();
    let mut answered = None;
    for _ in 0..15 {
        sbc.sender().send(&reinvite);
        if let Some(offered) = phone.request(asked, Method::Invite, Duration::from_secs(1)) {
            // Through the proxy (UDP to the phone), from the adopter over TCP.
            let vias = offered
                .headers
                .get_all(&HeaderName::Via)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            assert!(
                vias.contains(&format!("SIP/2.0/TCP 127.0.0.1:{adopter_port}")),
                "{vias}"
            );
            assert!(String::from_utf8_lossy(&offered.body).contains("a=sendonly"));
            phone.sender().answer(&offered, 200, Some(&sdp(5000)));
            answered = sbc.final_response(asked, Method::Invite, Duration::from_secs(5));
            break;
        }
    }
    let answered = answered.unwrap_or_else(|| {
        panic!(
            "the hold is answered through the adopter\n{}",
            nodes[1 - dead].log_text()
        )
    });
    assert_eq!(answered.status, 200);
    sbc.sender()
        .send(&routed_in_dialog(sbc.sender(), &ok, call_id, "ACK", 2));
    phone
        .request(asked, Method::Ack, Duration::from_secs(5))
        .expect("the phone's answer is acknowledged");

    let asked = Instant::now();
    sbc.sender()
        .send(&routed_in_dialog(sbc.sender(), &ok, call_id, "BYE", 3));
    let bye = sbc
        .final_response(asked, Method::Bye, Duration::from_secs(5))
        .expect("the BYE is answered");
    assert_eq!(bye.status, 200);
    phone
        .request(asked, Method::Bye, Duration::from_secs(5))
        .expect("the phone is hung up");
    let closing = store
        .call_events()
        .into_iter()
        .filter(|(k, _)| k == "Released")
        .count();
    assert_eq!(closing, 1);
    // A request of the call once it is over matches no snapshot: 481, once Redis says so.
    let asked = Instant::now();
    sbc.sender()
        .send(&routed_in_dialog(sbc.sender(), &ok, call_id, "BYE", 4));
    let stray = sbc
        .final_response(asked, Method::Bye, Duration::from_secs(5))
        .expect("the stray BYE is answered");
    assert_eq!(stray.status, 481);
}

/// A call still ringing when its node is killed (SIGKILL) cannot go on from its snapshot: the
/// node that takes it ends it cleanly, the phone's ringing CANCELed and the caller answered
/// 503 (its carrier may try elsewhere), with one Released saying why.
#[test]
fn a_call_ringing_when_its_node_dies_is_cancelled_and_refused_cleanly() {
    let store = Store::db(27);
    let (proxy, mut nodes) = super::proxy::proxy_and_nodes_with(&store, 2, 300, "");
    let sbc = Peer::sbc(&proxy);
    let phone = raw_phone(&proxy, "1001");
    let call_id = "ringing-failover";
    super::support::peer::ringing_call(&proxy, &sbc, &phone, "1001", call_id);
    assert!(
        super::support::eventually(Duration::from_secs(5), || store
            .call_events()
            .iter()
            .any(|(k, _)| k == "Ringing")),
        "the call rings"
    );
    let (sbc, phone) = (Answering::start(sbc), Answering::start(phone));
    let dead = running_one(&nodes);
    let killed = Instant::now();
    nodes[dead].kill();
    let cancel = phone
        .request(killed, Method::Cancel, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the phone stops ringing\n{}", nodes[1 - dead].log_text()));
    phone.sender().answer(&cancel, 200, None);
    let refused = sbc
        .final_response(killed, Method::Invite, Duration::from_secs(5))
        .expect("the caller is answered");
    assert_eq!(refused.status, 503);
    assert!(
        super::support::eventually(Duration::from_secs(5), || store
            .call_events()
            .iter()
            .any(|(k, e)| k == "Released" && e["cause"] == "unrecoverable")),
        "{:?}",
        store.call_events()
    );
}

/// A snapshot no call can be made of (unreadable: corrupt, or from a version that wrote
/// otherwise), left by a node that died: the request that finds it gets 481, and the call its
/// closing event, cause `unrecoverable`, counted; nothing panics, and its snapshot is gone.
#[test]
fn an_unreadable_snapshot_of_a_dead_nodes_call_ends_it_as_unrecoverable() {
    let store = Store::db(63);
    let server = super::node(&store, "");
    let mut conn = store.conn();
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(store.key("call:broken"))
        .arg("node")
        .arg("sbdead")
        .arg("gen")
        .arg(0)
        .arg("snap")
        .arg("{\"call\": \"broken\", \"legs\": [")
        .cmd("HSET")
        .arg(store.key("call-nodes"))
        .arg("broken")
        .arg("sbdead")
        .cmd("HSET")
        .arg(store.key("sipcalls"))
        .arg("broken-leg")
        .arg("broken")
        .query(&mut *conn)
        .expect("written");
    let sbc = Peer::sbc(&server);
    sbc.send(&format!(
        "BYE sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bKbroken\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551230000@127.0.0.2>;tag=sbc\r\n\
         To: <sip:1001@demo.local>;tag=lost\r\nCall-ID: broken-leg\r\nCSeq: 5 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        sip = server.sip,
        port = sbc.port()
    ));
    let answered = sbc
        .final_response(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the BYE is answered\n{}", server.log_text()));
    assert_eq!(answered.status, 481);
    assert!(
        super::support::eventually(Duration::from_secs(5), || store.call_events().iter().any(
            |(k, e)| k == "Released" && e["callId"] == "broken" && e["cause"] == "unrecoverable"
        )),
        "{:?}",
        store.call_events()
    );
    assert_eq!(
        super::support::metric(&server, "switchboard_calls_unrecoverable_total"),
        Some(1.0)
    );
    let left: bool = redis::cmd("EXISTS")
        .arg(store.key("call:broken"))
        .query(&mut *conn)
        .expect("read");
    assert!(!left, "the snapshot is gone");
}
