//! The scenarios, one `async fn(Shared)` each, written against `dyn Store` only.

mod alerts;
mod audit;
mod auth;
mod commands;
mod devices;
mod flows;
mod misc;
mod policy;
mod refresh;
mod telemetry;
mod users;

pub(crate) use alerts::*;
pub(crate) use audit::*;
pub(crate) use auth::*;
pub(crate) use commands::*;
pub(crate) use devices::*;
pub(crate) use flows::*;
pub(crate) use misc::*;
pub(crate) use policy::*;
pub(crate) use refresh::*;
pub(crate) use telemetry::*;
pub(crate) use users::*;

use std::future::Future;

use crate::harness::Shared;

/// Runs `n` copies of an operation at once, each in its own task, and returns the
/// results in task order.
pub(crate) async fn race<T, F, Fut>(s: &Shared, n: usize, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Shared, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let fut = op(s.clone(), i);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
