//! switchboard's protobuf schemas, as generated code committed beside them: the event envelope
//! every system emits (`events.proto`) and its JSON form for Redis streams and Kafka, and the
//! gRPC provisioning API (`provisioning.proto`) and voice API for desktops (`voice.proto`), and
//! the messages between nodes (`bus.proto`).

#[allow(clippy::all, missing_debug_implementations, unreachable_pub)]
mod generated {
    include!("gen/switchboard.events.v1.rs");
}

pub mod events {
    //! The event envelope and its payloads.
    pub use crate::generated::event;
    pub use crate::generated::event::Payload;
    pub use crate::generated::{AgentState, Binding, CallThread, Event, Party, RequestError};
}

pub mod provisioning {
    //! The provisioning API, `switchboard.provisioning.v1.Provisioning`: its messages, server
    //! and client.
    #![allow(clippy::all, missing_debug_implementations, unreachable_pub)]
    include!("gen/switchboard.provisioning.v1.rs");

    /// The API's file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/provisioning.bin");
}

pub mod voice {
    //! The voice API for agent desktops, `switchboard.voice.v1`: the `Agents` and `Events`
    //! services, their messages, servers and clients.
    #![allow(clippy::all, missing_debug_implementations, unreachable_pub)]
    include!("gen/switchboard.voice.v1.rs");

    /// The API's file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/voice.bin");
}

pub mod bus {
    //! The messages between nodes, `switchboard.bus.v1`: one [`Envelope`] per entry of a Redis
    //! stream.
    #![allow(clippy::all, missing_debug_implementations, unreachable_pub)]
    include!("gen/switchboard.bus.v1.rs");
}

mod json;

pub use json::{EventJson, PayloadJson, event_fields, event_from_fields};
