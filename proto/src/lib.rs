//! switchboard's protobuf schemas: the event envelope every system emits (`events.proto`), as
//! generated code committed beside the schema, and its JSON form for Redis streams and Kafka.

#[allow(clippy::all, missing_debug_implementations, unreachable_pub)]
mod generated {
    include!("gen/switchboard.events.v1.rs");
}

pub mod events {
    //! The event envelope and its payloads.
    pub use crate::generated::event::Payload;
    pub use crate::generated::{Binding, Event};
}

mod json;

pub use json::{event_fields, event_from_fields, event_json, payload_json};
