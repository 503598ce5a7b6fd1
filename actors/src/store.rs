//! The stores of the systems' runtime state share one idiom, the registrar's: a trait beside
//! the system, with an implementation in memory (the embedded default) and one in Redis (so
//! that another node can take over). A node picks one at start and its system holds it as
//! `Arc<dyn ...Store>`, so the store's methods return boxed futures.

use std::future::Future;
use std::pin::Pin;

/// What a store's method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = crate::Result<T>> + Send + 'a>>;
