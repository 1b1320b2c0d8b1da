//! The load balancer's backend pool, as the balancer hands it over when it starts (and
//! again when a reload starts a new instance): the agent reads backend states from it,
//! and the floating IP tracks whether any is up.

use std::sync::{Arc, RwLock};

use webstack_load_balancer::BackendPool;

static POOL: RwLock<Option<Arc<BackendPool>>> = RwLock::new(None);

/// Given to the load balancer (`LbConfig::on_pool`).
pub fn publish(pool: Arc<BackendPool>) {
    *POOL.write().expect("pool lock") = Some(pool);
}

pub fn current() -> Option<Arc<BackendPool>> {
    POOL.read().expect("pool lock").clone()
}
