//! Completion webhooks (docs/webhooks.md): which `callback_url`s a request may name, and which addresses the
//! server may send a result to.
//!
//! A callback is a request the *server* makes on a client's behalf, so a URL must never make it reach what only
//! the server can reach: its loopback, the private networks around it, cloud metadata. The address rules start
//! from the ranges [`crate::egress`] keeps executions away from, and split them in two: private networks (where
//! internal receivers live, opened by `PYEXEC_WEBHOOK_ALLOW_PRIVATE`) and addresses that never receive a
//! callback (unspecified, link-local, multicast, reserved). A URL whose host is an address is checked when the
//! request comes in; a host name is resolved and every address it has is checked at each delivery attempt, and
//! the attempt connects only to an address it checked (the API server's `webhooks` module).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::egress::{BLOCKED_V4, BLOCKED_V6};
use crate::spec::ValidationError;

/// Longest `callback_url` accepted, in bytes.
pub const MAX_CALLBACK_URL_BYTES: usize = 2048;

/// An address range, `network/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range (an IPv4 address is never in an IPv6 range, nor the reverse: callers
    /// compare canonical addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (a range of one).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address range (CIDR)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The ranges of [`BLOCKED_V4`] that are private networks, where internal receivers may live: loopback,
/// RFC 1918, CGNAT and the benchmarking range. The rest of that list never receives a callback.
const PRIVATE_V4: &[&str] =
    &["10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15"];

/// The same for IPv6: loopback and unique local addresses, plus two ranges callbacks add to [`BLOCKED_V6`]:
/// deprecated site-local addresses and local-use NAT64 (RFC 8215), both routed only inside a site.
const PRIVATE_V6: &[&str] = &["::1/128", "fc00::/7", "fec0::/10", "64:ff9b:1::/48"];

/// IPv6 ranges that never receive a callback besides [`BLOCKED_V6`]: IPv4-compatible addresses (deprecated,
/// and routed to IPv4 by some hosts) and the documentation range.
const NEVER_V6: &[&str] = &["::/96", "2001:db8::/32"];

fn in_any(list: &[&str], ip: IpAddr) -> bool {
    // The lists are constants, checked by a test; a bad entry would be skipped, never widen a range.
    list.iter().filter_map(|s| s.parse::<Cidr>().ok()).any(|range| range.contains(ip))
}

/// Where an address stands as a callback's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// The public internet.
    Public,
    /// A private network: loopback, RFC 1918, CGNAT, unique local (IPv6), benchmarking. Only with
    /// `PYEXEC_WEBHOOK_ALLOW_PRIVATE`.
    Private,
    /// Never a receiver: unspecified, link-local (cloud metadata), multicast, broadcast, reserved, documentation.
    Never,
}

/// Classifies `ip`. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is its IPv4 address; a NAT64 (`64:ff9b::/96`)
/// or 6to4 (`2002::/16`) address is what its embedded IPv4 address is, since that is where it leads.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let ip = IpAddr::V4(ip);
    if !in_any(BLOCKED_V4, ip) {
        AddressClass::Public
    } else if in_any(PRIVATE_V4, ip) {
        AddressClass::Private
    } else {
        AddressClass::Never
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let bits = u128::from(ip);
    let embedded_low = || Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_any(&["64:ff9b::/96"], IpAddr::V6(ip)) {
        return classify_v4(embedded_low());
    }
    if in_any(&["2002::/16"], IpAddr::V6(ip)) {
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    let addr = IpAddr::V6(ip);
    if in_any(PRIVATE_V6, addr) {
        AddressClass::Private
    } else if in_any(BLOCKED_V6, addr) || in_any(NEVER_V6, addr) {
        AddressClass::Never
    } else {
        AddressClass::Public
    }
}

/// Why an address may not receive a callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {why}")]
pub struct ForbiddenAddress {
    /// The address.
    pub address: IpAddr,
    /// What it is, and the setting that would allow it where there is one.
    pub why: &'static str,
}

/// A server's rules for callbacks: which URLs requests may name and which addresses deliveries may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackRules {
    /// The server can sign callbacks (it has a webhook secret); without one, every `callback_url` is refused.
    pub enabled: bool,
    /// `http://` URLs are accepted besides `https://` (the result then travels unencrypted).
    pub allow_http: bool,
    /// Private addresses ([`AddressClass::Private`]) may receive callbacks.
    pub allow_private: bool,
    /// More ranges that never receive a callback, whatever `allow_private` says (a cluster's pod and service
    /// ranges where they are not private ones).
    pub denied: Vec<Cidr>,
}

impl CallbackRules {
    /// Whether a callback may be sent to `ip`.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), ForbiddenAddress> {
        let refuse = |why| Err(ForbiddenAddress { address: ip, why });
        let canonical = ip.to_canonical();
        if self.denied.iter().any(|range| range.contains(canonical) || range.contains(ip)) {
            return refuse("in a range this server never calls back (PYEXEC_WEBHOOK_DENY_CIDRS)");
        }
        match classify(ip) {
            AddressClass::Public => Ok(()),
            AddressClass::Private if self.allow_private => Ok(()),
            AddressClass::Private => refuse(
                "a private address (loopback, RFC 1918, CGNAT or unique local), which this server does not call \
                 back unless PYEXEC_WEBHOOK_ALLOW_PRIVATE is set",
            ),
            AddressClass::Never => refuse(
                "an address that never receives callbacks (unspecified, link-local, multicast, broadcast or \
                 reserved)",
            ),
        }
    }

    /// Validates a request's `callback_url`: absent or empty is none; otherwise an absolute `https` URL (or
    /// `http` where allowed) with a host and no credentials, at most [`MAX_CALLBACK_URL_BYTES`] bytes, whose host,
    /// when it is an address (or `localhost`), may receive callbacks. Returns the URL as it will be called
    /// (normalised, without a fragment, which is never sent).
    pub fn check_url(&self, url: Option<&str>) -> Result<Option<String>, ValidationError> {
        let Some(raw) = url.filter(|u| !u.is_empty()) else { return Ok(None) };
        let bad = |why: String| Err(ValidationError::bad_request(format!("invalid callback_url: {why}")));
        if raw.len() > MAX_CALLBACK_URL_BYTES {
            return bad(format!("{} bytes, more than the {MAX_CALLBACK_URL_BYTES} allowed", raw.len()));
        }
        // The URL parser would drop these silently; the URL called must be the one sent.
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return bad("it contains spaces or control characters".into());
        }
        let mut parsed = match url::Url::parse(raw) {
            Ok(parsed) => parsed,
            Err(e) => return bad(format!("{e}")),
        };
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return bad("it must be an https URL: this server does not send results over plain http \
                            (PYEXEC_WEBHOOK_ALLOW_HTTP)"
                    .into());
            }
            other if self.allow_http => return bad(format!("scheme {other:?}: only http and https are supported")),
            other => return bad(format!("scheme {other:?}: it must be an https URL")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return bad("it must not carry credentials (user:password@); the signature authenticates callbacks \
                        (docs/webhooks.md)"
                .into());
        }
        let literal = match parsed.host() {
            None => return bad("it has no host".into()),
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            Some(url::Host::Domain(name)) => {
                // RFC 6761: `localhost` names are loopback wherever they are resolved.
                let name = name.trim_end_matches('.');
                (name == "localhost" || name.ends_with(".localhost")).then_some(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
        };
        if parsed.port() == Some(0) {
            return bad("port 0 cannot be called".into());
        }
        if let Some(ip) = literal
            && let Err(forbidden) = self.check_address(ip)
        {
            return Err(ValidationError::bad_request(format!(
                "callback_url points to {}, {}",
                parsed.host_str().unwrap_or_default(),
                forbidden.why
            )));
        }
        if !self.enabled {
            return Err(ValidationError::bad_request(
                "this server has no webhook secret (PYEXEC_WEBHOOK_SECRET_FILE), so it sends no callbacks: \
                 callback_url cannot be used",
            ));
        }
        parsed.set_fragment(None);
        Ok(Some(parsed.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rules() -> CallbackRules {
        CallbackRules { enabled: true, ..Default::default() }
    }

    #[test]
    fn every_range_constant_parses() {
        for list in [BLOCKED_V4, BLOCKED_V6, PRIVATE_V4, PRIVATE_V6, NEVER_V6] {
            for range in list {
                assert!(range.parse::<Cidr>().is_ok(), "{range}");
            }
        }
        // The private ranges are a part of what executions never reach, or added on purpose.
        for range in PRIVATE_V4 {
            assert!(BLOCKED_V4.contains(range), "{range}");
        }
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("::ffff:10.1.0.1")), "families never mix");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(one.to_string(), "2001:db8::1/128");
        assert!(one.contains(ip("2001:db8::1")) && !one.contains(ip("2001:db8::2")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2a00::1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "example.com/8", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4_addresses_are_classified() {
        use AddressClass::*;
        for (addr, class) in [
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("100.63.255.255", Public),
            ("172.32.0.1", Public),
            ("127.0.0.1", Private),
            ("127.8.9.10", Private),
            ("10.0.0.1", Private),
            ("172.16.5.4", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("198.18.0.1", Private),
            ("0.0.0.0", Never),
            ("169.254.169.254", Never),
            ("224.0.0.1", Never),
            ("239.255.255.250", Never),
            ("240.0.0.1", Never),
            ("255.255.255.255", Never),
            ("192.0.0.8", Never),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn ipv6_and_mapped_addresses_are_classified() {
        use AddressClass::*;
        for (addr, class) in [
            ("2606:4700:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
            ("::1", Private),
            ("fd12:3456::1", Private),
            ("fc00::1", Private),
            ("fec0::1", Private),
            ("::", Never),
            ("fe80::1", Never),
            ("ff02::1", Never),
            ("100::1", Never),
            ("2001:db8::1", Never),
            // IPv4-compatible (deprecated): never, whatever it embeds.
            ("::8.8.8.8", Never),
            ("::127.0.0.1", Never),
            // IPv4-mapped: the IPv4 address decides.
            ("::ffff:8.8.8.8", Public),
            ("::ffff:127.0.0.1", Private),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:169.254.169.254", Never),
            ("::ffff:0.0.0.0", Never),
            // NAT64 and 6to4 lead to the IPv4 address they embed.
            ("64:ff9b::808:808", Public),
            ("64:ff9b::a00:1", Private),
            ("64:ff9b::a9fe:a9fe", Never),
            ("64:ff9b:1::a00:1", Private),
            ("2002:808:808::1", Public),
            ("2002:7f00:1::1", Private),
            ("2002:a9fe:a9fe::", Never),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn addresses_are_checked_against_the_settings() {
        let strict = rules();
        assert!(strict.check_address(ip("93.184.216.34")).is_ok());
        let err = strict.check_address(ip("127.0.0.1")).unwrap_err();
        assert!(err.to_string().contains("PYEXEC_WEBHOOK_ALLOW_PRIVATE"), "{err}");
        assert!(strict.check_address(ip("::ffff:192.168.0.1")).is_err());
        let open = CallbackRules { allow_private: true, ..rules() };
        assert!(open.check_address(ip("127.0.0.1")).is_ok());
        assert!(open.check_address(ip("::1")).is_ok());
        assert!(open.check_address(ip("10.1.2.3")).is_ok());
        // Allowing private networks never opens cloud metadata, multicast or unspecified addresses.
        for never in ["169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.251"] {
            assert!(open.check_address(ip(never)).is_err(), "{never}");
        }
        // Denied ranges win over everything, mapped addresses included.
        let denied =
            CallbackRules { denied: vec!["10.96.0.0/12".parse().unwrap(), "34.118.224.0/20".parse().unwrap()], ..open };
        assert!(denied.check_address(ip("10.96.0.10")).unwrap_err().to_string().contains("DENY_CIDRS"));
        assert!(denied.check_address(ip("34.118.230.1")).is_err(), "a public range can be denied");
        assert!(denied.check_address(ip("::ffff:34.118.230.1")).is_err());
        assert!(denied.check_address(ip("10.0.0.1")).is_ok());
    }

    fn message(rules: &CallbackRules, url: &str) -> String {
        rules.check_url(Some(url)).unwrap_err().message
    }

    #[test]
    fn good_urls_are_normalised() {
        let r = rules();
        assert_eq!(r.check_url(None).unwrap(), None);
        assert_eq!(r.check_url(Some("")).unwrap(), None);
        assert_eq!(
            r.check_url(Some("https://Hooks.Example.com/a/b?x=1&y=%20#frag")).unwrap().as_deref(),
            Some("https://hooks.example.com/a/b?x=1&y=%20")
        );
        assert_eq!(r.check_url(Some("https://example.com")).unwrap().as_deref(), Some("https://example.com/"));
        assert_eq!(
            r.check_url(Some("https://93.184.216.34:8443/h")).unwrap().as_deref(),
            Some("https://93.184.216.34:8443/h")
        );
        assert_eq!(r.check_url(Some("https://[2606:4700::1]/h")).unwrap().as_deref(), Some("https://[2606:4700::1]/h"));
        // IDNs become their ASCII form, which is what is resolved.
        assert_eq!(
            r.check_url(Some("https://bücher.example/")).unwrap().as_deref(),
            Some("https://xn--bcher-kva.example/")
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let r = rules();
        assert!(message(&r, "not-a-url").contains("relative URL without a base"));
        assert!(message(&r, "ftp://example.com/x").contains("it must be an https URL"));
        assert!(message(&r, "file:///etc/passwd").contains("https"));
        assert!(message(&r, "http://example.com/").contains("PYEXEC_WEBHOOK_ALLOW_HTTP"));
        assert!(message(&r, "https://user:pw@example.com/").contains("credentials"));
        assert!(message(&r, "https://token@example.com/").contains("credentials"));
        assert!(message(&r, "https://exa mple.com/").contains("spaces"));
        assert!(message(&r, "https://example.com/\n").contains("control"));
        assert!(message(&r, "https://").contains("empty host"));
        assert!(message(&r, "https://example.com:0/").contains("port 0"));
        assert!(message(&r, "https://example.com:99999/").contains("invalid port"));
        let long = format!("https://example.com/{}", "a".repeat(MAX_CALLBACK_URL_BYTES));
        assert!(message(&r, &long).contains("more than the 2048 allowed"));
        let exact = format!("https://example.com/{}", "a".repeat(MAX_CALLBACK_URL_BYTES - 20));
        assert_eq!(exact.len(), MAX_CALLBACK_URL_BYTES);
        assert!(r.check_url(Some(&exact)).is_ok());
        let http = CallbackRules { allow_http: true, ..rules() };
        assert!(http.check_url(Some("http://example.com/")).is_ok());
        assert!(message(&http, "ftp://example.com/").contains("only http and https"));
    }

    #[test]
    fn literal_private_hosts_are_refused_up_front() {
        let r = CallbackRules { allow_http: true, ..rules() };
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.0.0.8/",
            "https://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
            // Forms the URL parser reads as IPv4 addresses.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            let m = message(&r, url);
            assert!(m.starts_with("callback_url points to "), "{url}: {m}");
        }
        assert!(message(&r, "http://127.0.0.1/").contains("PYEXEC_WEBHOOK_ALLOW_PRIVATE"));
        assert!(message(&r, "https://169.254.169.254/").contains("link-local"));
        let open = CallbackRules { allow_private: true, ..r };
        assert!(open.check_url(Some("http://127.0.0.1:9000/hook")).is_ok());
        assert!(open.check_url(Some("http://localhost:9000/hook")).is_ok());
        assert!(open.check_url(Some("http://169.254.169.254/")).is_err(), "metadata stays closed");
    }

    #[test]
    fn a_server_without_a_secret_refuses_callbacks() {
        let off = CallbackRules::default();
        assert_eq!(off.check_url(None).unwrap(), None);
        assert!(message(&off, "https://example.com/hook").contains("no webhook secret (PYEXEC_WEBHOOK_SECRET_FILE)"));
        // A bad URL is still told apart.
        assert!(message(&off, "nonsense").contains("invalid callback_url"));
    }
}
