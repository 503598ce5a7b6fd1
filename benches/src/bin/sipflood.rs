//! `sipflood`: what an attacker or a runaway trunk sends: requests over UDP from one address
//! at a fixed rate for a while, never acknowledging anything, counting the answers by status.
//!
//! ```text
//! sipflood --target 127.0.0.1:5060 --from 127.0.0.9 --rate 20000 --secs 10 --method OPTIONS
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use switchboard_sip::{Message, parse_datagram};

#[derive(Debug, Parser)]
#[command(about = "A flood of SIP requests over UDP from one address, answers counted")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// The address the flood comes from.
    #[arg(long, default_value = "127.0.0.9")]
    from: IpAddr,
    /// Requests a second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// OPTIONS, REGISTER or INVITE (each with a Call-ID of its own).
    #[arg(long, default_value = "OPTIONS")]
    method: String,
    /// The user the requests are for.
    #[arg(long, default_value = "1001")]
    user: String,
    #[arg(long, default_value = "demo.local")]
    domain: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let socket = Arc::new(std::net::UdpSocket::bind((args.from, 0)).context("binding")?);
    socket.connect(args.target).context("target")?;
    let local = socket.local_addr()?;
    let answers: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let (socket, answers, received) = (socket.clone(), answers.clone(), received.clone());
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf) {
                received.fetch_add(1, Ordering::Relaxed);
                if let Ok(Message::Response(r)) =
                    parse_datagram(bytes::Bytes::copy_from_slice(&buf[..n]))
                {
                    *answers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(r.status)
                        .or_default() += 1;
                }
            }
        })
    };
    let total = args.rate * args.secs;
    let started = Instant::now();
    let (method, user, domain) = (&args.method, &args.user, &args.domain);
    for n in 0..total {
        let due = started + Duration::from_secs_f64(n as f64 / args.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let request = format!(
            "{method} sip:{user}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{user}@{domain}>\r\nFrom: <sip:flood@{domain}>;tag=f{n}\r\n\
             Call-ID: flood-{n}-{local}\r\nCSeq: 1 {method}\r\nContact: <sip:flood@{local}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let _ = socket.send(request.as_bytes());
    }
    let sent_in = started.elapsed();
    let _ = reader.join();
    let answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let by_status: Vec<String> = answers.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{total} {method} from {} in {:.1} s ({:.0}/s): {} answered ({})",
        args.from,
        sent_in.as_secs_f64(),
        total as f64 / sent_in.as_secs_f64(),
        received.load(Ordering::Relaxed),
        if by_status.is_empty() {
            "none".to_owned()
        } else {
            by_status.join(", ")
        }
    )?;
    Ok(())
}
