//! The RQ system: each tenant's virtual queues and the index of its Ready agents, matching
//! them as soon as either side changes (design.md "A call through the core", step 5).
//!
//! One actor per node holds every tenant's queues and pool: an agent may serve several
//! queues, and matching has to weigh every queue's calls against every Ready agent at once,
//! so the availability index and the queues have one owner (design.md "The actor systems"):
//! an actor per virtual queue would split the index and let two queues reserve one agent. So
//! `rq` reserves in its own pool rather than asking agent state to, and agent state reports
//! each agent's availability to it.
//! Matching is by [`switchboard_routing::pool::Pool`] (indexed by skill, never a scan of
//! every agent) and [`switchboard_routing::queue::Queue`] (priority, then age).
//!
//! An agent reserved for a call leaves the pool, and the call's outcome gives it back:
//! delivered, withdrawn (the caller hung up, the call went elsewhere) or queued again after
//! the agent's phone did not take it. An agent who did not answer (RONA) stays out until
//! agent state reports it not ready and then ready again. An agent who stops being available
//! while reserved and before the call reaches the phone (not ready, logged out) gives the
//! reservation back: the routing session is told, and the call waits again with its age.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_routing::pool::{Choice, Pool};
use switchboard_routing::queue::{Queue, WaitEstimate, Waiting};
use switchboard_routing::strategy::Overflow;
use switchboard_routing::target::Profile;

use crate::messages::rq::{Availability, Place, QueueStats, Rq, RqMsg, Told, Waiter};
use crate::supervisor::Supervisor;
use crate::tenant::Directory;

/// How many recent waits a queue's estimate is made from.
const ESTIMATE_FROM: usize = 50;

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
    pool: Pool,
    queues: HashMap<String, Queue>,
    /// Waiting calls: their queue and whom to tell.
    waiting: HashMap<String, (String, Waiter)>,
    /// Reserved agents: the call and its queue; and the other way.
    reserved: HashMap<String, Reservation>,
    by_call: HashMap<String, String>,
    agents: HashMap<String, AgentInfo>,
    estimates: HashMap<String, WaitEstimate>,
}

struct Reservation {
    call: String,
    queue: String,
    waiter: Waiter,
    /// Whether the call reached the agent's DN (it rings there).
    reached: bool,
}

#[derive(Default)]
struct AgentInfo {
    dn: String,
    queues: BTreeSet<String>,
    available: bool,
    on_call: bool,
    /// It let a call ring unanswered and has not been reported unavailable since.
    rona: bool,
    /// Calls delivered this run, for least occupied.
    load: u32,
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
            known: Known::of(&directory),
            tenants: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RqMsg::Availability(a) => state.availability(a),
            RqMsg::Submit {
                tenant,
                call,
                queue,
                target,
                priority,
                since,
                waiter,
            } => {
                let t = state.tenants.entry(tenant.clone()).or_default();
                let released = t.release_call(&call);
                let waiting = Waiting {
                    call: call.clone(),
                    target,
                    priority,
                    since,
                };
                t.queues.entry(queue.clone()).or_default().push(waiting);
                t.waiting.insert(call.clone(), (queue.clone(), waiter));
                state.match_call(&tenant, &queue, &call);
                if let Some(agent) = released {
                    state.free_agent(&tenant, &agent);
                }
            }
            RqMsg::Rona { tenant, agent } => {
                if let Some(info) = state
                    .tenants
                    .get_mut(&tenant)
                    .and_then(|t| t.agents.get_mut(&agent))
                {
                    info.rona = true;
                }
            }
            RqMsg::Overflow {
                tenant,
                call,
                change,
            } => {
                let Some(t) = state.tenants.get_mut(&tenant) else {
                    return Ok(());
                };
                let Some((queue, _)) = t.waiting.get(&call).cloned() else {
                    return Ok(());
                };
                if let Some(q) = t.queues.get_mut(&queue) {
                    match change {
                        Overflow::Priority(p) => q.set_priority(&call, p),
                        Overflow::Target(target) => q.set_target(&call, target),
                    };
                }
                state.match_call(&tenant, &queue, &call);
            }
            RqMsg::Withdraw { tenant, call } => {
                if let Some(t) = state.tenants.get_mut(&tenant) {
                    if let Some((queue, _)) = t.waiting.remove(&call)
                        && let Some(q) = t.queues.get_mut(&queue)
                    {
                        q.remove(&call);
                    }
                    if let Some(agent) = t.release_call(&call) {
                        state.free_agent(&tenant, &agent);
                    }
                }
            }
            RqMsg::Delivered {
                tenant,
                call,
                waited_ms,
            } => {
                if let Some(t) = state.tenants.get_mut(&tenant)
                    && let Some(agent) = t.by_call.remove(&call)
                    && let Some(r) = t.reserved.remove(&agent)
                {
                    t.estimates
                        .entry(r.queue)
                        .or_insert_with(|| WaitEstimate::new(ESTIMATE_FROM))
                        .served(waited_ms);
                    if let Some(info) = t.agents.get_mut(&agent) {
                        info.load += 1;
                    }
                    // The agent is on the call, and agent state reports it free when the
                    // call ends; unless that report came first (a call already over). An
                    // agent not yet reported on the call must wait for that report: freed
                    // now, it would be offered a second call.
                    let over = r.reached && t.agents.get(&agent).is_some_and(|i| !i.on_call);
                    if over {
                        state.free_agent(&tenant, &agent);
                    }
                }
            }
            RqMsg::Restore {
                tenant,
                call,
                queue,
                agent,
                waiter,
            } => {
                let t = state.tenants.entry(tenant).or_default();
                t.pool.reserve(&agent);
                t.by_call.insert(call.clone(), agent.clone());
                let reached = t.agents.get(&agent).is_some_and(|i| i.on_call);
                t.reserved.insert(
                    agent,
                    Reservation {
                        call,
                        queue,
                        waiter,
                        reached,
                    },
                );
            }
            RqMsg::Forget { tenant } => {
                state.tenants.remove(&tenant);
            }
            RqMsg::Stats { tenant, reply } => {
                let _ = reply.send(state.stats(&tenant));
            }
            RqMsg::Place {
                tenant,
                call,
                reply,
            } => {
                let _ = reply.send(state.place(&tenant, &call));
            }
            RqMsg::ConfigChanged(directory) => state.known = Known::of(&directory),
        }
        Ok(())
    }
}

impl Tenant {
    /// Gives back the reservation made for `call`, if any; the agent, to offer again if it
    /// is still available.
    fn release_call(&mut self, call: &str) -> Option<String> {
        let agent = self.by_call.remove(call)?;
        self.reserved.remove(&agent);
        Some(agent)
    }
}

/// What matching reads of a tenant's configuration, indexed when it changes rather than
/// looked up in it on every event.
#[derive(Default)]
struct Known {
    profiles: HashMap<String, Profile>,
    /// How each queue chooses among agents (its option `choice`, longest idle by default),
    /// in the configuration's order.
    queues: Vec<(String, Choice)>,
}

impl Known {
    fn of(directory: &Directory) -> HashMap<String, Known> {
        directory
            .tenants()
            .map(|t| {
                let profiles = t
                    .config
                    .agents
                    .iter()
                    .map(|a| (a.id.clone(), a.profile()))
                    .collect();
                let queues = t
                    .config
                    .queues
                    .iter()
                    .map(|q| {
                        let choice = q.options.get("choice").and_then(|c| Choice::parse(c));
                        (q.name.clone(), choice.unwrap_or_default())
                    })
                    .collect();
                (t.name.clone(), Known { profiles, queues })
            })
            .collect()
    }

    fn choice(&self, queue: &str) -> Choice {
        self.queues
            .iter()
            .find(|(name, _)| name == queue)
            .map_or_else(Choice::default, |(_, c)| *c)
    }
}

impl Tenant {
    /// The first call in order (priority, then age) across the queues that the agent of
    /// `profile` satisfies: its queue and id.
    fn first_for(&self, profile: &Profile) -> Option<(String, String)> {
        self.queues
            .iter()
            .filter_map(|(name, q)| q.first_for(profile).map(|w| (name, w)))
            .min_by_key(|(_, w)| (std::cmp::Reverse(w.priority), w.since))
            .map(|(name, w)| (name.clone(), w.call.clone()))
    }
}

impl RqState {
    fn availability(&mut self, a: Availability) {
        let t = self.tenants.entry(a.tenant.clone()).or_default();
        let info = t.agents.entry(a.agent.clone()).or_default();
        info.dn = a.dn.clone();
        info.queues = a.queues.iter().cloned().collect();
        info.available = a.available;
        info.on_call = a.on_call;
        if !a.available {
            info.rona = false;
        }
        let rona = info.rona;
        if let Some(r) = t.reserved.get_mut(&a.agent) {
            if a.on_call {
                // The call reaches the agent's phone.
                r.reached = true;
                return;
            }
            if a.available || r.reached {
                // Still Ready while the call is on its way; or the call rang the phone and
                // its outcome (delivered, withdrawn, queued again) gives the agent back.
                return;
            }
            // Not ready or logged out before the call reached the phone: the call waits
            // again with its age.
            let r = t.reserved.remove(&a.agent).expect("present");
            t.by_call.remove(&r.call);
            tracing::info!(tenant = %a.tenant, agent = %a.agent, call_id = %r.call,
                "reserved agent no longer available: the call waits again");
            r.waiter.tell(Told::Unreserved {
                call: r.call.clone(),
                agent: a.agent.clone(),
            });
        }
        if a.available && !rona {
            self.free_agent(&a.tenant, &a.agent);
        } else {
            t.pool.remove(&a.agent);
        }
    }

    /// An agent became free (Ready, or a reservation ended): into the pool, and offered the
    /// first call (by priority, then age) across the queues it may take; unless it is there
    /// already or may not take a call.
    fn free_agent(&mut self, tenant: &str, agent: &str) {
        let (Some(profile), Some(t)) = (
            self.known.get(tenant).and_then(|k| k.profiles.get(agent)),
            self.tenants.get_mut(tenant),
        ) else {
            return;
        };
        let Some(info) = t.agents.get(agent) else {
            return;
        };
        if !info.available
            || info.on_call
            || info.rona
            || t.reserved.contains_key(agent)
            || t.pool.contains(agent)
        {
            return;
        }
        t.pool
            .insert_loaded(profile.clone(), crate::unix_ms(), info.load);
        if let Some((queue, call)) = t.first_for(profile) {
            self.reserve(tenant, &queue, &call, agent);
        }
    }

    /// A call arrived or changed: the agent its queue chooses, if one is Ready. A call
    /// behind others of higher rank that the same agent could take waits its turn: the
    /// agent goes to the first call in order it satisfies, and the call tries the next
    /// agent. Each turn reserves an agent, so it ends.
    fn match_call(&mut self, tenant: &str, queue: &str, call: &str) {
        loop {
            let (Some(known), Some(t)) = (self.known.get(tenant), self.tenants.get(tenant)) else {
                return;
            };
            let Some(waiting) = t.queues.get(queue).and_then(|q| q.get(call)) else {
                return;
            };
            let Some(agent) = t.pool.choose(&waiting.target, known.choice(queue)) else {
                return;
            };
            let Some((first_queue, first)) = known.profiles.get(agent).and_then(|p| t.first_for(p))
            else {
                return;
            };
            let agent = agent.to_owned();
            self.reserve(tenant, &first_queue, &first, &agent);
            if first == call {
                return;
            }
        }
    }

    fn reserve(&mut self, tenant: &str, queue: &str, call: &str, agent: &str) {
        let Some(t) = self.tenants.get_mut(tenant) else {
            return;
        };
        if t.queues
            .get_mut(queue)
            .and_then(|q| q.remove(call))
            .is_none()
        {
            return;
        }
        let Some((_, waiter)) = t.waiting.remove(call) else {
            return;
        };
        t.pool.reserve(agent);
        let dn = t
            .agents
            .get(agent)
            .map(|i| i.dn.clone())
            .unwrap_or_default();
        tracing::debug!(%tenant, %queue, call_id = %call, %agent, %dn, "agent reserved");
        waiter.tell(Told::Matched {
            call: call.to_owned(),
            agent: agent.to_owned(),
            dn,
        });
        t.by_call.insert(call.to_owned(), agent.to_owned());
        t.reserved.insert(
            agent.to_owned(),
            Reservation {
                call: call.to_owned(),
                queue: queue.to_owned(),
                waiter,
                reached: false,
            },
        );
    }

    fn stats(&self, tenant: &str) -> Vec<QueueStats> {
        let Some(known) = self.known.get(tenant) else {
            return Vec::new();
        };
        let t = self.tenants.get(tenant);
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
                if let Some(queue) = t.queues.get(&name) {
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
                        able.extend(t.pool.choose_all(target));
                    }
                }
                for (agent, info) in t.agents.iter().filter(|(_, i)| i.queues.contains(&name)) {
                    if info.on_call || t.reserved.contains_key(agent) {
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
                s.ewt_ms = t
                    .estimates
                    .get(&name)
                    .and_then(|e| e.for_position(s.waiting as usize + 1));
                s
            })
            .collect()
    }

    fn place(&self, tenant: &str, call: &str) -> Option<Place> {
        let t = self.tenants.get(tenant)?;
        if let Some(agent) = t.by_call.get(call) {
            let r = t.reserved.get(agent)?;
            return Some(Place {
                queue: r.queue.clone(),
                position: 0,
                ewt_ms: Some(0),
                agent: Some(agent.clone()),
            });
        }
        let (queue, _) = t.waiting.get(call)?;
        let position = t.queues.get(queue)?.position(call)?;
        Some(Place {
            queue: queue.clone(),
            position: position as u32,
            ewt_ms: t
                .estimates
                .get(queue)
                .and_then(|e| e.for_position(position)),
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
