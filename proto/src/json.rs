//! The JSON form of events (the protobuf JSON mapping: lowerCamelCase names, 64-bit integers as
//! strings), and the flat field list a Redis stream entry holds: the envelope's fields side by
//! side, readable with `XRANGE`, and the payload as one JSON field.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::events::{AgentState, Binding, CallThread, Event, Party, Payload, RequestError};

/// The payload in the protobuf JSON mapping, serialized straight from the event (no tree of
/// values built first): `serde_json::to_writer(out, &PayloadJson(payload))`. Keys come in
/// sorted order, as a `serde_json::Value` of the same payload prints them.
pub struct PayloadJson<'a>(pub &'a Payload);

/// The whole event in the protobuf JSON mapping (see [`PayloadJson`]).
pub struct EventJson<'a>(pub &'a Event);

/// A 64-bit integer as the protobuf JSON mapping writes it: a string.
fn int64<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BindingJson<'a> {
    aor: &'a str,
    call_id: &'a str,
    contact: &'a str,
    cseq: u32,
    dn: &'a str,
    expires: u32,
    #[serde(serialize_with = "int64")]
    expires_at_ms: i64,
    q: u32,
    reason: &'a str,
    source: &'a str,
    transport: &'a str,
    user_agent: &'a str,
}

#[derive(Serialize)]
struct PartyJson<'a> {
    dn: &'a str,
    mode: &'a str,
    role: &'a str,
    uri: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallJson<'a> {
    ani: &'a str,
    call_id: &'a str,
    cause: &'a str,
    dnis: &'a str,
    #[serde(serialize_with = "int64")]
    duration_ms: i64,
    origin: &'a str,
    parties: Vec<PartyJson<'a>>,
    priority: u32,
    queue: &'a str,
    recording_id: &'a str,
    recording_uri: &'a str,
    routing_point: &'a str,
    status: u32,
    target: &'a str,
    thread_id: &'a str,
    treatment: &'a str,
    user_data: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentJson<'a> {
    agent_id: &'a str,
    calls: &'a [String],
    dn: &'a str,
    dnd: bool,
    in_service: bool,
    monitor_mode: &'a str,
    monitored_by: &'a str,
    next_reason: &'a str,
    next_state: &'a str,
    next_work_mode: &'a str,
    queues: &'a [String],
    reason: &'a str,
    state: &'a str,
    work_mode: &'a str,
    #[serde(serialize_with = "int64")]
    wrap_up_until_ms: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorJson<'a> {
    agent_id: &'a str,
    call_id: &'a str,
    code: &'a str,
    message: &'a str,
    operation: &'a str,
    reference_id: &'a str,
}

impl Serialize for PayloadJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Payload::Binding(b) => BindingJson {
                aor: &b.aor,
                call_id: &b.call_id,
                contact: &b.contact,
                cseq: b.cseq,
                dn: &b.dn,
                expires: b.expires,
                expires_at_ms: b.expires_at_ms,
                q: b.q,
                reason: &b.reason,
                source: &b.source,
                transport: &b.transport,
                user_agent: &b.user_agent,
            }
            .serialize(s),
            Payload::Call(c) => CallJson {
                ani: &c.ani,
                call_id: &c.call_id,
                cause: &c.cause,
                dnis: &c.dnis,
                duration_ms: c.duration_ms,
                origin: &c.origin,
                parties: c
                    .parties
                    .iter()
                    .map(|p| PartyJson {
                        dn: &p.dn,
                        mode: &p.mode,
                        role: &p.role,
                        uri: &p.uri,
                    })
                    .collect(),
                priority: c.priority,
                queue: &c.queue,
                recording_id: &c.recording_id,
                recording_uri: &c.recording_uri,
                routing_point: &c.routing_point,
                status: c.status,
                target: &c.target,
                thread_id: &c.thread_id,
                treatment: &c.treatment,
                user_data: c
                    .user_data
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            }
            .serialize(s),
            Payload::Agent(a) => AgentJson {
                agent_id: &a.agent_id,
                calls: &a.calls,
                dn: &a.dn,
                dnd: a.dnd,
                in_service: a.in_service,
                monitor_mode: &a.monitor_mode,
                monitored_by: &a.monitored_by,
                next_reason: &a.next_reason,
                next_state: &a.next_state,
                next_work_mode: &a.next_work_mode,
                queues: &a.queues,
                reason: &a.reason,
                state: &a.state,
                work_mode: &a.work_mode,
                wrap_up_until_ms: a.wrap_up_until_ms,
            }
            .serialize(s),
            Payload::Error(e) => ErrorJson {
                agent_id: &e.agent_id,
                call_id: &e.call_id,
                code: &e.code,
                message: &e.message,
                operation: &e.operation,
                reference_id: &e.reference_id,
            }
            .serialize(s),
        }
    }
}

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let payload = event.payload.as_ref().map(|p| {
            let name = match p {
                Payload::Agent(_) => "agent",
                Payload::Binding(_) => "binding",
                Payload::Call(_) => "call",
                Payload::Error(_) => "error",
            };
            (name, PayloadJson(p))
        });
        let mut map = s.serialize_map(None)?;
        // In sorted order: "agent" comes before "atMs", the other payloads after it.
        if let Some((name @ "agent", p)) = &payload {
            map.serialize_entry(name, p)?;
        }
        map.serialize_entry("atMs", &event.at_ms.to_string())?;
        if let Some((name, p)) = &payload
            && *name != "agent"
        {
            map.serialize_entry(name, p)?;
        }
        map.serialize_entry("id", &event.id)?;
        map.serialize_entry("key", &event.key)?;
        map.serialize_entry("kind", &event.kind)?;
        map.serialize_entry("seq", &event.seq.to_string())?;
        map.serialize_entry("tenant", &event.tenant)?;
        map.serialize_entry("topic", &event.topic)?;
        map.end()
    }
}

/// The fields of a Redis stream entry for `event`, in order.
pub fn event_fields(event: &Event) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", event.id.clone()),
        ("tenant", event.tenant.clone()),
        ("topic", event.topic.clone()),
        ("key", event.key.clone()),
        ("seq", event.seq.to_string()),
        ("at", event.at_ms.to_string()),
        ("kind", event.kind.clone()),
    ];
    if let Some(p) = &event.payload {
        let json = serde_json::to_string(&PayloadJson(p)).unwrap_or_default();
        fields.push(("payload", json));
    }
    fields
}

/// Reads an event back from the fields of a Redis stream entry; `None` when a field is missing
/// or malformed.
pub fn event_from_fields<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Event> {
    let map: std::collections::HashMap<&str, &str> = fields.into_iter().collect();
    let topic = map.get("topic")?.to_string();
    let payload = match map.get("payload") {
        None => None,
        Some(text) => {
            let v: Map<String, Value> = serde_json::from_str(text).ok()?;
            Some(payload_from_json(&topic, &v))
        }
    };
    Some(Event {
        id: map.get("id")?.to_string(),
        tenant: map.get("tenant")?.to_string(),
        topic,
        key: map.get("key")?.to_string(),
        seq: map.get("seq")?.parse().ok()?,
        at_ms: map.get("at")?.parse().ok()?,
        kind: map.get("kind")?.to_string(),
        payload,
    })
}

/// The payload of an event of `topic` from its JSON mapping; missing fields take their
/// defaults, as the protobuf JSON mapping says.
fn payload_from_json(topic: &str, v: &Map<String, Value>) -> Payload {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
    let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let i64s = |k: &str| s(k).parse().unwrap_or(0);
    let list = |k: &str| match v.get(k) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    match topic {
        "voice-callthread" => {
            let user_data = match v.get("userData") {
                Some(Value::Object(o)) => o
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
                _ => Default::default(),
            };
            let parties = match v.get("parties") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|p| {
                        let f = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                        Party {
                            dn: f("dn"),
                            role: f("role"),
                            uri: f("uri"),
                            mode: f("mode"),
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Payload::Call(CallThread {
                call_id: s("callId"),
                thread_id: s("threadId"),
                parties,
                ani: s("ani"),
                dnis: s("dnis"),
                origin: s("origin"),
                cause: s("cause"),
                status: n("status"),
                duration_ms: i64s("durationMs"),
                user_data,
                routing_point: s("routingPoint"),
                queue: s("queue"),
                treatment: s("treatment"),
                target: s("target"),
                priority: n("priority"),
                recording_id: s("recordingId"),
                recording_uri: s("recordingUri"),
            })
        }
        "voice-agentstate" => Payload::Agent(AgentState {
            agent_id: s("agentId"),
            dn: s("dn"),
            queues: list("queues"),
            state: s("state"),
            reason: s("reason"),
            work_mode: s("workMode"),
            dnd: b("dnd"),
            in_service: b("inService"),
            calls: list("calls"),
            wrap_up_until_ms: i64s("wrapUpUntilMs"),
            next_state: s("nextState"),
            next_reason: s("nextReason"),
            next_work_mode: s("nextWorkMode"),
            monitored_by: s("monitoredBy"),
            monitor_mode: s("monitorMode"),
        }),
        "desktop-errors" => Payload::Error(RequestError {
            operation: s("operation"),
            reference_id: s("referenceId"),
            agent_id: s("agentId"),
            call_id: s("callId"),
            code: s("code"),
            message: s("message"),
        }),
        _ => Payload::Binding(Binding {
            aor: s("aor"),
            dn: s("dn"),
            contact: s("contact"),
            expires: n("expires"),
            q: n("q"),
            source: s("source"),
            transport: s("transport"),
            user_agent: s("userAgent"),
            call_id: s("callId"),
            cseq: n("cseq"),
            expires_at_ms: i64s("expiresAtMs"),
            reason: s("reason"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The mapping as the values of a JSON tree: what the serializers must print.
    fn payload_json(payload: &Payload) -> Value {
        match payload {
            Payload::Binding(b) => json!({
                "aor": b.aor,
                "dn": b.dn,
                "contact": b.contact,
                "expires": b.expires,
                "q": b.q,
                "source": b.source,
                "transport": b.transport,
                "userAgent": b.user_agent,
                "callId": b.call_id,
                "cseq": b.cseq,
                "expiresAtMs": b.expires_at_ms.to_string(),
                "reason": b.reason,
            }),
            Payload::Call(c) => {
                let user_data: std::collections::BTreeMap<_, _> = c.user_data.iter().collect();
                json!({
                    "callId": c.call_id,
                    "threadId": c.thread_id,
                    "parties": c.parties.iter().map(|p| json!({
                        "dn": p.dn,
                        "role": p.role,
                        "uri": p.uri,
                        "mode": p.mode,
                    })).collect::<Vec<_>>(),
                    "ani": c.ani,
                    "dnis": c.dnis,
                    "origin": c.origin,
                    "cause": c.cause,
                    "status": c.status,
                    "durationMs": c.duration_ms.to_string(),
                    "userData": user_data,
                    "routingPoint": c.routing_point,
                    "queue": c.queue,
                    "treatment": c.treatment,
                    "target": c.target,
                    "recordingId": c.recording_id,
                    "recordingUri": c.recording_uri,
                    "priority": c.priority,
                })
            }
            Payload::Agent(a) => json!({
                "agentId": a.agent_id,
                "dn": a.dn,
                "queues": a.queues,
                "state": a.state,
                "reason": a.reason,
                "workMode": a.work_mode,
                "dnd": a.dnd,
                "inService": a.in_service,
                "calls": a.calls,
                "wrapUpUntilMs": a.wrap_up_until_ms.to_string(),
                "nextState": a.next_state,
                "nextReason": a.next_reason,
                "nextWorkMode": a.next_work_mode,
                "monitoredBy": a.monitored_by,
                "monitorMode": a.monitor_mode,
            }),
            Payload::Error(e) => json!({
                "operation": e.operation,
                "referenceId": e.reference_id,
                "agentId": e.agent_id,
                "callId": e.call_id,
                "code": e.code,
                "message": e.message,
            }),
        }
    }

    fn event_json(event: &Event) -> Value {
        let mut v = json!({
            "id": event.id,
            "tenant": event.tenant,
            "topic": event.topic,
            "key": event.key,
            "seq": event.seq.to_string(),
            "atMs": event.at_ms.to_string(),
            "kind": event.kind,
        });
        if let (Some(payload), Value::Object(map)) = (&event.payload, &mut v) {
            let name = match payload {
                Payload::Binding(_) => "binding",
                Payload::Call(_) => "call",
                Payload::Agent(_) => "agent",
                Payload::Error(_) => "error",
            };
            map.insert(name.to_owned(), payload_json(payload));
        }
        v
    }

    /// The event as the serializers print it, read back.
    fn printed(e: &Event) -> Value {
        let text = serde_json::to_string(&EventJson(e)).expect("JSON");
        assert_eq!(
            text,
            event_json(e).to_string(),
            "the same bytes as the tree"
        );
        serde_json::from_str(&text).expect("JSON")
    }

    fn sample() -> Event {
        Event {
            id: "0190b7e4-0000-7000-8000-000000000001".into(),
            tenant: "demo".into(),
            topic: "voice-registrar".into(),
            key: "demo:sip:1001@demo.local".into(),
            seq: 3,
            at_ms: 1_800_000_000_123,
            kind: "BindingAdded".into(),
            payload: Some(Payload::Binding(Binding {
                aor: "sip:1001@demo.local".into(),
                dn: "1001".into(),
                contact: "sip:1001@127.0.0.1:5062;transport=udp".into(),
                expires: 600,
                q: 500,
                source: "127.0.0.1:5062".into(),
                transport: "udp".into(),
                user_agent: "baresip".into(),
                call_id: "abc@host".into(),
                cseq: 2,
                expires_at_ms: 1_800_000_600_123,
                reason: String::new(),
            })),
        }
    }

    #[test]
    fn fields_round_trip() {
        let e = sample();
        let fields = event_fields(&e);
        let back = event_from_fields(fields.iter().map(|(k, v)| (*k, v.as_str()))).expect("event");
        assert_eq!(back, e);
    }

    #[test]
    fn call_events_round_trip() {
        let e = Event {
            topic: "voice-callthread".into(),
            key: "demo:0190b7e4".into(),
            kind: "Established".into(),
            payload: Some(Payload::Call(CallThread {
                call_id: "0190b7e4".into(),
                thread_id: "0190b7e4".into(),
                parties: vec![
                    Party {
                        dn: "1001".into(),
                        role: "destination".into(),
                        uri: "sip:1001@demo.local".into(),
                        mode: String::new(),
                    },
                    Party {
                        dn: "1005".into(),
                        role: "supervisor".into(),
                        uri: "sip:1005@demo.local".into(),
                        mode: "listen".into(),
                    },
                ],
                ani: "+15551234".into(),
                dnis: "1001".into(),
                origin: "trunk:carrier".into(),
                cause: String::new(),
                status: 0,
                duration_ms: 1234,
                user_data: [("lang".to_owned(), "en".to_owned())].into(),
                routing_point: "5000".into(),
                queue: "support".into(),
                treatment: String::new(),
                target: "english >= 3".into(),
                priority: 5,
                recording_id: "conf:0190b7e4/dialog:record".into(),
                recording_uri: "file:///rec/0190b7e4.wav".into(),
            })),
            ..sample()
        };
        let fields = event_fields(&e);
        let back = event_from_fields(fields.iter().map(|(k, v)| (*k, v.as_str()))).expect("event");
        assert_eq!(back, e);
        assert_eq!(printed(&e)["call"]["parties"][0]["role"], "destination");
    }

    #[test]
    fn agent_events_round_trip() {
        let e = Event {
            topic: "voice-agentstate".into(),
            key: "demo:a1001".into(),
            kind: "AgentNotReady".into(),
            payload: Some(Payload::Agent(AgentState {
                agent_id: "a1001".into(),
                dn: "1001".into(),
                queues: vec!["support".into()],
                state: "AfterCallWork".into(),
                reason: String::new(),
                work_mode: "AfterCallWork".into(),
                dnd: false,
                in_service: true,
                calls: vec!["c1".into()],
                wrap_up_until_ms: 1_800_000_010_000,
                next_state: "NotReady".into(),
                next_reason: "lunch".into(),
                next_work_mode: "AuxWork".into(),
                monitored_by: "1020".into(),
                monitor_mode: "listen".into(),
            })),
            ..sample()
        };
        let fields = event_fields(&e);
        let back = event_from_fields(fields.iter().map(|(k, v)| (*k, v.as_str()))).expect("event");
        assert_eq!(back, e);
        assert_eq!(printed(&e)["agent"]["workMode"], "AfterCallWork");
    }

    #[test]
    fn json_mapping_names() {
        let v = printed(&sample());
        assert_eq!(v["atMs"], "1800000000123");
        assert_eq!(v["seq"], "3");
        assert_eq!(v["binding"]["callId"], "abc@host");
        assert_eq!(v["binding"]["expires"], 600);
    }

    #[test]
    fn error_events_print_as_the_tree_does() {
        let e = Event {
            topic: "voice-errors".into(),
            kind: "RequestFailed".into(),
            payload: Some(Payload::Error(RequestError {
                operation: "Answer".into(),
                reference_id: "r1".into(),
                agent_id: "a1001".into(),
                call_id: "c1".into(),
                code: "not-found".into(),
                message: "no such call: \"c1\"".into(),
            })),
            ..sample()
        };
        assert_eq!(printed(&e)["error"]["referenceId"], "r1");
        let bare = Event {
            payload: None,
            ..sample()
        };
        assert_eq!(printed(&bare)["kind"], "BindingAdded");
    }
}
