//! The JSON form of events (the protobuf JSON mapping: lowerCamelCase names, 64-bit integers as
//! strings), and the flat field list a Redis stream entry holds: the envelope's fields side by
//! side, readable with `XRANGE`, and the payload as one JSON field.

use serde_json::{Map, Value};

use crate::events::{AgentState, Binding, CallThread, Event, Party, Payload, RequestError};

/// The payload in the protobuf JSON mapping, written straight from the event (no tree of values
/// built first). Keys come in sorted order, as a `serde_json::Value` of the same payload prints
/// them, and strings are escaped as serde_json escapes them: the bytes are the tree's.
pub struct PayloadJson<'a>(pub &'a Payload);

/// The whole event in the protobuf JSON mapping (see [`PayloadJson`]).
pub struct EventJson<'a>(pub &'a Event);

impl PayloadJson<'_> {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        match self.0 {
            Payload::Binding(b) => binding(&mut o, b),
            Payload::Call(c) => call(&mut o, c),
            Payload::Agent(a) => agent(&mut o, a),
            Payload::Error(e) => error(&mut o, e),
        }
        o.close();
    }

    pub fn to_text(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out);
        // Only whole UTF-8 text and ASCII went in.
        String::from_utf8(out).unwrap_or_default()
    }
}

impl EventJson<'_> {
    pub fn write_to(&self, out: &mut Vec<u8>) {
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
        let mut o = Object::open(out);
        // In sorted order: "agent" comes before "atMs", the other payloads after it.
        if let Some((name @ "agent", p)) = &payload {
            o.key(name);
            p.write_to(o.out);
        }
        o.int64("atMs", event.at_ms);
        if let Some((name, p)) = &payload
            && *name != "agent"
        {
            o.key(name);
            p.write_to(o.out);
        }
        o.str("id", &event.id);
        o.str("key", &event.key);
        o.str("kind", &event.kind);
        o.int64("seq", event.seq);
        o.str("tenant", &event.tenant);
        o.str("topic", &event.topic);
        o.close();
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_to(&mut out);
        out
    }
}

fn binding(o: &mut Object<'_>, b: &Binding) {
    o.str("aor", &b.aor);
    o.str("callId", &b.call_id);
    o.str("contact", &b.contact);
    o.number("cseq", b.cseq);
    o.str("dn", &b.dn);
    o.number("expires", b.expires);
    o.int64("expiresAtMs", b.expires_at_ms);
    o.number("q", b.q);
    o.str("reason", &b.reason);
    o.str("source", &b.source);
    o.str("transport", &b.transport);
    o.str("userAgent", &b.user_agent);
}

fn call(o: &mut Object<'_>, c: &CallThread) {
    o.str("ani", &c.ani);
    o.str("callId", &c.call_id);
    o.str("cause", &c.cause);
    o.str("dnis", &c.dnis);
    o.int64("durationMs", c.duration_ms);
    o.str("origin", &c.origin);
    o.array("parties", &c.parties, |out, p| {
        let mut party = Object::open(out);
        party.str("dn", &p.dn);
        party.str("mode", &p.mode);
        party.str("role", &p.role);
        party.str("uri", &p.uri);
        party.close();
    });
    o.number("priority", c.priority);
    o.str("queue", &c.queue);
    o.str("recordingId", &c.recording_id);
    o.str("recordingUri", &c.recording_uri);
    o.str("routingPoint", &c.routing_point);
    o.number("status", c.status);
    o.str("target", &c.target);
    o.str("threadId", &c.thread_id);
    o.str("treatment", &c.treatment);
    o.key("userData");
    let mut user_data: Vec<_> = c.user_data.iter().collect();
    user_data.sort_unstable();
    let mut data = Object::open(o.out);
    for (k, v) in user_data {
        data.key_text(k);
        string(data.out, v);
    }
    data.close();
}

fn agent(o: &mut Object<'_>, a: &AgentState) {
    o.str("agentId", &a.agent_id);
    o.list("calls", &a.calls);
    o.str("dn", &a.dn);
    o.bool("dnd", a.dnd);
    o.bool("inService", a.in_service);
    o.str("monitorMode", &a.monitor_mode);
    o.str("monitoredBy", &a.monitored_by);
    o.str("nextReason", &a.next_reason);
    o.str("nextState", &a.next_state);
    o.str("nextWorkMode", &a.next_work_mode);
    o.list("queues", &a.queues);
    o.str("reason", &a.reason);
    o.str("state", &a.state);
    o.str("workMode", &a.work_mode);
    o.int64("wrapUpUntilMs", a.wrap_up_until_ms);
}

fn error(o: &mut Object<'_>, e: &RequestError) {
    o.str("agentId", &e.agent_id);
    o.str("callId", &e.call_id);
    o.str("code", &e.code);
    o.str("message", &e.message);
    o.str("operation", &e.operation);
    o.str("referenceId", &e.reference_id);
}

/// A JSON object being written: its members in the order they are given.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    /// A member's name, one of the mapping's own (plain ASCII, nothing to escape).
    fn key(&mut self, name: &str) {
        debug_assert!(name.bytes().all(|c| c.is_ascii_alphanumeric()));
        self.comma();
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A member's name taken from data (a key of user data), escaped.
    fn key_text(&mut self, name: &str) {
        self.comma();
        string(self.out, name);
        self.out.push(b':');
    }

    fn comma(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        string(self.out, value);
    }

    fn number(&mut self, name: &str, n: u32) {
        self.key(name);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A 64-bit integer as the protobuf JSON mapping writes it: a string.
    fn int64(&mut self, name: &str, n: impl itoa::Integer) {
        self.key(name);
        self.out.push(b'"');
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.out.push(b'"');
    }

    fn bool(&mut self, name: &str, b: bool) {
        self.key(name);
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }

    /// A list of strings.
    fn list(&mut self, name: &str, items: &[String]) {
        self.array(name, items, |out, item| string(out, item));
    }

    /// An array, each item written by `item`.
    fn array<T>(&mut self, name: &str, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
        self.key(name);
        self.out.push(b'[');
        for (i, each) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            item(self.out, each);
        }
        self.out.push(b']');
    }
}

/// A JSON string, escaped as serde_json escapes it: `"` and `\\`, the control characters with
/// their short escapes where JSON has one and `\u00XX` otherwise; everything else as it is.
/// Runs that need no escape are found eight bytes at a time and copied whole.
fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let c = bytes[i];
        i += 1;
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[run..i - 1]);
        run = i;
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is a control character, `"` or `\\`: each test is
/// the classic "has a byte below n" of the bit-twiddling folklore, exact as to whether any byte
/// matches (bytes of 0x80 and above, UTF-8's, never do).
fn needs_escape(word: u64) -> bool {
    const fn splat(b: u8) -> u64 {
        u64::from_ne_bytes([b; 8])
    }
    let below = |v: u64, n: u8| v.wrapping_sub(splat(n)) & !v & splat(0x80);
    (below(word, 0x20) | below(word ^ splat(b'"'), 1) | below(word ^ splat(b'\\'), 1)) != 0
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
        fields.push(("payload", PayloadJson(p).to_text()));
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
        let text = String::from_utf8(EventJson(e).to_vec()).expect("UTF-8");
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

    /// Text that JSON must escape prints as serde_json prints it, in values and in user data's
    /// keys alike.
    #[test]
    fn escapes_print_as_the_tree_does() {
        let awkward = "q\"b\\s/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f} é ✓ 🎧 end";
        let mut e = sample();
        if let Some(Payload::Binding(b)) = &mut e.payload {
            b.user_agent = awkward.into();
            b.contact = format!("<{awkward}>");
        }
        e.key = awkward.into();
        assert_eq!(printed(&e)["binding"]["userAgent"], awkward);
        let call = Event {
            topic: "voice-callthread".into(),
            payload: Some(Payload::Call(CallThread {
                user_data: [
                    (awkward.to_owned(), awkward.to_owned()),
                    ("a".to_owned(), String::new()),
                ]
                .into(),
                ..Default::default()
            })),
            ..sample()
        };
        assert_eq!(printed(&call)["call"]["userData"][awkward], awkward);
    }

    /// Every ASCII character, at every place of a text longer than two of the eight-byte runs,
    /// beside UTF-8: escaped as serde_json escapes it.
    #[test]
    fn every_ascii_character_anywhere_escapes_as_serde_json_does() {
        let base: Vec<char> = "abcdefgh✓ijklmnopqrs".chars().collect();
        for c in (0u8..0x80).map(char::from) {
            for at in 0..base.len() {
                let mut text = base.clone();
                text[at] = c;
                let text: String = text.into_iter().collect();
                let mut out = Vec::new();
                string(&mut out, &text);
                let expected = serde_json::to_string(&text).expect("JSON");
                assert_eq!(
                    String::from_utf8(out).expect("UTF-8"),
                    expected,
                    "{c:?} at {at}"
                );
            }
        }
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
