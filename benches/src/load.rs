//! A REGISTER load client: a pool of phones (one UDP socket each, or one TCP or TLS
//! connection each) registering DNs through the full digest exchange, each DN with its own
//! password, the way SIPp 3.6.1 cannot.
//!
//! Phone `i` registers DNs `i`, `i + phones`, `i + 2 * phones`, ... one after another, always
//! with the same Call-ID and Contact per DN, so that a second round refreshes the bindings of
//! the first instead of adding to them. Over UDP, requests are retransmitted as RFC 3261
//! 17.1.2.1 says (from T1 doubling to T2) until the round's deadline; over a connection, sent
//! once.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::auth::{Algorithm, ClientDigest};
use switchboard_sip::header::Credentials;
use switchboard_sip::{Framer, HeaderName, Message, Response, StreamItem, parse_datagram};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// What one round registers.
#[derive(Debug, Clone)]
pub struct Round {
    pub domain: String,
    /// The DNs, in order; DN `i` is registered by phone `i % phones`.
    pub dns: Vec<String>,
    /// The password of a DN from a template where `{dn}` stands for the DN; `None` when the
    /// registrar does not challenge.
    pub password: Option<String>,
    /// Expires of the contact; 0 unregisters.
    pub expires: u32,
    /// Counts rounds so that each round's CSeqs are above the last one's.
    pub number: u32,
    /// How long one registration may take, retransmissions included.
    pub timeout: Duration,
}

impl Round {
    fn password(&self, dn: &str) -> Option<String> {
        self.password.as_ref().map(|t| t.replace("{dn}", dn))
    }
}

/// The outcome of a round.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// DNs whose registration ended in 200, in the order of `Round::dns`, with their final
    /// status (or `None` on timeout).
    pub outcomes: Vec<Option<u16>>,
    /// Requests sent, retransmissions not included.
    pub transactions: u64,
    pub retransmissions: u64,
    pub elapsed: Duration,
    /// Time from the first REGISTER of a DN to its final response, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn ok(&self) -> usize {
        self.outcomes.iter().filter(|s| **s == Some(200)).count()
    }

    /// Final statuses other than 200, and timeouts (as status 0), with their counts.
    pub fn failures(&self) -> BTreeMap<u16, usize> {
        let mut failures = BTreeMap::new();
        for status in &self.outcomes {
            if *status != Some(200) {
                *failures.entry(status.unwrap_or(0)).or_default() += 1;
            }
        }
        failures
    }

    /// Successful registrations per second.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn latency(&self, quantile: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * quantile).round() as usize;
        self.latencies[index]
    }
}

/// How the phones reach the registrar.
#[derive(Clone)]
pub enum Link {
    Udp,
    /// A TCP connection per phone, kept across rounds.
    Tcp,
    /// A TLS connection per phone, the registrar's certificate checked against these roots.
    Tls(Arc<tokio_rustls::rustls::ClientConfig>),
}

/// A pool of phones, each a UDP socket or a connection of its own, kept across rounds.
pub struct Phones {
    target: SocketAddr,
    phones: Vec<Arc<Phone>>,
    /// The transport as a Via names it.
    via: &'static str,
}

/// One phone's way to the registrar.
struct Phone {
    local: SocketAddr,
    way: Way,
}

enum Way {
    Udp(UdpSocket),
    Stream(tokio::sync::Mutex<Stream>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Stream {
    io: Box<dyn Io>,
    framer: Framer,
}

impl Phones {
    /// Binds `count` UDP sockets, each connected to `target` (so that its address is the one
    /// that reaches the target, and what else arrives on it is dropped by the kernel).
    pub async fn bind(target: SocketAddr, count: usize) -> std::io::Result<Self> {
        Self::connect(target, count, Link::Udp, None).await
    }

    /// `count` phones reaching `target` over `link`, from address `from` (any when none).
    pub async fn connect(
        target: SocketAddr,
        count: usize,
        link: Link,
        from: Option<std::net::IpAddr>,
    ) -> std::io::Result<Self> {
        let local = SocketAddr::new(
            from.unwrap_or(if target.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            }),
            0,
        );
        let mut phones = Vec::with_capacity(count);
        for _ in 0..count {
            let phone = match &link {
                Link::Udp => {
                    let socket = UdpSocket::bind(local).await?;
                    socket.connect(target).await?;
                    Phone {
                        local: socket.local_addr()?,
                        way: Way::Udp(socket),
                    }
                }
                Link::Tcp | Link::Tls(_) => {
                    let socket = if target.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    socket.bind(local)?;
                    let tcp = socket.connect(target).await?;
                    tcp.set_nodelay(true)?;
                    let local = tcp.local_addr()?;
                    let io: Box<dyn Io> = match &link {
                        Link::Tls(config) => {
                            let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(
                                target.ip().into(),
                            );
                            let tls = tokio_rustls::TlsConnector::from(config.clone())
                                .connect(name, tcp)
                                .await?;
                            Box::new(tls)
                        }
                        _ => Box::new(tcp),
                    };
                    Phone {
                        local,
                        way: Way::Stream(tokio::sync::Mutex::new(Stream {
                            io,
                            framer: Framer::new(65_536),
                        })),
                    }
                }
            };
            phones.push(Arc::new(phone));
        }
        let via = match link {
            Link::Udp => "UDP",
            Link::Tcp => "TCP",
            Link::Tls(_) => "TLS",
        };
        Ok(Self {
            target,
            phones,
            via,
        })
    }

    /// UDP phones on the sockets given (bound where calls to their DNs are to reach them),
    /// each connected to `target`.
    pub async fn on_sockets(target: SocketAddr, sockets: Vec<UdpSocket>) -> std::io::Result<Self> {
        let mut phones = Vec::with_capacity(sockets.len());
        for socket in sockets {
            socket.connect(target).await?;
            phones.push(Arc::new(Phone {
                local: socket.local_addr()?,
                way: Way::Udp(socket),
            }));
        }
        Ok(Self {
            target,
            phones,
            via: "UDP",
        })
    }

    /// The UDP phones' sockets, once their rounds are over (to answer calls on).
    pub fn into_sockets(self) -> Vec<UdpSocket> {
        self.phones
            .into_iter()
            .filter_map(|p| Arc::try_unwrap(p).ok())
            .filter_map(|p| match p.way {
                Way::Udp(socket) => Some(socket),
                Way::Stream(_) => None,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.phones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phones.is_empty()
    }

    /// The contact address of the phone that registers DN number `index`.
    pub fn contact_of(&self, index: usize) -> std::io::Result<SocketAddr> {
        Ok(self.phones[index % self.phones.len()].local)
    }

    /// Registers every DN of the round, all phones at once.
    pub async fn run(&self, round: &Round) -> Report {
        let round = Arc::new(round.clone());
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for (index, phone) in self.phones.iter().enumerate() {
            let phone = Arc::clone(phone);
            let round = Arc::clone(&round);
            let (target, phones, via) = (self.target, self.phones.len(), self.via);
            tasks.spawn(async move {
                let mut done = Vec::new();
                let mut stats = Stats::default();
                for dn in (index..round.dns.len()).step_by(phones) {
                    let outcome = register(&phone, target, via, &round, dn, &mut stats).await;
                    done.push((dn, outcome));
                }
                (done, stats)
            });
        }
        let mut report = Report {
            outcomes: vec![None; round.dns.len()],
            ..Report::default()
        };
        while let Some(joined) = tasks.join_next().await {
            let Ok((done, stats)) = joined else { continue };
            for (index, (status, latency)) in done {
                report.outcomes[index] = status;
                report.latencies.push(latency);
            }
            report.transactions += stats.transactions;
            report.retransmissions += stats.retransmissions;
        }
        report.elapsed = started.elapsed();
        report.latencies.sort_unstable();
        report
    }
}

#[derive(Default)]
struct Stats {
    transactions: u64,
    retransmissions: u64,
}

/// One DN's registration: REGISTER, the challenge, REGISTER with credentials.
async fn register(
    phone: &Phone,
    target: SocketAddr,
    via: &'static str,
    round: &Round,
    index: usize,
    stats: &mut Stats,
) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let deadline = started + round.timeout;
    let local = phone.local;
    let dn = &round.dns[index];
    let call_id = format!("sipload-{dn}-{}", local.port());
    let cseq = round.number * 2 + 1;
    let request = Request {
        target,
        local,
        via,
        dn,
        domain: &round.domain,
        call_id: &call_id,
        expires: round.expires,
    };
    let first = request.text(cseq, "");
    let Some(response) = transact(phone, &first, &call_id, cseq, deadline, stats).await else {
        return (None, started.elapsed());
    };
    if response.status != 401 {
        return (Some(response.status), started.elapsed());
    }
    let Some(password) = round.password(dn) else {
        return (Some(401), started.elapsed());
    };
    let Some(authorization) = answer(&response, dn, &password, &round.domain) else {
        return (Some(401), started.elapsed());
    };
    let second = request.text(cseq + 1, &authorization);
    let status = transact(phone, &second, &call_id, cseq + 1, deadline, stats)
        .await
        .map(|r| r.status);
    (status, started.elapsed())
}

struct Request<'a> {
    target: SocketAddr,
    local: SocketAddr,
    via: &'static str,
    dn: &'a str,
    domain: &'a str,
    call_id: &'a str,
    expires: u32,
}

impl Request<'_> {
    fn text(&self, cseq: u32, authorization: &str) -> Bytes {
        let Request {
            target,
            local,
            via,
            dn,
            domain,
            call_id,
            expires,
        } = self;
        let branch = switchboard_sip::token::<10>();
        let transport = match *via {
            "UDP" => String::new(),
            other => format!(";transport={}", other.to_ascii_lowercase()),
        };
        Bytes::from(format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: SIP/2.0/{via} {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{dn}@{domain}>;tag={call_id}\r\n\
             To: <sip:{dn}@{domain}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{dn}@{local}{transport}>;expires={expires}\r\n\
             {authorization}\
             User-Agent: sipload (to {target})\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }
}

/// The `Authorization` header line answering the first challenge of a known algorithm.
fn answer(challenge: &Response, dn: &str, password: &str, domain: &str) -> Option<String> {
    challenge
        .headers
        .get_all(&HeaderName::WwwAuthenticate)
        .filter_map(|h| Credentials::parse(h).ok())
        .find_map(|c| {
            let algorithm = Algorithm::from_name(c.get("algorithm").unwrap_or("MD5"))?;
            let realm = c.get("realm")?;
            let nonce = c.get("nonce")?;
            let uri = format!("sip:{domain}");
            let cnonce = switchboard_sip::token::<8>();
            let response = ClientDigest {
                algorithm,
                username: dn,
                realm,
                password,
            }
            .response("REGISTER", &uri, nonce, 1, &cnonce);
            Some(format!(
                "Authorization: Digest username=\"{dn}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc=00000001, \
                 cnonce=\"{cnonce}\"\r\n",
                algorithm.name()
            ))
        })
}

/// Sends a request and waits for its final response: over UDP retransmitting on T1 doubling
/// to T2, over a connection once.
async fn transact(
    phone: &Phone,
    request: &Bytes,
    call_id: &str,
    cseq: u32,
    deadline: Instant,
    stats: &mut Stats,
) -> Option<Response> {
    stats.transactions += 1;
    let ours = |response: &Response| {
        response.headers.call_id().is_some_and(|c| c == call_id)
            && matches!(response.headers.cseq(), Some(Ok(c)) if c.seq == cseq)
            && response.is_final()
    };
    let socket = match &phone.way {
        Way::Udp(socket) => socket,
        Way::Stream(stream) => {
            let mut stream = stream.lock().await;
            let Stream { io, framer } = &mut *stream;
            io.write_all(request).await.ok()?;
            io.flush().await.ok()?;
            loop {
                while let Ok(Some(item)) = framer.next_item() {
                    if let StreamItem::Message(Ok(Message::Response(r))) = item
                        && ours(&r)
                    {
                        return Some(r);
                    }
                }
                let wait = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, io.read_buf(framer.buffer())).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return None,
                }
            }
        }
    };
    let mut interval = T1;
    let mut buf = vec![0u8; 65_536];
    loop {
        if socket.send(request).await.is_err() {
            return None;
        }
        let resend_at = (Instant::now() + interval).min(deadline);
        loop {
            let wait = resend_at.saturating_duration_since(Instant::now());
            let received = tokio::time::timeout(wait, socket.recv(&mut buf)).await;
            let Ok(Ok(len)) = received else { break };
            let Ok(Message::Response(response)) =
                parse_datagram(Bytes::copy_from_slice(&buf[..len]))
            else {
                continue;
            };
            if ours(&response) {
                return Some(response);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        stats.retransmissions += 1;
        interval = (interval * 2).min(T2);
    }
}
