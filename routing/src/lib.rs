//! Routing for switchboard without I/O: dial plan, target expressions, queue order, agent
//! choice and strategies. Filled by the routing issue; empty until then.
