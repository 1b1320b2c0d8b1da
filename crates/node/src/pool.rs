//! The load balancer's backend pool, as the balancer hands it over when it starts: the
//! agent reads backend states from it, and the floating IP tracks whether any is up.

use std::sync::{Arc, OnceLock};

use webstack_load_balancer::BackendPool;

static POOL: OnceLock<Arc<BackendPool>> = OnceLock::new();

/// Given to the load balancer (`LbConfig::on_pool`).
pub fn publish(pool: Arc<BackendPool>) {
    let _ = POOL.set(pool);
}

pub fn current() -> Option<Arc<BackendPool>> {
    POOL.get().cloned()
}
