//! Just enough SDP (RFC 4566, RFC 3264) for a core that relays offers and answers without
//! touching media: whether a body is SDP at all (a B2BUA answers 488 to one that is not, and
//! leaves the other leg alone), and which way each stream flows, so that a re-INVITE can be
//! told to be a hold (`sendonly`, `inactive`, or the RFC 2543 `c=0.0.0.0`) or a resume.

use crate::error::InvalidSyntax;

/// Which way a media stream flows, from the side that wrote the SDP (RFC 3264 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(a: &str) -> Option<Self> {
        match a {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// Whether the side that wrote it stops listening: what a phone putting the other on
    /// hold offers (`sendonly` for music on hold, `inactive` otherwise).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// 0 declines the stream.
    pub port: u16,
    pub direction: Direction,
}

/// A session description, checked and reduced to its media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub media: Vec<Media>,
}

impl Sdp {
    /// Parses `body` as SDP: `v=0` first, then `o=`, `s=` and at least one `t=` before the
    /// first `m=`; every line `<letter>=<value>`; each `m=` with a media, a port and a
    /// protocol. Directions follow RFC 3264: a media-level attribute, else the session-level
    /// one, else `sendrecv`; a connection address of 0.0.0.0 (RFC 2543 hold) counts as
    /// `inactive` unless an attribute says otherwise.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidSyntax> {
        let what = InvalidSyntax("SDP");
        let text = std::str::from_utf8(body).map_err(|_| what)?;
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty());
        if lines.next() != Some("v=0") {
            return Err(what);
        }
        let mut seen = [false; 3]; // o=, s=, t=
        let mut session_direction = None;
        let mut session_hold = false;
        let mut media: Vec<(Media, Option<Direction>, Option<bool>)> = Vec::new();
        for line in lines {
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(what);
            }
            let value = &line[2..];
            match (b[0], media.last_mut()) {
                (b'o', None) => seen[0] = true,
                (b's', None) => seen[1] = true,
                (b't', None) => seen[2] = true,
                (b'm', _) => {
                    if seen != [true; 3] {
                        return Err(what);
                    }
                    let mut fields = value.split(' ');
                    let kind = fields.next().filter(|k| !k.is_empty()).ok_or(what)?;
                    let port = fields.next().ok_or(what)?;
                    // `port/count` is allowed.
                    let port: u16 = port
                        .split('/')
                        .next()
                        .ok_or(what)?
                        .parse()
                        .map_err(|_| what)?;
                    fields.next().filter(|p| !p.is_empty()).ok_or(what)?;
                    media.push((
                        Media {
                            kind: kind.to_owned(),
                            port,
                            direction: Direction::SendRecv,
                        },
                        None,
                        None,
                    ));
                }
                (b'c', current) => {
                    let hold = connection_is_hold(value).ok_or(what)?;
                    match current {
                        Some((_, _, connection)) => *connection = Some(hold),
                        None => session_hold = hold,
                    }
                }
                (b'a', current) => {
                    if let Some(d) = Direction::from_attribute(value) {
                        match current {
                            Some((_, direction, _)) => *direction = Some(d),
                            None => session_direction = Some(d),
                        }
                    }
                }
                _ => {}
            }
        }
        if seen != [true; 3] {
            return Err(what);
        }
        let media = media
            .into_iter()
            .map(|(mut m, direction, connection)| {
                let held = connection.unwrap_or(session_hold);
                m.direction = direction.or(session_direction).unwrap_or(if held {
                    Direction::Inactive
                } else {
                    Direction::SendRecv
                });
                m
            })
            .collect();
        Ok(Self { media })
    }

    /// Whether the side that wrote it puts the other on hold: every stream it keeps open
    /// flows one way out or not at all.
    pub fn is_hold(&self) -> bool {
        let open: Vec<&Media> = self.media.iter().filter(|m| m.port != 0).collect();
        !open.is_empty() && open.iter().all(|m| m.direction.is_hold())
    }
}

impl Direction {
    /// The attribute that says it.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// `body` offered again with every stream set to `direction`: the direction attributes
/// replaced by one per `m=` section, and the session version of `o=` one higher, as a changed
/// description must have (RFC 3264 8). A core that holds or resumes a call re-offers each
/// party the description it last sent it this way. `None` when `body` is not SDP.
pub fn redirected(body: &[u8], direction: Direction) -> Option<Vec<u8>> {
    reoffered(body, body, direction)
}

/// `media` (another party's description) offered on a leg that last saw `previous`: the
/// streams of `media` set to `direction`, under the `o=` line of `previous` with its version
/// one higher, so that the leg sees one session changing rather than a new one (RFC 3264 8).
/// What a core offers a party whose other end it replaces. `None` when either is not SDP.
pub fn reoffered(previous: &[u8], media: &[u8], direction: Direction) -> Option<Vec<u8>> {
    Sdp::parse(media).ok()?;
    Sdp::parse(previous).ok()?;
    let origin = std::str::from_utf8(previous)
        .ok()?
        .split("\r\n")
        .find_map(|l| l.strip_prefix("o="))?;
    // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>
    let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
    if let Some(version) = fields.get_mut(2) {
        *version = version
            .parse::<u64>()
            .map_or_else(|_| version.clone(), |v| v.wrapping_add(1).to_string());
    }
    let origin = fields.join(" ");
    let text = std::str::from_utf8(media).ok()?;
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if let Some(a) = line.strip_prefix("a=")
            && Direction::from_attribute(a.trim()).is_some()
        {
            continue;
        }
        if line.starts_with("o=") {
            out.push_str("o=");
            out.push_str(&origin);
            out.push_str("\r\n");
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("m=") {
            out.push_str("a=");
            out.push_str(direction.attribute());
            out.push_str("\r\n");
        }
    }
    Some(out.into_bytes())
}

/// `IN IP4 0.0.0.0` and the like: `Some(true)` for the RFC 2543 hold address.
fn connection_is_hold(value: &str) -> Option<bool> {
    let mut fields = value.split(' ');
    let (_net, _kind, address) = (fields.next()?, fields.next()?, fields.next()?);
    let address = address.split('/').next()?;
    Some(address == "0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirected_offer_has_one_direction_per_stream_and_a_newer_version() {
        let offer = b"v=0\r\no=- 42 7 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                      a=sendrecv\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
                      a=sendonly\r\nm=video 5000 RTP/AVP 96\r\n";
        let held = redirected(offer, Direction::Inactive).expect("sdp");
        let text = String::from_utf8(held.clone()).expect("utf-8");
        assert!(text.contains("o=- 42 8 IN IP4 10.0.0.1\r\n"), "{text}");
        assert_eq!(text.matches("a=inactive").count(), 2, "{text}");
        assert!(
            !text.contains("sendrecv") && !text.contains("sendonly"),
            "{text}"
        );
        assert!(Sdp::parse(&held).expect("still SDP").is_hold());
        let back = redirected(&held, Direction::SendRecv).expect("sdp");
        assert!(!Sdp::parse(&back).expect("SDP").is_hold());
        assert!(String::from_utf8(back).expect("utf-8").contains(" 42 9 "));
        assert_eq!(redirected(b"not sdp", Direction::Inactive), None);
        // Another party's streams under the session the leg already knows.
        let other = b"v=0\r\no=agent2 9 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
                      m=audio 6000 RTP/AVP 0\r\n";
        let joined = String::from_utf8(reoffered(offer, other, Direction::SendRecv).expect("sdp"))
            .expect("utf-8");
        assert!(joined.contains("o=- 42 8 IN IP4 10.0.0.1\r\n"), "{joined}");
        assert!(
            joined.contains("c=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 6000"),
            "{joined}"
        );
        assert!(joined.contains("a=sendrecv"), "{joined}");
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
        t=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn an_ordinary_offer_flows_both_ways() {
        let sdp = Sdp::parse(OFFER.as_bytes()).expect("valid");
        assert_eq!(
            sdp.media,
            [Media {
                kind: "audio".into(),
                port: 40000,
                direction: Direction::SendRecv
            }]
        );
        assert!(!sdp.is_hold());
    }

    #[test]
    fn hold_is_sendonly_inactive_or_the_old_zero_address() {
        let sendonly = format!("{OFFER}a=sendonly\r\n");
        assert!(Sdp::parse(sendonly.as_bytes()).expect("valid").is_hold());
        let session_inactive = OFFER.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        assert!(
            Sdp::parse(session_inactive.as_bytes())
                .expect("valid")
                .is_hold()
        );
        let zero = OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        assert!(Sdp::parse(zero.as_bytes()).expect("valid").is_hold());
        // A media attribute wins over the session's.
        let resumed = format!(
            "{}a=sendrecv\r\n",
            OFFER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
        );
        assert!(!Sdp::parse(resumed.as_bytes()).expect("valid").is_hold());
        // LF-only line ends are tolerated.
        let lf = format!("{OFFER}a=recvonly\r\n").replace("\r\n", "\n");
        let sdp = Sdp::parse(lf.as_bytes()).expect("valid");
        assert_eq!(sdp.media[0].direction, Direction::RecvOnly);
        assert!(!sdp.is_hold());
    }

    #[test]
    fn what_is_not_sdp_is_refused() {
        for body in [
            "",
            "hello",
            "v=1\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\n",
            "v=0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nm=audio port RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nm=audio 4000\r\n",
            "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nc=IN IP4\r\n",
            "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nnot a line\r\n",
        ] {
            assert!(Sdp::parse(body.as_bytes()).is_err(), "{body:?}");
        }
        assert!(Sdp::parse(&[0xff, 0xfe]).is_err());
    }
}
