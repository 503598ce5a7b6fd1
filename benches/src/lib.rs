//! Benchmarks for switchboard. The criterion benches live in `benches/`; `sipload` is the
//! REGISTER load client the SIPp comparison scripts in `sipp/` use beside SIPp.

pub mod events;
pub mod load;
pub mod tenants;
