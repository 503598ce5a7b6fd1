//! What a call adopted from a dead node does: it is found with no message of its own (its
//! timers only), probes its legs on from CSeq numbers above the dead node's, and is held,
//! resumed, transferred and hung up as it would have been where it began.

use std::time::{Duration, Instant};

use super::support::Server;
use super::support::peer::{Answering, Peer, answered_call, raw_phone, routed_in_dialog, sdp};
use super::support::store::Store;
use switchboard_sip::{HeaderName, Method, Request, Response};

/// The highest CSeq number among `requests`.
fn top_cseq(requests: &[Request]) -> u32 {
    requests
        .iter()
        .filter_map(|r| r.headers.cseq().and_then(Result::ok).map(|c| c.seq))
        .max()
        .unwrap_or(0)
}

/// A re-INVITE from the SBC through the proxy in the dialog of `ok`, offering `direction`.
fn sbc_reinvite(sbc: &Peer, ok: &Response, call_id: &str, cseq: u32, direction: &str) -> String {
    let body = format!("{}a={direction}\r\n", sdp(4000));
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
#[test]
fn a_call_adopted_on_its_timers_is_held_resumed_transferred_and_hung_up() {
    let store = Store::db(25);
    let (proxy, mut nodes) =
        super::proxy::proxy_and_nodes_with(&store, 2, 300, "[calls]\nprobe_secs = 1\n");
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
        sbc.sender()
            .send(&sbc_reinvite(sbc.sender(), &ok, call_id, cseq, direction));
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
        .expect("the transferring phone is hung up");
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
