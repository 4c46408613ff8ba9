//! The node's host-gw routes: for every other node, "that node's pod subnet
//! via that node's address", in the main routing table of the current
//! network namespace. Pods on one L2 segment reach each other with nothing
//! but these routes (the nodes forward; bridge's `isGateway` turns
//! forwarding on).
//!
//! Spoken over a NETLINK_ROUTE socket by hand (nix's socket calls and a few
//! dozen lines of message layout), so a node needs no `ip` binary and the
//! agent no netlink crate. Every route flotilla adds carries
//! [`ROUTE_PROTOCOL`], which is how [`sync_routes`] finds its own and never
//! touches anyone else's.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt,
};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{Ipv4Net, NetworkError};

/// The `rtm_protocol` flotilla's routes carry. The kernel keeps this byte
/// with the route without interpreting it (values above RTPROT_STATIC, 4,
/// are for routing daemons), so it marks which routes are ours: a sync
/// lists routes with this value, deletes only those, and can never remove
/// a route an operator or another daemon made. 0x66 ('f') is not among the
/// values in /etc/iproute2/rt_protos (bird 12, zebra 11, dhcp 16, babel 42,
/// bgp 186, …).
pub const ROUTE_PROTOCOL: u8 = 0x66;

/// "Pods in `destination` are reached via `via`."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: Ipv4Net,
    pub via: Ipv4Addr,
}

impl std::fmt::Display for HostRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.destination, self.via)
    }
}

/// Makes the current network namespace's main table hold exactly `desired`
/// among routes with [`ROUTE_PROTOCOL`]: adds or replaces each
/// (NLM_F_CREATE|NLM_F_REPLACE), deletes ours that are not desired, and
/// leaves every other route alone. A desired destination that another
/// route (not ours) already claims with the same metric is skipped rather
/// than replaced, and reported. Does as much as it can, then returns every
/// failure in one error.
pub fn sync_routes(desired: &[HostRoute]) -> Result<(), NetworkError> {
    let mut sock = Netlink::open()?;
    let table = sock.dump_main_table()?;
    let mut errors = Vec::new();

    let mut wanted: Vec<HostRoute> = Vec::new();
    for route in desired {
        let route = HostRoute {
            destination: route.destination.network(),
            via: route.via,
        };
        match wanted.iter().find(|w| w.destination == route.destination) {
            Some(w) if w.via != route.via => errors.push(format!(
                "{} is wanted via both {} and {}; keeping the first",
                route.destination, w.via, route.via
            )),
            Some(_) => {}
            None => wanted.push(route),
        }
    }

    for route in &wanted {
        let same_dst = |r: &&Route| r.destination == route.destination && r.tos == 0;
        if table
            .iter()
            .filter(same_dst)
            .any(|r| r.protocol == ROUTE_PROTOCOL && r.gateway == Some(route.via))
        {
            continue;
        }
        if let Some(other) = table
            .iter()
            .filter(same_dst)
            .find(|r| r.protocol != ROUTE_PROTOCOL && r.priority == 0)
        {
            // NLM_F_REPLACE would take it over: IPv4 replaces the first route
            // with the same destination, TOS and metric, whoever made it.
            errors.push(format!(
                "not adding {route}: the main table already has a route to {} (protocol {}) \
                 that flotilla did not make; remove it or change the pod CIDR",
                other.destination, other.protocol
            ));
            continue;
        }
        debug!(%route, "adding host-gw route");
        if let Err(e) = sock.change(libc::RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, route, 0) {
            errors.push(format!("adding {route}: {}", route_errno(e)));
        }
    }

    for route in table.iter().filter(|r| r.protocol == ROUTE_PROTOCOL) {
        if wanted.iter().any(|w| w.destination == route.destination) {
            continue;
        }
        let Some(via) = route.gateway else { continue };
        let stale = HostRoute {
            destination: route.destination,
            via,
        };
        debug!(route = %stale, "removing host-gw route");
        match sock.change(libc::RTM_DELROUTE, 0, &stale, route.priority) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => errors.push(format!("removing {stale}: {e}")),
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(NetworkError::Netlink(errors.join("; ")))
    }
}

/// Deletes the network device `name` (the pods' bridge, when the node
/// leaves its cluster): its ports go with it. `Ok(false)` when there is no
/// such device.
pub fn delete_link(name: &str) -> Result<bool, NetworkError> {
    const IFLA_IFNAME: u16 = 3;
    let mut sock = Netlink::open()?;
    // struct ifinfomsg: family, padding, type, index (0: by name), flags, change.
    let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    body.extend_from_slice(&0i32.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    push_attr(&mut body, IFLA_IFNAME, &ifname);
    let deleted = sock
        .send(libc::RTM_DELLINK, NLM_F_ACK, &body)
        .and_then(|seq| sock.receive(seq, |_, _, _| {}));
    match deleted {
        Ok(()) => Ok(true),
        Err(Errno::ENODEV) => Ok(false),
        Err(e) => Err(NetworkError::Netlink(format!(
            "deleting device {name}: {e}"
        ))),
    }
}

fn route_errno(e: Errno) -> String {
    match e {
        Errno::ENETUNREACH => format!(
            "{e}: the next hop is not on a subnet directly connected to this node \
             (host-gw needs every node on one L2 segment)"
        ),
        e => e.to_string(),
    }
}

/// flotilla's routes in the main table (those with [`ROUTE_PROTOCOL`]), sorted.
pub fn list_routes() -> Result<Vec<HostRoute>, NetworkError> {
    let mut routes: Vec<HostRoute> = Netlink::open()?
        .dump_main_table()?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .filter_map(|r| {
            Some(HostRoute {
                destination: r.destination,
                via: r.gateway?,
            })
        })
        .collect();
    routes.sort();
    Ok(routes)
}

/// The node's IPv4 addresses with their prefix lengths, loopback excluded,
/// for choosing next hops. Empty (and logged) if they cannot be read.
pub fn node_addresses() -> Vec<Ipv4Net> {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs,
        Err(e) => {
            warn!(error = %e, "reading the node's addresses");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for ifa in addrs {
        if ifa
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        let ip = addr.ip();
        if ip.is_loopback() {
            continue;
        }
        let prefix = ifa
            .netmask
            .as_ref()
            .and_then(|m| m.as_sockaddr_in())
            .map_or(32, |m| u32::from(m.ip()).leading_ones() as u8);
        let net = Ipv4Net { addr: ip, prefix };
        if !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

/// Of `candidates` (another node's addresses), the first inside a subnet
/// directly connected to this node (`local`), if any: host-gw only works
/// between nodes on one L2 segment. This node's own addresses, and a
/// subnet's network and broadcast addresses, are never next hops.
pub fn next_hop(local: &[Ipv4Net], candidates: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    candidates.iter().copied().find(|&c| {
        !local.iter().any(|l| l.addr == c)
            && local.iter().any(|l| {
                let usable = match l.prefix {
                    32 => false,
                    31 => true,
                    _ => {
                        let net = l.network();
                        Some(c) != net.host(0) && Some(c) != net.host((net.size() - 1) as u32)
                    }
                };
                usable && l.contains(c)
            })
    })
}

// Message layout, from <linux/netlink.h> and <linux/rtnetlink.h>.
const NLMSG_HDRLEN: usize = 16;
const RTMSG_LEN: usize = 12;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
const NLM_F_REPLACE: u16 = libc::NLM_F_REPLACE as u16;
/// <linux/netlink.h>: the dump was interrupted by a change (not in every libc).
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const RTA_DST: u16 = libc::RTA_DST;
const RTA_GATEWAY: u16 = libc::RTA_GATEWAY;
const RTA_PRIORITY: u16 = libc::RTA_PRIORITY;
const RTA_TABLE: u16 = libc::RTA_TABLE;
const RT_TABLE_MAIN: u8 = libc::RT_TABLE_MAIN;
const RT_SCOPE_UNIVERSE: u8 = libc::RT_SCOPE_UNIVERSE;
/// "Any scope" when deleting.
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = libc::RTN_UNICAST;

/// One IPv4 route of the main table, as much of it as a sync needs.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    destination: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    protocol: u8,
    tos: u8,
    priority: u32,
}

struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn nl_err(what: &str) -> impl FnOnce(Errno) -> NetworkError + '_ {
    move |e| NetworkError::Netlink(format!("{what}: {e}"))
}

impl Netlink {
    /// A NETLINK_ROUTE socket in the calling thread's network namespace.
    fn open() -> Result<Netlink, NetworkError> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(nl_err("opening a NETLINK_ROUTE socket"))?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(nl_err("binding the netlink socket"))?;
        // The kernel always answers; a bound on waiting keeps a kernel bug
        // from hanging the agent's route sync forever.
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(10, 0))
            .map_err(nl_err("setting the netlink receive timeout"))?;
        Ok(Netlink { fd, seq: 0 })
    }

    fn send(&mut self, kind: u16, flags: u16, body: &[u8]) -> Result<u32, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // the kernel fills in our port id
        msg.extend_from_slice(body);
        socket::sendto(
            self.fd.as_raw_fd(),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        Ok(self.seq)
    }

    /// Reads replies to `seq`, handing each message (type, flags, payload)
    /// to `each`, until the ACK or the end of a dump.
    fn receive(&mut self, seq: u32, mut each: impl FnMut(u16, u16, &[u8])) -> Result<(), Errno> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let len = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut rest = &buf[..len];
            while rest.len() >= NLMSG_HDRLEN {
                let msg_len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                let flags = u16::from_ne_bytes(rest[6..8].try_into().unwrap());
                let msg_seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                if msg_len < NLMSG_HDRLEN || msg_len > rest.len() {
                    return Err(Errno::EBADMSG);
                }
                let payload = &rest[NLMSG_HDRLEN..msg_len];
                rest = &rest[align(msg_len).min(rest.len())..];
                if msg_seq != seq {
                    continue; // a late reply to an earlier request
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .ok_or(Errno::EBADMSG)?;
                        return match code {
                            0 => Ok(()),
                            code => Err(Errno::from_raw(-code)),
                        };
                    }
                    _ => each(kind, flags, payload),
                }
            }
        }
    }

    /// Every IPv4 route of the main table.
    fn dump_main_table(&mut self) -> Result<Vec<Route>, NetworkError> {
        // A dump the kernel marks interrupted (the table changed under it)
        // is retried; a few tries are plenty for a table this small.
        for _ in 0..5 {
            let body = rtmsg(0, 0, 0, 0, 0, 0);
            let seq = self
                .send(libc::RTM_GETROUTE, NLM_F_DUMP, &body)
                .map_err(nl_err("asking for the routing table"))?;
            let mut routes = Vec::new();
            let mut interrupted = false;
            self.receive(seq, |kind, flags, payload| {
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                if kind == libc::RTM_NEWROUTE
                    && let Some(route) = parse_route(payload)
                {
                    routes.push(route);
                }
            })
            .map_err(nl_err("reading the routing table"))?;
            if !interrupted {
                return Ok(routes);
            }
        }
        Err(NetworkError::Netlink(
            "the routing table kept changing while being read; try again".into(),
        ))
    }

    /// Adds, replaces or deletes one of our routes and waits for the ACK.
    fn change(
        &mut self,
        kind: u16,
        flags: u16,
        route: &HostRoute,
        priority: u32,
    ) -> Result<(), Errno> {
        let (scope, rtype) = if kind == libc::RTM_DELROUTE {
            (RT_SCOPE_NOWHERE, 0) // match any scope and type; the protocol picks ours
        } else {
            (RT_SCOPE_UNIVERSE, RTN_UNICAST)
        };
        let mut body = rtmsg(
            route.destination.prefix,
            RT_TABLE_MAIN,
            ROUTE_PROTOCOL,
            scope,
            rtype,
            0,
        );
        push_attr(
            &mut body,
            RTA_DST,
            &route.destination.network().addr.octets(),
        );
        push_attr(&mut body, RTA_GATEWAY, &route.via.octets());
        if priority != 0 {
            push_attr(&mut body, RTA_PRIORITY, &priority.to_ne_bytes());
        }
        let seq = self.send(kind, flags | NLM_F_ACK, &body)?;
        self.receive(seq, |_, _, _| {})
    }
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
/// type, then a u32 of flags.
fn rtmsg(dst_len: u8, table: u8, protocol: u8, scope: u8, rtype: u8, flags: u32) -> Vec<u8> {
    let mut body = vec![
        libc::AF_INET as u8,
        dst_len,
        0,
        0,
        table,
        protocol,
        scope,
        rtype,
    ];
    body.extend_from_slice(&flags.to_ne_bytes());
    body
}

/// Appends one struct rtattr (u16 length, u16 type, value, padding to 4).
fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (align(len) - len), 0);
}

/// An RTM_NEWROUTE payload, if it is an IPv4 route of the main table.
fn parse_route(payload: &[u8]) -> Option<Route> {
    let header = payload.get(..RTMSG_LEN)?;
    if header[0] != libc::AF_INET as u8 {
        return None;
    }
    let (dst_len, tos, mut table, protocol) =
        (header[1], header[3], u32::from(header[4]), header[5]);
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut priority = 0;
    let mut rest = &payload[RTMSG_LEN..];
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if len < 4 || len > rest.len() {
            break;
        }
        let value = &rest[4..len];
        let v4 = || <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from);
        let v32 = || <[u8; 4]>::try_from(value).ok().map(u32::from_ne_bytes);
        match kind {
            RTA_DST => destination = v4()?,
            RTA_GATEWAY => gateway = v4(),
            RTA_PRIORITY => priority = v32().unwrap_or(0),
            // Tables above 255 only fit here; rtm_table then says 252.
            RTA_TABLE => table = v32().unwrap_or(table),
            _ => {}
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    (table == u32::from(RT_TABLE_MAIN)).then_some(Route {
        destination: Ipv4Net::new(destination, dst_len)?,
        gateway,
        protocol,
        tos,
        priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn next_hop_is_on_a_connected_subnet() {
        let local = [
            net("10.77.0.11/24"),
            net("192.168.1.5/32"),
            net("172.16.0.1/31"),
        ];
        // The first candidate on a connected subnet wins.
        assert_eq!(
            next_hop(
                &local,
                &[ip("203.0.113.9"), ip("10.77.0.12"), ip("10.77.0.13")]
            ),
            Some(ip("10.77.0.12"))
        );
        // Our own address, the network and broadcast addresses are not hops.
        assert_eq!(
            next_hop(
                &local,
                &[ip("10.77.0.11"), ip("10.77.0.0"), ip("10.77.0.255")]
            ),
            None
        );
        // A /32 connects nothing; a /31 connects its peer.
        assert_eq!(next_hop(&local, &[ip("192.168.1.6")]), None);
        assert_eq!(
            next_hop(&local, &[ip("172.16.0.0")]),
            Some(ip("172.16.0.0"))
        );
        assert_eq!(next_hop(&local, &[]), None);
        assert_eq!(next_hop(&[], &[ip("10.77.0.12")]), None);
    }

    #[test]
    fn route_messages_round_trip() {
        let mut body = rtmsg(
            24,
            RT_TABLE_MAIN,
            ROUTE_PROTOCOL,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            0,
        );
        push_attr(&mut body, RTA_DST, &[10, 88, 4, 0]);
        push_attr(&mut body, RTA_GATEWAY, &[10, 77, 0, 12]);
        push_attr(&mut body, RTA_PRIORITY, &7u32.to_ne_bytes());
        // An attribute whose value needs padding, which parsing must skip.
        push_attr(&mut body, 99, &[1, 2, 3]);
        push_attr(&mut body, RTA_TABLE, &254u32.to_ne_bytes());
        assert_eq!(body.len() % 4, 0);
        assert_eq!(
            parse_route(&body),
            Some(Route {
                destination: net("10.88.4.0/24"),
                gateway: Some(ip("10.77.0.12")),
                protocol: ROUTE_PROTOCOL,
                tos: 0,
                priority: 7,
            })
        );
        // Another table, another family, a truncated message: not ours to see.
        let mut other = rtmsg(24, 100, ROUTE_PROTOCOL, 0, RTN_UNICAST, 0);
        push_attr(&mut other, RTA_DST, &[10, 88, 4, 0]);
        assert_eq!(parse_route(&other), None);
        let mut v6 = rtmsg(64, RT_TABLE_MAIN, 0, 0, RTN_UNICAST, 0);
        v6[0] = libc::AF_INET6 as u8;
        assert_eq!(parse_route(&v6), None);
        assert_eq!(parse_route(&body[..5]), None);
        // The default route has no RTA_DST.
        let default = rtmsg(0, RT_TABLE_MAIN, 3, 0, RTN_UNICAST, 0);
        assert_eq!(parse_route(&default).unwrap().destination, net("0.0.0.0/0"));
    }
}
