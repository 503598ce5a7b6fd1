//! Wiring a node: the tenant directory, the stores, the event sink, the registrar, the SIP edge,
//! the gRPC services and the health endpoints, started in that order and stopped together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ractor::{ActorRef, OutputPort};
use switchboard_actors::agent_state::AgentStateConfig;
use switchboard_actors::agent_state::store::{AgentStore, MemoryAgents, RedisAgents};
use switchboard_actors::bus::{Bus, BusConfig, Systems};
use switchboard_actors::call_state::{MemorySnapshots, RedisSnapshots, SnapshotStore};
use switchboard_actors::defence::Defence;
use switchboard_actors::defence::store::BanStore;
use switchboard_actors::events::{EventSink, RedisSink};
use switchboard_actors::figures::Figures;
use switchboard_actors::lease::{Fencing, Holding, LeaseConfig, Leases, Ownership, TenantNames};
use switchboard_actors::messages::agent_state::AgentState;
use switchboard_actors::messages::bus::{ToNode, ToOwner};
use switchboard_actors::messages::call_state::CallThreads;
use switchboard_actors::messages::ors::Ors;
use switchboard_actors::messages::registrar::BindingStore;
use switchboard_actors::messages::rq::Rq;
use switchboard_actors::messages::sip_cluster::{AdoptionCounts, CallNodes, Cluster};
use switchboard_actors::ors::callbacks::{Callbacks, CallbacksArgs};
use switchboard_actors::ors::store::{MemoryRouting, RedisRouting, RoutingStore};
use switchboard_actors::ors::{OrsArgs, wall_clock};
use switchboard_actors::redis_conn::{Conn, Redis};
use switchboard_actors::registrar::{
    MemoryBindings, Policy, RedisBindings, Registrar, RegistrarConfig, RegistrarMsg,
};
use switchboard_actors::sip_cluster::{ClusterArgs, ClusterConfig};
use switchboard_actors::sip_proxy::{ProxyArgs, ProxyConfig, ProxyMsg, SipProxy};
use switchboard_actors::stats::keeper::Statistics;
use switchboard_actors::supervisor::{Fatal, Supervisor};
use switchboard_actors::tenant::postgres::{ConfigStore, Versioned};
use switchboard_actors::tenant::watch::Watcher;
use switchboard_actors::tenant::{
    ConfigError, Directory, TenantActor, TenantConfig, TenantMsg, demo_tenant,
};
use switchboard_kafka::Reporter;
use switchboard_sip::Host;
use switchboard_sip::auth::NonceKey;
use switchboard_sip::transaction::TimerConfig;
use switchboard_sip::transport::TransportConfig;
use switchboard_sip::transport::hep::{Hep, HepConfig as HepSettings};

use crate::auth::Keys;
use crate::config::NodeConfig;
use crate::grpc;
use crate::http::{self, health};
use crate::provisioning::Provisioning;
use crate::stats::StatsApi;
use crate::voice::Voice;

/// A running node.
pub(crate) struct Node {
    supervisor: Supervisor,
    /// Says when a system failed and the node must stop.
    fatal: tokio::sync::watch::Receiver<Option<Fatal>>,
    proxy: ActorRef<ProxyMsg>,
    cluster: Cluster,
    call_state: CallThreads,
    agents: AgentState,
    rq: Rq,
    ors: Ors,
    registrar: ActorRef<RegistrarMsg>,
    tenant: ActorRef<TenantMsg>,
    health: tokio::task::JoinHandle<()>,
    grpc: tokio::task::JoinHandle<()>,
    callbacks: Callbacks,
    /// The callbacks API, and the reading of GES's requests (with Redis).
    tasks: [Option<tokio::task::JoinHandle<()>>; 4],
    /// Kafka or the JSON-lines file.
    reporter: Option<Reporter>,
    /// Follows PostgreSQL while the node runs; stops when dropped.
    _watcher: Option<Watcher>,
    /// The tenants' leases this node holds (with Redis).
    leases: Option<Holding>,
    /// The bus to the other nodes (with Redis).
    bus: Option<Bus>,
    /// Set as the node stops: the edge refuses new calls and the proxies' probes.
    draining: Arc<AtomicBool>,
    /// How long a stopping node lets its calls end on their own (a cluster node behind
    /// proxies) before it ends those left; zero for a node alone.
    drain: Duration,
}

struct Ready {
    redis: Option<Conn>,
    cluster: Cluster,
    ownership: Ownership,
    directory: tokio::sync::watch::Receiver<Arc<Directory>>,
    bus: Option<Bus>,
    /// What adopting other nodes' calls came to.
    adoption: Option<Arc<AdoptionCounts>>,
    defence: Arc<Defence>,
    overloaded: Arc<std::sync::atomic::AtomicU64>,
    transport: Arc<switchboard_sip::transport::TransportFigures>,
    /// Whether configuration changes in PostgreSQL are being followed.
    config_followed: Option<Arc<AtomicBool>>,
    reporter: Option<Reporter>,
    /// What the systems count as they work.
    figures: Arc<Figures>,
    /// This node's queues (those of the tenants it owns).
    rq: Rq,
    /// Tenants labelled on their own in the metrics; the rest are summed as `other`.
    max_tenants: usize,
    /// Every tenant's statistics.
    statistics: Statistics,
    /// SIP capture to Homer, if on.
    hep: Option<Arc<Hep>>,
}

impl Ready {
    /// Whether Redis, if the node uses it, answers a PING within 500 ms.
    async fn redis_answers(&self) -> Result<(), String> {
        let Some(conn) = &self.redis else {
            return Ok(());
        };
        let mut conn = conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(Duration::from_millis(500), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("redis: {e}")),
            Err(_) => Err("redis: no answer within 500 ms".into()),
        }
    }
}

impl health::Readiness for Ready {
    async fn check(&self) -> Result<(), String> {
        if let Some(followed) = &self.config_followed
            && !followed.load(Ordering::Relaxed)
        {
            return Err(
                "postgresql: configuration changes are not reaching this node (serving the last snapshot)".into(),
            );
        }
        if let Some(status) = self.reporter.as_ref().map(Reporter::status)
            && !status.accepting
        {
            return Err(format!(
                "events: the spool for Kafka holds {} bytes, past its high-water mark of {} (Kafka {}); new calls and registrations get 503",
                status.spooled_bytes,
                status.spool_high_water_bytes,
                if status.connected {
                    "is slow"
                } else {
                    "is unreachable"
                }
            ));
        }
        self.redis_answers().await
    }

    async fn metrics(&self) -> String {
        let d = &self.defence.figures;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let tenants: Vec<(String, bool)> = self
            .directory
            .borrow()
            .tenant_names()
            .into_iter()
            .map(|t| {
                let owned = self.ownership.owns(&t);
                (t, owned)
            })
            .collect();
        let owned = || tenants.iter().filter(|(_, owned)| *owned).map(|(t, _)| t);
        let mut queues = Vec::new();
        for tenant in owned() {
            for q in self.rq.stats(tenant).await {
                queues.push((tenant.clone(), q));
            }
        }
        let mut stores = Vec::new();
        if self.redis.is_some() {
            stores.push(("redis", self.redis_answers().await.is_ok()));
        }
        if let Some(followed) = &self.config_followed {
            stores.push(("postgresql", followed.load(Ordering::Relaxed)));
        }
        let events = self.reporter.as_ref().map(Reporter::status);
        if let Some(s) = &events
            && s.destination.starts_with("kafka")
        {
            stores.push(("kafka", s.connected));
        }
        let bus = match &self.bus {
            Some(bus) => {
                let mut lags = Vec::new();
                for tenant in owned() {
                    if let Some(lag) = bus.lag(tenant).await {
                        lags.push((tenant.clone(), lag));
                    }
                }
                Some((bus.figures(), lags))
            }
            None => None,
        };
        let mut today = Vec::new();
        for tenant in owned() {
            if let Some((now, _)) = self.statistics.now(tenant, switchboard_actors::unix_ms()) {
                for q in now.queues {
                    today.push((tenant.clone(), q.name, q.counts.today));
                }
            }
        }
        let owned_agents = self
            .figures
            .agents()
            .into_iter()
            .filter(|(t, _, _)| self.ownership.owns(t))
            .collect();
        crate::metrics::Scrape {
            calls: self.cluster.count().await,
            events,
            edge: vec![
                (
                    "sources_banned",
                    "SIP sources this node banned (floods, repeated failures); each is logged once.",
                    load(&d.bans),
                ),
                (
                    "banned_dropped",
                    "Datagrams, messages and connections of banned sources dropped unanswered.",
                    load(&d.dropped),
                ),
                (
                    "throttled",
                    "Requests of sources that have not authenticated dropped past their rate (before a ban).",
                    load(&d.throttled),
                ),
                (
                    "source_failures",
                    "Failures counted against SIP sources (credentials refused, unknown domains, malformed messages, stray requests).",
                    load(&d.failures),
                ),
                (
                    "overload_refused",
                    "Requests answered 503 at once for overload (the edge's backlog, or max_calls).",
                    load(&self.overloaded),
                ),
            ],
            sources_banned: self.defence.bans().len(),
            adoption: self
                .adoption
                .as_ref()
                .map(|a| [load(&a.adopted), load(&a.unrecoverable), load(&a.lookups_failed)]),
            transport: Some(self.transport.clone()),
            bus,
            agents: owned_agents,
            registrations: self.figures.registrations(),
            queues,
            today,
            routing_decisions: Some(self.figures.routing_decisions.clone()),
            stores,
            tenants,
            max_tenants: self.max_tenants,
            hep: self.hep.as_ref().map(|h| {
                (
                    h.sent.load(Ordering::Relaxed),
                    h.dropped.load(Ordering::Relaxed),
                )
            }),
        }
        .encode()
    }
}

impl Node {
    pub(crate) async fn start(config: NodeConfig) -> anyhow::Result<Self> {
        let (tenants, postgres) = initial_tenants(&config).await?;
        let tenants = tenants
            .iter()
            .map(|v| v.checked().map(Arc::new))
            .collect::<Result<Vec<_>, ConfigError>>()
            .context("invalid tenant configuration")?;
        let directory =
            Arc::new(Directory::from_tenants(tenants).context("invalid tenant configuration")?);
        for tenant in directory.tenants() {
            let open = tenant
                .dns
                .values()
                .filter(|d| d.kind.registers() && !d.authenticate)
                .count();
            if open > 0 {
                tracing::warn!(tenant = %tenant.name, dns = open,
                    "DNs register without authentication: anyone who can reach this node may take their calls");
            }
        }

        let redis = match &config.stores.redis {
            Some(url) => Some(connect_redis(url).await?),
            None => None,
        };
        let (redis_client, mut redis) = redis.unzip();
        let keys = config.stores.key_prefix.clone();
        // Earlier versions ran on one Redis only: a cluster holds no keys of theirs.
        if let Some(conn @ Conn::One(_)) = &mut redis {
            switchboard_actors::keys::migrate_legacy(conn, &keys)
                .await
                .context("renaming the keys of an earlier version")?;
        }
        let events = match (&redis_client, &redis) {
            (Some(client), Some(conn)) => EventSink::redis(RedisSink::new(
                client.clone(),
                conn.clone(),
                keys.clone(),
                config.events.stream_length,
            )),
            _ => EventSink::memory(),
        };
        let reporter = start_reporting(&config)?;
        let streams = if redis.is_some() {
            "redis streams <prefix>:{<tenant>}:<topic>"
        } else {
            "memory (no --redis)"
        };
        match &reporter {
            Some(r) => {
                tracing::info!(streams, reporting = %r.status().destination, "events")
            }
            None => tracing::info!(
                streams,
                "events: no reporting ([events] file is empty and no [kafka])"
            ),
        }
        let events = match &reporter {
            Some(r) => events.reporting_to(r.clone()),
            None => events,
        };
        // This run's id among the nodes: the prefix of its calls' Call-IDs, which the edge
        // finds them by, and the holder's name on its leases.
        let node = Arc::<str>::from(format!("sb{}", switchboard_sip::token::<6>()));
        let lease_config = LeaseConfig {
            ttl: Duration::from_millis(config.cluster.lease_ms),
            claim_every: Duration::from_millis(config.cluster.lease_claim_ms.max(10)),
        };
        if lease_config.claim_every * 3 > lease_config.ttl {
            anyhow::bail!(
                "[cluster] lease_claim_ms ({}) must be at most a third of lease_ms ({}): leases would lapse between renewals",
                config.cluster.lease_claim_ms,
                config.cluster.lease_ms
            );
        }
        let (supervisor, fatal) = Supervisor::start().await.context("root supervisor")?;
        let changes = Arc::new(OutputPort::<Arc<Directory>>::default());
        let tenant = supervisor
            .spawn("tenant", TenantActor, (directory.clone(), changes.clone()))
            .await
            .context("tenant actor")?;
        let followed = ractor::call!(tenant, TenantMsg::Follow).context("tenant actor")?;
        // With Redis, each tenant's routing and agents run on the node holding its lease,
        // and the other nodes reach them over the bus.
        // A proxy in front of cluster nodes is only the edge: it takes no lease.
        let leases = redis.clone().map(|conn| {
            if !config.cluster.nodes.is_empty() {
                tracing::info!(node = %node,
                    "a proxy in front of cluster nodes: each tenant's routing runs on one of them, reached over the bus");
                return Holding::none();
            }
            tracing::info!(node = %node, lease_ms = config.cluster.lease_ms,
                "each tenant's routing runs on the node holding its lease");
            Holding::start(
                Leases::new(conn, keys.clone(), &node),
                followed.clone(),
                lease_config,
            )
        });
        let ownership = leases
            .as_ref()
            .map_or(Ownership::Alone, |h| h.ownership.clone());
        let nonce_lifetime = Duration::from_secs(config.auth.nonce_lifetime_secs);
        let nonce_key = match &config.auth.nonce_secret {
            Some(secret) => NonceKey::from_secret(secret, nonce_lifetime),
            None => NonceKey::random(nonce_lifetime),
        };
        // Where a desktop's request finds the node running a call (with Redis).
        let mut call_nodes: Option<Arc<dyn CallNodes>> = None;
        let (bindings, snapshots, agent_store): (
            Arc<dyn BindingStore>,
            Arc<dyn SnapshotStore>,
            Arc<dyn AgentStore>,
        ) = match &redis {
            Some(conn) => {
                tracing::info!("bindings, agent states, call snapshots and events in redis");
                let snapshots = RedisSnapshots::new(conn.clone(), keys.clone(), &node);
                call_nodes = Some(Arc::new(snapshots.clone()));
                (
                    Arc::new(RedisBindings::new(conn.clone(), keys.clone())),
                    Arc::new(snapshots),
                    Arc::new(RedisAgents::new(
                        conn.clone(),
                        Fencing::new(&node, ownership.clone(), keys.clone()),
                    )),
                )
            }
            None => {
                tracing::info!(
                    "bindings, agent states, call snapshots and events in memory (no --redis)"
                );
                (
                    Arc::new(MemoryBindings::default()),
                    Arc::new(MemorySnapshots::new(&node)),
                    Arc::new(MemoryAgents::default()),
                )
            }
        };
        let bus = match (&redis_client, &redis) {
            (Some(client), Some(conn)) => Some(Bus::new(
                &node,
                keys.clone(),
                client.clone(),
                conn.clone(),
                ownership.clone(),
                BusConfig::default(),
            )),
            _ => None,
        };
        if let Some(bus) = &bus {
            bus.say_alive().await;
        }
        let to_owner = bus.clone().map(|b| Arc::new(b) as Arc<dyn ToOwner>);
        let to_node = bus.clone().map(|b| Arc::new(b) as Arc<dyn ToNode>);
        let figures = Arc::new(Figures::default());
        let rq = Rq::spawn(directory.clone(), &supervisor)
            .await
            .context("rq")?;
        // Agents start before calls, and reach them through this once they have started.
        let agent_calls = Arc::new(std::sync::OnceLock::new());
        let agents = AgentState::spawn(
            AgentStateConfig {
                events: events.clone(),
                store: agent_store,
                directory: directory.clone(),
                bindings: bindings.clone(),
                rq: Some(rq.clone()),
                node: node.clone(),
                ownership: ownership.clone(),
                figures: figures.clone(),
                calls: agent_calls.clone(),
            },
            &supervisor,
        )
        .await
        .context("agent state")?;
        let routing_store: Arc<dyn RoutingStore> = match &redis {
            Some(conn) => Arc::new(RedisRouting::new(
                conn.clone(),
                Fencing::new(&node, ownership.clone(), keys.clone()),
            )),
            None => Arc::new(MemoryRouting::default()),
        };
        let ors = Ors::spawn(
            OrsArgs {
                rq: rq.clone(),
                agents: agents.clone(),
                clock: wall_clock(),
                to_node: to_node.clone(),
                store: routing_store.clone(),
                node: node.clone(),
                figures: figures.clone(),
            },
            &supervisor,
        )
        .await
        .context("ors")?;
        // The handles the other systems and the desktops use: to the owner, wherever it is.
        let (rq_anywhere, agents_anywhere, ors_anywhere) = match &to_owner {
            Some(owner) => (
                rq.clone().routed_through(owner.clone()),
                agents.clone().routed_through(owner.clone()),
                ors.clone().routed_through(owner.clone()),
            ),
            None => (rq.clone(), agents.clone(), ors.clone()),
        };
        let registrar_config = RegistrarConfig {
            store: bindings.clone(),
            events: events.clone(),
            policy: Policy {
                min_expires: config.registrar.min_expires,
                max_expires: config.registrar.max_expires,
                default_expires: config.registrar.default_expires,
                max_contacts: config.registrar.max_contacts,
            },
            nonce_key,
            directory: directory.clone(),
            shards: config.registrar.shards,
            sweep_interval: Duration::from_millis(config.registrar.sweep_interval_ms.max(10)),
            agents: Some(agents_anywhere.clone()),
            figures: figures.clone(),
        };
        let nonce_key = registrar_config.nonce_key.clone();
        let registrar = supervisor
            .spawn("registrar", Registrar, registrar_config)
            .await
            .context("registrar")?;
        // With Redis, the node carries on the calls of nodes that die.
        let adoption = redis
            .is_some()
            .then(|| (snapshots.clone(), ownership.clone()));
        let redis_adopts = adoption.is_some();
        let adoption_counts = Arc::new(AdoptionCounts::default());
        let call_state = CallThreads::spawn(
            events.clone(),
            snapshots,
            Some(agents_anywhere.clone()),
            config.calls.state_shards,
            &supervisor,
        )
        .await
        .context("call state")?;

        // With PostgreSQL, changes committed there reach this node while it runs.
        let watcher = postgres
            .clone()
            .map(|url| Watcher::spawn(url, tenant.clone(), &directory));

        let t1 = Duration::from_millis(config.sip.t1_ms.max(1));
        let proxy_timers = TimerConfig {
            t1,
            t2: t1 * 8,
            t4: t1 * 10,
        };
        let draining = Arc::new(AtomicBool::new(false));
        let drain = if config.cluster.proxies.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_secs(config.cluster.drain_secs)
        };
        if let Some(product) = &config.sip.server_header
            && product.chars().any(char::is_control)
        {
            anyhow::bail!(
                "[sip] server_header {product:?}: control characters cannot go in a header"
            );
        }
        let tls = crate::tls::settings(&config.tls)?;
        if config.websocket.secure_listen.is_some() && tls.is_none() {
            anyhow::bail!(
                "[websocket] secure_listen (wss) needs [tls] certificate and key: the certificate it presents"
            );
        }
        let follow_tls = tls.as_ref().map(|t| {
            tokio::spawn(crate::tls::follow(
                t.tls.clone(),
                Duration::from_millis(config.tls.reload_check_ms),
            ))
        });
        let transport_figures = Arc::new(switchboard_sip::transport::TransportFigures::default());
        let hep = match &config.hep {
            Some(h) => {
                let hep = Hep::start(HepSettings {
                    collector: h.collector,
                    agent_id: h.agent_id,
                    password: h.password.clone(),
                })
                .await
                .with_context(|| format!("[hep] collector {}", h.collector))?;
                tracing::info!(collector = %h.collector, agent_id = h.agent_id,
                    "SIP capture: every message in and out copied to Homer (HEP v3)");
                Some(hep)
            }
            None => None,
        };
        let proxy_config = ProxyConfig {
            listen: config.sip.listen,
            aliases: config
                .sip
                .aliases
                .iter()
                .map(|a| Host::parse_str(a).map_err(|e| anyhow::anyhow!("sip alias {a:?}: {e}")))
                .collect::<anyhow::Result<_>>()?,
            transport: TransportConfig {
                max_message_size: config.sip.max_message_size,
                tcp_idle_timeout: Duration::from_secs(config.sip.tcp_idle_timeout_secs),
                message_timeout: Duration::from_millis(config.sip.message_timeout_ms.max(100)),
                max_connections_per_ip: config.sip.max_connections_per_ip,
                max_connections: config.sip.max_connections,
                udp_buffer_size: config.sip.udp_buffer_size,
                product: config
                    .sip
                    .server_header
                    .clone()
                    .filter(|p| !p.trim().is_empty()),
                tls: tls.clone(),
                figures: transport_figures.clone(),
                ws: config.websocket.listen,
                wss: config.websocket.secure_listen,
                ws_settings: switchboard_sip::transport::WsSettings {
                    origins: config.websocket.origins.clone(),
                },
                hep: hep.clone(),
                ..TransportConfig::default()
            },
            timers: proxy_timers,
            max_backlog: config.sip.max_backlog,
            max_new_backlog: config.sip.max_new_backlog,
            max_calls: config.calls.max_calls,
            max_ending: config.calls.max_ending,
            cluster_nodes: config.cluster.nodes.clone(),
            probe_interval: Duration::from_millis(config.cluster.probe_ms.max(100)),
            forward_timeout: Duration::from_millis(config.cluster.forward_timeout_ms.max(50)),
            trusted_proxies: config.cluster.proxies.clone(),
            accepting: reporter
                .as_ref()
                .map_or_else(|| Arc::new(AtomicBool::new(true)), Reporter::accepting),
            draining: draining.clone(),
            ..ProxyConfig::default()
        };
        let (new_bans, bans_made) = tokio::sync::mpsc::unbounded_channel();
        let defence = Arc::new(Defence::new(
            config.defence.to_config()?,
            &node,
            directory.clone(),
            Some(new_bans),
        ));
        let ban_store = redis.clone().map(|conn| BanStore::new(conn, keys.clone()));
        let defence_sync = tokio::spawn(switchboard_actors::defence::sync::run(
            defence.clone(),
            ban_store.clone(),
            bans_made,
        ));
        let cluster = Cluster::spawn(
            ClusterArgs {
                config: ClusterConfig {
                    timers: proxy_timers,
                    no_answer: Duration::from_secs(config.calls.no_answer_secs.max(1)),
                    probe_interval: Duration::from_secs(config.calls.probe_secs),
                    min_se: Duration::from_secs(config.calls.min_se_secs.max(1)),
                    session_expires: Duration::from_secs(
                        config
                            .calls
                            .session_expires_secs
                            .max(config.calls.min_se_secs.max(1)),
                    ),
                },
                bindings,
                call_threads: call_state.clone(),
                ors: Some(ors_anywhere),
                node: node.clone(),
                directory: directory.clone(),
                adoption,
                adoption_counts: adoption_counts.clone(),
                defence: Some(defence.clone()),
            },
            &supervisor,
        )
        .await
        .context("sip cluster")?;
        let overloaded = proxy_config.overloaded.clone();
        let proxy = SipProxy::spawn(
            ProxyArgs {
                config: proxy_config,
                directory: directory.clone(),
                registrar: ractor::call!(registrar, RegistrarMsg::Router).context("registrar")?,
                cluster: Some(cluster.clone()),
                node: node.clone(),
                nonce_key,
                defence: defence.clone(),
            },
            &supervisor,
        )
        .await
        .with_context(|| format!("cannot listen for SIP on {}", config.sip.listen))?;
        changes.subscribe(proxy.clone(), |d| Some(ProxyMsg::ConfigChanged(d)));
        changes.subscribe(registrar.clone(), |d| Some(RegistrarMsg::ConfigChanged(d)));
        agents.follow_config(&changes);
        rq.follow_config(&changes);
        cluster.follow_config(&changes);
        let (sip_udp, sip_tcp) = ractor::call!(proxy, ProxyMsg::LocalAddrs).context("sip proxy")?;

        let grpc = tokio::net::TcpListener::bind(config.grpc.listen)
            .await
            .with_context(|| format!("cannot listen for gRPC on {}", config.grpc.listen))?;
        let grpc_addr = grpc.local_addr()?;
        let admin_key = config.auth.admin_key.clone().filter(|k| !k.is_empty());
        if admin_key.is_none() {
            tracing::info!(
                "no administrator key ([auth] admin_key or SWITCHBOARD_ADMIN_KEY): tenants cannot be created over gRPC"
            );
        }
        let callbacks = Callbacks::spawn(
            CallbacksArgs {
                directory: directory.clone(),
                rq: rq.clone(),
                calls: cluster.clone(),
                events: events.clone(),
                store: routing_store.clone(),
            },
            &supervisor,
        )
        .await
        .context("callbacks")?;
        let callbacks_anywhere = match &to_owner {
            Some(owner) => callbacks.clone().routed_through(owner.clone()),
            None => callbacks.clone(),
        };
        callbacks.follow_config(&changes);
        let follow_callbacks = redis_client.clone().map(|client| {
            tokio::spawn(switchboard_actors::ors::callbacks::follow_requests(
                client,
                keys.clone(),
                ownership.clone(),
                followed.clone(),
                format!(
                    "node-{}-{}",
                    std::process::id(),
                    switchboard_actors::unix_ms()
                ),
                callbacks.clone(),
                Duration::from_millis(config.events.claim_idle_ms.max(100)),
            ))
        });
        let callbacks_listener = tokio::net::TcpListener::bind(config.http.callbacks_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for the callbacks API on {}",
                    config.http.callbacks_listen
                )
            })?;
        let callbacks_addr = callbacks_listener.local_addr()?;
        let callbacks_http = tokio::spawn(http::serve(
            callbacks_listener,
            "callbacks",
            http::callbacks::router(callbacks_anywhere, Keys::new(followed.clone(), None)),
            config.http.limits(),
        ));
        let cluster_anywhere = match (call_nodes, &to_node) {
            (Some(calls), Some(nodes)) => {
                cluster.clone().reaching_other_nodes(calls, nodes.clone())
            }
            _ => cluster.clone(),
        };
        let _ = agent_calls.set(cluster_anywhere.clone());
        let statistics = Statistics::start(events.clone(), followed.clone());
        let stats = StatsApi::new(
            Keys::new(followed.clone(), admin_key.clone()),
            statistics.clone(),
        );
        let voice = Voice::new(
            Keys::new(followed.clone(), admin_key.clone()),
            followed.clone(),
            agents_anywhere,
            events,
            cluster_anywhere,
            rq_anywhere,
        );
        if let Some(bus) = &bus {
            let systems = Systems::new(
                followed.clone(),
                &ors,
                &agents,
                &rq,
                &callbacks,
                cluster.clone(),
            );
            bus.start(Arc::new(systems)).await;
        }
        let followed_for_health = followed.clone();
        let provisioning = Provisioning::new(followed, postgres, admin_key.clone(), None)
            .with_bans(crate::provisioning::Bans {
                defence: defence.clone(),
                store: ban_store,
            });
        let grpc = tokio::spawn(grpc::serve(grpc, provisioning, voice, stats));

        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
        let http = listener.local_addr()?;
        let config_followed = watcher.as_ref().map(Watcher::connected_flag);
        let health = tokio::spawn(http::serve(
            listener,
            "health",
            health::router(Arc::new(Ready {
                redis,
                cluster: cluster.clone(),
                ownership,
                directory: followed_for_health.clone(),
                bus: bus.clone(),
                adoption: redis_adopts.then(|| adoption_counts.clone()),
                defence,
                overloaded,
                transport: transport_figures,
                config_followed,
                reporter: reporter.clone(),
                figures: figures.clone(),
                rq: rq.local(),
                max_tenants: config.metrics.max_tenants,
                statistics: statistics.clone(),
                hep,
            }))
            .merge(http::wallboard::router(
                Keys::new(followed_for_health.clone(), admin_key.clone()),
                statistics,
            )),
            config.http.limits(),
        ));
        if sip_udp.ip().is_loopback() {
            tracing::info!(
                "listening on the loopback address only; set [sip] listen to serve other hosts"
            );
        }
        tracing::info!(sip_udp = %sip_udp, sip_tcp = %sip_tcp, grpc = %grpc_addr, health = %format!("http://{http}/livez, /readyz"), callbacks = %format!("http://{callbacks_addr}/callbacks/{{id}}"), "switchboard ready");
        Ok(Self {
            supervisor,
            fatal,
            proxy,
            cluster,
            call_state,
            agents,
            rq,
            ors,
            registrar,
            tenant,
            health,
            grpc,
            callbacks,
            tasks: [
                Some(callbacks_http),
                follow_callbacks,
                Some(defence_sync),
                follow_tls,
            ],
            reporter,
            _watcher: watcher,
            leases,
            bus,
            draining,
            drain,
        })
    }

    /// Resolves when a system failed and the node must stop: the system and why.
    pub(crate) async fn failed(&mut self) -> Fatal {
        loop {
            if let Some(fatal) = self.fatal.borrow_and_update().clone() {
                return fatal;
            }
            if self.fatal.changed().await.is_err() {
                // The supervisor is gone: nothing can tell any more.
                std::future::pending::<()>().await;
            }
        }
    }

    pub(crate) async fn stop(self) {
        self.supervisor.stopping();
        self.end_calls().await;
        // First, so that other nodes take this node's tenants at once.
        if let Some(leases) = self.leases {
            leases.release(Duration::from_secs(1)).await;
        }
        if let Some(bus) = &self.bus {
            bus.stop().await;
        }
        self.health.abort();
        self.grpc.abort();
        for task in self.tasks.into_iter().flatten() {
            task.abort();
        }
        self.callbacks.stop();
        self.proxy.stop(None);
        self.cluster.stop();
        self.call_state.stop();
        self.agents.stop();
        self.ors.stop();
        self.rq.stop();
        self.registrar.stop(None);
        self.tenant.stop(None);
        // Give the actors a moment to close their sockets and emit their last events.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.supervisor.stop();
        if let Some(reporter) = &self.reporter {
            reporter.close().await;
        }
    }
}

impl Node {
    /// The calls in progress as the node stops: a cluster node refuses new calls and its
    /// proxies' probes (so they send it none) and lets its calls end on their own for the
    /// drain time; then hands those left over to the nodes that stay, which adopt them from
    /// their snapshots. A node alone ends its calls at once on every leg, with their closing
    /// events, rather than leave callers on music and legs open.
    async fn end_calls(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let left = || async {
            let (in_progress, ending) = self.cluster.count().await.unwrap_or((0, 0));
            in_progress + ending
        };
        let calls = left().await;
        if calls == 0 {
            return;
        }
        if !self.drain.is_zero() {
            tracing::info!(
                calls,
                drain_secs = self.drain.as_secs(),
                "stopping: new calls refused, waiting for the calls in progress to end"
            );
            let deadline = tokio::time::Instant::now() + self.drain;
            while left().await > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if self.bus.is_some() && !self.drain.is_zero() {
            // Other nodes stay: they adopt the calls from their snapshots once this node's
            // alive key is gone (see `stop`).
            let handed = self.cluster.hand_over_calls().await;
            if handed > 0 {
                tracing::info!(
                    calls = handed,
                    "stopping: the calls in progress handed over to the nodes that stay"
                );
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while left().await > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return;
        }
        let ended = self.cluster.shut_down_calls().await;
        if ended == 0 {
            return;
        }
        tracing::info!(
            calls = ended,
            "stopping: ending the calls in progress on every leg"
        );
        // Their BYEs and CANCELs answered, or given up on after a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while left().await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reporting as configured: Kafka (through its spool), else the JSON-lines file, else none.
fn start_reporting(config: &NodeConfig) -> anyhow::Result<Option<Reporter>> {
    if let Some(kafka) = &config.kafka {
        return Ok(Some(
            Reporter::kafka(kafka.clone()).context("cannot start reporting to Kafka")?,
        ));
    }
    if config.events.file.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(
        Reporter::json_lines(&config.events.file, config.events.sync_ms)
            .context("cannot open the events file")?,
    ))
}

/// Connects to Redis (one server, or a Redis Cluster by its seed nodes), trying for a few
/// seconds so a node started alongside its Redis waits for it.
async fn connect_redis(url: &str) -> anyhow::Result<(Redis, Conn)> {
    let shown: Vec<String> = url.split(',').map(redact).collect();
    let shown = shown.join(",");
    let mut last = None;
    for _ in 0..20 {
        match Redis::connect(url).await {
            Ok((client, conn)) => {
                let kind = if client.is_cluster() {
                    "a Redis Cluster"
                } else {
                    "one Redis"
                };
                tracing::info!(url = %shown, "redis connected: {kind}");
                return Ok((client, conn));
            }
            Err(e) if e.kind() == redis::ErrorKind::InvalidClientConfig => {
                return Err(anyhow::anyhow!("invalid redis URL {shown:?}: {e}"));
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(anyhow::anyhow!(
        "cannot reach redis at {shown}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The tenants a node starts with, each with the version it was stored at: PostgreSQL's when
/// it is configured (and its URL, to follow it from), else the file's, else the demo tenant.
async fn initial_tenants(config: &NodeConfig) -> anyhow::Result<(Vec<Versioned>, Option<String>)> {
    let demo_and = |other: &str| {
        anyhow::anyhow!(
            "demo = true runs the built-in demo tenant, not {other}: remove one of the two"
        )
    };
    let Some(url) = &config.stores.postgres else {
        if !config.tenants.is_empty() {
            if config.demo {
                return Err(demo_and("this file's [[tenants]]"));
            }
            return Ok((config.tenants.iter().cloned().map(embedded).collect(), None));
        }
        if !config.demo {
            anyhow::bail!(
                "no tenants configured: add [[tenants]] to the configuration file (see examples/node.toml), \
                 or [stores] postgres (or --postgres) to take them from PostgreSQL, \
                 or demo = true to run the built-in demo tenant"
            );
        }
        tracing::info!(
            "running the demo tenant (domain demo.local, DNs 1001-1020, password demo<dn>, API key demo-key)"
        );
        return Ok((vec![embedded(demo_tenant())], None));
    };
    if config.demo {
        return Err(demo_and("PostgreSQL's tenants"));
    }
    if !config.tenants.is_empty() {
        anyhow::bail!(
            "tenants come from PostgreSQL ([stores] postgres) or from this file's [[tenants]], not both: \
             move them into PostgreSQL with `switchboard config import FILE`"
        );
    }
    let mut store = ConfigStore::connect(url)
        .await
        .with_context(|| format!("configuration database {}", redact(url)))?;
    let tenants = store
        .load_all()
        .await
        .context("loading tenants from PostgreSQL")?;
    if tenants.is_empty() {
        tracing::warn!(
            "PostgreSQL holds no tenant yet: add one with `switchboard config import FILE` or the provisioning API's CreateTenant"
        );
    } else {
        tracing::info!(tenants = tenants.len(), "tenants loaded from PostgreSQL");
    }
    Ok((tenants, Some(url.clone())))
}

/// A tenant of the embedded configuration, which has no stored version.
fn embedded(config: TenantConfig) -> Versioned {
    Versioned { config, version: 0 }
}

/// A database URL fit for a log: without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
