//! Routing for switchboard without I/O: the dial plan, target expressions and the pool of Ready
//! agents indexed for choosing among them; queue order and strategies to come.

pub mod dialplan;
pub mod pool;
pub mod target;
