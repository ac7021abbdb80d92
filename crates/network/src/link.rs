//! Links, addresses and routes, through rtnetlink ([`crate::netlink`]): one socket in the
//! container's new namespace, one in the supervisor's.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::Endpoint;
use crate::error::{Error, Result};
use crate::netlink::{Netlink, index};
use crate::networks::Network;

fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| Error::io("writing", path, e))
}

/// Whether this thread's network namespace has an interface `name`. Not `/sys/class/net`: sysfs
/// shows the namespace of whoever mounted it, which a process that unshared or `nsenter`ed
/// another namespace does not see (a quick restart then found the old veth's name taken).
fn exists(name: &str) -> bool {
    crate::netlink::index(name).is_ok()
}

/// Creates the bridge (once) with the gateway address, and turns on forwarding and
/// `route_localnet`, so DNAT of `127.0.0.1:PORT` to a container is routed.
pub(crate) fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    if !exists(name) || std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/route_localnet")).is_err() {
        let mut nl = Netlink::open()?;
        // A bridge another process made meanwhile is fine; a failure shows at the sysctl.
        let _ = nl.add_bridge(name).and_then(|()| nl.add_address(name, gateway, prefix)).and_then(|()| nl.set_up(name, None));
    }
    sysctl("net.ipv4.ip_forward", "1")?;
    sysctl(&format!("net.ipv4.conf.{name}.route_localnet"), "1")
}

/// The inside half of an endpoint: the veth whose peer goes to the supervisor's namespace,
/// its address, and the default route when `route` is set. The MAC address is made from the
/// IP address, as Docker makes it (02:42 and the four bytes): a container that gets the
/// address of one just gone then has its MAC too, so the bridge's neighbour cache, which
/// may still hold the old entry for up to half a minute, does not send its packets nowhere.
fn inside(nl: &mut Netlink, ep: &Endpoint, route: bool) -> Result<()> {
    let [a, b, c, d] = ep.ip.octets();
    nl.add_veth(&ep.ifname, [0x02, 0x42, a, b, c, d], &ep.veth, std::process::id())?;
    nl.add_address(&ep.ifname, ep.ip, ep.prefix)?;
    nl.set_up(&ep.ifname, None)?;
    if route {
        nl.add_default_route(ep.gateway)?;
    }
    Ok(())
}

/// The outside half: the host end joins the bridge, with hairpin (a container reaching its
/// own published port), and comes up.
fn outside(nl: &mut Netlink, ep: &Endpoint) -> Result<()> {
    nl.set_up(&ep.veth, Some(index(&ep.bridge)?))?;
    nl.set_hairpin(&ep.veth)
}

/// The sockets of the embedded name server, bound inside the container's namespace.
pub(crate) type DnsSockets = (std::net::UdpSocket, std::net::TcpListener);

fn bind_dns() -> Result<DnsSockets> {
    let addr = std::net::SocketAddr::from((crate::dns::ADDRESS, 53));
    let udp = std::net::UdpSocket::bind(addr).map_err(|e| Error::io("binding the name server to", "127.0.0.11:53/udp", e))?;
    let tcp = std::net::TcpListener::bind(addr).map_err(|e| Error::io("binding the name server to", "127.0.0.11:53/tcp", e))?;
    Ok((udp, tcp))
}

/// Makes a network namespace for the container, with `lo` up and one veth per endpoint
/// (its host end joining the endpoint's bridge), the default route through the first
/// endpoint that is not internal, and with `dns` the name server's sockets bound inside.
/// The returned descriptor keeps the namespace alive.
pub(crate) fn new_netns(endpoints: &[Endpoint], dns: bool) -> Result<(OwnedFd, Option<DnsSockets>)> {
    let mut nl = Netlink::open()?;
    remove_stale_veths(&mut nl, endpoints)?;
    let route = endpoints.iter().position(|e| !e.internal);
    let inner = endpoints.to_vec();
    // A thread of our own enters the new namespace, and its netlink socket belongs there.
    let (netns, sockets) = std::thread::spawn(move || -> Result<(OwnedFd, Option<DnsSockets>)> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("creating", "a network namespace", e.into()))?;
        let ns = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| Error::io("opening", "/proc/thread-self/ns/net", e))?;
        let mut nl = Netlink::open()?;
        nl.set_up("lo", None)?;
        for (i, ep) in inner.iter().enumerate() {
            inside(&mut nl, ep, route == Some(i))?;
        }
        let sockets = if dns { Some(bind_dns()?) } else { None };
        Ok((OwnedFd::from(ns), sockets))
    })
    .join()
    .map_err(|_| Error::Command { command: "setting up the network namespace".into(), message: "the thread panicked".into() })??;
    let _ = netns.as_raw_fd();
    for ep in endpoints {
        outside(&mut nl, ep)?;
    }
    Ok((netns, sockets))
}

/// Runs `f` in a thread that has joined the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &std::path::Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let ns = std::fs::File::open(path).map_err(|e| Error::io("opening the network namespace", path, e))?;
    let shown = path.to_path_buf();
    std::thread::spawn(move || -> Result<T> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("joining the network namespace", shown, e.into()))?;
        f()
    })
    .join()
    .map_err(|_| Error::Command { command: "joining a network namespace".into(), message: "the thread panicked".into() })?
}

/// Deletes host ends of the endpoints' veths left by the container's previous run: the kernel
/// removes a namespace (and its veths) some time after its last holder goes, and a quick
/// restart would otherwise find the name taken. Only this container ever uses these names.
fn remove_stale_veths(nl: &mut Netlink, endpoints: &[Endpoint]) -> Result<()> {
    for e in endpoints.iter().filter(|e| exists(&e.veth)) {
        // The kernel may take it away itself meanwhile.
        if let Err(err) = nl.delete(&e.veth)
            && exists(&e.veth)
        {
            return Err(err);
        }
    }
    Ok(())
}

/// Adds an endpoint to a running container's namespace (`network connect`).
pub(crate) fn add_link(netns: &std::path::Path, ep: &Endpoint, route: bool) -> Result<()> {
    let mut nl = Netlink::open()?;
    remove_stale_veths(&mut nl, std::slice::from_ref(ep))?;
    let inner = ep.clone();
    in_netns(netns, move || inside(&mut Netlink::open()?, &inner, route))?;
    outside(&mut nl, ep)
}

/// Removes an endpoint's interface from a running container's namespace (`network disconnect`).
pub(crate) fn remove_link(netns: &std::path::Path, ifname: &str) -> Result<()> {
    let ifname = ifname.to_string();
    in_netns(netns, move || Netlink::open()?.delete(&ifname))
}

/// Creates a user-defined network's bridge if it is missing (after a reboot, in a new namespace).
pub(crate) fn ensure_network_bridge(net: &Network) -> Result<()> {
    let (Some(subnet), Some(gateway)) = (net.subnet, net.gateway) else { return Ok(()) };
    let _lock = crate::nft::lock()?;
    ensure_bridge(&net.bridge, gateway, subnet.prefix)
}

/// Deletes a user-defined network's bridge (`network rm`); a missing one is fine.
pub(crate) fn delete_bridge(net: &Network) {
    if exists(&net.bridge) {
        let _ = Netlink::open().and_then(|mut nl| nl.delete(&net.bridge));
    }
    crate::nft::remove_bridge(&net.bridge);
}
