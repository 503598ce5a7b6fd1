//! A scripted set of calls through one queue, with the figures computed by hand.

use std::time::Duration;

use jiff::tz::TimeZone;
use switchboard_proto::events::{AgentState, CallThread, Event, Party, event::Payload};

use super::engine::{StatsSettings, TenantStats};

const S: u64 = 1000;
/// 2026-12-05 10:00:00 UTC, on a minute.
const T0: u64 = 1_796_464_800_000;

fn call(at: u64, kind: &str, id: &str, routed_to: Option<&str>) -> Event {
    Event {
        at_ms: at as i64,
        kind: kind.to_owned(),
        payload: Some(Payload::Call(CallThread {
            call_id: id.to_owned(),
            thread_id: id.to_owned(),
            queue: if kind == "Queued" {
                "support".to_owned()
            } else {
                String::new()
            },
            parties: routed_to
                .map(|dn| Party {
                    dn: dn.to_owned(),
                    role: "destination".to_owned(),
                    uri: String::new(),
                    mode: String::new(),
                })
                .into_iter()
                .collect(),
            ..CallThread::default()
        })),
        ..Event::default()
    }
}

fn agent(at: u64, id: &str, dn: &str, state: &str, call: Option<&str>) -> Event {
    Event {
        at_ms: at as i64,
        kind: format!("Agent{state}"),
        payload: Some(Payload::Agent(AgentState {
            agent_id: id.to_owned(),
            dn: dn.to_owned(),
            queues: vec!["support".to_owned()],
            state: state.to_owned(),
            calls: call.map(str::to_owned).into_iter().collect(),
            ..AgentState::default()
        })),
        ..Event::default()
    }
}

/// Two agents; five calls: A answered in 10 s (in time) with 30 s of after-call work, B in
/// 30 s (late) and transferred 19 s later, C abandoned after 3 s (short), D after 40 s, E
/// waiting.
fn scripted() -> Vec<Event> {
    vec![
        agent(T0, "a1", "1003", "Ready", None),
        agent(T0, "a2", "1004", "Ready", None),
        call(T0, "Queued", "A", None),
        call(T0 + S, "Queued", "B", None),
        call(T0 + 2 * S, "Queued", "C", None),
        call(T0 + 3 * S, "Queued", "D", None),
        call(T0 + 5 * S, "Abandoned", "C", None),
        call(T0 + 8 * S, "RouteUsed", "A", Some("1003")),
        agent(T0 + 10 * S, "a1", "1003", "Ready", Some("A")),
        call(T0 + 10 * S, "Established", "A", None),
        call(T0 + 30 * S, "RouteUsed", "B", Some("1004")),
        agent(T0 + 31 * S, "a2", "1004", "Ready", Some("B")),
        call(T0 + 31 * S, "Established", "B", None),
        call(T0 + 43 * S, "Abandoned", "D", None),
        // a2 transfers B away: its DN is free (written first), the call goes on without it.
        agent(T0 + 50 * S, "a2", "1004", "Ready", None),
        call(T0 + 50 * S, "PartyChanged", "B", None),
        // The agent's after-call work is written before the call's release.
        agent(T0 + 70 * S, "a1", "1003", "AfterCallWork", None),
        call(T0 + 70 * S, "Released", "A", None),
        call(T0 + 91 * S, "Released", "B", None),
        agent(T0 + 100 * S, "a1", "1003", "Ready", None),
        call(T0 + 110 * S, "Queued", "E", None),
    ]
}

fn stats() -> TenantStats {
    let settings = StatsSettings {
        service_level: Duration::from_secs(20),
        short_abandon: Duration::from_secs(5),
        time_zone: TimeZone::UTC,
    };
    TenantStats::new(
        settings,
        ["support".to_owned(), "sales".to_owned()],
        ["team".to_owned()],
        [
            ("a1".to_owned(), vec!["team".to_owned()]),
            ("a2".to_owned(), vec!["team".to_owned()]),
        ],
    )
}

#[test]
fn a_scripted_day_gives_the_figures_computed_by_hand() {
    let mut stats = stats();
    for e in scripted() {
        stats.apply(&e);
    }
    let now = stats.now(T0 + 120 * S);
    for counts in [now.counts.window, now.counts.today] {
        assert_eq!(
            (
                counts.offered,
                counts.answered,
                counts.answered_in_time,
                counts.abandoned,
                counts.short_abandoned,
                counts.transfers,
                counts.handled
            ),
            (5, 2, 1, 2, 1, 1, 2)
        );
        // 1 in time / (2 answered + 1 abandoned after 5 s).
        assert_eq!(counts.service_level(), Some(1.0 / 3.0));
        assert_eq!(counts.average_answer_ms(), Some(20 * S), "(10 + 30) / 2");
        assert_eq!(
            counts.average_handle_ms(),
            Some(54_500),
            "(60 + 30 + 19) / 2"
        );
        // a1: Ready 10 + 20 s, busy 90 s; a2: Ready 31 + 70 s, busy 19 s.
        assert_eq!((counts.busy_ms, counts.ready_ms), (109 * S, 131 * S));
        assert_eq!(counts.occupancy(), Some(109.0 / 240.0));
    }
    assert_eq!((now.waiting, now.longest_wait_ms), (1, 10 * S));
    let support = &now.queues.iter().find(|q| q.name == "support").expect("q");
    assert_eq!((support.waiting, support.ready, support.busy), (1, 2, 0));
    assert_eq!(support.counts.today.offered, 5);
    assert_eq!(support.counts.today.service_level(), Some(1.0 / 3.0));
    assert_eq!(
        support.counts.today.busy_ms, 0,
        "agents' time is not a queue's"
    );
    // The second caller waiting: 2 x today's 54.5 s handle time / two agents.
    assert_eq!(support.estimated_wait_ms, Some(54_500));
    let sales = &now.queues.iter().find(|q| q.name == "sales").expect("q");
    assert_eq!(sales.counts.today.offered, 0);
    let a1 = now.agents.iter().find(|a| a.id == "a1").expect("a1");
    assert_eq!((a1.state.as_str(), a1.time_in_state_ms), ("Ready", 20 * S));
    assert_eq!(a1.counts.today.answered, 1);
    assert_eq!(a1.counts.today.average_handle_ms(), Some(90 * S));
    assert_eq!(a1.counts.today.occupancy(), Some(0.75));
    let a2 = now.agents.iter().find(|a| a.id == "a2").expect("a2");
    assert_eq!(a2.counts.today.transfers, 1);
    assert_eq!(a2.counts.today.average_handle_ms(), Some(19 * S));
    let team = &now.groups[0];
    assert_eq!(team.states, [("Ready".to_owned(), 2)]);
    assert_eq!(team.counts.today.answered, 2);
    assert_eq!(team.counts.today.occupancy(), Some(109.0 / 240.0));
}

#[test]
fn the_window_forgets_what_today_keeps() {
    let mut stats = stats();
    for e in scripted() {
        stats.apply(&e);
    }
    let later = stats.now(T0 + 20 * 60 * S);
    assert_eq!(later.counts.window.offered, 0);
    assert_eq!(later.counts.today.offered, 5);
    // E has waited 18 min 10 s.
    assert_eq!(later.longest_wait_ms, 20 * 60 * S - 110 * S);
}

#[test]
fn the_same_events_give_the_same_figures() {
    let (mut one, mut two) = (stats(), stats());
    let events = scripted();
    for e in &events {
        one.apply(e);
    }
    for e in &events {
        two.apply(e);
    }
    assert_eq!(one.now(T0 + 200 * S), two.now(T0 + 200 * S));
}
