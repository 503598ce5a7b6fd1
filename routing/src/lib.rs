//! Routing for switchboard without I/O: the dial plan now; target expressions, queue order,
//! agent choice and strategies with the routing issue.

pub mod dialplan;
