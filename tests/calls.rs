//! Calls through the core with real SIP peers: SIPp as the carrier's SBC (on 127.0.0.2, the
//! demo trunk's address) and SIPp phones registered on extensions. What the peers see on the
//! wire decides whether SIPp passes; the call thread's events are read back from Redis.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::peer::{
    Peer, answered_call, cancel, raw_phone, routed_in_dialog, sbc_in_dialog, sbc_invite, sdp,
};
use support::sipp::{
    answering_phone, phone_1002_dials, register, sbc_once, scenario, sipp_errors, wait,
};
use support::{Server, call_events, free_port, redis};
use switchboard_sip::{HeaderName, Message, Method, Response};

/// Waits until the stream holds `n` events.
fn events_within(
    conn: &mut redis::Connection,
    n: usize,
    within: Duration,
) -> Vec<(String, serde_json::Value)> {
    let end = Instant::now() + within;
    loop {
        let events = call_events(conn);
        if events.len() >= n || Instant::now() > end {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kinds(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn an_sbc_call_reaches_a_phone_is_held_resumed_and_hung_up() {
    let url = support::redis_db(6);
    let server = Server::start(&["--redis", &url]);
    let (mut conn, events) = sbc_holds_a_call(&server, &url, "1001", &[]);
    let (_, released) = &events[4];
    assert_eq!(released["cause"], "caller-hangup");
    assert_eq!(released["origin"], "trunk:carrier");
    assert_eq!(released["dnis"], "1001");
    let thread = &events[0].1["threadId"];
    assert!(events.iter().all(|(_, e)| &e["threadId"] == thread));
    assert_eq!(
        support::parties(released),
        [("origination", "+15551230000"), ("destination", "1001")]
    );
    // The snapshot of the call was there while it lasted and is gone with it.
    let snapshots: Vec<String> = redis::cmd("KEYS")
        .arg("sb:{demo}:call:*")
        .query(&mut conn)
        .expect("keys");
    assert!(snapshots.is_empty(), "{snapshots:?}");
    // And the index that finds it by the SIP Call-IDs of its legs, and the tenant's list of
    // live calls.
    let index: usize = redis::cmd("HLEN")
        .arg("sb:{demo}:sipcalls")
        .query(&mut conn)
        .expect("hlen");
    assert_eq!(index, 0);
    let live: usize = redis::cmd("HLEN")
        .arg("sb:{demo}:call-nodes")
        .query(&mut conn)
        .expect("hlen");
    assert_eq!(live, 0);
    // So is the counter that numbered the thread's events.
    let counter = format!(
        "sb:{{demo}}:seq:demo:{}",
        thread.as_str().expect("thread id")
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(&counter)
        .query(&mut conn)
        .expect("exists");
    assert!(!exists, "{counter} outlived its thread");
}

/// A SIPp SBC (sbc_hold.xml, with `sipp_args`) calls a SIPp phone registered on `dn`, which
/// answers; the SBC holds, resumes and hangs up. Both succeed, and the call's thread reads
/// Ringing, Established, Held, Retrieved, Released; its events are returned.
fn sbc_holds_a_call(
    server: &Server,
    url: &str,
    dn: &str,
    sipp_args: &[&str],
) -> (redis::Connection, Vec<(String, serde_json::Value)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let phone_port = free_port();
    register(server, dir.path(), dn, phone_port);
    let mut phone = answering_phone(dir.path(), dn, "127.0.0.1", phone_port);
    let mut extra = vec!["-timeout", "20s"];
    extra.extend_from_slice(sipp_args);
    let sbc = sbc_once(dir.path(), server, &scenario("sbc_hold.xml"), dn, &extra)
        .status()
        .expect("sipp runs");
    let phone_status = wait(&mut phone, Duration::from_secs(10));
    assert!(
        sbc.success() && phone_status.success(),
        "sbc {sbc}, phone {phone_status}\n{}\n{}",
        sipp_errors(dir.path()),
        server.log_text()
    );
    let mut conn = redis(url);
    let events = events_within(&mut conn, 5, Duration::from_secs(5));
    assert_eq!(
        kinds(&events),
        ["Ringing", "Established", "Held", "Retrieved", "Released"],
        "{events:#?}"
    );
    (conn, events)
}

/// The same call with the SBC on TCP (one connection, as SBCs keep): every response and the
/// core's own requests to the SBC (the re-INVITE relays, the 200s) travel on that connection,
/// with no retransmission of the 2xx (RFC 3261 17.2.1: reliable transport).
#[test]
fn an_sbc_on_tcp_holds_resumes_and_hangs_up_a_call() {
    let url = support::redis_db(2);
    let server = Server::start(&["--redis", &url]);
    let (_, events) = sbc_holds_a_call(&server, &url, "1012", &["-t", "t1"]);
    assert_eq!(events[4].1["cause"], "caller-hangup");
}

/// 1002 calls `number` (see [`phone_1002_dials`]) and `callee` answers; both SIPp runs must
/// pass. The call's events: Dialing, Ringing, Established, Released; the last is returned.
fn call_answered_by(
    server: &Server,
    url: &str,
    dir: &Path,
    mut callee: Child,
    number: &str,
) -> serde_json::Value {
    let caller = phone_1002_dials(server, dir, number);
    let callee_status = wait(&mut callee, Duration::from_secs(10));
    assert!(
        caller.success() && callee_status.success(),
        "caller {caller}, callee {callee_status}\n{}\n{}",
        sipp_errors(dir),
        server.log_text()
    );
    let mut conn = redis(url);
    let events = events_within(&mut conn, 4, Duration::from_secs(5));
    assert_eq!(
        kinds(&events),
        ["Dialing", "Ringing", "Established", "Released"],
        "{events:#?}"
    );
    events[3].1.clone()
}

#[test]
fn a_phone_calls_another_phone() {
    let url = support::redis_db(7);
    let server = Server::start(&["--redis", &url]);
    let dir = tempfile::tempdir().expect("temp dir");
    let phone_port = free_port();
    register(&server, dir.path(), "1003", phone_port);
    let callee = answering_phone(dir.path(), "1003", "127.0.0.1", phone_port);
    let released = call_answered_by(&server, &url, dir.path(), callee, "1003");
    assert_eq!(released["origin"], "dn:1002");
    assert_eq!(released["cause"], "caller-hangup");
    assert_eq!(released["parties"][0]["dn"], "1002");
    assert_eq!(released["parties"][1]["dn"], "1003");
}

#[test]
fn a_phone_calls_out_through_the_trunk() {
    let url = support::redis_db(8);
    let server = Server::start(&["--redis", &url]);
    let dir = tempfile::tempdir().expect("temp dir");
    // The carrier's gateway of the demo trunk: 127.0.0.2:5070.
    let carrier = answering_phone(dir.path(), "carrier", "127.0.0.2", 5070);
    // 9 takes a line: the carrier is asked for the rest of the number.
    let released = call_answered_by(&server, &url, dir.path(), carrier, "915551239999");
    assert_eq!(released["parties"][1]["dn"], "15551239999");
    assert!(
        released["parties"][1]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("sip:15551239999@127.0.0.2:5070")),
        "{released}"
    );
}

/// A raw SIP peer on a UDP socket: the SBC on 127.0.0.2, or a phone.
/// The ACK of a non-2xx final response to `sbc_invite`.
fn ack_failure(port: u16, server: &Server, number: &str, call_id: &str, r: &Response) -> String {
    let to = r.headers.get(&HeaderName::To).expect("To");
    format!(
        "ACK sip:{number}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.2>;tag=sbc\r\n\
         To: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip,
    )
}

#[test]
fn calls_that_cannot_be_put_through_get_their_status_and_say_why() {
    let url = support::redis_db(9);
    let server = Server::start(&["--redis", &url]);
    let sbc = Peer::sbc(&server);
    let port = sbc.port();
    let cases = [
        ("5555", sdp(4000), 404, "unknown-number"),
        ("10", sdp(4000), 484, "incomplete-number"),
        ("1005", sdp(4000), 480, "not-registered"),
        (
            "1001",
            "v=0\r\nthis is not SDP\r\n".to_owned(),
            488,
            "bad-sdp",
        ),
    ];
    for (i, (number, body, status, _)) in cases.iter().enumerate() {
        let call_id = format!("bad{i}");
        sbc.send(&sbc_invite(port, &server, number, &call_id, body));
        let r = sbc
            .final_response(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{number}: no answer\n{}", server.log_text()));
        assert_eq!(r.status, *status, "{number}");
        if *status == 488 {
            assert!(
                r.headers
                    .get(&HeaderName::Warning)
                    .is_some_and(|w| w.contains("SDP"))
            );
        }
        sbc.send(&ack_failure(port, &server, number, &call_id, &r));
    }
    // A request within a dialog that does not exist.
    let bye = format!(
        "BYE sip:1001@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bKnodialog\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.2>;tag=sbc\r\n\
         To: <sip:1001@{sip}>;tag=gone\r\nCall-ID: nodialog\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip
    );
    sbc.send(&bye);
    assert_eq!(
        sbc.final_response(Duration::from_secs(5)).map(|r| r.status),
        Some(481)
    );

    let mut conn = redis(&url);
    let events = events_within(&mut conn, cases.len(), Duration::from_secs(5));
    // Each call is a thread of its own: their events keep order per thread only.
    let mut causes: Vec<(String, &str, &str, u64)> = events
        .iter()
        .map(|(k, e)| {
            (
                e["dnis"].as_str().unwrap_or("").to_owned(),
                k.as_str(),
                e["cause"].as_str().unwrap_or(""),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    causes.sort();
    let mut expected: Vec<(String, &str, &str, u64)> = cases
        .iter()
        .map(|(number, _, status, cause)| {
            ((*number).to_owned(), "Released", *cause, u64::from(*status))
        })
        .collect();
    expected.sort();
    assert_eq!(causes, expected);
}

/// A phone on 1004, registered from its own socket, which the test drives by hand.
const FAST_TIMERS: &str = "[sip]\nt1_ms = 50\n[calls]\nprobe_secs = 1\n";

#[test]
fn a_caller_that_never_acks_gets_the_2xx_until_64_t1_then_a_bye() {
    let url = support::redis_db(10);
    let server = Server::start_with_config(Some(FAST_TIMERS), &["--redis", &url]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1004");
    let (_, answer) = answered_call(&server, &sbc, &phone, "1004", "noack");
    // No ACK from the SBC: the 200 comes again, and at 64*T1 (3.2 s) the call ends.
    let mut retransmissions = 0;
    let bye = loop {
        match sbc.next(Duration::from_secs(6)) {
            Some(Message::Response(r)) if r.status == 200 => retransmissions += 1,
            Some(Message::Request(r)) if r.method == Method::Bye => break r,
            Some(_) => {}
            None => panic!("no BYE for the caller\n{}", server.log_text()),
        }
    };
    assert!(retransmissions >= 3, "{retransmissions} retransmissions");
    let ok = Response::to_request(&bye.headers, 200);
    sbc.send_bytes(&ok.to_bytes());
    // The phone's 2xx is ACKed, then it gets its BYE too.
    assert!(phone.request(Method::Ack, Duration::from_secs(2)).is_some());
    let bye = phone
        .request(Method::Bye, Duration::from_secs(2))
        .expect("the phone's BYE");
    phone.answer(&bye, 200, None);
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 3, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Ringing", "Established", "Released"]);
    assert_eq!(events[2].1["cause"], "no-ack");
    no_calls_left(&server, Duration::from_secs(8));
    // A request of the call after it is gone reaches what was its shard, which hands it back
    // to the edge: no dialog is left for it.
    sbc.send(&sbc_in_dialog(
        &sbc, &server, &answer, "noack", "BYE", 3, "",
    ));
    let late = sbc.final_response(Duration::from_secs(5));
    assert_eq!(late.map(|r| r.status), Some(481), "{}", server.log_text());
}

#[test]
fn a_phone_that_vanishes_mid_call_ends_it_on_both_legs() {
    let url = support::redis_db(11);
    let server = Server::start_with_config(Some(FAST_TIMERS), &["--redis", &url]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1006");
    let (_, ok) = answered_call(&server, &sbc, &phone, "1006", "vanish");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "vanish", "ACK", 1, ""));
    assert!(phone.request(Method::Ack, Duration::from_secs(2)).is_some());
    // While the call lasts, Redis holds what another node needs to finish it: both legs.
    // (Call state writes it after the call moves on, so it is waited for.)
    let mut conn = redis(&url);
    let end = Instant::now() + Duration::from_secs(5);
    let snapshot = loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("sb:{demo}:call:*")
            .query(&mut conn)
            .expect("keys");
        assert!(keys.len() <= 1, "{keys:?}");
        let text: Option<String> = match keys.first() {
            Some(key) => redis::cmd("HGET")
                .arg(key)
                .arg("snap")
                .query(&mut conn)
                .expect("hget"),
            None => None,
        };
        let snapshot: serde_json::Value = text
            .map(|t| serde_json::from_str(&t).expect("JSON"))
            .unwrap_or_default();
        if snapshot["state"] == "Established" || Instant::now() > end {
            break snapshot;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(snapshot["state"], "Established", "{snapshot}");
    let legs = snapshot["legs"].as_array().expect("legs");
    assert_eq!(legs[0]["callId"], "vanish");
    assert_eq!(legs[0]["peer"], format!("127.0.0.2:{}", sbc.port()));
    assert_eq!(legs[1]["peer"], format!("127.0.0.1:{}", phone.port()));
    assert_eq!(legs[1]["remoteTag"], "peer");
    // The phone goes away; the SBC answers its probes; the phone's probe times out.
    drop(phone);
    let bye = loop {
        match sbc.next(Duration::from_secs(10)) {
            Some(Message::Request(r)) if r.method == Method::Options => {
                sbc.send_bytes(&Response::to_request(&r.headers, 200).to_bytes());
            }
            Some(Message::Request(r)) if r.method == Method::Bye => break r,
            Some(_) => {}
            None => panic!("no BYE for the caller\n{}", server.log_text()),
        }
    };
    sbc.send_bytes(&Response::to_request(&bye.headers, 200).to_bytes());
    let events = events_within(&mut conn, 3, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Ringing", "Established", "Released"]);
    assert_eq!(events[2].1["cause"], "unreachable");
    no_calls_left(&server, Duration::from_secs(8));
}

#[test]
fn a_caller_that_stops_refreshing_its_session_timer_has_the_call_ended() {
    let url = support::redis_db(13);
    let config = "[sip]\nt1_ms = 50\n[calls]\nprobe_secs = 0\nmin_se_secs = 2\n";
    let server = Server::start_with_config(Some(config), &["--redis", &url]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1008");
    // The SBC asks for a 3-second session that it refreshes itself (RFC 4028).
    let invite = sbc_invite(sbc.port(), &server, "1008", "timer", &sdp(4000)).replacen(
        "Max-Forwards",
        "Supported: timer\r\nSession-Expires: 3;refresher=uac\r\nMax-Forwards",
        1,
    );
    sbc.send(&invite);
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the phone is rung");
    assert_eq!(
        invite
            .headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("3".into()),
        "the phone is offered the caller's interval"
    );
    phone.answer(&invite, 200, Some(&sdp(5000)));
    let ok = sbc.final_response(Duration::from_secs(5)).expect("answer");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("3;refresher=uac".into())
    );
    assert!(
        ok.headers
            .values(&HeaderName::Require)
            .any(|t| t == "timer")
    );
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "timer", "ACK", 1, ""));
    assert!(phone.request(Method::Ack, Duration::from_secs(2)).is_some());
    // One refresh, answered by the core with the interval; then the SBC falls silent.
    std::thread::sleep(Duration::from_millis(1500));
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "timer", "UPDATE", 2, ""));
    let refreshed = sbc
        .final_response(Duration::from_secs(2))
        .expect("refresh answered");
    assert_eq!(refreshed.status, 200);
    assert_eq!(
        refreshed
            .headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("3;refresher=uac".into())
    );
    let refreshed_at = Instant::now();
    // The session expires 2 s after the refresh (3 s less a third): both legs hear a BYE.
    let bye = phone
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the phone is hung up");
    let waited = refreshed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "ended after only {waited:?}"
    );
    phone.answer(&bye, 200, None);
    let bye = sbc
        .request(Method::Bye, Duration::from_secs(2))
        .expect("the SBC is hung up");
    sbc.send_bytes(&Response::to_request(&bye.headers, 200).to_bytes());
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 2, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Established", "Released"]);
    assert_eq!(events[1].1["cause"], "session-expired");
    no_calls_left(&server, Duration::from_secs(8));
}

#[test]
fn an_sbc_requiring_100rel_gets_reliable_early_media_and_prack_before_the_answer() {
    let url = support::redis_db(14);
    let server = Server::start_with_config(Some(FAST_TIMERS), &["--redis", &url]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1009");
    let invite = sbc_invite(sbc.port(), &server, "1009", "rel", &sdp(4000)).replacen(
        "Max-Forwards",
        "Require: 100rel\r\nMax-Forwards",
        1,
    );
    sbc.send(&invite);
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the phone is rung");
    phone.answer(&invite, 183, Some(&sdp(5000)));
    // The early media reaches the SBC reliably: RSeq, Require: 100rel, again until PRACKed.
    let early = loop {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status == 183 => break r,
            Some(_) => {}
            None => panic!("no 183\n{}", server.log_text()),
        }
    };
    assert_eq!(
        early.headers.get(&HeaderName::RSeq).map(|v| v.to_string()),
        Some("1".into())
    );
    assert!(
        early
            .headers
            .values(&HeaderName::Require)
            .any(|t| t == "100rel")
    );
    let again = sbc.next(Duration::from_secs(2));
    assert!(
        matches!(&again, Some(Message::Response(r)) if r.status == 183),
        "retransmitted until PRACK: {again:?}"
    );
    // The phone answers before the PRACK: the SBC gets the 200 only after PRACKing.
    phone.answer(&invite, 200, Some(&sdp(5000)));
    std::thread::sleep(Duration::from_millis(300));
    while let Some(m) = sbc.next(Duration::from_millis(100)) {
        assert!(
            !matches!(&m, Message::Response(r) if r.status == 200),
            "answered before the PRACK"
        );
    }
    let prack = sbc_in_dialog(&sbc, &server, &early, "rel", "PRACK", 2, "").replacen(
        "Content-Length",
        "RAck: 1 1 INVITE\r\nContent-Length",
        1,
    );
    sbc.send(&prack);
    let mut statuses = Vec::new();
    let ok = loop {
        match sbc.next(Duration::from_secs(3)) {
            Some(Message::Response(r)) if r.status == 200 => {
                let method = r.headers.cseq().and_then(Result::ok).map(|c| c.method);
                statuses.push(method.clone());
                if method == Some(Method::Invite) {
                    break r;
                }
            }
            Some(_) => {}
            None => panic!(
                "no answer after the PRACK: {statuses:?}\n{}",
                server.log_text()
            ),
        }
    };
    assert_eq!(statuses, [Some(Method::Prack), Some(Method::Invite)]);
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rel", "ACK", 1, ""));
    assert!(phone.request(Method::Ack, Duration::from_secs(2)).is_some());
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rel", "BYE", 3, ""));
    let bye = phone
        .request(Method::Bye, Duration::from_secs(2))
        .expect("BYE");
    phone.answer(&bye, 200, None);
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 3, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Ringing", "Established", "Released"]);
    no_calls_left(&server, TIMER_D);
}

/// A softphone on a real call: baresip registers DN 1011 and answers by itself; the SBC calls
/// it; baresip puts the SBC on hold and resumes (commands sent to its UDP console), and the
/// SBC hangs up. The SBC sees baresip's re-INVITEs relayed, and the call's thread says so.
#[test]
fn baresip_answers_an_sbc_call_holds_and_resumes_it() {
    let url = support::redis_db(15);
    let server = Server::start(&["--redis", &url]);
    let home = tempfile::tempdir().expect("baresip config dir");
    let console = free_port();
    std::fs::write(
        home.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:0\nsip_trans_def udp\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule account.so\n\
             module menu.so\nmodule cons.so\ncons_listen 127.0.0.1:{console}\n\
             module ausine.so\naudio_player none\naudio_source ausine,440\naudio_alert none\n\
             ausrc_srate 48000\nausrc_channels 2\n"
        ),
    )
    .expect("config");
    std::fs::write(
        home.path().join("accounts"),
        format!(
            "<sip:1011@demo.local;transport=udp>;auth_pass=demo1011;answermode=auto;\
             outbound=\"sip:{};transport=udp\";regint=600\n",
            server.sip
        ),
    )
    .expect("accounts");
    let trace = home.path().join("trace");
    let mut baresip = Command::new("baresip")
        .arg("-f")
        .arg(home.path())
        .arg("-s")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&trace).expect("trace"))
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip runs (scripts/test.sh installs baresip-core)");
    let trace_text = || std::fs::read_to_string(&trace).unwrap_or_default();
    let mut conn = redis(&url);
    let end = Instant::now() + Duration::from_secs(10);
    while !support::stream_entries(&mut conn, "sb:{demo}:voice-registrar")
        .iter()
        .any(|e| e["kind"] == "BindingAdded")
    {
        assert!(
            Instant::now() < end,
            "baresip did not register\n{}",
            trace_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let command = |text: &str| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .send_to(text.as_bytes(), ("127.0.0.1", console))
            .expect("console");
    };

    let sbc = Peer::sbc(&server);
    sbc.send(&sbc_invite(sbc.port(), &server, "1011", "soft", &sdp(4000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("baresip answers\n{}", trace_text()));
    assert_eq!(ok.status, 200, "{}", trace_text());
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "soft", "ACK", 1, ""));
    // Hold, then resume, from the phone: each re-INVITE reaches the SBC with its SDP.
    for (verb, direction, answer) in [
        ("/hold", "a=sendonly", "a=recvonly"),
        ("/resume", "a=sendrecv", "a=sendrecv"),
    ] {
        std::thread::sleep(Duration::from_millis(500));
        command(&format!("{verb}\n"));
        let reinvite = sbc
            .request(Method::Invite, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{verb}: no re-INVITE\n{}", trace_text()));
        let offer = String::from_utf8_lossy(&reinvite.body).to_string();
        assert!(offer.contains(direction), "{verb}: {offer}");
        let body = sdp(4000).replace("a=rtpmap", &format!("{answer}\r\na=rtpmap"));
        sbc.answer(&reinvite, 200, Some(&body));
        assert!(
            sbc.request(Method::Ack, Duration::from_secs(5)).is_some(),
            "{verb}: the 200 is ACKed\n{}",
            trace_text()
        );
    }
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "soft", "BYE", 2, ""));
    let bye_ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("BYE answered");
    assert_eq!(bye_ok.status, 200);
    // baresip answers at once, with or without a 180 first: Ringing may or may not be there.
    let end = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = call_events(&mut conn);
        if events.last().is_some_and(|(k, _)| k == "Released") || Instant::now() > end {
            break events;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen: Vec<&str> = kinds(&events)
        .into_iter()
        .filter(|k| *k != "Ringing")
        .collect();
    assert_eq!(
        seen,
        ["Established", "Held", "Retrieved", "Released"],
        "{}",
        server.log_text()
    );
    let _ = baresip.kill();
    let _ = baresip.wait();
}

/// Scaling out: a proxy-only node forwards the SBC's call to a remote cluster node (both on
/// one Redis), recording its route so that the SBC's ACK and BYE come back through it; the
/// cluster node rings the phone registered at the proxy. The node dies: the proxy's probes
/// take it out and new calls get 503; it comes back: calls reach it again.
#[test]
fn a_proxy_forwards_calls_to_a_remote_cluster_node_while_it_answers_its_probes() {
    let url = support::redis_db(1);
    let proxy_sip: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node_sip: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node_config = format!("[cluster]\nproxies = [\"{proxy_sip}\"]\n");
    let node = Server::start_on(node_sip, Some(&node_config), &["--redis", &url]);
    let proxy_config = format!("[cluster]\nnodes = [\"{node_sip}\"]\nprobe_ms = 200\n");
    let proxy = Server::start_on(proxy_sip, Some(&proxy_config), &["--redis", &url]);
    // The phone registers at the proxy, and the node reaches it through the proxy.
    let phone = raw_phone(&proxy, "1013");
    let sbc = Peer::sbc(&proxy);
    sbc.send(&sbc_invite(sbc.port(), &proxy, "1013", "fwd", &sdp(4000)));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "the phone is rung\n{}\n{}",
                proxy.log_text(),
                node.log_text()
            )
        });
    assert_eq!(
        invite
            .headers
            .get(&HeaderName::RecordRoute)
            .map(|v| v.to_string()),
        Some(format!(
            "<sip:{proxy_sip};lr;sb-flow=127.0.0.1:{}>",
            phone.port()
        )),
        "the phone's side of the call is routed through the proxy too"
    );
    phone.answer(&invite, 200, Some(&sdp(5000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("the answer");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers
            .get(&HeaderName::RecordRoute)
            .map(|v| v.to_string()),
        Some(format!("<sip:{proxy_sip};lr>")),
        "the proxy stays on the route"
    );
    let contact = ok
        .headers
        .get(&HeaderName::Contact)
        .expect("Contact")
        .to_string();
    assert!(
        contact.contains(&node_sip.to_string()),
        "the node runs the call: {contact}"
    );
    assert_eq!(
        calls_active(&proxy),
        Some(0),
        "the proxy runs no call itself"
    );
    sbc.send(&routed_in_dialog(&sbc, &ok, "fwd", "ACK", 1));
    assert!(
        phone.request(Method::Ack, Duration::from_secs(2)).is_some(),
        "ACK passed on"
    );
    sbc.send(&routed_in_dialog(&sbc, &ok, "fwd", "BYE", 2));
    let bye = phone
        .request(Method::Bye, Duration::from_secs(2))
        .expect("BYE passed on");
    phone.answer(&bye, 200, None);
    let bye_ok = sbc
        .final_response(Duration::from_secs(2))
        .expect("BYE answered");
    assert_eq!(bye_ok.status, 200);
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 2, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Established", "Released"]);

    // A second call, which the phone hangs up: its BYE goes by its route, the proxy, to the
    // node, and the node's BYE to the SBC comes through the proxy too.
    sbc.send(&sbc_invite(sbc.port(), &proxy, "1013", "fwd2", &sdp(4000)));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("rung");
    phone.answer(&invite, 200, Some(&sdp(5000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("the answer");
    sbc.send(&routed_in_dialog(&sbc, &ok, "fwd2", "ACK", 1));
    assert!(phone.request(Method::Ack, Duration::from_secs(2)).is_some());
    let h = &invite.headers;
    let node_contact = h.get(&HeaderName::Contact).expect("Contact").to_string();
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKphonebye\r\n\
         Route: {route}\r\nMax-Forwards: 70\r\nFrom: {to};tag=peer\r\nTo: {from}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        target = node_contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .expect("URI"),
        port = phone.port(),
        route = h.get(&HeaderName::RecordRoute).expect("Record-Route"),
        to = h.get(&HeaderName::To).expect("To"),
        from = h.get(&HeaderName::From).expect("From"),
        call_id = h.call_id().expect("Call-ID"),
    );
    phone.send(&bye);
    let sbc_bye = sbc
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the SBC's BYE");
    sbc.answer(&sbc_bye, 200, None);
    let phone_ok = phone
        .final_response(Duration::from_secs(5))
        .expect("the phone's 200");
    assert_eq!(phone_ok.status, 200);
    let events = events_within(&mut conn, 4, Duration::from_secs(5));
    assert_eq!(events[3].0, "Released");
    assert_eq!(events[3].1["cause"], "callee-hangup");

    // The node goes: three missed probes (0.6 s) take it out of the ring.
    drop(node);
    std::thread::sleep(Duration::from_secs(2));
    sbc.send(&sbc_invite(
        sbc.port(),
        &proxy,
        "1013",
        "nonode",
        &sdp(4000),
    ));
    let refused = sbc
        .final_response(Duration::from_secs(5))
        .expect("an answer");
    assert_eq!(refused.status, 503, "no node up");
    sbc.send(&ack_failure(sbc.port(), &proxy, "1013", "nonode", &refused));
    // It comes back on the same address: the next probe puts it back.
    let node = Server::start_on(node_sip, Some(&node_config), &["--redis", &url]);
    std::thread::sleep(Duration::from_secs(1));
    sbc.send(&sbc_invite(sbc.port(), &proxy, "1099", "back", &sdp(4000)));
    let answer = sbc
        .final_response(Duration::from_secs(5))
        .expect("an answer");
    assert_eq!(
        answer.status,
        404,
        "the node routes the call again\n{}",
        node.log_text()
    );
}

/// The proxy in front is transaction-stateful: a caller's CANCEL is answered by the proxy and
/// sent on as its own, and a node that took the INVITE and died gets the caller a 100 from the
/// proxy and then 408, not silence.
#[test]
fn a_proxy_cancels_hop_by_hop_and_answers_for_a_node_that_died() {
    let url = support::redis_db(16);
    let proxy_sip: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node_sip: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node_config = format!("[cluster]\nproxies = [\"{proxy_sip}\"]\n");
    let node = Server::start_on(node_sip, Some(&node_config), &["--redis", &url]);
    // Probes far apart: the node stays in the ring after it dies, as between two probes.
    let proxy_config =
        format!("[sip]\nt1_ms = 50\n[cluster]\nnodes = [\"{node_sip}\"]\nprobe_ms = 600000\n");
    let proxy = Server::start_on(proxy_sip, Some(&proxy_config), &["--redis", &url]);
    let phone = raw_phone(&proxy, "1014");
    let sbc = Peer::sbc(&proxy);
    sbc.send(&sbc_invite(sbc.port(), &proxy, "1014", "cx", &sdp(4000)));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("rung");
    phone.answer(&invite, 180, None);
    loop {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status == 180 => break,
            Some(_) => {}
            None => panic!("no 180\n{}", proxy.log_text()),
        }
    }
    sbc.send(&cancel(sbc.port(), &proxy, "1014", "cx"));
    let cancel_ok = sbc
        .final_response(Duration::from_secs(2))
        .expect("the CANCEL answered");
    assert_eq!(
        (
            cancel_ok.status,
            cancel_ok
                .headers
                .cseq()
                .and_then(Result::ok)
                .map(|c| c.method)
        ),
        (200, Some(Method::Cancel))
    );
    let phone_cancel = phone
        .request(Method::Cancel, Duration::from_secs(2))
        .expect("CANCEL on");
    phone.answer(&phone_cancel, 200, None);
    phone.answer(&invite, 487, None);
    let terminated = sbc.final_response(Duration::from_secs(2)).expect("487");
    assert_eq!(terminated.status, 487);
    sbc.send(&ack_failure(sbc.port(), &proxy, "1014", "cx", &terminated));
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 2, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Ringing", "Abandoned"]);

    drop(node);
    sbc.send(&sbc_invite(sbc.port(), &proxy, "1014", "dead", &sdp(4000)));
    let first = sbc.next(Duration::from_secs(2));
    assert!(
        matches!(&first, Some(Message::Response(r)) if r.status == 100),
        "the proxy says it is trying: {first:?}"
    );
    let timeout = sbc
        .final_response(Duration::from_secs(6))
        .expect("an answer");
    assert_eq!(timeout.status, 408, "{}", proxy.log_text());
}

/// Calls in progress on the node, from /metrics.
fn calls_active(server: &Server) -> Option<u64> {
    let text = support::http_get(server.http, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("switchboard_calls_active "))
        .and_then(|n| n.trim().parse().ok())
}

/// How long a call may outlive its end: a client INVITE transaction that got a final error
/// absorbs retransmissions for Timer D, 32 s over UDP whatever T1 is (RFC 3261 17.1.1.2).
const TIMER_D: Duration = Duration::from_secs(40);

/// Waits until no call is left (every transaction of every call finished).
fn no_calls_left(server: &Server, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let n = calls_active(server);
        if n == Some(0) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{n:?} calls left\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_caller_who_gives_up_while_it_rings_abandons_the_call() {
    let url = support::redis_db(12);
    let server = Server::start_with_config(Some(FAST_TIMERS), &["--redis", &url]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1007");
    sbc.send(&sbc_invite(
        sbc.port(),
        &server,
        "1007",
        "giveup",
        &sdp(4000),
    ));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("rung");
    phone.answer(&invite, 180, None);
    // The caller hears it ring (the 100 before it skipped), then gives up.
    let ringing = loop {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status == 100 => {}
            other => break other,
        }
    };
    assert!(
        matches!(&ringing, Some(Message::Response(r)) if r.status == 180),
        "{ringing:?}"
    );
    sbc.send(&cancel(sbc.port(), &server, "1007", "giveup"));
    // The CANCEL gets 200, the INVITE 487; the phone is CANCELed in turn.
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status >= 200 => statuses.push(r.status),
            Some(_) => {}
            None => panic!("{statuses:?}\n{}", server.log_text()),
        }
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 487]);
    let phone_cancel = phone
        .request(Method::Cancel, Duration::from_secs(5))
        .expect("CANCEL");
    phone.answer(&phone_cancel, 200, None);
    phone.answer(&invite, 487, None);
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 2, Duration::from_secs(5));
    assert_eq!(kinds(&events), ["Ringing", "Abandoned"]);
    assert_eq!(events[1].1["cause"], "caller-cancel");
    no_calls_left(&server, TIMER_D);
}

#[test]
fn a_cancel_racing_the_answer_ends_cleanly_either_way() {
    let server = Server::start_with_config(Some(FAST_TIMERS), &[]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1008");
    let port = sbc.port();

    // The answer wins: the CANCEL is too late (200 to it), the call is up; the SBC hangs up.
    sbc.send(&sbc_invite(port, &server, "1008", "race1", &sdp(4000)));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("rung");
    phone.answer(&invite, 180, None);
    phone.answer(&invite, 200, Some(&sdp(5000)));
    let ok = sbc.final_response(Duration::from_secs(5)).expect("answer");
    assert_eq!(ok.status, 200);
    sbc.send(&cancel(port, &server, "1008", "race1"));
    assert_eq!(
        sbc.final_response(Duration::from_secs(5)).map(|r| r.status),
        Some(200)
    );
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "race1", "ACK", 1, ""));
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "race1", "BYE", 2, ""));
    let bye = phone
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the phone's BYE");
    phone.answer(&bye, 200, None);

    // The CANCEL wins: the caller gets 487; the phone's late 200 is ACKed and hung up.
    sbc.send(&sbc_invite(port, &server, "1008", "race2", &sdp(4000)));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("rung");
    phone.answer(&invite, 180, None);
    std::thread::sleep(Duration::from_millis(100));
    sbc.send(&cancel(port, &server, "1008", "race2"));
    let phone_cancel = phone
        .request(Method::Cancel, Duration::from_secs(5))
        .expect("CANCEL");
    // The phone had answered already: its 200 crosses the CANCEL.
    phone.answer(&invite, 200, Some(&sdp(5000)));
    phone.answer(&phone_cancel, 200, None);
    let mut finals = Vec::new();
    while finals.len() < 2 {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r))
                if r.status >= 200 && r.headers.call_id().is_some_and(|c| c == "race2") =>
            {
                finals.push(r.status)
            }
            Some(_) => {}
            None => panic!("{finals:?}\n{}", server.log_text()),
        }
    }
    finals.sort_unstable();
    assert_eq!(finals, [200, 487], "the CANCEL's 200 and the INVITE's 487");
    assert!(
        phone.request(Method::Ack, Duration::from_secs(2)).is_some(),
        "the late 200 is ACKed"
    );
    let bye = phone
        .request(Method::Bye, Duration::from_secs(2))
        .expect("and hung up");
    phone.answer(&bye, 200, None);
    no_calls_left(&server, TIMER_D);
}

#[test]
fn a_bye_racing_a_re_invite_ends_both_legs() {
    let server = Server::start_with_config(Some(FAST_TIMERS), &[]);
    let sbc = Peer::sbc(&server);
    let phone = raw_phone(&server, "1009");
    let (_, ok) = answered_call(&server, &sbc, &phone, "1009", "byerace");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "byerace", "ACK", 1, ""));
    assert!(phone.request(Method::Ack, Duration::from_secs(2)).is_some());
    // The SBC puts the phone on hold; the phone hangs up instead of answering.
    let hold = sdp(4000) + "a=sendonly\r\n";
    sbc.send(&sbc_in_dialog(
        &sbc, &server, &ok, "byerace", "INVITE", 2, &hold,
    ));
    let reinvite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("re-INVITE relayed");
    let bye = format!(
        "BYE sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKphonebye\r\n\
         Max-Forwards: 70\r\nFrom: {to};tag=peer\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip,
        port = phone.port(),
        to = reinvite
            .headers
            .get(&HeaderName::To)
            .expect("To")
            .split(";tag=")
            .next()
            .unwrap_or_default(),
        from = reinvite.headers.get(&HeaderName::From).expect("From"),
        call_id = reinvite.headers.call_id().expect("Call-ID"),
    );
    phone.send(&bye);
    // The phone's BYE is answered; its dialog is gone, so it refuses the re-INVITE.
    let mut bye_ok = false;
    while !bye_ok {
        match phone.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status == 200 => bye_ok = true,
            Some(_) => {}
            None => panic!("no answer to the phone's BYE\n{}", server.log_text()),
        }
    }
    phone.answer(&reinvite, 481, None);
    // The SBC's re-INVITE gets a final answer, and the SBC a BYE.
    let (mut reinvite_status, mut sbc_bye) = (None, None);
    while reinvite_status.is_none() || sbc_bye.is_none() {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status >= 200 => reinvite_status = Some(r.status),
            Some(Message::Request(r)) if r.method == Method::Bye => {
                sbc.send_bytes(&Response::to_request(&r.headers, 200).to_bytes());
                sbc_bye = Some(r);
            }
            Some(_) => {}
            None => panic!(
                "{reinvite_status:?} {}\n{}",
                sbc_bye.is_some(),
                server.log_text()
            ),
        }
    }
    assert_eq!(reinvite_status, Some(487));
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "byerace", "ACK", 2, ""));
    no_calls_left(&server, TIMER_D);
}
