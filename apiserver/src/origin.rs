//! What a web page in a browser can make this server do.
//!
//! Two attacks need no help from the user beyond visiting a page:
//!
//! - **Cross-site requests.** Any page may send a `POST` with a `text/plain` or form-encoded body to any address,
//!   loopback included, without a CORS preflight; the browser only hides the answer. Requests that change state
//!   (every method but `GET`, `HEAD`, `OPTIONS` and `TRACE`) are therefore refused when they carry an `Origin`
//!   that is neither this server's own (the `Host` the request was sent to, or `X-Forwarded-Host`, which a
//!   cross-site request cannot set without a preflight this server never grants) nor in `PYEXEC_ALLOWED_ORIGINS`,
//!   or, without an `Origin`, when the browser says `Sec-Fetch-Site: cross-site`; `/mcp` checks every method.
//!   Clients that are not browsers (curl, the CLI, the client libraries) send neither header and are unaffected.
//! - **DNS rebinding.** A page's own name is made to resolve to this server, so its requests are same-origin as far
//!   as the browser knows, and it may read the answers. Such requests name the attacker's domain in `Host`, so a
//!   server without API keys answers only to loopback names, IP addresses (a rebinding needs a DNS name) and the
//!   names in `PYEXEC_ALLOWED_HOSTS`. With API keys the page cannot authenticate, so only `/mcp` keeps checking, as
//!   it always did. `/health` answers any name, for probes and load balancers.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

const HOSTS_SETTING: &str = "PYEXEC_ALLOWED_HOSTS";
const MCP_HOSTS_SETTING: &str = "PYEXEC_MCP_ALLOWED_HOSTS";
const ORIGINS_SETTING: &str = "PYEXEC_ALLOWED_ORIGINS";

/// The browser protections of one server.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    hosts: HostAllowList,
    /// Whether every route (not only `/mcp`) checks `Host`: true without API keys.
    check_every_host: bool,
    origins: OriginAllowList,
}

impl BrowserPolicy {
    /// The policy of `config`; `api_keys` says whether clients must authenticate.
    pub fn new(config: &Config, api_keys: bool) -> anyhow::Result<BrowserPolicy> {
        let entries = config.allowed_hosts.iter().chain(&config.mcp_allowed_hosts).map(String::as_str);
        let hosts = HostAllowList::parse(entries)
            .map_err(|e| anyhow::anyhow!("configuration error in {HOSTS_SETTING} (or {MCP_HOSTS_SETTING}): {e}"))?;
        let origins = OriginAllowList::parse(config.allowed_origins.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("configuration error in {ORIGINS_SETTING}: {e}"))?;
        if hosts.any {
            tracing::warn!(
                "{HOSTS_SETTING} (or {MCP_HOSTS_SETTING}) has `*`: requests for any host name are answered, so \
                 a web page can reach this server through DNS rebinding{}",
                if api_keys { " (API keys still protect /api and /mcp)" } else { "" }
            );
        }
        if origins.any {
            tracing::warn!(
                "{ORIGINS_SETTING} is `*`: pages of any web site may send requests that run code on this server \
                 through their visitors' browsers{}",
                if api_keys { " (API keys still protect /api and /mcp)" } else { "" }
            );
        }
        Ok(BrowserPolicy { hosts, check_every_host: !api_keys, origins })
    }

    /// Refuses what a page in a browser must not make this server do.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        let path = uri.path();
        let mcp = path == "/mcp" || path.starts_with("/mcp/");
        if path != "/health" && (self.check_every_host || mcp) {
            self.check_host(uri, headers).map_err(|name| refuse_host(&name, mcp))?;
        }
        // The MCP transport asks servers to check the Origin of every request, its event streams included.
        if mcp || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
            self.check_origin(headers)?;
        }
        Ok(())
    }

    /// `Err` with the host name that is not allowed (or why there is none to check).
    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), String> {
        if self.hosts.any {
            return Ok(());
        }
        let mut names: Vec<&str> = Vec::new();
        for value in headers.get_all(header::HOST) {
            names.push(value.to_str().map_err(|_| "(not text)".to_owned())?);
        }
        if names.len() > 1 {
            return Err("(several Host headers)".into());
        }
        // A browser always names the host; a request without one (HTTP/1.0) comes from no web page.
        let authority = uri.authority().map(|a| a.as_str());
        for name in names.into_iter().chain(authority) {
            match Authority::parse(name) {
                Some(a) if a.ip || is_loopback_name(&a.host) || self.hosts.allows(&a) => {}
                _ => return Err(name.to_owned()),
            }
        }
        Ok(())
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            let cross_site = headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"));
            if cross_site && !self.origins.any {
                return Err(ApiError::Forbidden(format!(
                    "cross-site request refused: the browser says Sec-Fetch-Site: cross-site and sends no Origin; \
                     pages of other sites may only send requests that run code from an origin in {ORIGINS_SETTING}"
                )));
            }
            return Ok(());
        };
        if self.origins.any {
            return Ok(());
        }
        let text = origin.to_str().unwrap_or("(not text)");
        let allowed = origins.next().is_none()
            && OriginValue::parse(text).is_some_and(|o| self.origins.allows(&o) || is_own_origin(&o, headers));
        if allowed {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "cross-site request refused: the Origin {} is neither this server's nor in {ORIGINS_SETTING}",
            shown(text)
        )))
    }
}

/// The middleware applying [`BrowserPolicy::check`].
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(refusal) = state.browser.check(request.method(), request.uri(), request.headers()) {
        tracing::warn!(
            host = ?request.headers().get(header::HOST),
            origin = ?request.headers().get(header::ORIGIN),
            "refused a request a browser page may have sent: {refusal}"
        );
        return refusal.into_response();
    }
    next.run(request).await
}

/// The refusal of a host name; at `/mcp` it names the MCP setting, the one people configuring an MCP client look
/// for (either list allows a name everywhere: they are one list).
fn refuse_host(name: &str, mcp: bool) -> ApiError {
    let (place, setting) = if mcp {
        ("for /mcp", format!("{MCP_HOSTS_SETTING} (or {HOSTS_SETTING})"))
    } else {
        ("here", HOSTS_SETTING.to_owned())
    };
    ApiError::Forbidden(format!(
        "the host name {} is not allowed {place} (protection against DNS rebinding): add it to {setting}",
        shown(name)
    ))
}

/// A client-supplied value quoted in a message, cut short.
fn shown(value: &str) -> String {
    let (head, cut) = pyexec_core::text::head(value, 80);
    format!("{:?}{}", head, if cut { "..." } else { "" })
}

/// Names that resolve to this machine without asking DNS: browsers resolve `*.localhost` to loopback themselves.
fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// A host and an optional port, as `Host` and origins write them: the host lower-case, without the brackets of an
/// IPv6 address or a final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
    /// An IP address rather than a name.
    ip: bool,
}

impl Authority {
    fn parse(text: &str) -> Option<Authority> {
        let text = text.trim();
        if text.is_empty() || text.bytes().any(|b| b.is_ascii_control() || b" @/\\?#%".contains(&b)) {
            return None;
        }
        let (host, port, ip) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(parse_port(after.strip_prefix(':')?)?),
            };
            (inside, port, true)
        } else if text.matches(':').count() > 1 {
            // A bare IPv6 address, as allow-list entries may write it (`::1`).
            text.parse::<Ipv6Addr>().ok()?;
            (text, None, true)
        } else {
            let (host, port) = match text.split_once(':') {
                Some((host, port)) => (host, Some(parse_port(port)?)),
                None => (text, None),
            };
            let host = host.strip_suffix('.').unwrap_or(host);
            if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
                return None;
            }
            (host, port, host.parse::<Ipv4Addr>().is_ok())
        };
        Some(Authority { host: host.to_ascii_lowercase(), port, ip })
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One entry of the host allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// A name or address, with the port if the entry gave one.
    Exact(Authority),
    /// `*.example.com`: every name below `example.com`, not the name itself.
    Below { domain: String, port: Option<u16> },
}

/// `PYEXEC_ALLOWED_HOSTS` and `PYEXEC_MCP_ALLOWED_HOSTS` together.
#[derive(Debug, Clone, Default)]
struct HostAllowList {
    any: bool,
    patterns: Vec<HostPattern>,
}

impl HostAllowList {
    fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<HostAllowList, String> {
        let mut list = HostAllowList::default();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
                continue;
            }
            let pattern = match entry.strip_prefix("*.") {
                Some(rest) => Authority::parse(rest)
                    .filter(|a| !a.ip)
                    .map(|a| HostPattern::Below { domain: a.host, port: a.port }),
                None => Authority::parse(entry).map(HostPattern::Exact),
            };
            list.patterns.push(
                pattern.ok_or_else(|| format!("{entry:?} is not a host name, host:port, *.domain or IP address"))?,
            );
        }
        Ok(list)
    }

    fn allows(&self, authority: &Authority) -> bool {
        let port_matches = |port: &Option<u16>| port.is_none() || *port == authority.port;
        self.any
            || self.patterns.iter().any(|pattern| match pattern {
                HostPattern::Exact(allowed) => allowed.host == authority.host && port_matches(&allowed.port),
                HostPattern::Below { domain, port } => {
                    authority.host.strip_suffix(domain.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
                        && port_matches(port)
                }
            })
    }
}

/// An `Origin` header's value, or an entry of `PYEXEC_ALLOWED_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginValue {
    /// `null`: sandboxed frames, `file:` and `data:` pages, some redirects.
    Null,
    Tuple {
        scheme: String,
        host: String,
        /// Explicit, or the scheme's default.
        port: Option<u16>,
    },
}

impl OriginValue {
    fn parse(text: &str) -> Option<OriginValue> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("null") {
            return Some(OriginValue::Null);
        }
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let mut chars = scheme.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return None;
        }
        let authority = Authority::parse(rest)?;
        let port = authority.port.or_else(|| default_port(&scheme));
        Some(OriginValue::Tuple { scheme, host: authority.host, port })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `PYEXEC_ALLOWED_ORIGINS`.
#[derive(Debug, Clone, Default)]
struct OriginAllowList {
    any: bool,
    origins: Vec<OriginValue>,
}

impl OriginAllowList {
    fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<OriginAllowList, String> {
        let mut list = OriginAllowList::default();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
                continue;
            }
            // People copy origins from the address bar, with the final slash.
            let origin = OriginValue::parse(entry.strip_suffix('/').unwrap_or(entry))
                .ok_or_else(|| format!("{entry:?} is not an origin such as https://app.example.com or null"))?;
            list.origins.push(origin);
        }
        Ok(list)
    }

    fn allows(&self, origin: &OriginValue) -> bool {
        self.any || self.origins.contains(origin)
    }
}

/// Whether a page of `origin` is one of this server's own: same host and port as the request's `Host` (or the
/// `X-Forwarded-Host` a reverse proxy set). The scheme is not compared: behind a TLS-terminating proxy the server
/// cannot know it.
fn is_own_origin(origin: &OriginValue, headers: &HeaderMap) -> bool {
    let OriginValue::Tuple { scheme, host, port } = origin else { return false };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let forwarded = headers.get("x-forwarded-host").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next());
    let own = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    own.into_iter()
        .chain(forwarded)
        .filter_map(Authority::parse)
        .any(|a| a.host == *host && a.port.or_else(|| default_port(scheme)) == *port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn policy(hosts: &[&str], origins: &[&str], api_keys: bool) -> BrowserPolicy {
        BrowserPolicy {
            hosts: HostAllowList::parse(hosts.iter().copied()).unwrap(),
            check_every_host: !api_keys,
            origins: OriginAllowList::parse(origins.iter().copied()).unwrap(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn allowed(policy: &BrowserPolicy, method: Method, path: &str, pairs: &[(&'static str, &str)]) -> bool {
        policy.check(&method, &path.parse().unwrap(), &headers(pairs)).is_ok()
    }

    #[test]
    fn host_names_parse_like_browsers_send_them() {
        let a = Authority::parse("LocalHost.:8080").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.ip), ("localhost", Some(8080), false));
        let a = Authority::parse("[::1]:80").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.ip), ("::1", Some(80), true));
        assert!(Authority::parse("10.1.2.3").unwrap().ip);
        assert!(!Authority::parse("10.1.2.3.nip.io").unwrap().ip, "a name that embeds an address is a name");
        for bad in ["", "a b", "user@host", "host:", "host:http", "host:99999", "[::1", "[evil]:80", "a/b", "h%2e"] {
            assert!(Authority::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn without_api_keys_only_loopback_addresses_and_listed_names_are_answered() {
        let p = policy(&["executor.example.com", "*.svc.cluster.local", "pinned.example:8080"], &[], false);
        for host in [
            "localhost",
            "localhost:8080",
            "app.localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.0.0.7:8080",
            "executor.example.com",
            "EXECUTOR.example.com.:443",
            "pyexec.ns.svc.cluster.local:8080",
            "pinned.example:8080",
        ] {
            assert!(allowed(&p, Method::GET, "/api/v1/executions", &[("host", host)]), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "executor.example.com.evil.example",
            "svc.cluster.local",
            "pinned.example:9090",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!allowed(&p, Method::GET, "/api/v1/executions", &[("host", host)]), "{host}");
            assert!(!allowed(&p, Method::GET, "/docs/", &[("host", host)]), "{host}");
        }
        assert!(allowed(&p, Method::GET, "/health", &[("host", "evil.example")]), "probes may use any name");
        assert!(allowed(&p, Method::GET, "/api/v1/executions", &[]), "no Host: not a browser");
        assert!(!allowed(&p, Method::GET, "/", &[("host", "localhost"), ("host", "evil.example")]));
        assert!(!allowed(&p, Method::GET, "http://evil.example/api/v1/executions", &[("host", "localhost")]));
    }

    #[test]
    fn with_api_keys_only_mcp_checks_the_host() {
        let p = policy(&["localhost"], &[], true);
        assert!(allowed(&p, Method::GET, "/api/v1/executions", &[("host", "evil.example")]));
        assert!(!allowed(&p, Method::GET, "/mcp", &[("host", "evil.example")]));
        assert!(allowed(&p, Method::GET, "/mcp", &[("host", "127.0.0.1:8080")]));
        let any = policy(&["*"], &[], false);
        assert!(allowed(&any, Method::GET, "/mcp", &[("host", "evil.example")]));
        assert!(HostAllowList::parse(["*.10.0.0.1"]).is_err());
        assert!(HostAllowList::parse(["exa mple"]).is_err());
    }

    #[test]
    fn state_changing_requests_from_other_sites_are_refused() {
        let p = policy(&[], &["https://app.example.com", "http://localhost:3000/", "null"], false);
        let host = ("host", "localhost:8080");
        for method in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            assert!(!allowed(&p, method.clone(), "/api/v1/eval", &[host, ("origin", "https://evil.example")]));
            assert!(!allowed(&p, method.clone(), "/mcp", &[host, ("origin", "http://localhost:3001")]));
            assert!(allowed(&p, method, "/api/v1/eval", &[host, ("origin", "https://app.example.com")]));
        }
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "https://app.example.com:443")]));
        assert!(!allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "http://app.example.com")]));
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "http://localhost:3000")]));
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "null")]), "listed");
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "http://localhost:8080")]), "own");
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "https://localhost:8080")]), "own");
        assert!(!allowed(&p, Method::POST, "/api/v1/eval", &[host, ("origin", "http://localhost")]), "other port");
        let ingress = [("host", "10.0.0.7:8080"), ("x-forwarded-host", "executor.example.com")];
        assert!(allowed(
            &p,
            Method::POST,
            "/api/v1/eval",
            &[ingress[0], ingress[1], ("origin", "https://executor.example.com")]
        ));
        assert!(!allowed(
            &p,
            Method::POST,
            "/api/v1/eval",
            &[host, ("origin", "https://app.example.com"), ("origin", "https://evil.example")]
        ));
        assert!(allowed(&p, Method::GET, "/api/v1/executions", &[host, ("origin", "https://evil.example")]), "reads");
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host]), "curl and the clients send no Origin");
        let unlisted_null = policy(&[], &[], false);
        assert!(!allowed(&unlisted_null, Method::POST, "/api/v1/eval", &[host, ("origin", "null")]));
    }

    #[test]
    fn sec_fetch_site_cross_site_is_a_refusal_without_an_allowed_origin() {
        let p = policy(&[], &["https://app.example.com"], false);
        let host = ("host", "localhost:8080");
        assert!(!allowed(&p, Method::POST, "/api/v1/eval", &[host, ("sec-fetch-site", "cross-site")]));
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("sec-fetch-site", "same-origin")]));
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &[host, ("sec-fetch-site", "none")]));
        let listed = [host, ("sec-fetch-site", "cross-site"), ("origin", "https://app.example.com")];
        assert!(allowed(&p, Method::POST, "/api/v1/eval", &listed));
        let any = policy(&[], &["*"], false);
        assert!(allowed(&any, Method::POST, "/api/v1/eval", &[host, ("sec-fetch-site", "cross-site")]));
        assert!(allowed(&any, Method::POST, "/api/v1/eval", &[host, ("origin", "https://evil.example")]));
    }

    #[test]
    fn origin_entries_are_checked() {
        assert!(OriginAllowList::parse(["app.example.com"]).is_err(), "no scheme");
        assert!(OriginAllowList::parse(["https://app.example.com/path"]).is_err());
        assert!(OriginAllowList::parse(["https://app.example.com/", "NULL", "*"]).is_ok());
    }
}
