//! The edge does not wait forever on the actor it hands a request to: a registrar whose store
//! hangs (a Redis that accepts commands and never answers) costs the phone a 503 with
//! Retry-After after the configured time, not a silence it would retransmit into.

use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use switchboard_actors::defence::{Defence, DefenceConfig};
use switchboard_actors::events::EventSink;
use switchboard_actors::messages::registrar::{Binding, BindingStore, Changes};
use switchboard_actors::registrar::{Policy, Registrar, RegistrarConfig, RegistrarMsg};
use switchboard_actors::sip_proxy::{ProxyArgs, ProxyConfig, ProxyMsg, SipProxy};
use switchboard_actors::store::StoreFuture;
use switchboard_actors::supervisor::Supervisor;
use switchboard_actors::tenant::{Directory, demo_tenant};
use switchboard_sip::auth::NonceKey;
use switchboard_sip::{HeaderName, Message, parse_datagram};
use tokio::net::UdpSocket;

/// A store that never answers.
struct Stuck;

impl BindingStore for Stuck {
    fn load<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, Vec<Arc<Binding>>> {
        Box::pin(std::future::pending())
    }
    fn save<'a>(&'a self, _: &'a str, _: &'a str, _: Changes) -> StoreFuture<'a, ()> {
        Box::pin(std::future::pending())
    }
    fn take_expired<'a>(
        &'a self,
        _: &'a str,
        _: u64,
        _: usize,
    ) -> StoreFuture<'a, Vec<Arc<Binding>>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    fn all<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

#[tokio::test]
async fn a_registrar_whose_store_hangs_costs_a_503_not_silence() {
    // DN 1001 registers without digest, so the REGISTER goes straight to the store.
    let mut tenant = demo_tenant();
    tenant.dns[0].authenticate = Some(false);
    let directory = Arc::new(Directory::new(&[tenant]).expect("tenant"));
    let (registrar, _) = Actor::spawn(
        None,
        Registrar,
        RegistrarConfig {
            store: Arc::new(Stuck),
            events: EventSink::memory(),
            policy: Policy::default(),
            nonce_key: NonceKey::random(Duration::from_secs(300)),
            directory: directory.clone(),
            shards: 2,
            sweep_interval: Duration::from_secs(60),
            agents: None,
            figures: Arc::default(),
        },
    )
    .await
    .expect("registrar");
    let config = ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        registrar_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let (supervisor, _) = Supervisor::start().await.expect("supervisor");
    let proxy = SipProxy::spawn(
        ProxyArgs {
            config,
            directory: directory.clone(),
            registrar: ractor::call!(registrar, RegistrarMsg::Router).expect("router"),
            cluster: None,
            node: "sbtest".into(),
            nonce_key: NonceKey::random(Duration::from_secs(300)),
            defence: Arc::new(Defence::new(
                DefenceConfig::default(),
                "sbtest",
                directory.clone(),
                None,
            )),
        },
        &supervisor,
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
    // A response of its own to that request: a To tag of the edge's, the request's dialog
    // and sequence copied.
    assert!(response.headers.to_has_tag());
    assert_eq!(response.headers.call_id().map(|v| &**v), Some("silent"));
    assert_eq!(
        response.headers.get(&HeaderName::CSeq).map(|v| &**v),
        Some("1 REGISTER")
    );
    proxy.stop(None);
}
