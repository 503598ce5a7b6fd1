//! The routing scenario of a contact center at work, against a running node: the 20 demo
//! agents (mixed English levels, billing or sales) on SIPp phones, 19 answering from one SIPp
//! and a1009's never picked up (RONA); SIPp as the media server playing the music; SIPp as
//! the carrier's SBC placing 300 calls, a third to the sales line (a narrow target at a
//! higher priority) and the rest to support, one caller in ten hanging up after 1.5 s
//! without an agent. Offered load is above what the agents can serve, so calls queue.
//!
//! What is checked, from the event streams a reporting system reads: every call was served
//! by an agent who satisfied its target or was abandoned (and every caller who hung up while
//! waiting is recorded Abandoned with the time waited); no Ready agent stayed idle while a
//! call it could take waited; no agent took a call while one it could take of a higher
//! rank (priority, then age) waited; calls that rang a1009 in vain were queued again and
//! served by someone else; no agent held two calls at once. Each run reports how long routing
//! took (a call's RouteRequest to its agent's phone ringing, p50 and p99) and switchboard's
//! CPU time.
//!
//! It runs on one node, and (a shorter run) as a cluster: a proxy in front of two cluster
//! nodes on one Redis, agents' desktops on both nodes.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::sipp::{Running, register, sbc_calls, scenario, serving, sipp_errors, wait};
use support::store::Store;
use support::{DEMO_KEY, Server, agent, free_port, log_in, with_key};
use switchboard_actors::tenant::{
    DialRuleConfig, MediaServerConfig, NamedConfig, Options, RoutingPointConfig, StrategyConfig,
    TenantConfig, demo_tenant,
};
use switchboard_proto::voice as pb;
use switchboard_routing::target::{Profile, Target};

type Agents = pb::agents_client::AgentsClient<tonic::transport::Channel>;

/// The scenario's size: the demo's 20 agents, `calls` calls at 8 a second. `ROUTING_AGENTS`
/// (more agents, DNs 1021 on, skills as the demo's), `ROUTING_CALLS` and `ROUTING_RATE` scale
/// it up for a load run by hand; each run reports its latencies and switchboard's CPU time.
#[derive(Clone, Copy)]
struct Scale {
    agents: u32,
    calls: usize,
    rate: f64,
}

fn scale(calls: usize) -> Scale {
    fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    Scale {
        agents: var("ROUTING_AGENTS", 20).max(20),
        calls: var("ROUTING_CALLS", calls),
        rate: var("ROUTING_RATE", 8.0),
    }
}
/// The DN whose phone rings and is never answered.
const RONA_DN: &str = "1009";
/// How long an agent and a call it could take may both wait before it counts as idling: the
/// time from an agent's change to the call ringing it (agent state, routing, the call, the
/// phone's 180) on a machine also running four SIPp instances.
const SLACK_MS: u64 = 1_000;

const SUPPORT: &str = "play music file:///music/hold.wav\n\
    queue support target \"english >= 3\" priority 5 timeout 300s\n\
    route default\n";
const SALES: &str = "play music file:///music/hold.wav\n\
    queue sales target \"sales >= 5 & english >= 6\" priority 8 timeout 300s\n\
    route default\n";

fn config(media: &str, agents: u32) -> (TenantConfig, String) {
    let mut demo = demo_tenant();
    // More agents like the demo's: English 1 to 10, billing or sales.
    for number in 1021..1001 + agents {
        let like = ((number - 1001) % 20) as usize;
        let mut dn = demo.dns[like].clone();
        dn.number = number.to_string();
        dn.password = format!("demo{number}");
        let mut place = demo.places[like].clone();
        place.name = format!("place{number}");
        place.dns = vec![dn.number.clone()];
        let mut agent = demo.agents[like].clone();
        agent.id = format!("a{number}");
        agent.login_code = dn.number.clone();
        agent.place = Some(place.name.clone());
        demo.dns.push(dn);
        demo.places.push(place);
        demo.agents.push(agent);
    }
    let named = |name: &str| NamedConfig {
        name: name.into(),
        options: Options::new(),
    };
    demo.media_servers = vec![MediaServerConfig {
        name: "ms".into(),
        address: media.into(),
        options: Options::new(),
    }];
    demo.queues.push(named("sales"));
    demo.strategies = vec![
        StrategyConfig {
            name: "support".into(),
            version: 1,
            document: SUPPORT.into(),
            options: Options::new(),
        },
        StrategyConfig {
            name: "sales".into(),
            version: 1,
            document: SALES.into(),
            options: Options::new(),
        },
    ];
    demo.routing_points.push(RoutingPointConfig {
        number: "5001".into(),
        strategy: "sales".into(),
        default_destination: "extension:1001".into(),
        timeout_secs: 300,
        options: Options::new(),
    });
    demo.dial_plan.push(DialRuleConfig {
        pattern: r"^\+18005550200$".into(),
        rewrite: String::new(),
        destination: "routing-point:5001".into(),
        options: Options::new(),
    });
    if let Some(d) = demo.dns.iter_mut().find(|d| d.number == RONA_DN) {
        d.options.insert("no-answer-timeout".into(), "1".into());
    }
    let text = support::tenants_toml(&[&demo]);
    (demo, text)
}

/// The SBC's injection files: for each call, the number dialed and the caller; the patient
/// callers' and those of the callers who give up after 1.5 s (one in ten).
fn calls_files(dir: &Path, calls: usize) -> [std::path::PathBuf; 2] {
    let mut patient = String::from("SEQUENTIAL\n");
    let mut impatient = patient.clone();
    for i in 0..calls {
        let number = if i % 3 == 0 {
            "+18005550200"
        } else {
            "+18005550100"
        };
        let file = if i % 10 == 7 {
            &mut impatient
        } else {
            &mut patient
        };
        file.push_str(&format!("{number};{};\n", caller(i)));
    }
    [("patient", patient), ("impatient", impatient)].map(|(name, text)| {
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, text).expect("calls file");
        path
    })
}

/// The SBC scenario with callers who give up after 1.5 s.
fn impatient_scenario(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(scenario("sbc_queue.xml")).expect("scenario");
    let patience = r#"<recv request="INVITE" timeout="120000""#;
    assert!(text.contains(patience));
    let path = dir.join("sbc_queue_impatient.xml");
    std::fs::write(
        &path,
        text.replace(patience, r#"<recv request="INVITE" timeout="1500""#),
    )
    .expect("scenario");
    path
}

fn caller(i: usize) -> String {
    format!("+1555{i:07}")
}

/// One event of either stream, in the tenant's order (entry ids are shared by its streams).
#[derive(Debug)]
struct Event {
    at: u64,
    /// When the node that emitted it saw it happen (its clock, in ms).
    stamp: u64,
    id: (u64, u64),
    kind: String,
    payload: serde_json::Value,
    agent: bool,
}

fn events(store: &Store) -> Vec<Event> {
    let mut conn = store.conn();
    let mut all = Vec::new();
    for (stream, agent) in [
        (store.key("voice-callthread"), false),
        (store.key("voice-agentstate"), true),
    ] {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query(&mut *conn)
            .expect("xrange");
        for (id, fields) in entries {
            let (ms, n) = id.split_once('-').expect("entry id");
            let id = (ms.parse().expect("ms"), n.parse().expect("n"));
            all.push(Event {
                at: id.0,
                stamp: fields["at"].parse().expect("at"),
                id,
                kind: fields["kind"].clone(),
                payload: serde_json::from_str(&fields["payload"]).expect("payload"),
                agent,
            });
        }
    }
    all.sort_by_key(|e| e.id);
    all
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// The destination DN of a call event.
fn destination(v: &serde_json::Value) -> String {
    v["parties"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["role"] == "destination"))
        .map(|p| text(p, "dn"))
        .unwrap_or_default()
}

/// A call as it waits.
struct Waiting {
    queued_at: u64,
    /// When it first queued (its age in the queue's order).
    since: u64,
    priority: u64,
    /// The agents who satisfy its target.
    takers: BTreeSet<String>,
}

#[derive(Default)]
struct Findings {
    /// Calls by caller: how each ended (`served by <agent>` or `abandoned`).
    outcomes: BTreeMap<String, Vec<String>>,
    served: usize,
    /// Callers who abandoned, with the time waited; and their calls by id.
    abandoned: Vec<(String, u64)>,
    abandoned_calls: BTreeSet<String>,
    rona_requeues: Vec<String>,
    /// Calls by id that were queued again after RONA.
    requeued: BTreeSet<String>,
    /// Of those, the ones served afterwards by someone other than the RONA agent.
    requeued_served: BTreeSet<String>,
    wrong_agent: Vec<String>,
    idle: Vec<String>,
    out_of_order: Vec<String>,
    /// Agents seen with two calls at once.
    double_booked: Vec<String>,
    longest_idle_pair_ms: u64,
    /// For calls that found a Ready agent that could take them when they queued: from the
    /// call's RouteRequest to the agent's phone ringing.
    offered_ms: Vec<u64>,
    /// For calls that waited: from the agent that took it becoming free (or the call
    /// queueing, whichever was later) to its phone ringing.
    reaction_ms: Vec<u64>,
}

fn check(events: &[Event], profiles: &HashMap<String, Profile>) -> Findings {
    let mut f = Findings::default();
    // Agents by DN, and since when each agent is available (Ready, not on a call).
    let mut agent_at: HashMap<String, String> = HashMap::new();
    let mut available: HashMap<String, u64> = HashMap::new();
    let mut waiting: HashMap<String, Waiting> = HashMap::new();
    let mut since: HashMap<String, u64> = HashMap::new();
    let mut ani: HashMap<String, String> = HashMap::new();
    // Calls of a higher rank waiting as an agent took another (served at the same moment by
    // another agent, they were not passed over), and when each call stopped waiting.
    let mut suspects: Vec<(String, u64, String)> = Vec::new();
    let mut left: HashMap<String, Vec<u64>> = HashMap::new();
    // When each call asked for a route, whether an agent who could take it was free when it
    // first queued, and when each agent last became free (event stamps).
    let mut requested: HashMap<String, u64> = HashMap::new();
    let mut at_once: BTreeSet<String> = BTreeSet::new();
    let mut freed: HashMap<String, u64> = HashMap::new();
    let mut queued_stamp: HashMap<String, u64> = HashMap::new();
    for e in events {
        // Pairs that end with this event have lasted until now: the longest so far.
        for (call, w) in &waiting {
            for a in &w.takers {
                if let Some(&from) = available.get(a) {
                    let lasted = e.at.saturating_sub(from.max(w.queued_at));
                    f.longest_idle_pair_ms = f.longest_idle_pair_ms.max(lasted);
                    if lasted > SLACK_MS && f.idle.len() < 10 {
                        f.idle.push(format!(
                            "{a} idle for {lasted} ms while call {call} waited (until {})",
                            e.at
                        ));
                    }
                }
            }
        }
        let p = &e.payload;
        if e.agent {
            let id = text(p, "agentId");
            let dn = text(p, "dn");
            if !dn.is_empty() {
                agent_at.insert(dn, id.clone());
            }
            let calls = p["calls"].as_array().map_or(0, Vec::len);
            if calls > 1 && f.double_booked.len() < 10 {
                f.double_booked.push(format!(
                    "{id} with {calls} calls at {}: {}",
                    e.at, p["calls"]
                ));
            }
            let free = text(p, "state") == "Ready" && calls == 0;
            if !free {
                available.remove(&id);
            } else if !available.contains_key(&id) {
                available.insert(id.clone(), e.at);
                freed.insert(id, e.stamp);
            }
            continue;
        }
        let call = text(p, "callId");
        if waiting.contains_key(&call) && e.kind != "Queued" {
            left.entry(call.clone()).or_default().push(e.at);
        }
        ani.entry(call.clone()).or_insert_with(|| text(p, "ani"));
        let caller = ani[&call].clone();
        match e.kind.as_str() {
            "RouteRequest" => {
                requested.entry(call.clone()).or_insert(e.stamp);
            }
            "Queued" => {
                let target = Target::parse(&text(p, "target")).expect("a target on Queued");
                // A first queueing with an agent free who could take it and whom no other
                // waiting call could take: nothing stood between the call and that agent.
                if !since.contains_key(&call)
                    && available.keys().any(|a| {
                        profiles.get(a).is_some_and(|pr| target.matches(pr))
                            && !waiting.values().any(|w| w.takers.contains(a))
                    })
                {
                    at_once.insert(call.clone());
                }
                queued_stamp.insert(call.clone(), e.stamp);
                let first = *since.entry(call.clone()).or_insert(e.at);
                if text(p, "cause") == "rona" {
                    // Rung in vain: not a figure of routing.
                    at_once.remove(&call);
                    f.rona_requeues.push(call.clone());
                    f.requeued.insert(call.clone());
                }
                waiting.insert(
                    call.clone(),
                    Waiting {
                        queued_at: e.at,
                        since: first,
                        priority: p["priority"].as_u64().unwrap_or(0),
                        takers: profiles
                            .values()
                            .filter(|pr| target.matches(pr))
                            .map(|pr| pr.id.clone())
                            .collect(),
                    },
                );
            }
            "Ringing" => {
                let Some(w) = waiting.remove(&call) else {
                    continue;
                };
                let dn = destination(p);
                let Some(taker) = agent_at.get(&dn) else {
                    continue;
                };
                match (at_once.remove(&call), requested.get(&call)) {
                    (true, Some(&asked)) => f.offered_ms.push(e.stamp.saturating_sub(asked)),
                    _ => {
                        let from = freed.get(taker).copied().unwrap_or(0);
                        let queued = queued_stamp.get(&call).copied().unwrap_or(0);
                        f.reaction_ms.push(e.stamp.saturating_sub(from.max(queued)));
                    }
                }
                // No call of a higher rank that this agent could take was waiting.
                for (other, o) in &waiting {
                    let ahead = o.priority > w.priority
                        || (o.priority == w.priority && o.since + 200 < w.since);
                    if ahead && o.takers.contains(taker) && o.queued_at + SLACK_MS < e.at {
                        suspects.push((
                            other.clone(),
                            e.at,
                            format!(
                                "{taker} took {call} (priority {}, since {}) while {other} \
                                 (priority {}, since {}) waited",
                                w.priority, w.since, o.priority, o.since
                            ),
                        ));
                    }
                }
            }
            "RouteUsed" => {
                waiting.remove(&call);
                let dn = destination(p);
                let taker = agent_at.get(&dn).cloned().unwrap_or_default();
                let target = Target::parse(&text(p, "target")).expect("a target on RouteUsed");
                if !profiles.get(&taker).is_some_and(|pr| target.matches(pr)) {
                    f.wrong_agent
                        .push(format!("{call} to {taker} at {dn}, target {target}"));
                }
                if f.requeued.contains(&call) && dn != RONA_DN {
                    f.requeued_served.insert(call.clone());
                }
                f.served += 1;
                f.outcomes
                    .entry(caller)
                    .or_default()
                    .push(format!("served by {taker}"));
            }
            "Abandoned" => {
                waiting.remove(&call);
                let waited = text(p, "durationMs").parse().unwrap_or(0);
                f.abandoned.push((caller.clone(), waited));
                f.abandoned_calls.insert(call.clone());
                f.outcomes
                    .entry(caller)
                    .or_default()
                    .push("abandoned".into());
            }
            "Released" | "Diverted" if waiting.remove(&call).is_some() => {
                f.outcomes
                    .entry(caller)
                    .or_default()
                    .push(format!("{} while waiting", e.kind));
            }
            _ => {}
        }
    }
    for (call, at, what) in suspects {
        let served = left
            .get(&call)
            .and_then(|times| times.iter().find(|&&t| t >= at))
            .is_some_and(|&t| t <= at + SLACK_MS);
        if !served {
            f.out_of_order.push(what);
        }
    }
    f
}

/// What happened to call `id`, and to the agents meanwhile, for a failure's message.
fn story(events: &[Event], id: &str) -> String {
    let mut lines = Vec::new();
    let mut on = false;
    for e in events {
        let p = &e.payload;
        if text(p, "callId") == id {
            on = !matches!(e.kind.as_str(), "RouteUsed" | "Abandoned" | "Released");
            lines.push(format!(
                "{} {} {} {}",
                e.at,
                e.kind,
                destination(p),
                text(p, "cause")
            ));
        } else if on && e.agent {
            lines.push(format!(
                "{}   {} {} {} {:?}",
                e.at,
                e.kind,
                text(p, "agentId"),
                text(p, "state"),
                p["calls"]
            ));
        }
    }
    lines.join("\n")
}

/// The impatient callers SIPp logged as giving up: `hangup <caller> <talked> <direct>` lines
/// of its log file with neither (SIPp writes a talked of 0 as nothing, 1 as `1.000000`).
fn gave_up(dir: &Path) -> BTreeSet<String> {
    let mut callers = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("sbc_queue_impatient") && name.ends_with("_logs.log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            callers.extend(
                text.lines()
                    .filter_map(|l| l.split_once("hangup ").map(|(_, rest)| rest))
                    .filter_map(|l| l.split_once(' '))
                    .filter(|(_, rest)| !rest.trim().starts_with('1') && !rest.contains("o=phone"))
                    .map(|(caller, _)| caller.to_owned()),
            );
        }
    }
    callers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_calls_reach_agents_who_satisfy_their_targets() {
    run(Layout::One, scale(300), Store::db(31)).await;
}

/// The same contact center as a cluster: a proxy in front of two cluster nodes on one Redis,
/// the phones registered at the proxy, half the agents' desktops on each node's gRPC port,
/// the SBC's calls through the proxy landing on both nodes; one of the nodes runs the
/// routing, the other reaches it over the bus. A shorter run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_proxy_and_two_nodes_calls_reach_agents_who_satisfy_their_targets() {
    run(Layout::ProxyAndTwo, scale(150), Store::db(32)).await;
}

/// The same on a three-master Redis Cluster, under a key prefix of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_calls_through_a_proxy_and_two_nodes_reach_matching_agents() {
    run(Layout::ProxyAndTwo, scale(150), Store::cluster("load")).await;
}

/// Where the scenario runs.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    One,
    ProxyAndTwo,
}

/// The switchboard processes of a run.
struct Site {
    /// Where the SBC's calls and the phones' registrations go: the node, or the proxy.
    front: Server,
    /// The cluster nodes behind the proxy (none when `front` is the one node).
    behind: Vec<Server>,
}

impl Site {
    fn start(layout: Layout, config: &str, store: &Store) -> Site {
        let config = format!("{}{config}", store.config());
        let redis = ["--redis", store.url()];
        match layout {
            Layout::One => Site {
                front: Server::start_with_config(Some(&config), &redis),
                behind: Vec::new(),
            },
            Layout::ProxyAndTwo => {
                let addr = || std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
                let (proxy, a, b) = (addr(), addr(), addr());
                let node = format!("[cluster]\nproxies = [\"{proxy}\"]\n{config}");
                let behind = [a, b]
                    .map(|sip| Server::start_on(sip, Some(&node), &redis))
                    .into();
                let front =
                    format!("[cluster]\nnodes = [\"{a}\", \"{b}\"]\nprobe_ms = 200\n{config}");
                Site {
                    front: Server::start_on(proxy, Some(&front), &redis),
                    behind,
                }
            }
        }
    }

    /// Every process, the proxy first.
    fn all(&self) -> impl Iterator<Item = &Server> {
        std::iter::once(&self.front).chain(&self.behind)
    }

    /// The nodes that run calls and routing, whose gRPC ports the desktops use.
    fn nodes(&self) -> Vec<&Server> {
        if self.behind.is_empty() {
            vec![&self.front]
        } else {
            self.behind.iter().collect()
        }
    }

    fn log_text(&self) -> String {
        self.all()
            .map(Server::log_text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn run(layout: Layout, size: Scale, store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let media_port = free_port();
    let (demo, text) = config(&format!("127.0.0.1:{media_port}"), size.agents);
    let site = Site::start(layout, &text, &store);
    if store.is_cluster() {
        for server in site.all() {
            let log = server.log_text();
            assert!(log.contains("redis connected: a Redis Cluster"), "{log}");
        }
    }
    let mut sipps = Running(Vec::new());
    sipps.0.push(serving(
        dir.path(),
        "media_server.xml",
        "ms",
        "127.0.0.1",
        media_port,
    ));

    // The phones: every DN but RONA_DN registers from one SIPp that answers them all.
    let (answering, silent) = (free_port(), free_port());
    let dns: Vec<String> = demo.agents.iter().map(|a| a.login_code.clone()).collect();
    for dn in &dns {
        let port = if dn == RONA_DN { silent } else { answering };
        register(&site.front, dir.path(), dn, port);
    }
    sipps.0.push(serving(
        dir.path(),
        "phone_answer.xml",
        "agent",
        "127.0.0.1",
        answering,
    ));
    sipps.0.push(serving(
        dir.path(),
        "phone_no_answer.xml",
        RONA_DN,
        "127.0.0.1",
        silent,
    ));

    // The desktops: agent by agent, through each node's gRPC port in turn.
    let mut desktops = Vec::new();
    for node in site.nodes() {
        desktops.push(Agents::new(support::grpc(node).await));
    }
    for (i, dn) in dns.iter().enumerate() {
        let n = desktops.len();
        log_in(&mut desktops[i % n], &[dn.as_str()], true).await;
    }

    // a1009's desktop puts it back to Ready after each RONA, so that it is offered calls
    // again and again.
    let running = Arc::new(AtomicBool::new(true));
    let readying = {
        let mut agents = desktops.last().expect("a desktop").clone();
        let running = running.clone();
        tokio::spawn(async move {
            let id = format!("a{RONA_DN}");
            let mut made_ready = 0;
            while running.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let Ok(state) = agents
                    .get_agent(with_key(DEMO_KEY, agent(&id, "")))
                    .await
                    .map(|r| r.into_inner().state.unwrap_or_default())
                else {
                    continue;
                };
                if state.state == "NotReady" && state.reason == "RONA" {
                    agents
                        .ready(with_key(DEMO_KEY, agent(&id, "")))
                        .await
                        .expect("ready again");
                    made_ready += 1;
                }
            }
            made_ready
        })
    };

    // The SBC places the calls (two SIPp instances: the patient callers, and one in ten who
    // give up) and waits for the last to end.
    let [patient, impatient] = calls_files(dir.path(), size.calls);
    let impatient_xml = impatient_scenario(dir.path());
    // The time the calls take to place, and a minute for the last to be served.
    let limit = (size.calls as f64 / size.rate) as u64 + 60;
    let sbc = |scenario: &Path, calls: &Path, count: usize, rate: f64| {
        sbc_calls(dir.path(), &site.front, scenario, calls, count, rate, limit)
    };
    let cpu_before: Vec<f64> = site.nodes().iter().map(|n| cpu_secs(n.pid())).collect();
    let few = size.calls / 10;
    let mut sbcs = [
        sbc(
            &scenario("sbc_queue.xml"),
            &patient,
            size.calls - few,
            size.rate * 0.9,
        ),
        sbc(&impatient_xml, &impatient, few, size.rate * 0.1),
    ];
    let statuses = tokio::task::spawn_blocking(move || {
        sbcs.each_mut()
            .map(|sbc| wait(sbc, Duration::from_secs(limit + 10)))
    })
    .await
    .expect("wait");
    // Each node's CPU time, the routing owner's first.
    let mut cpu: Vec<(bool, f64)> = site
        .nodes()
        .iter()
        .zip(cpu_before)
        .map(|(n, before)| {
            let owner = support::metric(n, r#"switchboard_tenant_owned{tenant="demo"}"#);
            (owner == Some(1.0), cpu_secs(n.pid()) - before)
        })
        .collect();
    cpu.sort_by_key(|c| std::cmp::Reverse(c.0));
    running.store(false, Ordering::SeqCst);
    let made_ready = readying.await.expect("readying");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let profiles: HashMap<String, Profile> = demo
        .agents
        .iter()
        .map(|a| (a.id.clone(), a.profile()))
        .collect();
    let events = events(&store);
    let f = check(&events, &profiles);
    // The failures name the call first: its story and the nodes' log of it.
    for found in [&f.idle, &f.out_of_order] {
        if let Some(first) = found.first() {
            let call = first
                .split(' ')
                .find(|w| w.len() == 36 && w.contains('-'))
                .unwrap_or_default();
            let other = first.split(' ').filter(|w| w.len() == 36).nth(1);
            let log: Vec<String> = site
                .log_text()
                .lines()
                .filter(|l| l.contains(call) || other.is_some_and(|o| l.contains(o)))
                .map(str::to_owned)
                .collect();
            panic!(
                "{found:#?}\n{}\n{}\n{}",
                story(&events, call),
                other.map(|o| story(&events, o)).unwrap_or_default(),
                log.join("\n")
            );
        }
    }

    // Every call ended once: served or abandoned, never lost or ended while waiting.
    assert_eq!(
        f.outcomes.len(),
        size.calls,
        "every call reached the routing point and ended\n{}",
        sipp_errors(dir.path())
    );
    let odd: Vec<_> = f
        .outcomes
        .iter()
        .filter(|(_, o)| o.len() != 1 || o[0].ends_with("while waiting"))
        .collect();
    assert!(odd.is_empty(), "calls not ended once: {odd:?}");
    assert!(f.wrong_agent.is_empty(), "{:#?}", f.wrong_agent);
    assert!(f.double_booked.is_empty(), "{:#?}", f.double_booked);

    assert!(
        statuses.iter().all(|s| s.success()),
        "every call of the SBC completes: {statuses:?}\n{}",
        sipp_errors(dir.path()),
    );

    // Abandons: exactly the callers who gave up, each with the time it waited.
    let quitters = gave_up(dir.path());
    let abandoned: BTreeSet<String> = f.abandoned.iter().map(|(c, _)| c.clone()).collect();
    // At the scenario's own size the load exceeds what the agents serve; a run scaled by
    // hand may not.
    let scaled =
        std::env::var_os("ROUTING_AGENTS").is_some() || std::env::var_os("ROUTING_RATE").is_some();
    assert!(
        !quitters.is_empty() || scaled,
        "the load makes some callers give up ({} abandoned)",
        f.abandoned.len(),
    );
    assert_eq!(abandoned, quitters, "Abandoned is recorded for each");
    for (caller, waited) in &f.abandoned {
        assert!(*waited >= 1_400, "{caller} waited {waited} ms");
    }
    assert_eq!(f.served + f.abandoned.len(), size.calls);

    // RONA: a1009 let calls ring; each went back to its queue and on to another agent (or
    // its caller gave up).
    assert!(
        !f.rona_requeues.is_empty() && made_ready > 0,
        "a1009 was offered calls"
    );
    let lost: Vec<_> = f
        .requeued
        .iter()
        .filter(|c| !f.requeued_served.contains(*c) && !f.abandoned_calls.contains(*c))
        .collect();
    assert!(lost.is_empty(), "calls after RONA: {lost:?} not served");
    if layout == Layout::ProxyAndTwo {
        // The calls landed on both nodes (each reported route requests of its own), and
        // the one not owning the tenant asked the owner over the bus.
        for node in site.nodes() {
            let routed = || {
                std::fs::read_to_string(node.events_file())
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .any(|v| v["kind"] == "RouteRequest")
            };
            assert!(
                support::eventually(Duration::from_secs(5), routed),
                "calls on each node\n{}",
                node.log_text()
            );
        }
        let asked: f64 = site
            .nodes()
            .iter()
            .filter_map(|n| support::metric(n, "switchboard_bus_to_owner_total"))
            .sum();
        assert!(asked > 0.0, "routing asked over the bus");
    }
    let cpu: Vec<String> = cpu
        .iter()
        .map(|(owner, secs)| format!("{secs:.2} s{}", if *owner { " (owner)" } else { "" }))
        .collect();
    eprintln!(
        "{} agents, {} calls at {}/s, {}: {} served, {} abandoned, {} RONA requeues; \
         RouteRequest to the agent's phone ringing, calls that found an agent Ready: \
         p50 {} ms, p99 {} ms ({} calls); a freed agent to its next waiting call ringing: \
         p50 {} ms, p99 {} ms ({} calls); longest agent-and-call wait side by side {} ms; \
         switchboard CPU {}",
        size.agents,
        size.calls,
        size.rate,
        match layout {
            Layout::One => "one node",
            Layout::ProxyAndTwo => "a proxy and two cluster nodes",
        },
        f.served,
        f.abandoned.len(),
        f.rona_requeues.len(),
        percentile(&f.offered_ms, 50),
        percentile(&f.offered_ms, 99),
        f.offered_ms.len(),
        percentile(&f.reaction_ms, 50),
        percentile(&f.reaction_ms, 99),
        f.reaction_ms.len(),
        f.longest_idle_pair_ms,
        cpu.join(", ")
    );
}

/// The `p`th percentile of `values` (nearest rank), 0 for none.
fn percentile(values: &[u64], p: usize) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The CPU time process `pid` has used, in seconds (user and system, from /proc).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let per_sec = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    (ticks(14) + ticks(15)) / per_sec
}
