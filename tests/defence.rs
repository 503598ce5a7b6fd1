//! The edge under attack, as a scanner on the internet would try it: Debian's sipvicious
//! (`svwar` enumerating extensions, `svcrack` guessing a DN's password, `svmap` fingerprinting),
//! floods from one address and from several, and slow clients. What is asserted is what an
//! attacker or an operator would see: answers on the wire (or none), the node's counters, the
//! bans the provisioning API lists.
//!
//! Tests of bans turn the loopback exemption off (`exempt_loopback = false`), so that each
//! 127.0.0.x address is a source of its own: svcrack (which cannot bind another address) is
//! 127.0.0.1, phones and floods have addresses of their own.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::sipp::{answering_phone, scenario, wait};
use support::{Server, Udp, eventually, metric, register_with, with_key};
use switchboard_proto::provisioning as pb;

const ADMIN: &str = "defence-admin-key";

/// Bans on, loopback counted, and what the test adds.
fn counted(extra: &str) -> String {
    format!("[defence]\nexempt_loopback = false\n{extra}")
}

fn options(user: &str, domain: &str, port: u16, branch: &str) -> String {
    format!(
        "OPTIONS sip:{user}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@{domain}>\r\nFrom: <sip:probe@{domain}>;tag=f{branch}\r\n\
         Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Whether an OPTIONS from `from` is answered by `server`.
fn answered(from: &Udp, n: u32) -> bool {
    let request = options("1001", "demo.local", from.port(), &format!("probe{n}"));
    from.send(request.as_bytes());
    from.recv_within(Duration::from_millis(300)).is_some()
}

/// Sends `count` OPTIONS from `from` as fast as it can; how many were answered.
fn flood(from: &Udp, count: u32) -> usize {
    for n in 0..count {
        let request = options("1001", "demo.local", from.port(), &format!("flood{n}"));
        from.send(request.as_bytes());
    }
    let mut answers = 0;
    while from.recv_within(Duration::from_millis(300)).is_some() {
        answers += 1;
    }
    answers
}

fn counter(server: &Server, series: &str) -> f64 {
    metric(server, series).unwrap_or_else(|| panic!("{series} in /metrics"))
}

/// A sipvicious tool against `server`: its standard output and error.
fn sipvicious(tool: &str, server: &Server, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .args(["-P", &support::free_port().to_string()])
        .args(["-p", &server.sip.port().to_string(), "127.0.0.1"])
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (scripts/test.sh installs sipvicious): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// svwar, by REGISTER, INVITE and OPTIONS, finds no extension of the demo tenant among
/// 1000-1030 (1001-1020 exist), and svmap learns no product or version: every answer is the
/// one an unknown user gets.
#[test]
fn scanners_find_no_extension_and_no_version() {
    let server = Server::start(&[]);
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        let out = sipvicious(
            "svwar",
            &server,
            &[
                "--force",
                "--domain",
                "demo.local",
                "-e",
                "1000-1030",
                "-m",
                method,
            ],
        );
        assert!(out.contains("found nothing"), "{method}: {out}");
        assert!(!out.contains("reqauth") && !out.contains("1001"), "{out}");
    }
    let out = sipvicious("svmap", &server, &[]);
    let line = out
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{}", server.sip.port())))
        .unwrap_or_else(|| panic!("svmap found the node: {out}"));
    assert!(line.contains("unknown"), "{line}");
    assert!(!line.to_lowercase().contains("switchboard"), "{line}");
    // What svmap would have learnt from a node that names itself.
    let named = Server::start_with_config(Some("[sip]\nserver_header = \"Acme SBC 2.1\"\n"), &[]);
    let out = sipvicious("svmap", &named, &[]);
    assert!(out.contains("Acme SBC 2.1"), "{out}");
}

/// svcrack guessing DN 1001's password is banned at the fifth wrong guess: the node counts
/// five failures and no more, and drops the guesses that follow unanswered, while a phone from
/// another address registers as usual.
#[test]
fn a_password_guesser_is_banned_after_its_failures_and_gets_no_answer_after() {
    let server = Server::start_with_config(Some(&counted("max_failures = 5\n")), &[]);
    let out = sipvicious(
        "svcrack",
        &server,
        &[
            "-u",
            "1001",
            "--domain",
            "demo.local",
            "-r",
            "100000-109999",
            "--maximumtime",
            "2",
        ],
    );
    assert!(!out.contains("demo1001"), "{out}");
    assert_eq!(counter(&server, "switchboard_source_failures_total"), 5.0);
    assert_eq!(counter(&server, "switchboard_sources_banned_total"), 1.0);
    assert!(
        counter(&server, "switchboard_banned_dropped_total") > 0.0,
        "svcrack's later guesses reached the node and were dropped\n{out}"
    );
    assert_eq!(
        server
            .log_text()
            .matches("source banned: its traffic is dropped unanswered")
            .count(),
        1,
        "logged once"
    );
    let phone = Udp::on("127.0.0.8", server.sip);
    assert_eq!(
        register_with(&phone, "1002", "demo1002", "after-crack"),
        200
    );
}

/// A flood of OPTIONS from one address gets the burst answered and nothing more, while
/// phones on other addresses register normally; a hundred registrations from one address that
/// authenticates (an office behind one NAT address) are never limited.
#[test]
fn a_flood_from_one_address_is_limited_while_phones_register() {
    let server = Server::start_with_config(Some(&counted("")), &[]);
    let flooder = Udp::on("127.0.0.9", server.sip);
    let answers = flood(&flooder, 2_000);
    assert!(answers <= 16, "{answers} answers to the flood");
    assert!(!answered(&flooder, 0), "banned");
    for (i, dn) in ["1001", "1002", "1003", "1004"].iter().enumerate() {
        let phone = Udp::on(&format!("127.0.0.{}", 10 + i), server.sip);
        assert_eq!(register_with(&phone, dn, &format!("demo{dn}"), dn), 200);
    }
    let office = Udp::on("127.0.0.20", server.sip);
    for n in 0..100u32 {
        let dn = format!("{}", 1005 + n % 16);
        let call_id = format!("office-{n}");
        assert_eq!(
            register_with(&office, &dn, &format!("demo{dn}"), &call_id),
            200,
            "registration {n}"
        );
    }
    assert_eq!(counter(&server, "switchboard_sources_banned_total"), 1.0);
}

/// Two nodes on one Redis: a ban made by one holds on the other; the administrator lists it
/// over the provisioning API and lifts it, on both; a second offence bans twice as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_shared_listed_lifted_and_longer_for_repeat_offenders() {
    let url = support::redis_db(0);
    let config = counted("ban_secs = 30\n");
    let args = ["--redis", url.as_str(), "--admin-key", ADMIN];
    let a = Server::start_with_config(Some(&config), &args);
    let b = Server::start_with_config(Some(&config), &args);
    let to_a = Udp::on("127.0.0.21", a.sip);
    let to_b = Udp::on("127.0.0.21", b.sip);
    assert!(answered(&to_b, 0), "not banned yet");
    flood(&to_a, 1_000);
    assert!(!answered(&to_a, 1));
    let held_by_b = || {
        metric(&b, "switchboard_bans_active") == Some(1.0)
            && metric(&b, "switchboard_sources_banned_total") == Some(0.0)
    };
    assert!(
        eventually(Duration::from_secs(5), held_by_b),
        "B holds A's ban\n{}",
        b.log_text()
    );
    assert!(!answered(&to_b, 2), "B drops the banned source");

    let mut api = pb::provisioning_client::ProvisioningClient::new(support::grpc(&b).await);
    let bans = |api: &mut pb::provisioning_client::ProvisioningClient<_>| {
        let mut api = api.clone();
        async move {
            api.list_bans(with_key(ADMIN, pb::ListBansRequest {}))
                .await
                .expect("ListBans")
                .into_inner()
                .bans
        }
    };
    let listed = bans(&mut api).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let first = &listed[0];
    assert_eq!(
        (first.address.as_str(), first.reason.as_str(), first.offence),
        ("127.0.0.21", "flood", 1)
    );
    assert_eq!(first.until_unix_ms - first.since_unix_ms, 30_000);
    // Tenants' keys do not reach the node's bans.
    let refused = api
        .list_bans(with_key("demo-key", pb::ListBansRequest {}))
        .await
        .expect_err("a tenant's key");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    api.lift_ban(with_key(
        ADMIN,
        pb::LiftBanRequest {
            address: "127.0.0.21".into(),
        },
    ))
    .await
    .expect("LiftBan");
    let mut n = 10;
    assert!(
        eventually(Duration::from_secs(5), || {
            n += 1;
            answered(&to_a, n)
        }),
        "A lets the source in again"
    );
    assert!(answered(&to_b, 100), "and B");
    assert!(bans(&mut api).await.is_empty());

    flood(&to_a, 1_000);
    let listed = bans(&mut api).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].offence, 2);
    assert_eq!(listed[0].until_unix_ms - listed[0].since_unix_ms, 60_000);
    let missing = api
        .lift_ban(with_key(
            ADMIN,
            pb::LiftBanRequest {
                address: "127.0.0.99".into(),
            },
        ))
        .await
        .expect_err("not banned");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// A call from the carrier's trunk goes through from start to end while five addresses flood
/// the node; the flooders are banned, and once their ban ends (2 s here) the node answers
/// them again by itself. A node at its most calls (one here) refuses the next at once with
/// 503 and Retry-After, the call in progress going on, and takes the next once it ended.
#[test]
fn a_node_under_a_flood_keeps_its_calls_and_recovers_by_itself() {
    let config = format!("[calls]\nmax_calls = 1\n{}", counted("ban_secs = 2\n"));
    let server = Server::start_with_config(Some(&config), &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let phone_port = support::free_port();
    support::sipp::register(&server, dir.path(), "1001", phone_port);
    let mut phone = answering_phone(dir.path(), "1001", "127.0.0.1", phone_port);
    let held = dir.path().join("sbc_hold_long.xml");
    let text = std::fs::read_to_string(scenario("sbc_hold.xml")).expect("scenario");
    std::fs::write(
        &held,
        text.replacen("<pause milliseconds=\"200\"/>", "<pause/>", 1),
    )
    .expect("scenario");
    let mut sbc = support::sipp::sbc_once(
        dir.path(),
        &server,
        &held,
        "1001",
        &["-d", "4000", "-timeout", "20s"],
    )
    .spawn()
    .expect("sipp runs");
    // Each floods until it is answered no more (the kernel may drop some of five floods at
    // once before the node reads them).
    let flooders: Vec<std::thread::JoinHandle<bool>> = (31..36)
        .map(|i| {
            let sip = server.sip;
            std::thread::spawn(move || {
                let from = Udp::on(&format!("127.0.0.{i}"), sip);
                (0..10).any(|round| {
                    flood(&from, 3_000);
                    !answered(&from, round)
                })
            })
        })
        .collect();
    for f in flooders {
        assert!(f.join().expect("flooder"), "banned");
    }
    let trunk = Udp::on("127.0.0.2", server.sip);
    let second = format!(
        "INVITE sip:1002@{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{};branch=z9hG4bKsecond\r\n\
         Max-Forwards: 70\r\nTo: <sip:1002@demo.local>\r\nFrom: <sip:+15551230000@127.0.0.2>;tag=2\r\n\
         Call-ID: second\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        server.sip,
        trunk.port()
    );
    let busy = trunk.request(second.as_bytes());
    assert_eq!(busy.status, 503, "{}", server.log_text());
    assert!(
        busy.headers
            .get(&switchboard_sip::HeaderName::RetryAfter)
            .is_some()
    );
    assert_eq!(counter(&server, "switchboard_overload_refused_total"), 1.0);
    let status = wait(&mut sbc, Duration::from_secs(20));
    assert!(
        status.success(),
        "the trunk's call: {status}\n{}\n{}",
        support::sipp::sipp_errors(dir.path()),
        server.log_text()
    );
    assert!(wait(&mut phone, Duration::from_secs(5)).success());
    // The call ended; its transactions still answer retransmissions for 64*T1, but it no
    // longer counts among the calls in progress: the next call is taken (and answered 480,
    // 1002 having no phone), not refused.
    let third = second
        .replace("z9hG4bKsecond", "z9hG4bKthird")
        .replace("Call-ID: second", "Call-ID: third");
    trunk.send(third.as_bytes());
    let answer = std::iter::repeat_with(|| trunk.recv())
        .find(|r| r.status >= 200)
        .expect("a final answer");
    assert_eq!(answer.status, 480, "{}", server.log_text());
    assert_eq!(
        counter(&server, "switchboard_sources_banned_total"),
        5.0,
        "{}",
        server.log_text()
    );
    let again = Udp::on("127.0.0.31", server.sip);
    let mut n = 0;
    assert!(
        eventually(Duration::from_secs(5), || {
            n += 1;
            answered(&again, n)
        }),
        "the ban ends by itself"
    );
}

/// Known and unknown users get the same answer to every method, headers and all (but for
/// the user's name, the tags and nonces), in the same time: over 200 requests each, the
/// medians within 2 ms.
#[test]
fn known_and_unknown_users_are_answered_alike_in_content_and_time() {
    let server = Server::start(&[]);
    let udp = Udp::new(server.sip);
    let port = udp.port();
    let request = |method: &str, user: &str, n: u32| {
        let from_user = if method == "REGISTER" { user } else { "1002" };
        let from_user = if method == "INVITE" { user } else { from_user };
        format!(
            "{method} sip:{user}@demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}{user}{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{user}@demo.local>\r\nFrom: <sip:{from_user}@demo.local>;tag=t{n}\r\n\
             Call-ID: same-{method}-{user}-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    // What varies from answer to answer by design: the request's own Via, Call-ID and From,
    // the To tag, the nonces, and the user named.
    let normal = |text: &str, user: &str| {
        let mut out = Vec::new();
        for line in text.split("\r\n") {
            if ["Via:", "Call-ID:", "From:"]
                .iter()
                .any(|h| line.starts_with(h))
            {
                continue;
            }
            let line = line.replace(user, "USER");
            let line = match line.split_once("tag=") {
                Some((head, _)) if line.starts_with("To:") => format!("{head}tag=X"),
                _ => line,
            };
            let line = match line.find("nonce=\"") {
                Some(at) => {
                    let rest = &line[at + 7..];
                    let end = rest.find('"').unwrap_or(rest.len());
                    format!("{}NONCE{}", &line[..at + 7], &rest[end..])
                }
                None => line,
            };
            out.push(line);
        }
        out.join("\r\n")
    };
    let mut buf = vec![0u8; 65_536];
    for method in ["REGISTER", "INVITE", "OPTIONS", "SUBSCRIBE", "MESSAGE"] {
        let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        let mut seen: [Option<String>; 2] = [None, None];
        for n in 0..200u32 {
            for (i, user) in ["1001", "1999"].iter().enumerate() {
                let sent = Instant::now();
                udp.send(request(method, user, n).as_bytes());
                let len = udp.socket.recv(&mut buf).expect("answered");
                times[i].push(sent.elapsed());
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                let text = normal(&text, user);
                match &seen[i] {
                    None => seen[i] = Some(text),
                    Some(first) => assert_eq!(first, &text, "{method} {user}: stable"),
                }
            }
        }
        assert_eq!(seen[0], seen[1], "{method}: known and unknown alike");
        let median = |t: &mut Vec<Duration>| {
            t.sort();
            t[t.len() / 2]
        };
        let (known, unknown) = (median(&mut times[0]), median(&mut times[1]));
        let apart = known.abs_diff(unknown);
        assert!(
            apart < Duration::from_millis(2),
            "{method}: medians {known:?} and {unknown:?}"
        );
    }
}

/// A client sending a request a byte every 100 ms is cut off once the message timeout (here
/// 500 ms) has passed, however busy it keeps the connection; one that connects and sends
/// nothing is cut off alike; a whole message in time is answered.
#[test]
fn slow_and_silent_connections_are_closed_at_the_message_timeout() {
    let server = Server::start_with_config(Some("[sip]\nmessage_timeout_ms = 500\n"), &[]);
    // Whether the node closes `stream` within `within` while `trickle`, if any, is sent a
    // byte every 100 ms.
    let cut_off = |stream: &mut TcpStream, within: Duration, trickle: Option<&[u8]>| {
        let start = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut next = trickle.unwrap_or_default().iter().cycle();
        let mut byte = [0u8; 1];
        while start.elapsed() < within {
            if let Some(b) = next.next()
                && stream.write_all(std::slice::from_ref(b)).is_err()
            {
                return true;
            }
            match stream.read(&mut byte) {
                Ok(0) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                _ => {}
            }
        }
        false
    };
    let connect = || TcpStream::connect(server.sip).expect("tcp");
    let request = support::register("1001", 5062, "slow", 1, "").replace("UDP", "TCP");
    let mut slow = connect();
    assert!(
        cut_off(&mut slow, Duration::from_secs(3), Some(request.as_bytes())),
        "the trickling client is cut off"
    );
    let mut silent = connect();
    assert!(
        cut_off(&mut silent, Duration::from_secs(3), None),
        "the silent client is cut off"
    );
    let mut fine: TcpStream = connect();
    fine.set_read_timeout(Some(support::WAIT)).expect("timeout");
    fine.write_all(request.as_bytes()).expect("write");
    let mut buf = [0u8; 4096];
    let n = fine.read(&mut buf).expect("answer");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 401"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// In-dialog requests for calls that do not exist, from an address that never authenticated,
/// are failures: the third bans (as configured here), and the fourth gets no 481.
#[test]
fn stray_requests_from_an_unknown_source_count_as_failures() {
    let server = Server::start_with_config(Some(&counted("max_failures = 3\n")), &[]);
    let prober = Udp::on("127.0.0.40", server.sip);
    let bye = |n: u32| {
        format!(
            "BYE sip:1001@demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.40:{};branch=z9hG4bKstray{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:1001@demo.local>;tag=x{n}\r\nFrom: <sip:1002@demo.local>;tag=y{n}\r\n\
             Call-ID: stray-{n}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            prober.port()
        )
    };
    for n in 0..3 {
        assert_eq!(prober.request(bye(n).as_bytes()).status, 481);
    }
    prober.send(bye(3).as_bytes());
    assert!(prober.recv_within(Duration::from_millis(500)).is_none());
    assert_eq!(counter(&server, "switchboard_source_failures_total"), 3.0);
}

/// Guesses from a source that is not banned (its limit set high) are logged as one warning
/// with a count per kind and interval, not a line each: an attack does not bury the log.
#[test]
fn repeated_failures_are_summarised_in_the_log() {
    let server = Server::start_with_config(
        Some(&counted(
            "max_failures = 1000\nrate = 1000.0\nburst = 1000\n",
        )),
        &[],
    );
    let phone = Udp::new(server.sip);
    let began = Instant::now();
    for n in 0..60 {
        let status = register_with(&phone, "1001", "wrong", &format!("guess{n}"));
        assert_eq!(status, 401, "guess {n}");
    }
    let intervals = began.elapsed().as_secs() / 10 + 1;
    let log = server.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SIP sources' failures"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() as u64 <= intervals,
        "{intervals} interval(s): {lines:#?}"
    );
    assert!(
        lines[0].contains("WARN") && lines[0].contains("count=1"),
        "{}",
        lines[0]
    );
    assert_eq!(counter(&server, "switchboard_source_failures_total"), 60.0);
}
