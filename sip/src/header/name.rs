//! Header names: the ones the core knows by a variant (compact forms included), any other kept
//! as written.

use std::fmt;

use bytestring::ByteString;

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal, $lower:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names compare by variant whatever their spelling or
        /// compact form on the wire; others compare case-insensitively.
        #[derive(Debug, Clone)]
        pub enum HeaderName {
            $( $variant, )*
            Other(ByteString),
        }

        impl HeaderName {
            /// The name as switchboard prints it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(name) => name,
                }
            }

            /// Looks up a name read off the wire (a token), case-insensitively.
            pub fn from_wire(text: &ByteString, name: &str) -> Self {
                let mut buf = [0u8; 24];
                if name.len() <= buf.len() {
                    let lower = &mut buf[..name.len()];
                    lower.copy_from_slice(name.as_bytes());
                    lower.make_ascii_lowercase();
                    match &*lower {
                        $( $lower $(| $compact)? => return HeaderName::$variant, )*
                        _ => {}
                    }
                }
                HeaderName::Other(text.slice_ref(name))
            }
        }
    };
}

header_names! {
    Accept => "Accept", b"accept";
    AcceptEncoding => "Accept-Encoding", b"accept-encoding";
    AcceptLanguage => "Accept-Language", b"accept-language";
    AlertInfo => "Alert-Info", b"alert-info";
    Allow => "Allow", b"allow";
    AllowEvents => "Allow-Events", b"allow-events", b"u";
    AuthenticationInfo => "Authentication-Info", b"authentication-info";
    Authorization => "Authorization", b"authorization";
    CallId => "Call-ID", b"call-id", b"i";
    CallInfo => "Call-Info", b"call-info";
    Contact => "Contact", b"contact", b"m";
    ContentDisposition => "Content-Disposition", b"content-disposition";
    ContentEncoding => "Content-Encoding", b"content-encoding", b"e";
    ContentLanguage => "Content-Language", b"content-language";
    ContentLength => "Content-Length", b"content-length", b"l";
    ContentType => "Content-Type", b"content-type", b"c";
    CSeq => "CSeq", b"cseq";
    Date => "Date", b"date";
    ErrorInfo => "Error-Info", b"error-info";
    Event => "Event", b"event", b"o";
    Expires => "Expires", b"expires";
    From => "From", b"from", b"f";
    InReplyTo => "In-Reply-To", b"in-reply-to";
    MaxForwards => "Max-Forwards", b"max-forwards";
    MinExpires => "Min-Expires", b"min-expires";
    MinSe => "Min-SE", b"min-se";
    MimeVersion => "MIME-Version", b"mime-version";
    Organization => "Organization", b"organization";
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity";
    Path => "Path", b"path";
    Priority => "Priority", b"priority";
    Privacy => "Privacy", b"privacy";
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    ProxyRequire => "Proxy-Require", b"proxy-require";
    RAck => "RAck", b"rack";
    Reason => "Reason", b"reason";
    RecordRoute => "Record-Route", b"record-route";
    ReferTo => "Refer-To", b"refer-to", b"r";
    ReferredBy => "Referred-By", b"referred-by", b"b";
    Replaces => "Replaces", b"replaces";
    ReplyTo => "Reply-To", b"reply-to";
    Require => "Require", b"require";
    RetryAfter => "Retry-After", b"retry-after";
    Route => "Route", b"route";
    RSeq => "RSeq", b"rseq";
    Server => "Server", b"server";
    SessionExpires => "Session-Expires", b"session-expires", b"x";
    Subject => "Subject", b"subject", b"s";
    SubscriptionState => "Subscription-State", b"subscription-state";
    Supported => "Supported", b"supported", b"k";
    Timestamp => "Timestamp", b"timestamp";
    To => "To", b"to", b"t";
    Unsupported => "Unsupported", b"unsupported";
    UserAgent => "User-Agent", b"user-agent";
    Via => "Via", b"via", b"v";
    Warning => "Warning", b"warning";
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &'static str) -> HeaderName {
        HeaderName::from_wire(&ByteString::from_static(s), s)
    }

    #[test]
    fn compact_and_case_insensitive() {
        assert_eq!(wire("v"), HeaderName::Via);
        assert_eq!(wire("MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(wire("i"), HeaderName::CallId);
        assert_eq!(wire("L"), HeaderName::ContentLength);
        assert_eq!(wire("WWW-Authenticate").as_str(), "WWW-Authenticate");
    }

    #[test]
    fn unknown_names_kept() {
        let n = wire("C%6Fntact");
        assert_eq!(n, HeaderName::Other("c%6fntact".into()));
        assert_ne!(n, HeaderName::Contact);
        assert_eq!(n.as_str(), "C%6Fntact");
        assert_eq!(
            wire("NewFangledHeader-with-a-really-long-name").as_str(),
            "NewFangledHeader-with-a-really-long-name"
        );
    }
}
