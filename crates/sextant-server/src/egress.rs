//! Where webhook and chat steps may connect. A tenant writes the URL, so by default a step may
//! reach only public addresses: loopback, private, link-local, unique-local, shared (CGNAT),
//! multicast, documentation and other special-purpose ranges are refused. The check is made on
//! every address the host name resolves to, at every connection, redirects included (the
//! HTTP client resolves through [`EgressPolicy`]), so a name that resolves to a private address
//! or a redirect to one is refused like the address itself. The operator allows more in the
//! server's configuration:
//!
//! ```toml
//! [egress]
//! allow = ["hooks.internal.example", "10.20.0.0/16", "127.0.0.1:9093"]
//! [egress.tenants]
//! shop = ["192.168.7.12"]                 # added to `allow` for tenant `shop` only
//! ```
//!
//! An entry is a host name (any address it resolves to), an IP address, or a network in CIDR
//! notation, a host name or address optionally with `:PORT` (IPv6 as `[ADDR]:PORT`), which then
//! allows that port only. No proxy from the environment is used.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sextant_model::TenantId;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The `[egress]` section of the server's configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSettings {
    /// Hosts, addresses and networks every tenant's steps may reach although they are not
    /// public (`host`, `host:port`, `10.0.0.0/8`, `[::1]:8080`). Default none.
    pub allow: Vec<String>,
    /// More entries per tenant, added to `allow` for that tenant. Default none.
    pub tenants: BTreeMap<String, Vec<String>>,
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq)]
enum Allowed {
    Host {
        name: String,
        port: Option<u16>,
    },
    Net {
        net: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

/// The checked egress rules.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    allow: Vec<Allowed>,
    tenants: BTreeMap<TenantId, Vec<Allowed>>,
}

/// Why `ip` is not a public address, or `None` when it is.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "\"this network\""),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "protocol-assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

/// The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let octets = ip.octets();
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some(Ipv4Addr::new(
            octets[12], octets[13], octets[14], octets[15],
        ));
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip == Ipv6Addr::UNSPECIFIED {
        return Some("unspecified");
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    let v6 = |a: u16, b: u16| Ipv6Addr::new(a, b, 0, 0, 0, 0, 0, 0);
    let ranges: [(Ipv6Addr, u32, &str); 9] = [
        (Ipv6Addr::UNSPECIFIED, 96, "IPv4-compatible"),
        (v6(0x64, 0xff9b), 32, "local NAT64"),
        (v6(0x100, 0), 64, "discard"),
        (v6(0x2001, 0), 32, "Teredo"),
        (v6(0x2001, 0xdb8), 32, "documentation"),
        (v6(0xfc00, 0), 7, "unique-local"),
        (v6(0xfe80, 0), 10, "link-local"),
        (v6(0xfec0, 0), 10, "site-local"),
        (v6(0xff00, 0), 8, "multicast"),
    ];
    ranges
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

/// The host as compared: lower case, no brackets, no trailing dot.
fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An IPv4-mapped IPv6 address as IPv4, so one entry covers both forms.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Allowed {
    fn parse(entry: &str) -> Result<Allowed, String> {
        let bad = |why: &str| Err(format!("`{entry}`: {why}"));
        if let Some((addr, prefix)) = entry.split_once('/') {
            let Ok(net) = addr.parse::<IpAddr>() else {
                return bad("not a network (ADDRESS/PREFIX)");
            };
            let max = if net.is_ipv4() { 32 } else { 128 };
            return match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= max => Ok(Allowed::Net {
                    net: canonical(net),
                    prefix: if net.is_ipv6() && canonical(net).is_ipv4() {
                        prefix.saturating_sub(96)
                    } else {
                        prefix
                    },
                    port: None,
                }),
                _ => bad(&format!("the prefix must be 0 to {max}")),
            };
        }
        let single = |ip: IpAddr, port: Option<u16>| {
            let ip = canonical(ip);
            Allowed::Net {
                net: ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
                port,
            }
        };
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Ok(single(ip, None));
        }
        if let Ok(addr) = entry.parse::<SocketAddr>() {
            return Ok(single(addr.ip(), Some(addr.port())));
        }
        let (name, port) = match entry.rsplit_once(':') {
            Some((name, port)) => match port.parse::<u16>() {
                Ok(port) => (name, Some(port)),
                Err(_) => return bad("the port must be a number"),
            },
            None => (entry, None),
        };
        let name = normal_host(name);
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !name_ok {
            return bad("not a host name, address or network");
        }
        Ok(Allowed::Host { name, port })
    }

    fn allows(&self, host: &str, addr: SocketAddr) -> bool {
        match self {
            Allowed::Host { name, port } => name == host && port.is_none_or(|p| p == addr.port()),
            Allowed::Net { net, prefix, port } => {
                let ip = canonical(addr.ip());
                let inside = match (ip, net) {
                    (IpAddr::V4(ip), IpAddr::V4(net)) => {
                        in_v4(ip, net.octets(), u32::from(*prefix))
                    }
                    (IpAddr::V6(ip), IpAddr::V6(net)) => in_v6(ip, *net, u32::from(*prefix)),
                    _ => false,
                };
                inside && port.is_none_or(|p| p == addr.port())
            }
        }
    }
}

/// An address or a network (`ADDRESS/PREFIX`), IPv4-mapped addresses taken as IPv4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    net: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(entry: &str) -> Result<Network, String> {
        match Allowed::parse(entry)? {
            Allowed::Net {
                net,
                prefix,
                port: None,
            } => Ok(Network { net, prefix }),
            _ => Err(format!(
                "`{entry}`: not an address or network (ADDRESS/PREFIX)"
            )),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (canonical(ip), self.net) {
            (IpAddr::V4(ip), IpAddr::V4(net)) => in_v4(ip, net.octets(), u32::from(self.prefix)),
            (IpAddr::V6(ip), IpAddr::V6(net)) => in_v6(ip, net, u32::from(self.prefix)),
            _ => false,
        }
    }
}

fn parse_all(entries: &[String]) -> Result<Vec<Allowed>, String> {
    entries.iter().map(|e| Allowed::parse(e)).collect()
}

impl EgressPolicy {
    /// Checks the settings; the error names the entry.
    pub fn new(settings: &EgressSettings) -> Result<EgressPolicy, String> {
        let allow = parse_all(&settings.allow).map_err(|e| format!("`egress.allow`: {e}"))?;
        let mut tenants = BTreeMap::new();
        for (tenant, entries) in &settings.tenants {
            let id =
                TenantId::new(tenant).map_err(|e| format!("`egress.tenants`: `{tenant}`: {e}"))?;
            let parsed =
                parse_all(entries).map_err(|e| format!("`egress.tenants.{tenant}`: {e}"))?;
            tenants.insert(id, parsed);
        }
        Ok(EgressPolicy { allow, tenants })
    }

    /// Whether `tenant`'s step may connect to `addr`, reached as `host`; the error says why not
    /// and how to allow it.
    pub fn check(&self, tenant: &TenantId, host: &str, addr: SocketAddr) -> Result<(), String> {
        let Some(kind) = special_purpose(canonical(addr.ip())) else {
            return Ok(());
        };
        let host = normal_host(host);
        let listed = self
            .allow
            .iter()
            .chain(self.tenants.get(tenant).into_iter().flatten())
            .any(|entry| entry.allows(&host, addr));
        if listed {
            return Ok(());
        }
        Err(format!(
            "egress refused: `{host}` port {} is {}, a {kind} address; steps may reach it only \
             when the server's `[egress] allow` lists it",
            addr.port(),
            addr.ip()
        ))
    }

    /// An HTTP client for `tenant`'s steps: every address it connects to, redirects included,
    /// passes [`EgressPolicy::check`]; no proxy; responses of any status are answers.
    pub fn agent(self: &Arc<Self>, tenant: &TenantId, timeout: Duration) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .proxy(None)
            .build();
        ureq::Agent::with_parts(
            config,
            DefaultConnector::default(),
            CheckedResolver {
                policy: self.clone(),
                tenant: tenant.clone(),
            },
        )
    }
}

/// Resolves as the system does, then keeps only the addresses the policy allows.
#[derive(Debug)]
struct CheckedResolver {
    policy: Arc<EgressPolicy>,
    tenant: TenantId,
}

impl Resolver for CheckedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = DefaultResolver::default().resolve(uri, config, timeout)?;
        let host = uri.host().unwrap_or_default();
        let mut kept = self.empty();
        let mut refusal = None;
        for addr in resolved.iter() {
            match self.policy.check(&self.tenant, host, *addr) {
                Ok(()) => kept.push(*addr),
                Err(why) => refusal = Some(why),
            }
        }
        match refusal {
            Some(why) if kept.is_empty() => Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why,
            ))),
            _ => Ok(kept),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No packet is sent here: these test the address check alone.
    #[test]
    fn special_purpose_addresses_are_named_and_public_ones_pass() {
        let check = |ip: &str, expected: Option<&str>| {
            let got = special_purpose(ip.parse().unwrap());
            assert_eq!(got, expected, "{ip}");
        };
        for (ip, kind) in [
            ("169.254.169.254", "link-local"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.254", "private"),
            ("192.168.1.1", "private"),
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("0.0.0.0", "\"this network\""),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            // IPv6 forms of refused IPv4 addresses are refused as those.
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::a00:1", "private"),
            ("2002:c0a8:101::1", "private"),
            ("::127.0.0.1", "IPv4-compatible"),
        ] {
            check(ip, Some(kind));
        }
        for ip in [
            "172.15.255.255",
            "172.32.0.1",
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            check(ip, None);
        }
    }

    fn policy(allow: &[&str], tenant: &[&str]) -> EgressPolicy {
        EgressPolicy::new(&EgressSettings {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            tenants: BTreeMap::from([(
                "ops".to_owned(),
                tenant.iter().map(|s| s.to_string()).collect(),
            )]),
        })
        .unwrap()
    }

    #[test]
    fn the_allow_list_opens_hosts_addresses_networks_and_ports() {
        let ops = TenantId::new("ops").unwrap();
        let other = TenantId::new("other").unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let none = policy(&[], &[]);
        assert!(
            none.check(&ops, "example.com", addr("93.184.216.34:443"))
                .is_ok()
        );
        let err = none
            .check(&ops, "localhost", addr("127.0.0.1:9"))
            .unwrap_err();
        assert!(
            err.contains("`localhost` port 9 is 127.0.0.1, a loopback address"),
            "{err}"
        );
        assert!(none.check(&ops, "[::1]", addr("[::1]:80")).is_err());

        let some = policy(
            &[
                "127.0.0.1:7001",
                "10.20.0.0/16",
                "Hooks.Internal.",
                "[::1]:8080",
            ],
            &["192.168.7.12"],
        );
        assert!(
            some.check(&ops, "127.0.0.1", addr("127.0.0.1:7001"))
                .is_ok()
        );
        assert!(
            some.check(&ops, "127.0.0.1", addr("127.0.0.1:7002"))
                .is_err(),
            "another port of an allowed address"
        );
        assert!(some.check(&ops, "x", addr("10.20.3.4:1")).is_ok());
        assert!(some.check(&ops, "x", addr("10.21.0.1:1")).is_err());
        assert!(
            some.check(&ops, "hooks.internal", addr("10.99.0.1:443"))
                .is_ok()
        );
        assert!(
            some.check(&ops, "evil.internal", addr("10.99.0.1:443"))
                .is_err()
        );
        assert!(some.check(&ops, "[::1]", addr("[::1]:8080")).is_ok());
        assert!(some.check(&ops, "x", addr("[::ffff:10.20.0.9]:1")).is_ok());
        assert!(some.check(&ops, "x", addr("192.168.7.12:25")).is_ok());
        assert!(
            some.check(&other, "x", addr("192.168.7.12:25")).is_err(),
            "a tenant's entries are its own"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, why) in [
            ("10.0.0.0/33", "prefix must be 0 to 32"),
            ("fd00::/129", "prefix must be 0 to 128"),
            ("host:http", "port must be a number"),
            ("a b", "not a host name"),
            ("nothost/8", "not a network"),
        ] {
            let err = EgressPolicy::new(&EgressSettings {
                allow: vec![entry.to_owned()],
                ..EgressSettings::default()
            })
            .unwrap_err();
            assert!(err.contains(why) && err.contains(entry), "{entry}: {err}");
        }
    }
}
