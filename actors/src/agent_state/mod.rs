//! The agent state system (design.md "Agent desktops"): one agent's state as a sans-io
//! machine ([`machine`]); the actor per agent, its store and the desktop's gRPC come next.

pub mod machine;
