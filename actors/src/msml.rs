//! Media server control with MSML (RFC 5707), what GVP speaks beside the RFC 4240 URIs: the
//! requests a call sends its media server in SIP INFO (`application/msml+xml`) within a leg's
//! dialog, written as XML, and the server's answers (a `<result>` in the INFO's 200) and
//! events (an `<event>` in an INFO of its own), read back. Sans-io: text in, text out.
//!
//! Identifiers are MSML's: a conference is `conf:<name>`, a party's leg into the media server
//! is `conn:<tag>` (the tag the media server gave its side of that leg's dialog), a dialog
//! (a recording) is `<target>/dialog:<name>`.

use std::fmt::Write;

/// The content type of MSML bodies.
pub const CONTENT_TYPE: &str = "application/msml+xml";

/// Which way a party's audio flows with the conference it is joined to (`id1` the party,
/// `id2` the conference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Both ways: the party hears and is heard.
    Both,
    /// The party hears, and is not heard (`dir="to-id1"`): a supervisor listening.
    Hears,
    /// The party is heard, and hears nothing (`dir="from-id1"`).
    Heard,
}

impl Flow {
    /// The `dir` of MSML's `<stream>`; none for both ways.
    fn dir(self) -> Option<&'static str> {
        match self {
            Flow::Both => None,
            Flow::Hears => Some("to-id1"),
            Flow::Heard => Some("from-id1"),
        }
    }
}

/// An MSML request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An audio conference named `name` (`conf:<name>`), gone when its last party leaves.
    CreateConference {
        name: String,
    },
    /// Joins `id1` to `id2` with audio flowing as `flow` says; `Flow::Heard` and `Hears` are
    /// one `<stream>` each way as RFC 5707 writes them.
    Join {
        id1: String,
        id2: String,
        flow: Flow,
    },
    /// Changes the flow of a join.
    ModifyStream {
        id1: String,
        id2: String,
        flow: Flow,
    },
    Unjoin {
        id1: String,
        id2: String,
    },
    DestroyConference {
        id: String,
    },
    /// Records what `target` (a conference, or one connection) hears or says to `dest` as a
    /// dialog named `name`.
    Record {
        target: String,
        name: String,
        dest: String,
    },
    /// Sends `event` (`pause`, `resume`) to a dialog.
    Send {
        dialog: String,
        event: String,
    },
    /// Ends a dialog (a recording stops, its file is complete).
    DialogEnd {
        dialog: String,
    },
}

impl Request {
    /// The request as an MSML document.
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(160);
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<msml version=\"1.1\">\n");
        match self {
            Request::CreateConference { name } => {
                let _ = writeln!(
                    x,
                    "  <createconference name=\"{}\" deletewhen=\"nomedia\">\n    <audiomix/>\n  </createconference>",
                    escape(name)
                );
            }
            Request::Join { id1, id2, flow } => element(&mut x, "join", id1, id2, *flow),
            Request::ModifyStream { id1, id2, flow } => {
                element(&mut x, "modifystream", id1, id2, *flow)
            }
            Request::Unjoin { id1, id2 } => {
                let _ = writeln!(
                    x,
                    "  <unjoin id1=\"{}\" id2=\"{}\"/>",
                    escape(id1),
                    escape(id2)
                );
            }
            Request::DestroyConference { id } => {
                let _ = writeln!(x, "  <destroyconference id=\"{}\"/>", escape(id));
            }
            Request::Record { target, name, dest } => {
                let _ = writeln!(
                    x,
                    "  <dialogstart target=\"{}\" type=\"application/moml+xml\" name=\"{}\">\n    <record dest=\"{}\" format=\"audio/wav\" maxtime=\"4h\"/>\n  </dialogstart>",
                    escape(target),
                    escape(name),
                    escape(dest)
                );
            }
            Request::Send { dialog, event } => {
                let _ = writeln!(
                    x,
                    "  <send target=\"{}\" event=\"{}\" namelist=\"\"/>",
                    escape(dialog),
                    escape(event)
                );
            }
            Request::DialogEnd { dialog } => {
                let _ = writeln!(x, "  <dialogend id=\"{}\"/>", escape(dialog));
            }
        }
        x.push_str("</msml>\n");
        x
    }
}

/// A join or modifystream: a `<stream>` for each direction that flows, none when audio
/// flows both ways.
fn element(x: &mut String, name: &str, id1: &str, id2: &str, flow: Flow) {
    let _ = write!(
        x,
        "  <{name} id1=\"{}\" id2=\"{}\"",
        escape(id1),
        escape(id2)
    );
    match flow.dir() {
        None if name == "join" => {
            x.push_str("/>\n");
            return;
        }
        None => {
            x.push_str(">\n    <stream media=\"audio\"/>\n");
        }
        Some(dir) => {
            let _ = writeln!(x, ">\n    <stream media=\"audio\" dir=\"{dir}\"/>");
        }
    }
    let _ = writeln!(x, "  </{name}>");
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// What the media server answered a request: its `<result>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200 when every element was carried out; 4xx or 5xx otherwise.
    pub response: u16,
    /// Why it failed, as the server says.
    pub description: String,
    /// The identifiers the server gave what it created (`<confid>`, `<dialogid>`).
    pub ids: Vec<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.response == 200
    }
}

/// Something the media server tells of: `msml.dialog.exit` when a recording ends, or
/// `msml.conf.nomedia` when a conference is left empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    /// What it is about: a dialog or a conference.
    pub id: String,
    /// Its names and values, in order.
    pub values: Vec<(String, String)>,
}

/// Why an MSML body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("not an MSML document (its root is <{0}>)")]
    NotMsml(String),
    #[error("an MSML document without a <{0}>")]
    Missing(&'static str),
    #[error("response {0:?} is not a status code")]
    Response(String),
}

/// A `<result>`, as in the 200 to an INFO that carried a request.
pub fn parse_answer(body: &str) -> Result<Answer, ParseError> {
    let doc = document(body)?;
    let result = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("result"))
        .ok_or(ParseError::Missing("result"))?;
    let response = result.attribute("response").unwrap_or_default();
    let response = response
        .trim()
        .parse()
        .map_err(|_| ParseError::Response(response.to_owned()))?;
    let text = |n: roxmltree::Node| n.text().unwrap_or_default().trim().to_owned();
    Ok(Answer {
        response,
        description: result
            .children()
            .find(|n| n.has_tag_name("description"))
            .map(text)
            .unwrap_or_default(),
        ids: result
            .children()
            .filter(|n| n.is_element() && n.tag_name().name().ends_with("id"))
            .map(text)
            .collect(),
    })
}

/// An `<event>`, as an INFO from the media server carries it.
pub fn parse_event(body: &str) -> Result<Event, ParseError> {
    let doc = document(body)?;
    let event = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("event"))
        .ok_or(ParseError::Missing("event"))?;
    let text = |n: roxmltree::Node| n.text().unwrap_or_default().trim().to_owned();
    let names = event.children().filter(|n| n.has_tag_name("name"));
    let values = event.children().filter(|n| n.has_tag_name("value"));
    Ok(Event {
        name: event.attribute("name").unwrap_or_default().to_owned(),
        id: event.attribute("id").unwrap_or_default().to_owned(),
        values: names.map(text).zip(values.map(text)).collect(),
    })
}

fn document(body: &str) -> Result<roxmltree::Document<'_>, ParseError> {
    let doc = roxmltree::Document::parse(body).map_err(|e| ParseError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if !root.has_tag_name("msml") {
        return Err(ParseError::NotMsml(root.tag_name().name().to_owned()));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_join_has_audio_flow_to_the_party_only() {
        let join = Request::Join {
            id1: "conn:ab12".into(),
            id2: "conf:call-7".into(),
            flow: Flow::Hears,
        };
        assert_eq!(
            join.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<msml version=\"1.1\">\n  \
             <join id1=\"conn:ab12\" id2=\"conf:call-7\">\n    \
             <stream media=\"audio\" dir=\"to-id1\"/>\n  </join>\n</msml>\n"
        );
        let full = Request::Join {
            id1: "conn:ab12".into(),
            id2: "conf:call-7".into(),
            flow: Flow::Both,
        };
        assert!(
            full.to_xml()
                .contains("<join id1=\"conn:ab12\" id2=\"conf:call-7\"/>")
        );
        let back = Request::ModifyStream {
            id1: "conn:ab12".into(),
            id2: "conf:call-7".into(),
            flow: Flow::Both,
        };
        assert!(back.to_xml().contains("<stream media=\"audio\"/>"));
    }

    #[test]
    fn values_are_escaped() {
        let record = Request::Record {
            target: "conf:c1".into(),
            name: "rec".into(),
            dest: "file:///rec/a&b\".wav".into(),
        };
        assert!(
            record
                .to_xml()
                .contains("dest=\"file:///rec/a&amp;b&quot;.wav\"")
        );
    }

    #[test]
    fn answers_and_events_are_read_and_bad_bodies_named() {
        let ok = parse_answer(
            "<?xml version=\"1.0\"?><msml version=\"1.1\"><result response=\"200\">\
             <confid>conf:c1</confid></result></msml>",
        )
        .expect("an answer");
        assert!(ok.ok());
        assert_eq!(ok.ids, ["conf:c1"]);
        let failed = parse_answer(
            "<msml version=\"1.1\"><result response=\"404\"><description>no such \
             connection</description></result></msml>",
        )
        .expect("an answer");
        assert_eq!(
            (failed.response, failed.description.as_str()),
            (404, "no such connection")
        );
        let exit = parse_event(
            "<msml version=\"1.1\"><event name=\"msml.dialog.exit\" id=\"conf:c1/dialog:rec\">\
             <name>record.len</name><value>31s</value></event></msml>",
        )
        .expect("an event");
        assert_eq!(exit.name, "msml.dialog.exit");
        assert_eq!(exit.values, [("record.len".into(), "31s".into())]);
        assert!(matches!(parse_answer("<msml"), Err(ParseError::Xml(_))));
        assert_eq!(
            parse_answer("<moml/>"),
            Err(ParseError::NotMsml("moml".into()))
        );
        assert_eq!(
            parse_answer("<msml version=\"1.1\"/>"),
            Err(ParseError::Missing("result"))
        );
        assert_eq!(
            parse_answer("<msml><result response=\"ok\"/></msml>"),
            Err(ParseError::Response("ok".into()))
        );
    }
}
