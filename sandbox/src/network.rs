//! Egress for runs that ask for network: the public internet, and nothing else.
//!
//! The sandbox always gets a network namespace of its own. With network on, [pasta] (Debian's `passt`) attaches a
//! user-space TCP/IP stack to it: the host's network is never shared, pasta forwards no ports in either direction
//! (`-t/-u/-T/-U none`), does not map the gateway to the host (`--no-map-gw`), and forwards DNS sent to one
//! address to the host's resolver. An nftables ruleset inside the namespace then refuses loopback, private,
//! shared, link-local (cloud metadata), multicast and reserved ranges and the host's own subnets, so the program
//! can reach neither the host's services nor the cluster. The program has no capabilities in the namespace and
//! cannot change the rules.
//!
//! [pasta]: https://passt.top

use std::ffi::CStr;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use pyexec_core::egress::{BLOCKED_V4, BLOCKED_V6};

use crate::SandboxError;
use crate::config::NetworkConfig;

/// The egress machinery of this host.
#[derive(Debug, Clone)]
pub(crate) struct Egress {
    pasta: PathBuf,
    nft: PathBuf,
    dns: std::net::Ipv4Addr,
    ruleset: String,
    rootful: bool,
}

/// Keeps a run's network alive; kills pasta when dropped.
#[derive(Debug)]
pub(crate) struct EgressGuard {
    pasta: Option<OwnedFd>,
}

impl Drop for EgressGuard {
    fn drop(&mut self) {
        if let Some(pidfd) = &self.pasta {
            // pasta does not exit when the namespace's last process does.
            let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".into());
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

impl Egress {
    /// Finds pasta and nft; the error says what is missing, for the health report and for refused requests.
    pub(crate) fn discover(config: &NetworkConfig, rootful: bool) -> Result<Egress, String> {
        let pasta = config.pasta.clone().or_else(|| find_in_path("pasta")).ok_or(
            "pasta (Debian package `passt`) is not installed, so runs cannot be given egress without exposing the \
             host network",
        )?;
        let nft =
            config.nft.clone().or_else(|| find_in_path("nft")).ok_or(
                "nft (Debian package `nftables`) is not installed, so egress cannot be limited to the internet",
            )?;
        // pasta opens the tun device inside the sandbox's namespaces with the server's own credentials.
        if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
            return Err(format!(
                "/dev/net/tun cannot be opened by this server ({e}), so pasta cannot give runs egress"
            ));
        }
        Ok(Egress { pasta, nft, dns: config.dns_address, ruleset: ruleset(config), rootful })
    }

    /// One line for the health report.
    pub(crate) fn describe(&self) -> String {
        format!("pasta + nftables (public internet only; DNS via {})", self.dns)
    }

    /// The resolver address to put in the sandbox's `/etc/resolv.conf`.
    pub(crate) fn dns(&self) -> std::net::Ipv4Addr {
        self.dns
    }

    /// Attaches egress to the network namespace of `pid` (a sandbox child still waiting for its go-ahead): the
    /// public internet, or only the `allowed` addresses when given.
    pub(crate) async fn attach(
        &self,
        pid: i32,
        state_dir: &Path,
        allowed: Option<&[IpAddr]>,
    ) -> Result<EgressGuard, SandboxError> {
        let fail = |what: String| SandboxError::Network(what);
        let pid_file = state_dir.join(format!("pasta-{pid}.pid"));
        let mut cmd = Command::new(&self.pasta);
        cmd.args(["--config-net", "--quiet"]);
        if self.rootful {
            cmd.args(["--runas", "0"]);
        }
        let output = cmd
            .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw"])
            .arg("--dns-forward")
            .arg(self.dns.to_string())
            .arg("-P")
            .arg(&pid_file)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| fail(format!("starting pasta: {e}")))?;
        let pasta_pid = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok());
        let _ = std::fs::remove_file(&pid_file);
        // pasta forks into the background once the namespace is configured; hold it by pidfd so that killing it
        // later cannot hit a recycled pid.
        let guard = EgressGuard {
            pasta: pasta_pid.and_then(|p| {
                rustix::process::Pid::from_raw(p)
                    .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
            }),
        };
        if !output.status.success() || guard.pasta.is_none() {
            return Err(fail(format!(
                "pasta could not attach to the sandbox ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let rules = match allowed {
            Some(addrs) => allowlist_ruleset(addrs),
            None => self.ruleset.clone(),
        };
        self.apply_rules(pid, &rules).await?;
        Ok(guard)
    }

    /// Loads the ruleset inside the sandbox's network namespace (entering its user namespace too when the server
    /// is not root, to hold CAP_NET_ADMIN there).
    async fn apply_rules(&self, pid: i32, ruleset: &str) -> Result<(), SandboxError> {
        let fail = |what: String| SandboxError::Network(what);
        let open = |ns: &str| {
            std::fs::File::open(format!("/proc/{pid}/ns/{ns}"))
                .map(OwnedFd::from)
                .map_err(|e| fail(format!("opening the sandbox's {ns} namespace: {e}")))
        };
        let net = open("net")?;
        let user = if self.rootful { None } else { Some(open("user")?) };
        let (net_fd, user_fd) = (net.as_raw_fd(), user.as_ref().map(|u| u.as_raw_fd()));
        let mut cmd = Command::new(&self.nft);
        cmd.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        // SAFETY: setns, capset and prctl are async-signal-safe; the descriptors stay open until the command has
        // been spawned.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(user_fd) = user_fd {
                    if libc::setns(user_fd, libc::CLONE_NEWUSER) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    keep_net_admin_across_exec()?;
                }
                if libc::setns(net_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| fail(format!("starting nft: {e}")))?;
        drop((net, user));
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(ruleset.as_bytes()).await.map_err(|e| fail(format!("writing to nft: {e}")))?;
        }
        let output = child.wait_with_output().await.map_err(|e| fail(format!("running nft: {e}")))?;
        if !output.status.success() {
            return Err(fail(format!(
                "nft refused the sandbox firewall: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// Joining the sandbox's user namespace grants every capability in it, but `execve` by a uid that is not 0 there
/// (the server's uid maps to the sandbox user) clears them, and nft then fails with "Operation not permitted".
/// An ambient `CAP_NET_ADMIN` survives the `execve`: nft keeps exactly the one capability it needs, in the
/// sandbox's namespaces only. Raising an ambient capability needs it in the inheritable set first.
///
/// Only system calls: runs between `fork` and `execve`.
fn keep_net_admin_across_exec() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    // linux/capability.h; the libc crate does not export capability numbers.
    const CAP_NET_ADMIN: u32 = 12;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget/capset with the v3 header and two data words, as capget(2) documents.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        data[0].inheritable |= 1 << CAP_NET_ADMIN;
        if libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let raise = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            CAP_NET_ADMIN as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
        if raise != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The nftables ruleset: accept loopback and DNS to the forwarder, refuse every blocked range.
fn ruleset(config: &NetworkConfig) -> String {
    let (mut v4, mut v6): (Vec<String>, Vec<String>) =
        (BLOCKED_V4.iter().map(|s| s.to_string()).collect(), BLOCKED_V6.iter().map(|s| s.to_string()).collect());
    for (addr, prefix) in host_subnets() {
        match addr {
            IpAddr::V4(a) => v4.push(format!("{a}/{prefix}")),
            IpAddr::V6(a) => v6.push(format!("{a}/{prefix}")),
        }
    }
    for extra in &config.extra_blocked {
        if extra.contains(':') {
            v6.push(extra.clone());
        } else {
            v4.push(extra.clone());
        }
    }
    let dns = config.dns_address;
    format!(
        "table inet pyexec_sandbox {{
  set blocked4 {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}
  set blocked6 {{ type ipv6_addr; flags interval; auto-merge; elements = {{ {} }} }}
  chain output {{
    type filter hook output priority 0; policy accept;
    oifname \"lo\" accept
    ip daddr {dns} udp dport 53 accept
    ip daddr {dns} tcp dport 53 accept
    ip daddr @blocked4 reject with icmpx type admin-prohibited
    ip6 daddr @blocked6 reject with icmpx type admin-prohibited
  }}
}}
",
        v4.join(", "),
        v6.join(", ")
    )
}

/// A ruleset that lets through only traffic to `allowed` (any port; no DNS: names are pinned in /etc/hosts).
fn allowlist_ruleset(allowed: &[IpAddr]) -> String {
    let v4: Vec<String> = allowed.iter().filter(|a| a.is_ipv4()).map(ToString::to_string).collect();
    let v6: Vec<String> = allowed.iter().filter(|a| a.is_ipv6()).map(ToString::to_string).collect();
    let mut accept = String::new();
    if !v4.is_empty() {
        accept.push_str(&format!("    ip daddr {{ {} }} accept\n", v4.join(", ")));
    }
    if !v6.is_empty() {
        accept.push_str(&format!("    ip6 daddr {{ {} }} accept\n", v6.join(", ")));
    }
    format!(
        "table inet pyexec_sandbox {{
  chain output {{
    type filter hook output priority 0; policy accept;
    oifname \"lo\" accept
{accept}    reject with icmpx type admin-prohibited
  }}
}}
"
    )
}

/// The networks of the host's own interfaces (whatever their range), which the sandbox must not reach either.
fn host_subnets() -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
                continue;
            }
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if name == "lo" {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let addr = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let mask = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    let a = u32::from_be(addr.sin_addr.s_addr);
                    let m = u32::from_be(mask.sin_addr.s_addr);
                    out.push((IpAddr::V4((a & m).into()), m.count_ones() as u8));
                }
                libc::AF_INET6 => {
                    let addr = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let mask = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    let a = u128::from_be_bytes(addr.sin6_addr.s6_addr);
                    let m = u128::from_be_bytes(mask.sin6_addr.s6_addr);
                    out.push((IpAddr::V6((a & m).into()), m.count_ones() as u8));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_accept_only_their_addresses() {
        let rules = allowlist_ruleset(&["203.0.113.80".parse().unwrap(), "2001:db8::1".parse().unwrap()]);
        assert!(rules.contains("ip daddr { 203.0.113.80 } accept"));
        assert!(rules.contains("ip6 daddr { 2001:db8::1 } accept"));
        assert!(rules.trim_end().ends_with("}\n}") || rules.contains("reject with icmpx type admin-prohibited\n  }"));
        assert!(!rules.contains("dport 53"), "no DNS: names are pinned");
    }

    #[test]
    fn ruleset_blocks_private_ranges_and_allows_dns() {
        let config = NetworkConfig { extra_blocked: vec!["203.0.113.0/24".into()], ..Default::default() };
        let rules = ruleset(&config);
        for needle in [
            "10.0.0.0/8",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "fc00::/7",
            "203.0.113.0/24",
            "ip daddr 10.0.2.3 udp dport 53 accept",
        ] {
            assert!(rules.contains(needle), "{needle} missing from\n{rules}");
        }
        let dns = rules.find("udp dport 53").unwrap();
        let block = rules.find("@blocked4 reject").unwrap();
        assert!(dns < block, "DNS must be accepted before private ranges are refused");
    }
}
