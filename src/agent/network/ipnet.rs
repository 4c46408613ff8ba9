//! `Ipv4Net`: an IPv4 address with a prefix length, the one piece of address
//! arithmetic pod networking needs (a node's /24 out of the cluster's /16, the
//! gateway as the subnet's first host, "is this next hop on a connected link").

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 address and a prefix length, written `a.b.c.d/n`.
///
/// `addr` is kept as given: `10.77.0.11/24` names an interface address and its
/// subnet, `10.88.3.0/24` a network. [`Ipv4Net::network`] clears the host
/// bits; every comparison of membership ([`Ipv4Net::contains`]) uses them
/// cleared, but equality compares `addr` as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// Why a string is not `a.b.c.d/n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an IPv4 network like 10.88.0.0/16: {reason}")]
pub struct ParseIpv4NetError {
    pub input: String,
    pub reason: String,
}

impl Ipv4Net {
    /// A constant network (`prefix` must be at most 32).
    pub const fn from_octets(octets: [u8; 4], prefix: u8) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]),
            prefix,
        }
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network().addr) || other.contains(self.network().addr)
    }

    /// `None` when `prefix` is over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then_some(Ipv4Net { addr, prefix })
    }

    /// The prefix, clamped: the fields are public, so a hand-built value may
    /// carry a prefix over 32; treat it as a host route rather than panic on
    /// a shift overflow.
    fn bits(&self) -> u8 {
        self.prefix.min(32)
    }

    fn mask(&self) -> u32 {
        match self.bits() {
            0 => 0,
            n => u32::MAX << (32 - n),
        }
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The same prefix with the host bits cleared (`10.88.3.7/24` → `10.88.3.0/24`).
    pub fn network(&self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix: self.bits(),
        }
    }

    /// How many addresses the prefix spans (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.bits()))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether `other` lies wholly inside this network.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.bits() >= self.bits() && self.contains(other.addr)
    }

    /// The `n`-th address of the network, counting the network address as 0
    /// (so `host(1)` is the conventional gateway); `None` past the end.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        (u64::from(n) < self.size()).then(|| Ipv4Addr::from(u32::from(self.network().addr) + n))
    }

    /// The `index`-th subnet with `prefix` inside this network, in address
    /// order (`10.88.0.0/16`.subnet(24, 3) = `10.88.3.0/24`): how a node's pod
    /// subnet is carved out of the cluster CIDR. `None` when `prefix` is
    /// shorter than this network's or over 32, or `index` is past the last.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Net> {
        if prefix < self.bits() || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.bits());
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        // Fits in u32: index < count, so the offset stays inside this network.
        let offset = (u64::from(index) * step) as u32;
        Some(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.network().addr) + offset),
            prefix,
        })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = ParseIpv4NetError;

    fn from_str(s: &str) -> Result<Ipv4Net, ParseIpv4NetError> {
        let fail = |reason: &str| ParseIpv4NetError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(|| fail("no /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| fail("bad address"))?;
        // u8::from_str accepts a leading '+'; a prefix is plain digits.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("the prefix is not a number"));
        }
        let prefix: u8 = prefix.parse().map_err(|_| fail("the prefix is over 32"))?;
        Ipv4Net::new(addr, prefix).ok_or_else(|| fail("the prefix is over 32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let n = net("10.88.3.0/24");
        assert_eq!(n.addr, Ipv4Addr::new(10, 88, 3, 0));
        assert_eq!(n.prefix, 24);
        assert_eq!(n.to_string(), "10.88.3.0/24");
        assert_eq!(net(" 10.77.0.11/24 ").to_string(), "10.77.0.11/24");
        assert_eq!(net("0.0.0.0/0").size(), 1 << 32);
        for bad in [
            "10.88.3.0",
            "10.88.3.0/",
            "10.88.3.0/33",
            "10.88.3.0/+8",
            "10.88.3/24",
            "10.88.3.0/2a",
            "/24",
            "10.88.3.0/256",
        ] {
            let err = bad.parse::<Ipv4Net>().unwrap_err();
            assert!(err.to_string().contains(bad.trim()), "{err}");
        }
    }

    #[test]
    fn contains_network_and_hosts() {
        let n = net("10.88.3.7/24");
        assert_eq!(n.network(), net("10.88.3.0/24"));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(n.contains(Ipv4Addr::new(10, 88, 3, 255)));
        assert!(n.contains(Ipv4Addr::new(10, 88, 3, 0)));
        assert!(!n.contains(Ipv4Addr::new(10, 88, 4, 1)));
        assert!(net("0.0.0.0/0").contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(net("10.1.1.1/32").contains(Ipv4Addr::new(10, 1, 1, 1)));
        assert!(!net("10.1.1.1/32").contains(Ipv4Addr::new(10, 1, 1, 2)));
        assert_eq!(n.host(1), Some(Ipv4Addr::new(10, 88, 3, 1)));
        assert_eq!(n.host(255), Some(Ipv4Addr::new(10, 88, 3, 255)));
        assert_eq!(n.host(256), None);
        assert!(net("10.88.0.0/16").contains_net(&net("10.88.3.0/24")));
        assert!(!net("10.88.3.0/24").contains_net(&net("10.88.0.0/16")));
        assert!(!net("10.88.0.0/16").contains_net(&net("10.89.3.0/24")));
        // A hand-built prefix over 32 behaves as /32 instead of overflowing.
        let odd = Ipv4Net {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 40,
        };
        assert!(odd.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(odd.size(), 1);
    }

    #[test]
    fn allocates_subnets_in_order() {
        let cluster = net("10.88.0.0/16");
        assert_eq!(cluster.subnet(24, 0), Some(net("10.88.0.0/24")));
        assert_eq!(cluster.subnet(24, 3), Some(net("10.88.3.0/24")));
        assert_eq!(cluster.subnet(24, 255), Some(net("10.88.255.0/24")));
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(15, 0), None);
        assert_eq!(cluster.subnet(33, 0), None);
        assert_eq!(cluster.subnet(16, 0), Some(cluster));
        assert_eq!(cluster.subnet(16, 1), None);
        assert_eq!(cluster.subnet(26, 5), Some(net("10.88.1.64/26")));
        // Host bits in the parent are ignored.
        assert_eq!(net("10.88.7.9/16").subnet(24, 1), Some(net("10.88.1.0/24")));
        // The whole space, and the last /32 of it.
        assert_eq!(
            net("0.0.0.0/0").subnet(32, u32::MAX),
            Some(net("255.255.255.255/32"))
        );
        assert_eq!(net("0.0.0.0/0").subnet(1, 1), Some(net("128.0.0.0/1")));
        // Distinct indexes never overlap.
        let a = cluster.subnet(24, 10).unwrap();
        let b = cluster.subnet(24, 11).unwrap();
        assert!(!a.contains_net(&b) && !b.contains_net(&a));
    }
}
