//! Links, addresses and routes through rtnetlink messages (`netlink-packet-route`, sent on a
//! `netlink-sys` socket, as netavark does), in the network namespace of the calling thread:
//! a socket belongs to the namespace it was opened in.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::AddressFamily;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// A route netlink socket of the calling thread's network namespace.
pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub(crate) fn open() -> Result<Netlink> {
        let fail = |e: std::io::Error| Error::Command { command: "opening a route netlink socket".into(), message: e.to_string() };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends `message` and waits for the kernel's acknowledgement; `what` names the request
    /// in the error (as `ip` would have been called).
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16, what: &str) -> Result<()> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let fail = |message: String| Error::Command { command: format!("netlink: {what}"), message };
        self.socket.send(&buf, 0).map_err(|e| fail(e.to_string()))?;
        loop {
            let (reply, _) = self.socket.recv_from_full().map_err(|e| fail(e.to_string()))?;
            let mut at = 0;
            while at < reply.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[at..]).map_err(|e| fail(e.to_string()))?;
                let len = msg.header.length as usize;
                if let (true, NetlinkPayload::Error(e)) = (msg.header.sequence_number == self.seq, msg.payload) {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(fail(e.to_io().to_string())),
                    };
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }

    /// `ip link add NAME type bridge`.
    pub(crate) fn add_bridge(&mut self, name: &str) -> Result<()> {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL, &format!("link add {name} type bridge"))
    }

    /// `ip link add NAME address MAC type veth peer name PEER netns PID`.
    pub(crate) fn add_veth(&mut self, name: &str, mac: [u8; 6], peer: &str, peer_netns_pid: u32) -> Result<()> {
        let mut other = LinkMessage::default();
        other.attributes.push(LinkAttribute::IfName(peer.into()));
        other.attributes.push(LinkAttribute::NetNsPid(peer_netns_pid));
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        link.attributes.push(LinkAttribute::Address(mac.to_vec()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(other)))]));
        self.request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL, &format!("link add {name} type veth peer name {peer}"))
    }

    /// `ip link set NAME up`, with `master BRIDGE` when given (the bridge's index).
    pub(crate) fn set_up(&mut self, name: &str, master: Option<u32>) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index(name)?;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        if let Some(m) = master {
            link.attributes.push(LinkAttribute::Controller(m));
        }
        self.request(RouteNetlinkMessage::SetLink(link), 0, &format!("link set {name} up"))
    }

    /// `ip link set NAME type bridge_slave hairpin on` (NAME is a port of a bridge).
    pub(crate) fn set_hairpin(&mut self, name: &str) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index(name)?;
        link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::PortKind(InfoPortKind::Bridge), LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(true)]))]));
        self.request(RouteNetlinkMessage::NewLink(link), 0, &format!("link set {name} type bridge_slave hairpin on"))
    }

    /// `ip link del NAME`.
    pub(crate) fn delete(&mut self, name: &str) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index(name)?;
        self.request(RouteNetlinkMessage::DelLink(link), 0, &format!("link del {name}"))
    }

    /// `ip addr add IP/PREFIX dev NAME`.
    pub(crate) fn add_address(&mut self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        addr.header.prefix_len = prefix;
        addr.header.index = index(name)?;
        addr.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        addr.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix < 31 {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            addr.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(u32::from(ip) | !mask)));
        }
        self.request(RouteNetlinkMessage::NewAddress(addr), NLM_F_CREATE | NLM_F_EXCL, &format!("addr add {ip}/{prefix} dev {name}"))
    }

    /// `ip route add default via GATEWAY`.
    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL, &format!("route add default via {gateway}"))
    }
}

/// The index of interface `name` in the calling thread's namespace.
pub(crate) fn index(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|e| Error::Command { command: format!("netlink: finding the interface {name}"), message: e.to_string() })
}
