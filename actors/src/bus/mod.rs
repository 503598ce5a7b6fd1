//! The bus between nodes (design.md "Scaling out"): a tenant's owner-bound messages cross as
//! protobuf ([`wire`]) over Redis streams with consumer groups, and the owner's orders and
//! answers come back the same way.

pub mod wire;
