//! Taking a tenant's routing over: the sessions its last owner kept are resumed where they
//! were, their calls put back in their queues with their age (or their reserved agents held
//! for them), before anything new is handled.

use std::sync::Arc;

use ractor::ActorRef;
use switchboard_routing::strategy::{Route, Session};

use super::{Entry, Msg, OrsState, Record, deliver};
use crate::messages::ors::{CallAddr, Order, Ors};
use crate::messages::rq::RqMsg;
use crate::ors::store::Kind;
use crate::tenant::Tenant;

impl OrsState {
    /// Resumes the sessions of `tenant` its last owner kept; those that cannot be resumed
    /// (their record unreadable, their strategy version gone) send their calls to the
    /// default destination.
    pub(super) async fn resume(&mut self, tenant: &Arc<Tenant>, myself: &ActorRef<Msg>, now: u64) {
        // Calls that asked for their sessions here before this node had taken the tenant
        // over (adopted from a node that died) keep the address they gave.
        let mut asked: std::collections::HashMap<String, (CallAddr, String)> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.tenant == tenant.name)
            .map(|(call, e)| (call.clone(), (e.call.clone(), e.node.clone())))
            .collect();
        self.drop_tenant(&tenant.name);
        let records = match self.store.load_all(Kind::Sessions, &tenant.name).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(tenant = %tenant.name, error = %e,
                    "routing sessions not read: their calls wait until the routing point's timeout");
                return;
            }
        };
        let waiter = Ors::new(myself.get_derived()).waiter();
        let mut queued = Vec::new();
        let mut held = 0;
        let total = records.len();
        for (call, json) in records {
            let record: Record = match serde_json::from_str(&json) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(tenant = %tenant.name, call_id = %call, error = %e,
                        "routing session unreadable: dropped");
                    self.keep(&tenant.name, &call, None);
                    continue;
                }
            };
            let (addr, node) = asked
                .remove(&call)
                .unwrap_or_else(|| (CallAddr::Node(record.node.clone()), record.node.clone()));
            let program = tenant.strategy_version(&record.strategy, record.version);
            let session = program
                .ok_or_else(|| {
                    format!(
                        "strategy {} version {} is gone",
                        record.strategy, record.version
                    )
                })
                .and_then(|p| Session::resume(p, record.session).map_err(|e| e.to_string()));
            let session = match session {
                Ok(s) => s,
                Err(why) => {
                    tracing::warn!(tenant = %tenant.name, call_id = %call, %why,
                        "routing session cannot resume: its call goes to the default destination");
                    let order = Order::Route(Route::Default);
                    deliver(&self.to_node, &tenant.name, &call, &addr, order);
                    self.keep(&tenant.name, &call, None);
                    continue;
                }
            };
            if let Some(q) = session.in_queue() {
                match (&record.agent, q.routing) {
                    (Some(agent), true) => {
                        held += 1;
                        self.rq.send(RqMsg::Restore {
                            tenant: tenant.name.clone(),
                            call: call.clone(),
                            queue: q.queue.clone(),
                            agent: agent.clone(),
                            waiter: waiter.clone(),
                        });
                    }
                    _ => queued.push((q, call.clone())),
                }
            }
            let due = session.poll_timeout();
            if let Some(at) = due {
                self.due.insert((at, call.clone()));
            }
            self.sessions.insert(
                call,
                Entry {
                    tenant: tenant.name.clone(),
                    session,
                    call: addr,
                    node,
                    strategy: record.strategy,
                    version: record.version,
                    started_ms: record.started_ms,
                    agent: record.agent,
                    due,
                    route: None,
                    asked: None,
                },
            );
        }
        // Back in their queues oldest first, once the agents held are out of the pool.
        queued.sort_by_key(|(q, _)| q.since);
        let waiting = queued.len();
        for (q, call) in queued {
            self.rq.send(RqMsg::Submit {
                tenant: tenant.name.clone(),
                call,
                queue: q.queue,
                target: q.target,
                priority: q.priority,
                since: q.since,
                waiter: waiter.clone(),
            });
        }
        if total > 0 {
            tracing::info!(tenant = %tenant.name, sessions = total, waiting, ringing = held,
                "routing sessions resumed");
        }
        self.schedule(myself, now);
    }

    /// Forgets the sessions of `tenant`, writing nothing: another node owns them.
    pub(super) fn drop_tenant(&mut self, tenant: &str) {
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.tenant == tenant)
            .map(|(call, _)| call.clone())
            .collect();
        for call in gone {
            if let Some(entry) = self.sessions.remove(&call)
                && let Some(at) = entry.due
            {
                self.due.remove(&(at, call));
            }
        }
    }
}
