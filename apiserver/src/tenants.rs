//! Tenants (docs/tenants.md): every API key belongs to a tenant, and a tenant sees only its own executions,
//! sessions and files (another tenant's answer 404, never 403, so that ids leak nothing); an admin tenant sees all.
//! A tenant's quotas cap its requests per minute (here), its live sessions (the session routes) and its running and
//! queued executions (the backends, which also take queued executions from the tenants in turn).
//!
//! Keys come from `PYEXEC_API_KEYS` and `PYEXEC_API_KEYS_FILE`. The file is either lines, each `key` (a tenant of
//! its own, named `key-` and the start of the key's SHA-256) or `tenant:key`, or, when its name ends in `.toml`,
//! tenants with their keys and settings (see the tests below and docs/tenants.md). Without any key there is one
//! anonymous tenant, an admin: the server is open, as it was before tenants.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use pyexec_backend::tenancy::{Quota, Quotas};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Longest tenant name: it labels Kubernetes resources.
const MAX_NAME: usize = 63;

/// One tenant, as a request's caller (a request extension set by the authentication middleware).
#[derive(Debug)]
pub struct Tenant {
    /// Its name; `None` for the anonymous tenant of a server without keys.
    pub name: Option<String>,
    /// Sees (and may kill, delete, read) every tenant's work.
    pub admin: bool,
    /// Its caps.
    pub quota: Quota,
    /// Its requests per minute, when capped.
    limiter: Option<DefaultDirectRateLimiter>,
}

/// The caller of a request: its tenant.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Tenant>);

impl Tenant {
    /// Whether this tenant may see what `owner` owns (`None`: created without a tenant, by a server without keys).
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        self.admin || (self.name.is_some() && self.name.as_deref() == owner)
    }

    /// The tenant a listing is limited to: its own, or every tenant's for an admin.
    pub fn list_filter(&self) -> Option<String> {
        if self.admin { None } else { self.name.clone() }
    }

    /// Counts a request against the tenant's rate; `Err(wait)` when it is over it.
    pub fn admit_request(&self) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Every tenant and its keys.
#[derive(Debug)]
pub struct Tenants {
    /// Keys and their tenants.
    keys: Vec<(String, Arc<Tenant>)>,
    /// The caller of every request when there are no keys.
    anonymous: Arc<Tenant>,
    quotas: Quotas,
}

/// Why the tenants could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// The keys file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A tenant name or key is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// The settings every tenant gets unless its own say otherwise (`PYEXEC_TENANT_*`; 0 is unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults {
    /// Running executions.
    pub max_running: usize,
    /// Queued executions.
    pub max_queued: usize,
    /// Live sessions.
    pub max_sessions: usize,
    /// Requests per minute.
    pub requests_per_minute: u32,
}

impl Defaults {
    fn quota(self) -> Quota {
        let some = |n: usize| (n > 0).then_some(n);
        Quota {
            max_running: some(self.max_running),
            max_queued: some(self.max_queued),
            max_sessions: some(self.max_sessions),
            requests_per_minute: (self.requests_per_minute > 0).then_some(self.requests_per_minute),
            weight: 1,
        }
    }
}

/// One tenant of a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantToml {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    admin: bool,
    max_running: Option<usize>,
    max_queued: Option<usize>,
    max_sessions: Option<usize>,
    requests_per_minute: Option<u32>,
    weight: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    defaults: Option<TenantToml>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantToml>,
}

/// A tenant as read, before its limiter is built.
struct Spec {
    admin: bool,
    quota: Quota,
}

/// Whether `name` is a tenant name: a DNS label (it labels Kubernetes resources and metrics).
pub fn is_tenant_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// The tenant of a key given alone: its own, named after the key's hash (the key itself never appears).
fn own_tenant(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

/// `tenant:key`, or a key alone.
fn split_line(line: &str) -> (String, String) {
    match line.split_once(':') {
        Some((tenant, key)) if is_tenant_name(tenant.trim()) && !key.trim().is_empty() => {
            (tenant.trim().to_owned(), key.trim().to_owned())
        }
        _ => (own_tenant(line), line.to_owned()),
    }
}

impl Tenants {
    /// The tenants of `keys` (from the flag or variable: `key` or `tenant:key` each) and of the keys file, with
    /// `defaults` for every tenant and `admins` named admin.
    pub fn load(
        keys: &[String],
        file: Option<&Path>,
        defaults: Defaults,
        admins: &[String],
    ) -> Result<Tenants, TenantsError> {
        let mut specs: BTreeMap<String, Spec> = BTreeMap::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        let default_quota = defaults.quota();
        for key in keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
            pairs.push(split_line(key));
        }
        let mut quota_default = default_quota;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| TenantsError::Read { path: shown.clone(), source })?;
            if path.extension().is_some_and(|e| e == "toml") {
                let parsed: FileToml = toml::from_str(&text)
                    .map_err(|e| TenantsError::Toml { path: shown.clone(), message: e.to_string() })?;
                if let Some(d) = &parsed.defaults {
                    if !d.keys.is_empty() || d.admin {
                        return Err(TenantsError::Invalid(format!("{shown}: [defaults] takes quotas only")));
                    }
                    quota_default = merge(default_quota, d);
                }
                for (name, tenant) in &parsed.tenants {
                    if !is_tenant_name(name) {
                        return Err(TenantsError::Invalid(format!(
                            "{shown}: tenant name {name:?} must be lowercase letters, digits and '-', at most \
                             {MAX_NAME} characters"
                        )));
                    }
                    if tenant.keys.is_empty() {
                        return Err(TenantsError::Invalid(format!("{shown}: tenant {name} has no keys")));
                    }
                    specs.insert(name.clone(), Spec { admin: tenant.admin, quota: merge(quota_default, tenant) });
                    pairs.extend(tenant.keys.iter().map(|k| (name.clone(), k.trim().to_owned())));
                }
            } else {
                let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
                pairs.extend(lines.map(split_line));
            }
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (tenant, key) in &pairs {
            if key.is_empty() {
                return Err(TenantsError::Invalid(format!("tenant {tenant} has an empty key")));
            }
            if let Some(other) = seen.insert(key, tenant)
                && other != tenant
            {
                return Err(TenantsError::Invalid(format!(
                    "one key is given to two tenants ({other} and {tenant}): a key names exactly one tenant"
                )));
            }
        }
        for name in admins.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            if !pairs.iter().any(|(t, _)| t == name) {
                return Err(TenantsError::Invalid(format!("PYEXEC_ADMIN_TENANTS names {name}, which has no key")));
            }
        }
        let mut built: HashMap<String, Arc<Tenant>> = HashMap::new();
        let mut quotas = Quotas { default: quota_default, per_tenant: HashMap::new() };
        let keys = pairs
            .into_iter()
            .map(|(name, key)| {
                let tenant = built
                    .entry(name.clone())
                    .or_insert_with(|| {
                        let spec = specs.remove(&name).unwrap_or(Spec { admin: false, quota: quota_default });
                        let admin = spec.admin || admins.iter().any(|a| a.trim() == name);
                        quotas.per_tenant.insert(name.clone(), spec.quota);
                        Arc::new(Tenant {
                            name: Some(name.clone()),
                            admin,
                            quota: spec.quota,
                            limiter: limiter(spec.quota),
                        })
                    })
                    .clone();
                (key, tenant)
            })
            .collect();
        let anonymous =
            Arc::new(Tenant { name: None, admin: true, quota: default_quota, limiter: limiter(default_quota) });
        Ok(Tenants { keys, anonymous, quotas })
    }

    /// Whether requests need no key (none is configured).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The tenant of `key`; every key is compared (in constant time), so the time taken says nothing of which
    /// matched.
    pub fn authenticate(&self, key: &str) -> Option<Arc<Tenant>> {
        let mut found = None;
        for (candidate, tenant) in &self.keys {
            if pyexec_core::secret::matches_any([candidate.as_bytes()], key.as_bytes()) && found.is_none() {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// The caller of every request of a server without keys.
    pub fn anonymous(&self) -> Arc<Tenant> {
        self.anonymous.clone()
    }

    /// Every tenant's quota, for the backends.
    pub fn quotas(&self) -> Quotas {
        self.quotas.clone()
    }

    /// How many tenants there are.
    pub fn count(&self) -> usize {
        let mut names: Vec<&str> = self.keys.iter().filter_map(|(_, t)| t.name.as_deref()).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }
}

fn merge(base: Quota, t: &TenantToml) -> Quota {
    let cap = |set: Option<usize>, base: Option<usize>| match set {
        Some(0) => None,
        Some(n) => Some(n),
        None => base,
    };
    Quota {
        max_running: cap(t.max_running, base.max_running),
        max_queued: cap(t.max_queued, base.max_queued),
        max_sessions: cap(t.max_sessions, base.max_sessions),
        requests_per_minute: match t.requests_per_minute {
            Some(0) => None,
            Some(n) => Some(n),
            None => base.requests_per_minute,
        },
        weight: t.weight.unwrap_or(base.weight).max(1),
    }
}

fn limiter(quota: Quota) -> Option<DefaultDirectRateLimiter> {
    let per_minute = NonZeroU32::new(quota.requests_per_minute?)?;
    Some(RateLimiter::direct(governor::Quota::per_minute(per_minute)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(keys: &[&str], file: Option<(&str, &str)>, admins: &[&str]) -> Result<Tenants, TenantsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|(name, text)| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        });
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let admins: Vec<String> = admins.iter().map(|k| k.to_string()).collect();
        Tenants::load(&keys, path.as_deref(), Defaults { max_running: 2, ..Defaults::default() }, &admins)
    }

    #[test]
    fn keys_name_their_tenants_and_plain_keys_are_tenants_of_their_own() {
        let t = load(&["alice:alice-key", "plain-key"], Some(("keys", "# team b\nbob:bob-1\nbob:bob-2\n")), &["bob"])
            .unwrap();
        let alice = t.authenticate("alice-key").unwrap();
        assert_eq!((alice.name.as_deref(), alice.admin), (Some("alice"), false));
        let plain = t.authenticate("plain-key").unwrap();
        assert!(
            plain.name.as_deref().unwrap().starts_with("key-") && !plain.name.as_deref().unwrap().contains("plain")
        );
        assert!(Arc::ptr_eq(&t.authenticate("bob-1").unwrap(), &t.authenticate("bob-2").unwrap()), "one tenant");
        assert!(t.authenticate("bob-1").unwrap().admin);
        assert!(t.authenticate("nobody").is_none());
        assert_eq!(t.count(), 3);
        assert!(!t.is_open());
        assert_eq!(alice.quota.max_running, Some(2), "the defaults");
        // Visibility: own work, and an admin's all.
        assert!(alice.may_see(Some("alice")) && !alice.may_see(Some("bob")) && !alice.may_see(None));
        assert!(t.authenticate("bob-1").unwrap().may_see(Some("alice")));
    }

    #[test]
    fn a_toml_file_sets_quotas_per_tenant() {
        let toml = r#"
            [defaults]
            max_queued = 10
            requests_per_minute = 2

            [tenants.alice]
            keys = ["a1"]
            max_running = 4
            weight = 3

            [tenants.ops]
            keys = ["o1"]
            admin = true
            requests_per_minute = 0
        "#;
        let t = load(&[], Some(("tenants.toml", toml)), &[]).unwrap();
        let alice = t.authenticate("a1").unwrap();
        assert_eq!((alice.quota.max_running, alice.quota.max_queued, alice.quota.weight), (Some(4), Some(10), 3));
        assert!(alice.admit_request().is_ok() && alice.admit_request().is_ok());
        assert!(alice.admit_request().unwrap_err() > Duration::ZERO, "the third request in a minute waits");
        let ops = t.authenticate("o1").unwrap();
        assert!(ops.admin && (0..10).all(|_| ops.admit_request().is_ok()), "0 is unlimited");
        assert_eq!(t.quotas().of(Some("alice")).max_running, Some(4));
    }

    #[test]
    fn mistakes_stop_start_up_with_a_clear_message() {
        let bad_name = load(&[], Some(("t.toml", "[tenants.Alice]\nkeys = [\"k\"]\n")), &[]).unwrap_err();
        assert!(bad_name.to_string().contains("lowercase"), "{bad_name}");
        let unknown = load(&[], Some(("t.toml", "[tenants.a]\nkeys = [\"k\"]\nmax_runing = 1\n")), &[]).unwrap_err();
        assert!(unknown.to_string().contains("max_runing"), "{unknown}");
        let twice = load(&["a:k", "b:k"], None, &[]).unwrap_err();
        assert!(twice.to_string().contains("two tenants"), "{twice}");
        let admin = load(&["a:k"], None, &["b"]).unwrap_err();
        assert!(admin.to_string().contains("PYEXEC_ADMIN_TENANTS"), "{admin}");
    }

    #[test]
    fn without_keys_the_anonymous_tenant_sees_everything() {
        let t = load(&[], None, &[]).unwrap();
        assert!(t.is_open());
        let anonymous = t.anonymous();
        assert!(anonymous.admin && anonymous.may_see(None) && anonymous.may_see(Some("x")));
        assert_eq!(anonymous.list_filter(), None);
    }
}
