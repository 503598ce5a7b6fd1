//! The edge does not wait forever on the actor it hands a request to: a registrar that never
//! answers costs the phone a 503 with Retry-After after the configured time.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_actors::registrar::RegistrarMsg;
use switchboard_actors::sip_proxy::{ProxyArgs, ProxyConfig, ProxyMsg, SipProxy};
use switchboard_actors::tenant::{Directory, demo_tenant};
use switchboard_sip::{HeaderName, Message, parse_datagram};
use tokio::net::UdpSocket;

/// A registrar that keeps every reply and answers none.
struct Silent;

impl Actor for Silent {
    type Msg = RegistrarMsg;
    type State = Vec<switchboard_actors::registrar::Reply>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        held: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let RegistrarMsg::Register(_, reply) = message {
            held.push(reply);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_registrar_that_does_not_answer_costs_a_503_not_a_hang() {
    let (registrar, _) = Actor::spawn(None, Silent, ()).await.expect("registrar");
    let config = ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        registrar_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let directory = Arc::new(Directory::new(&[demo_tenant()]).expect("demo"));
    let (proxy, _) = Actor::spawn(
        None,
        SipProxy,
        ProxyArgs {
            config,
            directory,
            registrar,
        },
    )
    .await
    .expect("proxy");
    let (udp, _) = ractor::call!(proxy, ProxyMsg::LocalAddrs).expect("addresses");

    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("phone");
    let port = phone.local_addr().expect("addr").port();
    let register = format!(
        "REGISTER sip:demo.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsilent;rport\r\n\
         Max-Forwards: 70\r\nTo: <sip:1001@demo.local>\r\nFrom: <sip:1001@demo.local>;tag=p\r\n\
         Call-ID: silent\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@127.0.0.1:{port}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone.send_to(register.as_bytes(), udp).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    let len = tokio::time::timeout(Duration::from_secs(5), phone.recv(&mut buf))
        .await
        .expect("an answer within the timeout")
        .expect("recv");
    let Ok(Message::Response(response)) = parse_datagram(buf[..len].to_vec().into()) else {
        panic!("a response");
    };
    assert_eq!(response.status, 503);
    assert_eq!(
        response.headers.get(&HeaderName::RetryAfter).map(|v| &**v),
        Some("5")
    );
    proxy.stop(None);
}
