//! Which addresses a webhook delivery may connect to.
//!
//! Endpoint URLs are chosen by customers, so without a guard a customer could
//! point one at the delivery host's loopback, the cloud metadata service or
//! the internal network and have Herald make requests there (SSRF). The
//! transport calls [`PrivateTargets::permits`] on every resolved address and on
//! IP literals; the rules live here, free of I/O, so they can be tested
//! exhaustively. IPv6 spellings that carry an IPv4 address (mapped,
//! compatible, NAT64, 6to4) are judged by the IPv4 address they carry, so
//! `::ffff:127.0.0.1` is no way around the IPv4 rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetPolicyError {
    #[error(
        "`{entry}` in the private-target setting is neither true/false nor an IP address or CIDR (e.g. 10.1.0.0/16)"
    )]
    InvalidEntry { entry: String },
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

/// IPv4 networks (base, prefix length) a webhook must not reach by default.
const RESTRICTED_V4: &[(u32, u8)] = &[
    (v4(0, 0, 0, 0), 8),       // "this network", includes the unspecified address
    (v4(10, 0, 0, 0), 8),      // private
    (v4(100, 64, 0, 0), 10),   // shared address space (carrier-grade NAT)
    (v4(127, 0, 0, 0), 8),     // loopback
    (v4(169, 254, 0, 0), 16),  // link-local, includes cloud metadata 169.254.169.254
    (v4(172, 16, 0, 0), 12),   // private
    (v4(192, 0, 0, 0), 24),    // IETF protocol assignments
    (v4(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (v4(192, 168, 0, 0), 16),  // private
    (v4(198, 18, 0, 0), 15),   // benchmarking
    (v4(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (v4(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (v4(224, 0, 0, 0), 4),     // multicast
    (v4(240, 0, 0, 0), 4),     // reserved, includes broadcast 255.255.255.255
];

/// IPv6 networks restricted outright (the ones carrying IPv4 are handled by
/// [`embedded_v4`]).
const RESTRICTED_V6: &[(u128, u8)] = &[
    (0, 128),                     // unspecified ::
    (1, 128),                     // loopback ::1
    (0x0064_ff9b_0001 << 80, 48), // local-use NAT64 (RFC 8215)
    (0x0100 << 112, 64),          // discard-only
    (0x2001_0db8 << 96, 32),      // documentation
    (0x3fff << 112, 20),          // documentation (RFC 9637)
    (0xfc00 << 112, 7),           // unique local (private)
    (0xfe80 << 112, 10),          // link-local
    (0xfec0 << 112, 10),          // site-local (deprecated, still private)
    (0xff00 << 112, 8),           // multicast
];

fn in_v4(addr: u32, (base, len): (u32, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    addr & mask == base & mask
}

fn in_v6(addr: u128, (base, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    addr & mask == base & mask
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms
/// that carry one: IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated
/// `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`,
/// or 6to4 `2002:aabb:ccdd::/48`.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let upper96 = bits >> 32;
    match upper96 {
        0xffff | 0xffff_0000 | 0x0064_ff9b_0000_0000_0000_0000 => Some(low32),
        // `::` and `::1` are IPv6 addresses in their own right; the rest of ::/96
        // is the deprecated IPv4-compatible form.
        0 if bits > 1 => Some(low32),
        _ if bits >> 112 == 0x2002 => Some(Ipv4Addr::from((bits >> 80) as u32)),
        _ => None,
    }
}

/// The address to match against allow lists: IPv4 for the IPv6 forms that
/// carry one, the address itself otherwise.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// True for addresses a webhook must not reach by default: loopback, private,
/// link-local, multicast, unspecified, broadcast, `0.0.0.0/8`, shared/CGNAT,
/// `192.0.0.0/24`, benchmarking, documentation and reserved ranges, IPv6
/// unique-local and site-local, and the IPv6 forms of any restricted IPv4
/// address.
pub fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            RESTRICTED_V4.iter().any(|&net| in_v4(bits, net))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if RESTRICTED_V6.iter().any(|&net| in_v6(bits, net)) {
                return true;
            }
            embedded_v4(v6).is_some_and(|v4| is_restricted(IpAddr::V4(v4)))
        }
    }
}

/// Whether deliveries may go to restricted addresses (`--allow-private-targets`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrivateTargets {
    /// Refuse every restricted address (the default).
    #[default]
    Deny,
    /// Allow everything, e.g. for local development against `localhost`.
    AllowAll,
    /// Allow restricted addresses only inside these networks.
    Allow(Vec<IpNet>),
}

impl PrivateTargets {
    /// `""`, `false`/`0`/`off`/`no` => `Deny`; `true`/`1`/`on`/`yes` =>
    /// `AllowAll`; otherwise a comma-separated list of CIDRs or single
    /// addresses => `Allow`. Case and surrounding spaces do not matter.
    pub fn parse(s: &str) -> Result<Self, TargetPolicyError> {
        let trimmed = s.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "off" | "no" => return Ok(Self::Deny),
            "true" | "1" | "on" | "yes" => return Ok(Self::AllowAll),
            _ => {}
        }
        let nets = trimmed
            .split(',')
            .map(str::trim)
            // Tolerate a trailing comma or doubled separators.
            .filter(|entry| !entry.is_empty())
            .map(parse_net)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if nets.is_empty() { Self::Deny } else { Self::Allow(nets) })
    }

    /// Whether a delivery may connect to `ip`: unrestricted addresses always,
    /// restricted ones only when this policy allows them.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_restricted(ip) {
            return true;
        }
        match self {
            Self::Deny => false,
            Self::AllowAll => true,
            Self::Allow(nets) => {
                let plain = unmapped(ip);
                nets.iter().any(|net| net.contains(&plain) || net.contains(&ip))
            }
        }
    }
}

fn parse_net(entry: &str) -> Result<IpNet, TargetPolicyError> {
    if let Ok(net) = entry.parse::<IpNet>() {
        // `10.1.2.3/16` means the network 10.1.0.0/16.
        return Ok(net.trunc());
    }
    entry
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| TargetPolicyError::InvalidEntry {
            entry: entry.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification_table() {
        let restricted = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "64:ff9b:1::a00:1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0:192.168.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::192.168.1.1",
            "2002:7f00:1::1",
            "2002:a00:1::",
        ];
        let open = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fbff::1",
            "fe00::1",
        ];
        for a in restricted {
            assert!(is_restricted(ip(a)), "{a} should be restricted");
        }
        for a in open {
            assert!(!is_restricted(ip(a)), "{a} should be open");
        }
    }

    #[test]
    fn embedded_forms() {
        let lo = Some(Ipv4Addr::LOCALHOST);
        assert_eq!(embedded_v4("::ffff:127.0.0.1".parse().unwrap()), lo);
        assert_eq!(embedded_v4("::127.0.0.1".parse().unwrap()), lo);
        assert_eq!(embedded_v4("64:ff9b::127.0.0.1".parse().unwrap()), lo);
        assert_eq!(embedded_v4("2002:7f00:1:abcd::5".parse().unwrap()), lo);
        assert_eq!(embedded_v4(Ipv6Addr::UNSPECIFIED), None);
        assert_eq!(embedded_v4(Ipv6Addr::LOCALHOST), None);
        assert_eq!(embedded_v4("2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn parse_policy() {
        for off in ["", " ", "false", "FALSE", "0", "off", "No"] {
            assert_eq!(PrivateTargets::parse(off).unwrap(), PrivateTargets::Deny, "{off:?}");
        }
        for on in ["true", "True", "1", "on", "YES", " yes "] {
            assert_eq!(PrivateTargets::parse(on).unwrap(), PrivateTargets::AllowAll, "{on:?}");
        }
        let PrivateTargets::Allow(nets) = PrivateTargets::parse("127.0.0.0/8, 10.1.2.3/16,::1,fd00::/8,").unwrap()
        else {
            panic!("list")
        };
        let expected: Vec<IpNet> = ["127.0.0.0/8", "10.1.0.0/16", "::1/128", "fd00::/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nets, expected);

        let err = PrivateTargets::parse("10.0.0.0/8,bogus").unwrap_err();
        assert_eq!(err, TargetPolicyError::InvalidEntry { entry: "bogus".into() });
        assert!(err.to_string().contains("`bogus`"));
        assert!(PrivateTargets::parse("10.0.0.0/33").is_err());
        assert!(PrivateTargets::parse("maybe").is_err());
    }

    #[test]
    fn permits_follows_policy() {
        let public = ip("93.184.216.34");
        let lo = ip("127.0.0.1");
        assert!(PrivateTargets::Deny.permits(public));
        assert!(!PrivateTargets::Deny.permits(lo));
        assert!(!PrivateTargets::default().permits(ip("::1")));
        assert!(PrivateTargets::AllowAll.permits(lo));
        assert!(PrivateTargets::AllowAll.permits(ip("fe80::1")));

        let allow = PrivateTargets::parse("127.0.0.0/8,10.1.0.0/16,fd00::/8").unwrap();
        assert!(allow.permits(public));
        assert!(allow.permits(lo));
        assert!(allow.permits(ip("127.9.9.9")));
        assert!(allow.permits(ip("10.1.200.3")));
        assert!(!allow.permits(ip("10.2.0.1")));
        assert!(!allow.permits(ip("192.168.1.1")));
        assert!(!allow.permits(ip("169.254.169.254")));
        assert!(allow.permits(ip("fd00::5")));
        assert!(!allow.permits(ip("fc00::5")));
        assert!(!allow.permits(ip("::1")));
        // IPv6 spellings of an allowed IPv4 address are allowed too, and only those.
        assert!(allow.permits(ip("::ffff:127.0.0.1")));
        assert!(allow.permits(ip("64:ff9b::a01:1")));
        assert!(!allow.permits(ip("::ffff:10.2.0.1")));

        let single = PrivateTargets::parse("192.168.1.10").unwrap();
        assert!(single.permits(ip("192.168.1.10")));
        assert!(!single.permits(ip("192.168.1.11")));
    }

    proptest! {
        #[test]
        fn ten_slash_eight_is_restricted(host in 0u32..(1 << 24)) {
            let addr = Ipv4Addr::from((10 << 24) | host);
            prop_assert!(is_restricted(IpAddr::V4(addr)));
            prop_assert!(!PrivateTargets::Deny.permits(IpAddr::V4(addr)));
        }

        #[test]
        fn mapped_matches_ipv4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let expected = is_restricted(IpAddr::V4(v4));
            prop_assert_eq!(is_restricted(IpAddr::V6(v4.to_ipv6_mapped())), expected);
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(bits));
            prop_assert_eq!(is_restricted(IpAddr::V6(nat64)), expected);
        }

        #[test]
        fn allow_list_permits_exactly_its_nets(bits in any::<u32>()) {
            let policy = PrivateTargets::parse("10.0.0.0/8,192.168.0.0/16").unwrap();
            let addr = Ipv4Addr::from(bits);
            let [a, b, ..] = addr.octets();
            let inside = a == 10 || (a == 192 && b == 168);
            let expected = inside || !is_restricted(IpAddr::V4(addr));
            prop_assert_eq!(policy.permits(IpAddr::V4(addr)), expected);
            prop_assert_eq!(policy.permits(IpAddr::V6(addr.to_ipv6_mapped())), expected);
        }
    }
}
