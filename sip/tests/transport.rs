//! The transports over real loopback sockets: messages in, bytes out, TCP framing, keep-alives,
//! connection reuse, limits and idle timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::transport::{Endpoint, Inbound, Transport, TransportConfig};
use switchboard_sip::{Message, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn register(branch: &str) -> String {
    format!(
        "REGISTER sip:demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n\
         Max-Forwards: 70\r\nTo: <sip:1001@demo.local>\r\nFrom: <sip:1001@demo.local>;tag=1\r\n\
         Call-ID: {branch}@host\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn endpoint(config: TransportConfig) -> (Endpoint, mpsc::UnboundedReceiver<Inbound>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = Arc::new(move |inbound: Inbound| {
        let _ = tx.send(inbound);
    });
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let ep = Endpoint::bind(addr, config, handler).await.expect("bind");
    (ep, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("in time")
        .expect("open")
}

fn method(inbound: &Inbound) -> Method {
    match &inbound.message {
        Ok(Message::Request(r)) => r.method.clone(),
        other => panic!("expected a request: {other:?}"),
    }
}

#[tokio::test]
async fn udp_in_and_out() {
    let (ep, mut rx) = endpoint(TransportConfig::default()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    client
        .send_to(register("z9hG4bK1").as_bytes(), ep.udp_addr())
        .await
        .expect("send");
    let inbound = next(&mut rx).await;
    assert_eq!(method(&inbound), Method::Register);
    assert_eq!(inbound.transport, Transport::Udp);
    assert_eq!(inbound.source, client.local_addr().expect("addr"));
    ep.send(Transport::Udp, inbound.source, Bytes::from_static(b"hello"))
        .expect("send");
    let mut buf = [0u8; 100];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .expect("in time")
        .expect("recv");
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, ep.udp_addr());
}

/// Many parsers, two peers sending bursts: each peer's datagrams arrive in the order it sent
/// them (several tasks reading the socket side by side could hand a 200 on before its 180).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn udp_keeps_each_peers_order_across_parsers() {
    let config = TransportConfig {
        udp_readers: 4,
        ..TransportConfig::default()
    };
    let (ep, mut rx) = endpoint(config).await;
    let peers = [
        UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
        UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
    ];
    const EACH: usize = 500;
    for n in 0..EACH {
        for peer in &peers {
            peer.send_to(register(&format!("z9hG4bK{n}")).as_bytes(), ep.udp_addr())
                .await
                .expect("send");
        }
    }
    let mut seen: std::collections::HashMap<SocketAddr, Vec<usize>> = Default::default();
    for _ in 0..EACH * 2 {
        let inbound = next(&mut rx).await;
        let Ok(Message::Request(r)) = &inbound.message else {
            panic!("a request");
        };
        let branch = r
            .headers
            .top_via()
            .and_then(Result::ok)
            .and_then(|v| v.branch().map(str::to_owned))
            .expect("branch");
        let n = branch
            .trim_start_matches("z9hG4bK")
            .parse::<usize>()
            .expect("number");
        seen.entry(inbound.source).or_default().push(n);
    }
    for peer in &peers {
        let order = &seen[&peer.local_addr().expect("addr")];
        assert_eq!(*order, (0..EACH).collect::<Vec<_>>(), "in the order sent");
    }
}

#[tokio::test]
async fn udp_drops_oversized_and_keepalives_but_reports_garbage() {
    let config = TransportConfig {
        max_message_size: 300,
        ..TransportConfig::default()
    };
    let (ep, mut rx) = endpoint(config).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let big = register("z9hG4bKbig").replace(
        "Content-Length: 0",
        &format!("X-Pad: {}\r\nContent-Length: 0", "a".repeat(400)),
    );
    for datagram in [
        big.as_str(),
        "\r\n\r\n",
        "\r\n",
        "garbage that is not SIP\r\n\r\n",
    ] {
        client
            .send_to(datagram.as_bytes(), ep.udp_addr())
            .await
            .expect("send");
    }
    let inbound = next(&mut rx).await;
    assert!(
        inbound.message.is_err(),
        "only the garbage arrives, as an error"
    );
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tcp_frames_split_and_joined_messages() {
    let (ep, mut rx) = endpoint(TransportConfig::default()).await;
    let mut conn = TcpStream::connect(ep.tcp_addr()).await.expect("connect");
    let two = format!("{}{}", register("z9hG4bKa"), register("z9hG4bKb"));
    conn.write_all(two.as_bytes()).await.expect("write");
    let third = register("z9hG4bKc");
    let (a, b) = third.split_at(40);
    conn.write_all(a.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b.as_bytes()).await.expect("write");
    for branch in ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"] {
        let inbound = next(&mut rx).await;
        assert_eq!(inbound.transport, Transport::Tcp);
        let Ok(Message::Request(r)) = &inbound.message else {
            panic!("request");
        };
        assert_eq!(
            r.headers.top_via().expect("via").expect("ok").branch(),
            Some(branch)
        );
    }
}

#[tokio::test]
async fn tcp_answers_ping_and_reuses_the_connection() {
    let (ep, mut rx) = endpoint(TransportConfig::default()).await;
    let mut conn = TcpStream::connect(ep.tcp_addr()).await.expect("connect");
    conn.write_all(b"\r\n\r\n").await.expect("ping");
    let mut pong = [0u8; 2];
    timeout(WAIT, conn.read_exact(&mut pong))
        .await
        .expect("in time")
        .expect("pong");
    assert_eq!(&pong, b"\r\n");
    conn.write_all(register("z9hG4bKr").as_bytes())
        .await
        .expect("write");
    let inbound = next(&mut rx).await;
    ep.send(Transport::Tcp, inbound.source, Bytes::from_static(b"reply"))
        .expect("send");
    let mut reply = [0u8; 5];
    timeout(WAIT, conn.read_exact(&mut reply))
        .await
        .expect("in time")
        .expect("reply");
    assert_eq!(&reply, b"reply");
    assert_eq!(ep.tcp_connections(), 1);
}

#[tokio::test]
async fn tcp_broken_framing_is_answered_then_closed() {
    let (ep, _rx) = endpoint(TransportConfig::default()).await;
    let mut conn = TcpStream::connect(ep.tcp_addr()).await.expect("connect");
    let bad = register("z9hG4bKn").replace("Content-Length: 0", "Content-Length: -999");
    conn.write_all(bad.as_bytes()).await.expect("write");
    let mut answer = String::new();
    timeout(WAIT, conn.read_to_string(&mut answer))
        .await
        .expect("closed in time")
        .expect("read");
    assert!(answer.starts_with("SIP/2.0 400 "), "{answer}");
    assert!(answer.contains("Call-ID: z9hG4bKn@host\r\n"));
    // Plain garbage has nothing to answer: the connection just closes.
    let mut conn = TcpStream::connect(ep.tcp_addr()).await.expect("connect");
    conn.write_all(&[b'x'; 20_000]).await.expect("write");
    let mut rest = Vec::new();
    let read = timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(read.is_err() || rest.is_empty());
}

#[tokio::test]
async fn tcp_idle_connections_close() {
    let config = TransportConfig {
        tcp_idle_timeout: Duration::from_millis(200),
        ..TransportConfig::default()
    };
    let (ep, _rx) = endpoint(config).await;
    let mut conn = TcpStream::connect(ep.tcp_addr()).await.expect("connect");
    // An incomplete message keeps nothing open: clerr-style waiting ends with the idle timer.
    conn.write_all(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\nv=0")
        .await
        .expect("write");
    let mut rest = Vec::new();
    timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("eof");
    assert!(rest.is_empty());
    assert_eq!(ep.tcp_connections(), 0);
}

#[tokio::test]
async fn tcp_connections_per_address_are_limited() {
    let config = TransportConfig {
        max_connections_per_ip: 2,
        ..TransportConfig::default()
    };
    let (ep, _rx) = endpoint(config).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(TcpStream::connect(ep.tcp_addr()).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ep.tcp_connections(), 2);
    let mut third = TcpStream::connect(ep.tcp_addr()).await.expect("connect");
    let mut buf = [0u8; 1];
    let n = timeout(WAIT, third.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the third connection is closed at once"
    );
    drop(open);
}

#[tokio::test]
async fn tcp_send_opens_a_connection() {
    let (ep, _rx) = endpoint(TransportConfig::default()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dest = listener.local_addr().expect("addr");
    ep.send(Transport::Tcp, dest, Bytes::from_static(b"one"))
        .expect("queue");
    ep.send(Transport::Tcp, dest, Bytes::from_static(b"two"))
        .expect("queue");
    let (mut peer, _) = timeout(WAIT, listener.accept())
        .await
        .expect("in time")
        .expect("accept");
    let mut got = [0u8; 6];
    timeout(WAIT, peer.read_exact(&mut got))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&got, b"onetwo");
}
