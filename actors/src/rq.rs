//! The RQ system: each tenant's virtual queues and the index of its Ready agents, matching
//! them as soon as either side changes (design.md "A call through the core", step 5).
//!
//! One actor per node holds every tenant's queues and pool: an agent may serve several
//! queues, and matching has to weigh every queue's calls against every Ready agent at once,
//! so the availability index and the queues have one owner (design.md "The actor systems"):
//! an actor per virtual queue would split the index and let two queues reserve one agent. So
//! `rq` reserves in its own pool rather than asking agent state to, and agent state reports
//! each agent's availability to it.
//! Matching itself is [`switchboard_routing::matcher::Matcher`], without I/O (the simulator
//! runs the same): this actor feeds it the tenants' messages and the wall clock, and tells
//! each waiting call's session what the matcher says.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_routing::matcher::{self, Known, Matcher};
use switchboard_routing::queue::Waiting;

use crate::messages::rq::{Place, QueueStats, Rq, RqMsg, Told, Waiter};
use crate::supervisor::Supervisor;
use crate::tenant::Directory;

impl Rq {
    /// Starts the RQ system under the root supervisor; its failure stops the node (waiting
    /// calls live only in its memory).
    pub async fn spawn(
        directory: Arc<Directory>,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        Ok(Self::new(supervisor.spawn("rq", RqActor, directory).await?))
    }
}

struct RqActor;

struct RqState {
    /// Each tenant's configuration as matching reads it.
    known: HashMap<String, Known>,
    tenants: HashMap<String, Tenant>,
}

#[derive(Default)]
struct Tenant {
    matcher: Matcher,
    /// Whom to tell of each call in the queues or reserved for.
    waiters: HashMap<String, Waiter>,
}

impl Actor for RqActor {
    type Msg = RqMsg;
    type State = RqState;
    type Arguments = Arc<Directory>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        directory: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RqState {
            known: known(&directory),
            tenants: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = crate::unix_ms();
        let empty = Known::default();
        let tenant = match message {
            RqMsg::Availability(a) => {
                let known = state.known.get(&a.tenant).unwrap_or(&empty);
                let t = state.tenants.entry(a.tenant.clone()).or_default();
                let report = matcher::Availability {
                    agent: a.agent,
                    dn: a.dn,
                    queues: a.queues,
                    available: a.available,
                    on_call: a.on_call,
                };
                t.matcher.availability(known, report, now);
                a.tenant
            }
            RqMsg::Submit {
                tenant,
                call,
                queue,
                target,
                priority,
                since,
                waiter,
            } => {
                let known = state.known.get(&tenant).unwrap_or(&empty);
                let t = state.tenants.entry(tenant.clone()).or_default();
                t.waiters.insert(call.clone(), waiter);
                let waiting = Waiting {
                    call,
                    target,
                    priority,
                    since,
                };
                t.matcher.submit(known, &queue, waiting, now);
                tenant
            }
            RqMsg::Rona { tenant, agent } => {
                if let Some(t) = state.tenants.get_mut(&tenant) {
                    t.matcher.rona(&agent);
                }
                tenant
            }
            RqMsg::Overflow {
                tenant,
                call,
                change,
            } => {
                let known = state.known.get(&tenant).unwrap_or(&empty);
                if let Some(t) = state.tenants.get_mut(&tenant) {
                    t.matcher.overflow(known, &call, change);
                }
                tenant
            }
            RqMsg::Withdraw { tenant, call } => {
                let known = state.known.get(&tenant).unwrap_or(&empty);
                if let Some(t) = state.tenants.get_mut(&tenant) {
                    t.matcher.withdraw(known, &call, now);
                    t.waiters.remove(&call);
                }
                tenant
            }
            RqMsg::Delivered {
                tenant,
                call,
                waited_ms,
            } => {
                let known = state.known.get(&tenant).unwrap_or(&empty);
                if let Some(t) = state.tenants.get_mut(&tenant) {
                    t.matcher.delivered(known, &call, waited_ms, now);
                    t.waiters.remove(&call);
                }
                tenant
            }
            RqMsg::Restore {
                tenant,
                call,
                queue,
                agent,
                waiter,
            } => {
                let t = state.tenants.entry(tenant.clone()).or_default();
                t.matcher.restore(&call, &queue, &agent);
                t.waiters.insert(call, waiter);
                tenant
            }
            RqMsg::Forget { tenant } => {
                state.tenants.remove(&tenant);
                return Ok(());
            }
            RqMsg::Stats { tenant, reply } => {
                let _ = reply.send(state.stats(&tenant));
                return Ok(());
            }
            RqMsg::Place {
                tenant,
                call,
                reply,
            } => {
                let _ = reply.send(state.place(&tenant, &call));
                return Ok(());
            }
            RqMsg::ConfigChanged(directory) => {
                state.known = known(&directory);
                return Ok(());
            }
        };
        if let Some(t) = state.tenants.get_mut(&tenant) {
            t.tell(&tenant);
        }
        Ok(())
    }
}

impl Tenant {
    /// Tells each waiting call's session what the matcher said of it.
    fn tell(&mut self, tenant: &str) {
        while let Some(told) = self.matcher.poll() {
            let (call, told) = match told {
                matcher::Told::Matched {
                    call,
                    queue,
                    agent,
                    dn,
                } => {
                    tracing::debug!(%tenant, %queue, call_id = %call, %agent, %dn, "agent reserved");
                    let told = Told::Matched {
                        call: call.clone(),
                        agent,
                        dn,
                    };
                    (call, told)
                }
                matcher::Told::Unreserved { call, agent } => {
                    tracing::info!(%tenant, %agent, call_id = %call,
                        "reserved agent no longer available: the call waits again");
                    let told = Told::Unreserved {
                        call: call.clone(),
                        agent,
                    };
                    (call, told)
                }
            };
            if let Some(waiter) = self.waiters.get(&call) {
                waiter.tell(told);
            }
        }
    }
}

/// What matching reads of each tenant's configuration: its agents' profiles and how each
/// queue chooses among agents.
fn known(directory: &Directory) -> HashMap<String, Known> {
    directory
        .tenants()
        .map(|t| {
            let profiles = t
                .config
                .agents
                .iter()
                .map(|a| (a.id.clone(), a.profile()))
                .collect();
            let queues = t.config.queue_choices();
            (t.name.clone(), Known { profiles, queues })
        })
        .collect()
}

impl RqState {
    fn stats(&self, tenant: &str) -> Vec<QueueStats> {
        let Some(known) = self.known.get(tenant) else {
            return Vec::new();
        };
        let t = self.tenants.get(tenant).map(|t| &t.matcher);
        let now = crate::unix_ms();
        known
            .queues
            .iter()
            .map(|(name, _)| {
                let name = name.clone();
                let mut s = QueueStats {
                    queue: name.clone(),
                    ..QueueStats::default()
                };
                let Some(t) = t else {
                    return s;
                };
                let mut able = BTreeSet::new();
                if let Some(queue) = t.queue(&name) {
                    s.waiting = queue.len() as u32;
                    s.oldest_ms = queue
                        .iter()
                        .map(|w| now.saturating_sub(w.since))
                        .max()
                        .unwrap_or(0);
                    // Each target once: calls of a queue mostly share theirs.
                    let mut targets = Vec::new();
                    for w in queue.iter() {
                        if !targets.contains(&&w.target) {
                            targets.push(&w.target);
                        }
                    }
                    for target in targets {
                        able.extend(t.pool().choose_all(target));
                    }
                }
                for (agent, info) in t.agents().filter(|(_, i)| i.queues.contains(&name)) {
                    if info.on_call || t.is_reserved(agent) {
                        s.busy += 1;
                    } else if info.available {
                        s.ready_serving += 1;
                    }
                }
                s.ready = if s.waiting == 0 {
                    s.ready_serving
                } else {
                    able.len() as u32
                };
                s.ewt_ms = t.estimate(&name, s.waiting as usize + 1);
                s
            })
            .collect()
    }

    fn place(&self, tenant: &str, call: &str) -> Option<Place> {
        let t = &self.tenants.get(tenant)?.matcher;
        if let Some((agent, r)) = t.reservation_of(call) {
            return Some(Place {
                queue: r.queue.clone(),
                position: 0,
                ewt_ms: Some(0),
                agent: Some(agent.clone()),
            });
        }
        let queue = t.waiting_in(call)?;
        let position = t.queue(queue)?.position(call)?;
        Some(Place {
            queue: queue.clone(),
            position: position as u32,
            ewt_ms: t.estimate(queue, position),
            agent: None,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The RQ actor with the demo tenant, its calls' sessions played by a waiter that
    //! passes on what it is told.

    use std::time::Duration;

    use tokio::sync::mpsc;

    use switchboard_routing::target::Target;

    use super::*;
    use crate::messages::rq::Availability;
    use crate::tenant::demo_tenant;

    /// A waiter, and what it is told as (call, agent, "matched" or "unreserved").
    fn waiter() -> (
        Waiter,
        mpsc::UnboundedReceiver<(String, String, &'static str)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiter = Waiter::new(move |told| {
            let _ = tx.send(match told {
                Told::Matched { call, agent, .. } => (call, agent, "matched"),
                Told::Unreserved { call, agent } => (call, agent, "unreserved"),
            });
        });
        (waiter, rx)
    }

    /// Call `call` for the support queue's English speakers of level 3 or more.
    fn submit(waiter: &Waiter, call: &str, priority: u32, since: u64) -> RqMsg {
        RqMsg::Submit {
            tenant: "demo".into(),
            call: call.into(),
            queue: "support".into(),
            target: Target::parse("english >= 3").expect("target"),
            priority,
            since,
            waiter: waiter.clone(),
        }
    }

    /// What the waiter was told next.
    async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("told in time")
            .expect("open")
    }

    fn ready(agent: &str, available: bool) -> Availability {
        Availability {
            tenant: "demo".into(),
            agent: agent.into(),
            dn: agent.trim_start_matches('a').into(),
            queues: vec!["support".into()],
            available,
            on_call: false,
        }
    }

    #[tokio::test]
    async fn calls_and_agents_meet_by_target_and_priority_and_a_reservation_comes_back() {
        let directory = Arc::new(Directory::new(&[demo_tenant()]).expect("demo"));
        let (supervisor, _) = Supervisor::start().await.expect("supervisor");
        let rq = Rq::spawn(directory, &supervisor).await.expect("rq");
        let (session, mut rx) = waiter();
        let submit =
            |call: &str, priority: u32, since: u64| submit(&session, call, priority, since);
        let mut next = async || next(&mut rx).await;

        rq.send(submit("c1", 5, 100));
        // a1002 has English at 2 only: it is not offered the call.
        rq.availability(ready("a1002", true));
        let stats = rq.stats("demo").await;
        // It serves the queue and is Ready, but cannot take the call waiting there.
        assert_eq!(
            (
                stats[0].queue.as_str(),
                stats[0].waiting,
                stats[0].ready,
                stats[0].ready_serving
            ),
            ("support", 1, 0, 1)
        );
        let place = rq.place("demo", "c1").await.expect("waiting");
        assert_eq!((place.position, place.agent), (1, None));

        rq.availability(ready("a1003", true));
        assert_eq!(next().await, ("c1".into(), "a1003".into(), "matched"));
        assert_eq!(
            rq.place("demo", "c1")
                .await
                .expect("reserved")
                .agent
                .as_deref(),
            Some("a1003")
        );
        // a1003 logs out before the call reaches it: the reservation comes back.
        rq.availability(ready("a1003", false));
        assert_eq!(next().await, ("c1".into(), "a1003".into(), "unreserved"));

        // Back in the queue with its age; two more calls, one of higher priority.
        rq.send(submit("c1", 5, 100));
        rq.send(submit("c2", 1, 50));
        rq.send(submit("c3", 9, 300));
        assert_eq!(rq.stats("demo").await[0].waiting, 3);
        rq.availability(ready("a1004", true));
        assert_eq!(next().await, ("c3".into(), "a1004".into(), "matched"));
        rq.availability(ready("a1005", true));
        assert_eq!(next().await, ("c1".into(), "a1005".into(), "matched"));
        rq.send(RqMsg::Withdraw {
            tenant: "demo".into(),
            call: "c2".into(),
        });
        let stats = rq.stats("demo").await;
        // a1002 is Ready; a1004 and a1005 are reserved.
        assert_eq!((stats[0].waiting, stats[0].ready, stats[0].busy), (0, 1, 2));
        assert!(rq.place("demo", "c2").await.is_none());
        rq.stop();
    }

    #[tokio::test]
    async fn a_reservation_ends_with_its_call_and_never_lends_an_agent_twice() {
        let directory = Arc::new(Directory::new(&[demo_tenant()]).expect("demo"));
        let (supervisor, _) = Supervisor::start().await.expect("supervisor");
        let rq = Rq::spawn(directory, &supervisor).await.expect("rq");
        let (session, mut rx) = waiter();
        let submit = |call: &str, since: u64| submit(&session, call, 0, since);
        let mut next = async || next(&mut rx).await;
        let on_call = |agent: &str, on: bool| Availability {
            available: !on,
            on_call: on,
            ..ready(agent, true)
        };

        // The caller hangs up before the reserved agent is rung: the agent is free at once
        // for the next call.
        rq.availability(ready("a1003", true));
        rq.send(submit("c1", 1));
        assert_eq!(next().await, ("c1".into(), "a1003".into(), "matched"));
        rq.send(RqMsg::Withdraw {
            tenant: "demo".into(),
            call: "c1".into(),
        });
        rq.send(submit("c2", 2));
        assert_eq!(next().await, ("c2".into(), "a1003".into(), "matched"));

        // The call is delivered before agent state reports the agent on it: the agent is
        // not lent to c3 meanwhile, but once its call is over.
        rq.send(RqMsg::Delivered {
            tenant: "demo".into(),
            call: "c2".into(),
            waited_ms: 10,
        });
        rq.send(submit("c3", 3));
        assert_eq!(rq.stats("demo").await[0].waiting, 1);
        rq.availability(on_call("a1003", true));
        rq.availability(on_call("a1003", false));
        assert_eq!(next().await, ("c3".into(), "a1003".into(), "matched"));

        // a1003 lets c3 ring (RONA): c3 waits again, and a1003 is not offered it, nor any
        // call, until it is not ready and then ready again.
        rq.availability(on_call("a1003", true));
        rq.availability(on_call("a1003", false));
        rq.send(RqMsg::Rona {
            tenant: "demo".into(),
            agent: "a1003".into(),
        });
        rq.send(submit("c3", 3));
        // Ready, but not offered calls until Ready again: it takes none now.
        let stats = rq.stats("demo").await;
        assert_eq!(
            (stats[0].waiting, stats[0].ready, stats[0].ready_serving),
            (1, 0, 1)
        );
        rq.availability(ready("a1003", false));
        rq.availability(ready("a1003", true));
        assert_eq!(next().await, ("c3".into(), "a1003".into(), "matched"));
        rq.stop();
    }
}
