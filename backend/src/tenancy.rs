//! Tenants' quotas as backends enforce them (docs/tenants.md). The API server knows who a request comes from
//! (its API key's tenant) and writes the tenant's name into the execution's spec (`ExecutionSpec::tenant`); a
//! backend looks the tenant's [`Quota`] up in the [`Quotas`] it was started with, to cap that tenant's running and
//! queued executions and to take queued executions from the tenants in turn (`fair`).

use std::collections::HashMap;

/// One tenant's caps; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Executions of the tenant running at once; more wait in the queue.
    pub max_running: Option<usize>,
    /// Executions of the tenant waiting for a slot; beyond that a submission answers 429.
    pub max_queued: Option<usize>,
    /// Live sessions of the tenant.
    pub max_sessions: Option<usize>,
    /// Requests of the tenant per minute, over every endpoint.
    pub requests_per_minute: Option<u32>,
    /// The tenant's share of the slots when several tenants wait: it is served `weight` times per turn (at least 1).
    pub weight: u32,
}

/// Every tenant's quota: the default, and those set per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    /// The quota of tenants without one of their own (and of executions without a tenant).
    pub default: Quota,
    /// Quotas by tenant name.
    pub per_tenant: HashMap<String, Quota>,
}

impl Quotas {
    /// The quota of `tenant` (`None`: the anonymous tenant of a server without API keys).
    pub fn of(&self, tenant: Option<&str>) -> Quota {
        tenant.and_then(|t| self.per_tenant.get(t)).copied().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_without_its_own_quota_gets_the_default() {
        let alice = Quota { max_running: Some(2), weight: 1, ..Quota::default() };
        let quotas = Quotas {
            default: Quota { max_running: Some(1), weight: 1, ..Quota::default() },
            per_tenant: [("alice".to_owned(), alice)].into(),
        };
        assert_eq!(quotas.of(Some("alice")).max_running, Some(2));
        assert_eq!(quotas.of(Some("bob")).max_running, Some(1));
        assert_eq!(quotas.of(None).max_running, Some(1));
    }
}
