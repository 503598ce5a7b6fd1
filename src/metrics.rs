//! The node's metrics for Prometheus, encoded by prometheus-client in the OpenMetrics text
//! format: what the node holds at the moment of the scrape (a [`Scrape`], gathered by the
//! node from its systems) and the process's own figures. Tenant labels are bounded: past
//! `max_tenants` (in name order) the others are summed under `tenant="other"`; no series
//! ever has a label per call, agent or phone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use switchboard_actors::figures::Registrations;
use switchboard_actors::messages::rq::QueueStats;
use switchboard_actors::stats::periods::Counts;
use switchboard_sip::transport::TransportFigures;

/// What the metrics say, as gathered at one scrape.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    /// Calls in progress and calls ended waiting out their transactions; none when the
    /// cluster did not answer.
    pub(crate) calls: Option<(usize, usize)>,
    pub(crate) events: Option<switchboard_kafka::Status>,
    /// Counters of the edge's defence: (name, help, value).
    pub(crate) edge: Vec<(&'static str, &'static str, u64)>,
    pub(crate) sources_banned: usize,
    pub(crate) adoption: Option<[u64; 3]>,
    pub(crate) transport: Option<Arc<TransportFigures>>,
    /// Every tenant, and whether this node owns it.
    pub(crate) tenants: Vec<(String, bool)>,
    pub(crate) bus: Option<(switchboard_actors::bus::Figures, Vec<(String, u64)>)>,
    /// Agents by (tenant, state), of the tenants this node owns.
    pub(crate) agents: Vec<(String, &'static str, i64)>,
    pub(crate) registrations: Vec<(String, Registrations)>,
    /// Queues of the tenants this node owns.
    pub(crate) queues: Vec<(String, QueueStats)>,
    /// Each queue's figures of today, from the statistics: (tenant, queue, figures).
    pub(crate) today: Vec<(String, String, Counts)>,
    pub(crate) routing_decisions: Option<Histogram>,
    /// Whether each store configured answers: (store, up).
    pub(crate) stores: Vec<(&'static str, bool)>,
    pub(crate) max_tenants: usize,
    /// SIP capture to Homer: messages sent to the collector, and dropped.
    pub(crate) hep: Option<(u64, u64)>,
}

impl Scrape {
    /// The whole exposition: this scrape's figures and the process's.
    pub(crate) fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Process));
        registry
            .sub_registry_with_prefix("switchboard")
            .register_collector(Box::new(self));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(error = %e, "metrics not encoded");
        }
        text
    }

    /// The label a tenant's figures go under: its own name for the first `max_tenants`
    /// tenants, `other` past them.
    fn tenant_label<'a>(&self, shown: &'a BTreeSet<&'a str>, tenant: &'a str) -> &'a str {
        if shown.contains(tenant) {
            tenant
        } else {
            "other"
        }
    }

    fn shown_tenants(&self) -> BTreeSet<&str> {
        let mut names: Vec<&str> = self.tenants.iter().map(|(t, _)| t.as_str()).collect();
        names.sort_unstable();
        names.into_iter().take(self.max_tenants).collect()
    }
}

/// One family: its samples by label set.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    one(encoder, name, help, ConstCounter::new(value))
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    one(encoder, name, help, ConstGauge::new(value))
}

/// Sums of samples that share their labels once tenants past the cap are put together.
fn summed<K: Ord>(rows: impl IntoIterator<Item = (K, f64)>) -> BTreeMap<K, f64> {
    let mut sums = BTreeMap::new();
    for (key, value) in rows {
        *sums.entry(key).or_insert(0.0) += value;
    }
    sums
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let shown = self.shown_tenants();
        let tenant = |t: &'_ str| self.tenant_label(&shown, t).to_owned();
        if let Some((in_progress, ending)) = self.calls {
            gauge(
                &mut e,
                "calls_active",
                "Calls alive on this node: calls in progress and calls ended waiting out their transactions.",
                (in_progress + ending) as i64,
            )?;
            family(
                &mut e,
                "calls",
                "Calls on this node by state: in progress, or ended and waiting out their transactions.",
                MetricType::Gauge,
                [("in_progress", in_progress), ("ending", ending)]
                    .map(|(state, n)| ([("state", state)], ConstGauge::new(n as i64))),
            )?;
        }
        if let Some(t) = &self.transport {
            let requests = t.messages.requests();
            family(
                &mut e,
                "sip_requests",
                "SIP requests received (in) and sent (out), by method.",
                MetricType::Counter,
                requests.iter().map(|(d, m, n)| {
                    (
                        [("direction", d.as_str()), ("method", m)],
                        ConstCounter::new(*n),
                    )
                }),
            )?;
            let responses = t.messages.responses();
            family(
                &mut e,
                "sip_responses",
                "SIP responses received (in) and sent (out), by status class.",
                MetricType::Counter,
                responses.iter().map(|(d, c, n)| {
                    (
                        [("direction", d.as_str()), ("class", c)],
                        ConstCounter::new(*n),
                    )
                }),
            )?;
            family(
                &mut e,
                "connections_closed",
                "Connections (TCP, TLS, WebSocket) closed for bad input or faults, by reason; each is logged.",
                MetricType::Counter,
                t.by_reason()
                    .map(|(reason, n)| ([("reason", reason)], ConstCounter::new(n))),
            )?;
        }
        counter(
            &mut e,
            "recordings_failed",
            "Call recordings the media servers refused or failed.",
            switchboard_actors::sip_cluster::call::recordings_failed(),
        )?;
        let (sent, received) = switchboard_sip::transaction::retransmissions();
        family(
            &mut e,
            "sip_retransmissions",
            "SIP messages sent again on the transactions' timers (sent), and requests received again (received).",
            MetricType::Counter,
            [("sent", sent), ("received", received)]
                .map(|(way, n)| ([("direction", way)], ConstCounter::new(n))),
        )?;
        gauge(
            &mut e,
            "sip_transactions",
            "SIP transactions in progress (client and server, those absorbing retransmissions included).",
            switchboard_sip::transaction::in_progress() as i64,
        )?;
        let registrations = summed(self.registrations.iter().flat_map(|(t, r)| {
            [
                ((tenant(t), "accepted"), r.accepted as f64),
                ((tenant(t), "refused"), r.refused as f64),
            ]
        }));
        family(
            &mut e,
            "registrations",
            "REGISTERs per tenant: accepted, or refused for their credentials (authentication failures).",
            MetricType::Counter,
            registrations.iter().map(|((t, outcome), n)| {
                (
                    [("tenant", t.as_str()), ("outcome", outcome)],
                    ConstCounter::new(*n as u64),
                )
            }),
        )?;
        let agents = summed(
            self.agents
                .iter()
                .map(|(t, state, n)| ((tenant(t), *state), *n as f64)),
        );
        family(
            &mut e,
            "agents",
            "Agents of the tenants this node owns, by state (LoggedOut: known, not logged in).",
            MetricType::Gauge,
            agents.iter().map(|((t, state), n)| {
                (
                    [("tenant", t.as_str()), ("state", state)],
                    ConstGauge::new(*n as i64),
                )
            }),
        )?;
        self.encode_queues(&mut e, &tenant)?;
        if let Some(histogram) = &self.routing_decisions {
            one(
                &mut e,
                "routing_decision_seconds",
                "Time from a call's route request to its strategy's first decision (a route or a queue).",
                histogram.clone(),
            )?;
        }
        family(
            &mut e,
            "store_up",
            "1 when a store this node uses answers: redis (PING), postgresql (configuration followed), kafka.",
            MetricType::Gauge,
            self.stores
                .iter()
                .map(|(store, up)| ([("store", *store)], ConstGauge::new(i64::from(*up)))),
        )?;
        self.encode_events(&mut e)?;
        if let Some((sent, dropped)) = self.hep {
            counter(
                &mut e,
                "hep_sent",
                "SIP messages copied to the Homer collector (HEP v3).",
                sent,
            )?;
            counter(
                &mut e,
                "hep_dropped",
                "SIP messages not copied to Homer: the collector slower than the traffic, or unreachable.",
                dropped,
            )?;
        }
        for (name, help, value) in &self.edge {
            counter(&mut e, name, help, *value)?;
        }
        gauge(
            &mut e,
            "bans_active",
            "SIP sources banned on this node now (its own bans and the other nodes').",
            self.sources_banned as i64,
        )?;
        if let Some([adopted, unrecoverable, lookups_failed]) = self.adoption {
            counter(
                &mut e,
                "calls_adopted",
                "Calls of dead nodes (or of nodes that stopped) this node carries on.",
                adopted,
            )?;
            counter(
                &mut e,
                "calls_unrecoverable",
                "Calls of dead nodes ended because they could not go on (snapshot unreadable, caught mid-way).",
                unrecoverable,
            )?;
            counter(
                &mut e,
                "adoption_lookups_failed",
                "Look-ups of dead nodes' calls Redis could not answer: those calls are not recovered meanwhile.",
                lookups_failed,
            )?;
        }
        family(
            &mut e,
            "tenant_owned",
            "1 for each tenant whose routing this node runs (its owner), 0 for the others.",
            MetricType::Gauge,
            self.tenants
                .iter()
                .filter(|(t, _)| shown.contains(t.as_str()))
                .map(|(t, owned)| ([("tenant", t.as_str())], ConstGauge::new(i64::from(*owned)))),
        )?;
        self.encode_bus(&mut e, &tenant)
    }
}

impl Scrape {
    fn encode_queues(
        &self,
        e: &mut DescriptorEncoder,
        tenant: &dyn Fn(&str) -> String,
    ) -> fmt::Result {
        let rows = |figure: fn(&QueueStats) -> f64| {
            summed(
                self.queues
                    .iter()
                    .map(|(t, q)| ((tenant(t), q.queue.clone()), figure(q))),
            )
        };
        let labels = |(t, q): &(String, String)| [("tenant", t.clone()), ("queue", q.clone())];
        for (name, help, figure) in [
            (
                "queue_waiting",
                "Calls waiting in each virtual queue of the tenants this node owns.",
                (|q| f64::from(q.waiting)) as fn(&QueueStats) -> f64,
            ),
            (
                "queue_ready_agents",
                "Ready agents who can take a call waiting in each queue now (its target as it stands met); those serving it when none waits.",
                |q| f64::from(q.ready),
            ),
            (
                "queue_ready_serving_agents",
                "Ready agents who serve each queue (logged in to it), whatever its calls' targets.",
                |q| f64::from(q.ready_serving),
            ),
            (
                "queue_busy_agents",
                "Agents serving each queue who are on calls or reserved for one.",
                |q| f64::from(q.busy),
            ),
        ] {
            family(
                e,
                name,
                help,
                MetricType::Gauge,
                rows(figure)
                    .iter()
                    .map(|(k, n)| (labels(k), ConstGauge::new(*n as i64))),
            )?;
        }
        // Today's service level, from the statistics (those of tenants past the cap put
        // together).
        let mut today: BTreeMap<(String, String), Counts> = BTreeMap::new();
        for (t, q, counts) in &self.today {
            today.entry((tenant(t), q.clone())).or_default().add(counts);
        }
        family(
            e,
            "queue_service_level",
            "Today's service level of each queue: answered within the tenant's threshold / (answered + abandoned after the short-abandon threshold); absent before such a call.",
            MetricType::Gauge,
            today
                .iter()
                .filter_map(|(k, c)| c.service_level().map(|sl| (labels(k), ConstGauge::new(sl)))),
        )?;
        for (name, help, figure) in [
            (
                "queue_offered",
                "Calls that entered each queue today.",
                (|c: &Counts| c.offered) as fn(&Counts) -> u64,
            ),
            (
                "queue_answered",
                "Calls of each queue answered today.",
                |c| c.answered,
            ),
            (
                "queue_abandoned",
                "Callers who hung up waiting in each queue today.",
                |c| c.abandoned,
            ),
        ] {
            family(
                e,
                name,
                help,
                MetricType::Gauge,
                today
                    .iter()
                    .map(|(k, c)| (labels(k), ConstGauge::new(figure(c) as i64))),
            )?;
        }
        // A longest wait is not summed: the longest of the queues put together.
        let mut longest: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (t, q) in &self.queues {
            let wait = longest.entry((tenant(t), q.queue.clone())).or_default();
            *wait = wait.max(q.oldest_ms as f64 / 1000.0);
        }
        family(
            e,
            "queue_longest_wait_seconds",
            "How long the call waiting longest in each queue has waited.",
            MetricType::Gauge,
            longest
                .iter()
                .map(|(k, s)| (labels(k), ConstGauge::new(*s))),
        )
    }

    fn encode_events(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let Some(s) = &self.events else {
            return Ok(());
        };
        counter(
            e,
            "events_delivered",
            "Events Kafka acknowledged (or the events file took).",
            s.delivered,
        )?;
        counter(
            e,
            "events_lost",
            "Events lost (the spool full, the writer behind, refused by Kafka for good): alarm on any increase.",
            s.lost,
        )?;
        for (name, help, value) in [
            (
                "events_spooled_bytes",
                "Bytes of events waiting in the spool for Kafka.",
                s.spooled_bytes,
            ),
            (
                "events_spool_high_water_bytes",
                "Spooled bytes past which new calls and registrations are refused.",
                s.spool_high_water_bytes,
            ),
            (
                "events_spool_damaged_bytes",
                "Bytes cut off a damaged spool tail at start.",
                s.damaged_bytes,
            ),
            (
                "events_queued",
                "Events emitted that the writer has not taken yet.",
                s.queued,
            ),
            (
                "kafka_connected",
                "1 when Kafka takes events (always 1 without Kafka).",
                u64::from(s.connected),
            ),
        ] {
            gauge(e, name, help, value as i64)?;
        }
        Ok(())
    }

    fn encode_bus(
        &self,
        e: &mut DescriptorEncoder,
        tenant: &dyn Fn(&str) -> String,
    ) -> fmt::Result {
        let Some((f, lags)) = &self.bus else {
            return Ok(());
        };
        for (name, help, value) in [
            (
                "bus_to_owner",
                "Messages this node sent a tenant's owner on another node.",
                f.to_owner,
            ),
            (
                "bus_as_owner",
                "Messages from the bus this node handled as a tenant's owner.",
                f.as_owner,
            ),
            (
                "bus_orders",
                "Routing orders for this node's calls from an owner on another node.",
                f.orders,
            ),
            (
                "bus_dead_letters",
                "Owner inbox entries that could never be handled, moved to the dead letters: alarm on any increase.",
                f.dead_letters,
            ),
            (
                "bus_refused",
                "Bus messages refused: from a node not running, or an owner that lost its lease.",
                f.refused,
            ),
        ] {
            counter(e, name, help, value)?;
        }
        let lags = summed(lags.iter().map(|(t, lag)| (tenant(t), *lag as f64)));
        family(
            e,
            "bus_lag",
            "Entries of an owned tenant's inbox not yet read by this node (its owner).",
            MetricType::Gauge,
            lags.iter()
                .map(|(t, lag)| ([("tenant", t.as_str())], ConstGauge::new(*lag as i64))),
        )
    }
}

/// The process's own figures, under the names Prometheus's client libraries give them.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The fields after the command (which may hold spaces), from the third on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        // Linux counts CPU time in USER_HZ ticks, 100 a second on every architecture.
        const TICKS: f64 = 100.0;
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            one(
                &mut e,
                "process_cpu_seconds",
                "CPU time the process used, user and system.",
                ConstCounter::new((user + system) / TICKS),
            )?;
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot, field(22)) {
            one(
                &mut e,
                "process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch.",
                ConstGauge::new(boot + start / TICKS),
            )?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status.lines().find_map(|l| {
                let kb = l.strip_prefix(key)?.trim().strip_suffix("kB")?;
                kb.trim().parse::<i64>().ok().map(|k| k * 1024)
            })
        };
        if let Some(rss) = kib("VmRSS:") {
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory.",
                rss,
            )?;
        }
        if let Some(virt) = kib("VmSize:") {
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory.",
                virt,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut e,
                "process_open_fds",
                "Open file descriptors (sockets included).",
                fds.count() as i64,
            )?;
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits.lines().find_map(|l| {
            l.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse::<i64>()
                .ok()
        });
        if let Some(max) = max_fds {
            gauge(
                &mut e,
                "process_max_fds",
                "The most file descriptors the process may open.",
                max,
            )?;
        }
        Ok(())
    }
}
