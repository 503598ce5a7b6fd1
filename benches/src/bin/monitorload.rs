//! `monitorload`: times a supervisor's monitoring over the voice gRPC API while SIPp plays the
//! carrier's SBC, the agent's and the supervisor's phones and the media server
//! (`benches/sipp/monitor_setup.sh` starts them). Each call that reaches the agent is, in
//! turn, left alone or monitored (listen) then left, then released from the desktop; it
//! prints the time from the request to the supervisor being in the call (`PartyAdded`: its
//! phone has answered and been ACKed, its leg into the conference asked for) and from the
//! stop to the parties talking directly again (`MonitoringStopped`), and the SIP messages
//! (in and out, from the node's metrics) a monitored call costs beyond one that is not.
//!
//! ```text
//! monitorload --grpc 127.0.0.1:9101 --http 127.0.0.1:9102 --calls 40
//! ```

use std::io::{Read, Write};

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use switchboard_benches::tenants::as_toml;
use switchboard_benches::{keyed, runtime};
use switchboard_proto::events::Payload;
use switchboard_proto::voice as pb;
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(about = "A supervisor's monitoring timed over the voice gRPC API")]
struct Args {
    /// Print the demo tenant, its media server at `--media` controlled by `--control`, as
    /// node configuration (TOML), and stop.
    #[arg(long)]
    print_tenant: bool,
    #[arg(long, default_value = "127.0.0.3:5090")]
    media: String,
    #[arg(long, default_value = "msml")]
    control: String,
    #[arg(long, default_value = "127.0.0.1:9101")]
    grpc: String,
    /// The node's HTTP address, for its metrics.
    #[arg(long, default_value = "127.0.0.1:9102")]
    http: String,
    #[arg(long, default_value = "demo-key")]
    key: String,
    /// Calls to take, half of them monitored.
    #[arg(long, default_value_t = 40)]
    calls: usize,
    #[arg(long, default_value = "a1003")]
    agent: String,
    #[arg(long, default_value = "1003")]
    agent_dn: String,
    #[arg(long, default_value = "a1020")]
    supervisor: String,
    #[arg(long, default_value = "1020")]
    supervisor_dn: String,
}

/// SIP messages in and out so far, from the node's metrics.
fn sip_messages(http: &str) -> anyhow::Result<u64> {
    let mut stream = std::net::TcpStream::connect(http).context("the node's HTTP port")?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("switchboard_sip_requests_total")
                || l.starts_with("switchboard_sip_responses_total")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

type Events = tonic::Streaming<pb::StreamEvent>;

/// The next call event of kind `kind`, within a few seconds; its call's id.
async fn next_call(events: &mut Events, kind: &str) -> anyhow::Result<String> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .with_context(|| format!("no {kind} within 10 s"))??
            .context("the event stream ended")?;
        let Some(pb::stream_event::Change::CallStateChanged(e)) = next.change else {
            continue;
        };
        if e.kind == kind
            && let Some(Payload::Call(c)) = e.payload
        {
            return Ok(c.call_id);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(args: Args) -> anyhow::Result<()> {
    let channel = Channel::from_shared(format!("http://{}", args.grpc))?
        .connect()
        .await
        .context("the node's gRPC port")?;
    let mut agents = pb::agents_client::AgentsClient::new(channel.clone());
    let mut calls = pb::calls_client::CallsClient::new(channel.clone());
    let mut stream = pb::events_client::EventsClient::new(channel);
    for (agent, dn) in [
        (&args.agent, &args.agent_dn),
        (&args.supervisor, &args.supervisor_dn),
    ] {
        agents
            .login(keyed(
                &args.key,
                pb::LoginRequest {
                    agent_id: agent.clone(),
                    dn: dn.clone(),
                    ..Default::default()
                },
            ))
            .await
            .with_context(|| format!("login of {agent}"))?;
    }
    let mut events = stream
        .subscribe(keyed(
            &args.key,
            pb::SubscribeRequest {
                agent_id: args.agent.clone(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let (mut to_in, mut to_direct) = (Vec::new(), Vec::new());
    let (mut plain_messages, mut monitored_messages) = (0u64, 0u64);
    for n in 0..args.calls {
        let call = next_call(&mut events, "Established").await?;
        let before = sip_messages(&args.http)?;
        let monitored = n % 2 == 1;
        if monitored {
            let request = pb::MonitorRequest {
                supervisor_id: args.supervisor.clone(),
                agent_id: args.agent.clone(),
                call_id: call.clone(),
                mode: pb::MonitorMode::Listen.into(),
                ..Default::default()
            };
            let asked = Instant::now();
            calls.monitor(keyed(&args.key, request.clone())).await?;
            next_call(&mut events, "PartyAdded").await?;
            to_in.push(asked.elapsed());
            // The supervisor's leg into the conference, and the phone's re-INVITE, settle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let stopping = Instant::now();
            calls.stop_monitoring(keyed(&args.key, request)).await?;
            next_call(&mut events, "MonitoringStopped").await?;
            to_direct.push(stopping.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let release = pb::CallRequest {
            agent_id: args.agent.clone(),
            call_id: call.clone(),
            ..Default::default()
        };
        calls.release(keyed(&args.key, release)).await?;
        next_call(&mut events, "Released").await?;
        // The BYEs' answers.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let spent = sip_messages(&args.http)?.saturating_sub(before);
        if monitored {
            monitored_messages += spent;
        } else {
            plain_messages += spent;
        }
    }
    to_in.sort();
    to_direct.sort();
    let mut out = std::io::stdout().lock();
    let half = (args.calls / 2).max(1) as f64;
    writeln!(
        out,
        "  monitoring request to the supervisor in (PartyAdded): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} calls)",
        percentile(&to_in, 0.5),
        percentile(&to_in, 0.99),
        percentile(&to_in, 1.0),
        to_in.len()
    )?;
    writeln!(
        out,
        "  stop to the parties talking directly (MonitoringStopped): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&to_direct, 0.5),
        percentile(&to_direct, 0.99)
    )?;
    writeln!(
        out,
        "  SIP messages from answer to release: {:.1} a call left alone, {:.1} a monitored call",
        plain_messages as f64 / half,
        monitored_messages as f64 / half
    )?;
    if to_in.is_empty() {
        bail!("no call was monitored");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_tenant {
        let mut demo = switchboard_actors::tenant::demo_tenant();
        demo.media_servers[0].address = args.media.clone();
        demo.media_servers[0]
            .options
            .insert("control".into(), args.control.clone());
        let text = as_toml(&[&demo])?;
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    runtime(2)?.block_on(run(args))
}
