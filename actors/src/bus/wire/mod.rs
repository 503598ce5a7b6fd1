//! The bus's messages as they cross nodes: each typed message of [`crate::messages::bus`] and
//! its protobuf twin of `proto/bus.proto`, both ways.

mod control;

use std::collections::BTreeMap;

use prost::Message;
use switchboard_proto::bus as pb;
use switchboard_proto::bus::envelope::Body as PbBody;
use switchboard_routing::strategy::{Overflow, Route, Treatment};
use switchboard_routing::target::Target;

use crate::messages::agent_state::{Command, CommandError, Monitoring, Refusal, Status, WorkMode};
use crate::messages::bus::{Answer, NodeBound, OwnerBound, RouteCall};
use crate::messages::ors::{CallbackStatus, Order, Report};
use crate::messages::rq::QueueStats;
use crate::messages::sip_cluster::MonitorMode;

/// The schema version this node writes.
pub const VERSION: u32 = 1;

/// One message on the bus with what the envelope says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    pub tenant: String,
    /// The node that sent it.
    pub from: String,
    /// The sender's fencing number, when it writes as the tenant's owner (else 0).
    pub fence: u64,
    /// Non-zero when the sender waits for an answer.
    pub ask: u64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Owner(OwnerBound),
    Node(NodeBound),
    Answer(Answer),
    /// A node's marker in an owner inbox (see [`crate::bus`]).
    CaughtUp(u64),
}

/// Why an entry of the bus could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("not a bus envelope: {0}")]
    NotProtobuf(String),
    /// A body this node does not know: a newer node's (a rolling upgrade).
    #[error("a message of a version {0} node this node does not know")]
    Unknown(u32),
    #[error("{0} is missing or not valid")]
    Invalid(&'static str),
}

pub fn encode(letter: &Letter) -> Vec<u8> {
    let body = match &letter.body {
        Body::Owner(m) => owner_to_pb(m),
        Body::Node(NodeBound::Order { call, order }) => PbBody::CallOrder(pb::CallOrder {
            call: call.clone(),
            order: Some(order_to_pb(order)),
        }),
        Body::Node(NodeBound::Control { call, dn, control }) => {
            PbBody::CallControl(pb::CallControl {
                call: call.clone(),
                dn: dn.clone(),
                control: Some(control::control_to_pb(control)),
            })
        }
        Body::Answer(a) => PbBody::Answer(answer_to_pb(a)),
        Body::CaughtUp(token) => PbBody::CaughtUp(pb::CaughtUp { token: *token }),
    };
    pb::Envelope {
        version: VERSION,
        tenant: letter.tenant.clone(),
        from_node: letter.from.clone(),
        fence: letter.fence,
        ask: letter.ask,
        body: Some(body),
    }
    .encode_to_vec()
}

pub fn decode(bytes: &[u8]) -> Result<Letter, Unreadable> {
    let e = pb::Envelope::decode(bytes).map_err(|e| Unreadable::NotProtobuf(e.to_string()))?;
    let body = match e.body.ok_or(Unreadable::Unknown(e.version))? {
        PbBody::RouteRequest(r) => Body::Owner(OwnerBound::Route(RouteCall {
            call: r.call,
            routing_point: r.routing_point,
            strategy: r.strategy,
            ani: r.ani,
            dnis: r.dnis,
            user_data: r.user_data.into_iter().collect::<BTreeMap<_, _>>(),
        })),
        PbBody::RouteReport(r) => Body::Owner(OwnerBound::Report {
            call: r.call,
            report: report_from_pb(r.report.ok_or(Unreadable::Invalid("report"))?),
        }),
        PbBody::Registration(r) => Body::Owner(OwnerBound::Registration {
            dn: r.dn,
            present: r.present,
        }),
        PbBody::CallChanged(c) => Body::Owner(OwnerBound::CallChanged {
            dns: c.dns,
            left: c.left,
            call: c.call,
            ended: c.ended,
        }),
        PbBody::AgentCommand(c) => Body::Owner(OwnerBound::Command {
            agent: c.agent,
            command: command_from_pb(c.command.ok_or(Unreadable::Invalid("command"))?)?,
        }),
        PbBody::AgentStatus(s) => Body::Owner(OwnerBound::Status { agent: s.agent }),
        PbBody::QueueStats(_) => Body::Owner(OwnerBound::QueueStats),
        PbBody::Callback(c) => Body::Owner(OwnerBound::Callback {
            id: c.id,
            cancel: c.cancel,
        }),
        PbBody::CallOrder(o) => Body::Node(NodeBound::Order {
            call: o.call,
            order: order_from_pb(o.order.ok_or(Unreadable::Invalid("order"))?)?,
        }),
        PbBody::CallControl(c) => Body::Node(NodeBound::Control {
            call: c.call,
            dn: c.dn,
            control: control::control_from_pb(c.control.ok_or(Unreadable::Invalid("control"))?),
        }),
        PbBody::Answer(a) => Body::Answer(answer_from_pb(&e.tenant, a)?),
        PbBody::CaughtUp(c) => Body::CaughtUp(c.token),
    };
    Ok(Letter {
        tenant: e.tenant,
        from: e.from_node,
        fence: e.fence,
        ask: e.ask,
        body,
    })
}

fn owner_to_pb(m: &OwnerBound) -> PbBody {
    match m {
        OwnerBound::Route(r) => PbBody::RouteRequest(pb::RouteRequest {
            call: r.call.clone(),
            routing_point: r.routing_point.clone(),
            strategy: r.strategy.clone(),
            ani: r.ani.clone(),
            dnis: r.dnis.clone(),
            user_data: r.user_data.clone().into_iter().collect(),
        }),
        OwnerBound::Report { call, report } => PbBody::RouteReport(pb::RouteReport {
            call: call.clone(),
            report: Some(report_to_pb(report)),
        }),
        OwnerBound::Registration { dn, present } => PbBody::Registration(pb::Registration {
            dn: dn.clone(),
            present: *present,
        }),
        OwnerBound::CallChanged {
            dns,
            left,
            call,
            ended,
        } => PbBody::CallChanged(pb::CallChanged {
            dns: dns.clone(),
            left: left.clone(),
            call: call.clone(),
            ended: *ended,
        }),
        OwnerBound::Command { agent, command } => PbBody::AgentCommand(pb::AgentCommand {
            agent: agent.clone(),
            command: Some(command_to_pb(command)),
        }),
        OwnerBound::Status { agent } => PbBody::AgentStatus(pb::AgentStatus {
            agent: agent.clone(),
        }),
        OwnerBound::QueueStats => PbBody::QueueStats(pb::QueueStats {}),
        OwnerBound::Callback { id, cancel } => PbBody::Callback(pb::CallbackQuery {
            id: id.clone(),
            cancel: *cancel,
        }),
    }
}

fn report_to_pb(r: &Report) -> pb::route_report::Report {
    use pb::route_report::Report as P;
    match r {
        Report::TreatmentEnded { digits } => P::TreatmentEnded(pb::TreatmentEnded {
            digits: digits.clone(),
        }),
        Report::TreatmentFailed => P::TreatmentFailed(pb::Empty {}),
        Report::Routed => P::Routed(pb::Empty {}),
        Report::RouteFailed { rona } => P::RouteFailed(pb::RouteFailed { rona: rona.clone() }),
        Report::Gone => P::Gone(pb::Empty {}),
    }
}

fn report_from_pb(r: pb::route_report::Report) -> Report {
    use pb::route_report::Report as P;
    match r {
        P::TreatmentEnded(t) => Report::TreatmentEnded { digits: t.digits },
        P::TreatmentFailed(_) => Report::TreatmentFailed,
        P::Routed(_) => Report::Routed,
        P::RouteFailed(f) => Report::RouteFailed { rona: f.rona },
        P::Gone(_) => Report::Gone,
    }
}

fn command_to_pb(c: &Command) -> pb::agent_command::Command {
    use pb::agent_command::Command as P;
    match c {
        Command::Login { dn, queues } => P::Login(pb::Login {
            dn: dn.clone(),
            queues: queues.clone(),
        }),
        Command::Logout => P::Logout(pb::Empty {}),
        Command::Ready => P::Ready(pb::Empty {}),
        Command::NotReady { reason, work_mode } => P::NotReady(pb::NotReady {
            reason: reason.clone(),
            work_mode: work_mode.name().to_owned(),
        }),
        Command::AfterCallWork => P::AfterCallWork(pb::Empty {}),
        Command::Dnd(on) => P::Dnd(*on),
        Command::Monitored(Some(m)) => P::Monitored(pb::Monitor {
            supervisor: m.supervisor.clone(),
            mode: m.mode.name().to_owned(),
        }),
        Command::Monitored(None) => P::Unmonitored(pb::Empty {}),
    }
}

fn command_from_pb(c: pb::agent_command::Command) -> Result<Command, Unreadable> {
    use pb::agent_command::Command as P;
    Ok(match c {
        P::Login(l) => Command::Login {
            dn: l.dn,
            queues: l.queues,
        },
        P::Logout(_) => Command::Logout,
        P::Ready(_) => Command::Ready,
        P::NotReady(n) => Command::NotReady {
            reason: n.reason,
            work_mode: WorkMode::parse(&n.work_mode).ok_or(Unreadable::Invalid("work mode"))?,
        },
        P::AfterCallWork(_) => Command::AfterCallWork,
        P::Dnd(on) => Command::Dnd(on),
        P::Monitored(m) => Command::Monitored(Some(Monitoring {
            supervisor: m.supervisor,
            mode: MonitorMode::parse(&m.mode).ok_or(Unreadable::Invalid("monitor mode"))?,
        })),
        P::Unmonitored(_) => Command::Monitored(None),
    })
}

fn treatment_to_pb(t: &Treatment) -> pb::Treatment {
    use pb::treatment::Kind;
    let kind = match t {
        Treatment::Music(uri) => Kind::Music(uri.clone()),
        Treatment::Announcement(uri) => Kind::Announcement(uri.clone()),
        Treatment::Busy(uri) => Kind::Busy(uri.clone()),
        Treatment::Ringback => Kind::Ringback(pb::Empty {}),
        Treatment::Silence => Kind::Silence(pb::Empty {}),
        Treatment::Collect { digits, uri } => Kind::Collect(pb::Collect {
            digits: *digits,
            uri: uri.clone(),
        }),
    };
    pb::Treatment { kind: Some(kind) }
}

fn treatment_from_pb(t: pb::Treatment) -> Result<Treatment, Unreadable> {
    use pb::treatment::Kind;
    Ok(match t.kind.ok_or(Unreadable::Invalid("treatment"))? {
        Kind::Music(uri) => Treatment::Music(uri),
        Kind::Announcement(uri) => Treatment::Announcement(uri),
        Kind::Busy(uri) => Treatment::Busy(uri),
        Kind::Ringback(_) => Treatment::Ringback,
        Kind::Silence(_) => Treatment::Silence,
        Kind::Collect(c) => Treatment::Collect {
            digits: c.digits,
            uri: c.uri,
        },
    })
}

fn target(text: &str) -> Result<Target, Unreadable> {
    Target::parse(text).map_err(|_| Unreadable::Invalid("target"))
}

fn order_to_pb(o: &Order) -> pb::call_order::Order {
    use pb::call_order::Order as P;
    match o {
        Order::Treat(t) => P::Treat(treatment_to_pb(t)),
        Order::Collect { digits, uri } => P::Collect(pb::Collect {
            digits: *digits,
            uri: uri.clone(),
        }),
        Order::SetData { key, value } => P::SetData(pb::SetData {
            key: key.clone(),
            value: value.clone(),
        }),
        Order::Queued {
            queue,
            target,
            priority,
        } => P::Queued(pb::Queued {
            queue: queue.clone(),
            target: target.clone(),
            priority: *priority,
        }),
        Order::Overflow(change) => P::Overflow(pb::Overflow {
            change: Some(match change {
                Overflow::Priority(p) => pb::overflow::Change::Priority(*p),
                Overflow::Target(t) => pb::overflow::Change::Target(t.to_string()),
            }),
        }),
        Order::Route(route) => P::Route(pb::Route {
            to: Some(match route {
                Route::Dn(dn) => pb::route::To::Dn(dn.clone()),
                Route::Number(n) => pb::route::To::Number(n.clone()),
                Route::Reject(code) => pb::route::To::Reject(u32::from(*code)),
                Route::Default => pb::route::To::DefaultDestination(pb::Empty {}),
                Route::Agent { agent, dn } => pb::route::To::Agent(pb::AgentRoute {
                    agent: agent.clone(),
                    dn: dn.clone(),
                }),
            }),
        }),
        Order::Unreserved { agent } => P::Unreserved(agent.clone()),
        Order::Record => P::Record(pb::Empty {}),
        Order::Monitor { dn, mode } => P::Monitor(pb::Monitor {
            supervisor: dn.clone(),
            mode: mode.name().to_owned(),
        }),
    }
}

fn order_from_pb(o: pb::call_order::Order) -> Result<Order, Unreadable> {
    use pb::call_order::Order as P;
    Ok(match o {
        P::Treat(t) => Order::Treat(treatment_from_pb(t)?),
        P::Collect(c) => Order::Collect {
            digits: c.digits,
            uri: c.uri,
        },
        P::SetData(d) => Order::SetData {
            key: d.key,
            value: d.value,
        },
        P::Record(_) => Order::Record,
        P::Monitor(m) => Order::Monitor {
            dn: m.supervisor,
            mode: MonitorMode::parse(&m.mode).ok_or(Unreadable::Invalid("monitor mode"))?,
        },
        P::Queued(q) => Order::Queued {
            queue: q.queue,
            target: q.target,
            priority: q.priority,
        },
        P::Overflow(o) => {
            Order::Overflow(match o.change.ok_or(Unreadable::Invalid("overflow"))? {
                pb::overflow::Change::Priority(p) => Overflow::Priority(p),
                pb::overflow::Change::Target(t) => Overflow::Target(target(&t)?),
            })
        }
        P::Route(r) => Order::Route(match r.to.ok_or(Unreadable::Invalid("route"))? {
            pb::route::To::Dn(dn) => Route::Dn(dn),
            pb::route::To::Number(n) => Route::Number(n),
            pb::route::To::Reject(code) => {
                Route::Reject(u16::try_from(code).map_err(|_| Unreadable::Invalid("reject code"))?)
            }
            pb::route::To::DefaultDestination(_) => Route::Default,
            pb::route::To::Agent(a) => Route::Agent {
                agent: a.agent,
                dn: a.dn,
            },
        }),
        P::Unreserved(agent) => Order::Unreserved { agent },
    })
}

fn error_to_pb(e: &CommandError) -> pb::CommandError {
    use pb::command_error::Kind;
    let kind = match e {
        CommandError::UnknownAgent { agent, .. } => Kind::UnknownAgent(agent.clone()),
        CommandError::UnknownTenant(_) => Kind::UnknownTenant(pb::Empty {}),
        CommandError::NotAnExtension { dn, .. } => Kind::NotAnExtension(dn.clone()),
        CommandError::Refused(Refusal::NotLoggedIn) => Kind::NotLoggedIn(pb::Empty {}),
        CommandError::Refused(Refusal::AlreadyLoggedIn(dn)) => Kind::AlreadyLoggedIn(dn.clone()),
        CommandError::Refused(Refusal::OutOfService(dn)) => Kind::OutOfService(dn.clone()),
        CommandError::DnTaken { dn, agent } => Kind::DnTaken(pb::DnTaken {
            dn: dn.clone(),
            agent: agent.clone(),
        }),
        CommandError::Unavailable(why) => Kind::Unavailable(why.clone()),
    };
    pb::CommandError { kind: Some(kind) }
}

fn error_from_pb(tenant: &str, e: pb::CommandError) -> Result<CommandError, Unreadable> {
    use pb::command_error::Kind;
    Ok(match e.kind.ok_or(Unreadable::Invalid("command error"))? {
        Kind::UnknownAgent(agent) => CommandError::UnknownAgent {
            tenant: tenant.to_owned(),
            agent,
        },
        Kind::UnknownTenant(_) => CommandError::UnknownTenant(tenant.to_owned()),
        Kind::NotAnExtension(dn) => CommandError::NotAnExtension {
            tenant: tenant.to_owned(),
            dn,
        },
        Kind::NotLoggedIn(_) => Refusal::NotLoggedIn.into(),
        Kind::AlreadyLoggedIn(dn) => Refusal::AlreadyLoggedIn(dn).into(),
        // A node of an earlier version, which refused a Logout during a call; this one keeps
        // it as the agent's next state.
        Kind::HasCalls(_) => {
            CommandError::Unavailable("the agent has calls in progress (an older node)".into())
        }
        Kind::OutOfService(dn) => Refusal::OutOfService(dn).into(),
        Kind::DnTaken(t) => CommandError::DnTaken {
            dn: t.dn,
            agent: t.agent,
        },
        Kind::Unavailable(why) => CommandError::Unavailable(why),
    })
}

fn answer_to_pb(a: &Answer) -> pb::Answer {
    use pb::answer::Result as R;
    let result = match a {
        Answer::Done => R::Done(pb::Empty {}),
        Answer::Command(result) => R::Command(pb::CommandResult {
            error: result.as_ref().err().map(error_to_pb),
        }),
        Answer::Status(result) => R::Status(pb::StatusResult {
            result: Some(match result {
                Ok(status) => pb::status_result::Result::View(pb::AgentView {
                    state: Some(status.state.clone()),
                    available: status.available,
                }),
                Err(e) => pb::status_result::Result::Error(error_to_pb(e)),
            }),
        }),
        Answer::QueueStats(queues) => R::QueueStats(pb::QueueFigures {
            queues: queues
                .iter()
                .map(|q| pb::QueueFigure {
                    queue: q.queue.clone(),
                    waiting: q.waiting,
                    ready: q.ready,
                    busy: q.busy,
                    ewt_ms: q.ewt_ms,
                    oldest_ms: q.oldest_ms,
                    ready_serving: q.ready_serving,
                })
                .collect(),
        }),
        Answer::Callback(view) => R::Callback(pb::CallbackResult {
            view: view.as_ref().map(|v| pb::CallbackView {
                id: v.id.clone(),
                state: v.state.clone(),
                customer: v.customer.clone(),
                queue: v.queue.clone(),
                position: v.position,
                ewt_ms: v.ewt_ms,
                agent: v.agent.clone(),
                call_id: v.call_id.clone(),
                reason: v.reason.clone(),
            }),
        }),
        Answer::Control(result) => R::Control(control::result_to_pb(result)),
    };
    pb::Answer {
        result: Some(result),
    }
}

fn answer_from_pb(tenant: &str, a: pb::Answer) -> Result<Answer, Unreadable> {
    use pb::answer::Result as R;
    Ok(match a.result.ok_or(Unreadable::Invalid("answer"))? {
        R::Done(_) => Answer::Done,
        R::Command(c) => Answer::Command(match c.error {
            None => Ok(()),
            Some(e) => Err(error_from_pb(tenant, e)?),
        }),
        R::Status(s) => Answer::Status(match s.result.ok_or(Unreadable::Invalid("status"))? {
            pb::status_result::Result::View(v) => Ok(Status {
                state: v.state.ok_or(Unreadable::Invalid("agent state"))?,
                available: v.available,
            }),
            pb::status_result::Result::Error(e) => Err(error_from_pb(tenant, e)?),
        }),
        R::QueueStats(f) => Answer::QueueStats(
            f.queues
                .into_iter()
                .map(|q| QueueStats {
                    queue: q.queue,
                    waiting: q.waiting,
                    ready: q.ready,
                    ready_serving: q.ready_serving,
                    busy: q.busy,
                    ewt_ms: q.ewt_ms,
                    oldest_ms: q.oldest_ms,
                })
                .collect(),
        ),
        R::Control(c) => Answer::Control(control::result_from_pb(tenant, c)?),
        R::Callback(c) => Answer::Callback(c.view.map(|v| CallbackStatus {
            id: v.id,
            state: v.state,
            customer: v.customer,
            queue: v.queue,
            position: v.position,
            ewt_ms: v.ewt_ms,
            agent: v.agent,
            call_id: v.call_id,
            reason: v.reason,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::events::AgentState as AgentView;

    fn round_trip(body: Body) {
        let letter = Letter {
            tenant: "demo".into(),
            from: "sbnode1".into(),
            fence: 7,
            ask: 42,
            body,
        };
        assert_eq!(decode(&encode(&letter)), Ok(letter));
    }

    #[test]
    fn every_owner_bound_message_crosses_unchanged() {
        let messages = [
            OwnerBound::Route(RouteCall {
                call: "sbnode1-1".into(),
                routing_point: "5000".into(),
                strategy: "support".into(),
                ani: "+15551230000".into(),
                dnis: "+18005550100".into(),
                user_data: [("lang".to_owned(), "fr".to_owned())].into(),
            }),
            OwnerBound::Report {
                call: "c".into(),
                report: Report::TreatmentEnded {
                    digits: Some("12#".into()),
                },
            },
            OwnerBound::Report {
                call: "c".into(),
                report: Report::TreatmentEnded { digits: None },
            },
            OwnerBound::Report {
                call: "c".into(),
                report: Report::TreatmentFailed,
            },
            OwnerBound::Report {
                call: "c".into(),
                report: Report::Routed,
            },
            OwnerBound::Report {
                call: "c".into(),
                report: Report::RouteFailed {
                    rona: Some("a1001".into()),
                },
            },
            OwnerBound::Report {
                call: "c".into(),
                report: Report::RouteFailed { rona: None },
            },
            OwnerBound::Report {
                call: "c".into(),
                report: Report::Gone,
            },
            OwnerBound::Registration {
                dn: "1001".into(),
                present: true,
            },
            OwnerBound::CallChanged {
                dns: vec!["1001".into(), "1002".into()],
                left: vec!["1003".into()],
                call: "c".into(),
                ended: true,
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::Login {
                    dn: "1001".into(),
                    queues: vec!["support".into()],
                },
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::Logout,
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::Ready,
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::NotReady {
                    reason: Some("lunch".into()),
                    work_mode: WorkMode::WalkAway,
                },
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::NotReady {
                    reason: None,
                    work_mode: WorkMode::Unknown,
                },
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::Monitored(Some(Monitoring {
                    supervisor: "1020".into(),
                    mode: MonitorMode::Barge,
                })),
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::Monitored(None),
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::AfterCallWork,
            },
            OwnerBound::Command {
                agent: "a1001".into(),
                command: Command::Dnd(true),
            },
            OwnerBound::Status {
                agent: "a1001".into(),
            },
            OwnerBound::QueueStats,
            OwnerBound::Callback {
                id: "cb-1".into(),
                cancel: true,
            },
        ];
        for m in messages {
            round_trip(Body::Owner(m));
        }
    }

    #[test]
    fn every_order_crosses_unchanged() {
        let orders = [
            Order::Treat(Treatment::Music("sip:music@gvp".into())),
            Order::Treat(Treatment::Announcement("sip:annc@gvp".into())),
            Order::Treat(Treatment::Busy("sip:busy@gvp".into())),
            Order::Treat(Treatment::Ringback),
            Order::Treat(Treatment::Silence),
            Order::Treat(Treatment::Collect {
                digits: 4,
                uri: "sip:dialog@gvp".into(),
            }),
            Order::Collect {
                digits: 2,
                uri: "sip:dialog@gvp".into(),
            },
            Order::Record,
            Order::Monitor {
                dn: "1020".into(),
                mode: MonitorMode::Whisper,
            },
            Order::SetData {
                key: "k".into(),
                value: "v".into(),
            },
            Order::Queued {
                queue: "support".into(),
                target: "english >= 3".into(),
                priority: 5,
            },
            Order::Overflow(Overflow::Priority(9)),
            Order::Overflow(Overflow::Target(
                Target::parse("english >= 5 & (billing > 0 | sales > 3)").expect("target"),
            )),
            Order::Route(Route::Dn("1001".into())),
            Order::Route(Route::Number("915551230000".into())),
            Order::Route(Route::Reject(486)),
            Order::Route(Route::Default),
            Order::Route(Route::Agent {
                agent: "a1001".into(),
                dn: "1001".into(),
            }),
            Order::Unreserved {
                agent: "a1001".into(),
            },
        ];
        for order in orders {
            round_trip(Body::Node(NodeBound::Order {
                call: "c".into(),
                order,
            }));
        }
    }

    #[test]
    fn an_older_nodes_refusal_of_a_logout_during_a_call_is_still_read() {
        let old = pb::CommandError {
            kind: Some(pb::command_error::Kind::HasCalls(pb::Empty {})),
        };
        assert!(matches!(
            error_from_pb("demo", old),
            Ok(CommandError::Unavailable(why)) if why.contains("calls in progress")
        ));
    }

    #[test]
    fn every_answer_crosses_unchanged() {
        let errors = [
            CommandError::UnknownAgent {
                tenant: "demo".into(),
                agent: "a9".into(),
            },
            CommandError::UnknownTenant("demo".into()),
            CommandError::NotAnExtension {
                tenant: "demo".into(),
                dn: "5000".into(),
            },
            Refusal::NotLoggedIn.into(),
            Refusal::AlreadyLoggedIn("1001".into()).into(),
            Refusal::OutOfService("1001".into()).into(),
            CommandError::DnTaken {
                dn: "1001".into(),
                agent: "a1002".into(),
            },
            CommandError::Unavailable("redis".into()),
        ];
        let mut answers = vec![
            Answer::Done,
            Answer::Command(Ok(())),
            Answer::Status(Ok(Status {
                state: AgentView {
                    agent_id: "a1001".into(),
                    dn: "1001".into(),
                    queues: vec!["support".into()],
                    state: "Ready".into(),
                    in_service: true,
                    calls: vec!["c1".into()],
                    wrap_up_until_ms: 5,
                    ..AgentView::default()
                },
                available: true,
            })),
            Answer::QueueStats(vec![
                QueueStats {
                    queue: "support".into(),
                    waiting: 3,
                    ready: 1,
                    ready_serving: 2,
                    busy: 2,
                    ewt_ms: Some(1500),
                    oldest_ms: 40_000,
                },
                QueueStats {
                    queue: "sales".into(),
                    ..QueueStats::default()
                },
            ]),
        ];
        answers.push(Answer::Callback(None));
        answers.push(Answer::Callback(Some(CallbackStatus {
            id: "cb-1".into(),
            state: "queued".into(),
            customer: "915551230000".into(),
            queue: "support".into(),
            position: Some(2),
            ewt_ms: Some(3000),
            agent: Some("a1001".into()),
            call_id: Some("c9".into()),
            reason: "why".into(),
        })));
        for e in errors {
            answers.push(Answer::Command(Err(e.clone())));
            answers.push(Answer::Status(Err(e)));
        }
        for a in answers {
            round_trip(Body::Answer(a));
        }
        round_trip(Body::CaughtUp(99));
    }

    #[test]
    fn a_newer_nodes_message_is_unknown_and_garbage_is_not_a_letter() {
        // A body this version does not know decodes as none: tag 99, a message of its own.
        let mut bytes = pb::Envelope {
            version: 2,
            tenant: "demo".into(),
            from_node: "sbnew".into(),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x9a, 0x06, 0x00]);
        assert_eq!(decode(&bytes), Err(Unreadable::Unknown(2)));
        assert!(matches!(
            decode(b"\xff\xff\xff"),
            Err(Unreadable::NotProtobuf(_))
        ));
    }
}
