//! Routing for switchboard without I/O: the dial plan, target expressions and the pool of Ready
//! agents indexed for choosing among them, the order of a queue's waiting calls and its estimated
//! wait, and the strategies routing points run; and the simulator that runs them on virtual time.

pub mod dialplan;
pub mod matcher;
pub mod pool;
pub mod queue;
pub mod simulate;
pub mod strategy;
pub mod target;
