//! The Stats service (voice API): a tenant's real-time statistics over gRPC, now or as a
//! stream of changes, for a tenant's API key or a key that reads statistics only. The
//! figures are the node's [`Statistics`], the same on every node.

use std::time::Duration;

use switchboard_actors::stats::engine::{Both, TenantNow};
use switchboard_actors::stats::keeper::{Shown, Statistics, next_update};
use switchboard_actors::stats::periods::Counts;
use switchboard_proto::voice as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Keys;

pub(crate) use pb::stats_server::StatsServer;

/// Changes closer than this go out together.
const CALM: Duration = Duration::from_millis(250);
/// While nothing changes, the figures go out again this often (time in state runs).
const TICK: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct StatsApi {
    keys: Keys,
    statistics: Statistics,
}

impl StatsApi {
    pub(crate) fn new(keys: Keys, statistics: Statistics) -> Self {
        Self { keys, statistics }
    }

    /// The tenant and queue a request may read.
    fn asked<T>(&self, request: &Request<T>, r: &pb::StatsRequest) -> Result<Asked, Status> {
        let tenant = self.keys.reader(request.metadata(), &r.tenant)?;
        let Some(shown) = self.statistics.shown(&tenant) else {
            return Err(Status::not_found(format!("tenant {tenant:?}")));
        };
        if !r.queue.is_empty() && !shown.queues.contains(&r.queue) {
            return Err(Status::not_found(format!(
                "queue {:?} of tenant {tenant}",
                r.queue
            )));
        }
        Ok(Asked {
            tenant,
            queue: r.queue.clone(),
        })
    }
}

/// What a request reads.
#[derive(Clone)]
struct Asked {
    tenant: String,
    queue: String,
}

impl Asked {
    fn figures(&self, statistics: &Statistics) -> Option<pb::TenantStats> {
        let (now, shown) = statistics.now(&self.tenant, switchboard_actors::unix_ms())?;
        Some(message(&self.tenant, now, &shown, &self.queue))
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::stats_server::Stats for StatsApi {
    async fn get_stats(&self, request: Request<pb::StatsRequest>) -> Reply<pb::TenantStats> {
        let asked = self.asked(&request, request.get_ref())?;
        let figures = asked
            .figures(&self.statistics)
            .ok_or_else(|| Status::not_found(format!("tenant {:?}", asked.tenant)))?;
        Ok(Response::new(figures))
    }

    type WatchStatsStream = ReceiverStream<Result<pb::TenantStats, Status>>;

    async fn watch_stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Reply<Self::WatchStatsStream> {
        let asked = self.asked(&request, request.get_ref())?;
        let mut changes = self
            .statistics
            .changes(&asked.tenant)
            .ok_or_else(|| Status::not_found(format!("tenant {:?}", asked.tenant)))?;
        let statistics = self.statistics.clone();
        let (out, stream) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let Some(figures) = asked.figures(&statistics) else {
                    let _ = out.send(Err(Status::not_found("the tenant is gone"))).await;
                    return;
                };
                if out.send(Ok(figures)).await.is_err() {
                    return;
                }
                tokio::select! {
                    more = next_update(&mut changes, CALM, TICK) => {
                        if !more {
                            return;
                        }
                    }
                    () = out.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// The figures as the API gives them; of one queue (and the agents serving it) when `queue`
/// is not empty.
pub(crate) fn message(tenant: &str, now: TenantNow, shown: &Shown, queue: &str) -> pb::TenantStats {
    let queues = now
        .queues
        .into_iter()
        .filter(|q| queue.is_empty() || q.name == queue)
        .map(|q| pb::QueueFigures {
            queue: q.name,
            waiting: q.waiting,
            longest_wait_ms: q.longest_wait_ms,
            estimated_wait_ms: q.estimated_wait_ms,
            ready: q.ready,
            busy: q.busy,
            figures: Some(periods(&q.counts)),
        })
        .collect();
    pb::TenantStats {
        tenant: tenant.to_owned(),
        at_ms: now.at_ms as i64,
        waiting: now.waiting,
        longest_wait_ms: now.longest_wait_ms,
        figures: Some(periods(&now.counts)),
        queues,
        agents: now
            .agents
            .into_iter()
            .map(|a| pb::AgentFigures {
                agent_id: a.id,
                dn: a.dn,
                state: a.state,
                reason: a.reason,
                time_in_state_ms: a.time_in_state_ms,
                on_call: a.on_call,
                figures: Some(periods(&a.counts)),
            })
            .collect(),
        groups: now
            .groups
            .into_iter()
            .map(|g| pb::GroupFigures {
                group: g.name,
                states: g.states.into_iter().collect(),
                figures: Some(periods(&g.counts)),
            })
            .collect(),
        time_zone: shown.time_zone.clone(),
        service_level_secs: shown.service_level_secs,
        short_abandon_secs: shown.short_abandon_secs,
    }
}

fn periods(b: &Both) -> pb::Periods {
    pb::Periods {
        last_15_minutes: Some(figures(&b.window)),
        today: Some(figures(&b.today)),
    }
}

fn figures(c: &Counts) -> pb::Figures {
    pb::Figures {
        offered: c.offered,
        answered: c.answered,
        answered_in_time: c.answered_in_time,
        abandoned: c.abandoned,
        short_abandoned: c.short_abandoned,
        transfers: c.transfers,
        handled: c.handled,
        service_level: c.service_level(),
        average_speed_of_answer_ms: c.average_answer_ms(),
        average_handle_ms: c.average_handle_ms(),
        occupancy: c.occupancy(),
    }
}
