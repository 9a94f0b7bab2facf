//! What "network egress" means for every backend: the public internet, never these ranges. The embedded sandbox
//! turns them into an nftables ruleset, the operator into the `except` lists of a NetworkPolicy.

/// IPv4 ranges an execution never reaches: "this" network, RFC 1918, CGNAT, loopback, link-local (cloud
/// metadata), IETF protocol assignments, benchmarking, multicast and reserved.
pub const BLOCKED_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// IPv6 ranges an execution never reaches: unspecified and loopback, IPv4-mapped, NAT64, discard, unique local,
/// link-local, multicast.
pub const BLOCKED_V6: &[&str] =
    &["::/127", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "fc00::/7", "fe80::/10", "ff00::/8"];
