//! Real-time statistics of each tenant (queues, agents, agent groups), folded from the
//! tenant's event streams as events come: see [`engine`] for the definitions.

pub mod engine;
pub mod keeper;
pub mod periods;

#[cfg(test)]
mod tests;
