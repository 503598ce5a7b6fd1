//! A node's systems as the bus hands them messages: what comes for a tenant this node owns
//! goes to its routing sessions, queues and agents; what comes from a tenant's owner for a
//! call goes to the call.

use std::sync::Arc;

use tokio::sync::watch;

use super::Handler;
use crate::lease::Fence;
use crate::messages::agent_state::AgentState;
use crate::messages::bus::{Answer, BusFuture, OwnerBound};
use crate::messages::ors::{CallAddr, Order, Ors, OrsMsg, RouteRequest};
use crate::messages::rq::{Rq, RqMsg};
use crate::messages::sip_cluster::{CallView, Cluster, ClusterMsg, Control, ControlError};
use crate::ors::callbacks::Callbacks;
use crate::tenant::Directory;

/// The node's systems, reached directly (never through the bus again).
#[derive(Debug)]
pub struct Systems {
    directory: watch::Receiver<Arc<Directory>>,
    ors: Ors,
    agents: AgentState,
    rq: Rq,
    callbacks: Callbacks,
    cluster: Cluster,
}

impl Systems {
    pub fn new(
        directory: watch::Receiver<Arc<Directory>>,
        ors: &Ors,
        agents: &AgentState,
        rq: &Rq,
        callbacks: &Callbacks,
        cluster: Cluster,
    ) -> Self {
        Self {
            directory,
            ors: ors.local(),
            agents: agents.local(),
            rq: rq.local(),
            callbacks: callbacks.local(),
            cluster,
        }
    }
}

impl Handler for Systems {
    fn gained<'a>(&'a self, tenant: &'a str, fence: Fence) -> BusFuture<'a, ()> {
        Box::pin(async move {
            tracing::info!(tenant, %fence, "taking over the tenant's routing and agents");
            // Queues start empty; the agents loaded say who is available, then the sessions
            // resumed put their calls back (and hold the agents they were routed to).
            self.rq.send(RqMsg::Forget {
                tenant: tenant.to_owned(),
            });
            if let Err(e) = self.agents.gained(tenant).await {
                tracing::error!(tenant, error = %e, "the tenant's agents were not loaded");
            }
            let found = self.directory.borrow().by_name(tenant).cloned();
            if let Some(t) = found {
                self.ors.gained(t).await;
            }
            self.callbacks.gained(tenant).await;
        })
    }

    fn lost(&self, tenant: &str) {
        tracing::warn!(
            tenant,
            "no longer the tenant's owner: its routing and agents stop here"
        );
        self.agents.lost(tenant);
        self.ors.lost(tenant);
        self.callbacks.lost(tenant);
        self.rq.send(RqMsg::Forget {
            tenant: tenant.to_owned(),
        });
    }

    fn owner<'a>(
        &'a self,
        tenant: &'a str,
        from: &'a str,
        message: OwnerBound,
    ) -> BusFuture<'a, Option<Answer>> {
        Box::pin(async move {
            match message {
                OwnerBound::Route(r) => {
                    let found = self.directory.borrow().by_name(tenant).cloned();
                    let Some(t) = found else {
                        tracing::warn!(tenant, call_id = %r.call, "a route request for a tenant this node does not know");
                        return None;
                    };
                    let request = RouteRequest {
                        tenant: t,
                        call: r.call,
                        routing_point: r.routing_point,
                        strategy: r.strategy,
                        ani: r.ani,
                        dnis: r.dnis,
                        user_data: r.user_data,
                    };
                    let (kept, done) = tokio::sync::oneshot::channel();
                    self.ors.send(OrsMsg::Request {
                        request: Box::new(request),
                        call: CallAddr::Node(from.to_owned()),
                        kept: Some(kept),
                    });
                    kept_within(done).await;
                    None
                }
                OwnerBound::Report { call, report } => {
                    let (kept, done) = tokio::sync::oneshot::channel();
                    self.ors.send(OrsMsg::Report {
                        call,
                        report,
                        kept: Some(kept),
                    });
                    kept_within(done).await;
                    None
                }
                OwnerBound::Registration { dn, present } => {
                    self.agents.registration(tenant, &dn, present);
                    None
                }
                OwnerBound::CallChanged {
                    dns,
                    left,
                    call,
                    ended,
                } => {
                    self.agents
                        .call_changed_on(Some(from), tenant, &dns, &left, &call, ended)
                        .await;
                    Some(Answer::Done)
                }
                OwnerBound::Command { agent, command } => Some(Answer::Command(
                    self.agents.command(tenant, &agent, command).await,
                )),
                OwnerBound::Status { agent } => {
                    Some(Answer::Status(self.agents.status(tenant, &agent).await))
                }
                OwnerBound::QueueStats => Some(Answer::QueueStats(self.rq.stats(tenant).await)),
                OwnerBound::Callback { id, cancel } => Some(Answer::Callback(if cancel {
                    self.callbacks.cancel(tenant, &id).await
                } else {
                    self.callbacks.get(tenant, &id).await
                })),
            }
        })
    }

    fn order(&self, _tenant: &str, call: String, order: Order) {
        self.cluster.send(ClusterMsg::Order { call, order });
    }

    fn control<'a>(
        &'a self,
        tenant: &'a str,
        call: String,
        dn: String,
        control: Control,
    ) -> BusFuture<'a, Result<CallView, ControlError>> {
        Box::pin(async move { self.cluster.control(tenant, &call, &dn, control).await })
    }
}

/// Waits until what a message changed is kept (so that the bus acknowledges it only then), a
/// bounded time.
async fn kept_within(done: tokio::sync::oneshot::Receiver<()>) {
    if tokio::time::timeout(std::time::Duration::from_secs(5), done)
        .await
        .is_err()
    {
        tracing::warn!("a routing change was not kept within 5 s");
    }
}
