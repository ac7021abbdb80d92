//! Links, addresses and routes, through iproute2 (`ip -batch`, one process per namespace).

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::Endpoint;
use crate::networks::Network;
use crate::error::{Error, Result};

/// Runs `ip -batch -` with `lines`, in the calling thread's network namespace.
fn ip_batch(lines: &str) -> Result<()> {
    let command = || format!("ip -batch: {}", lines.trim().replace('\n', "; "));
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command { command: command(), message: e.to_string() })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(lines.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Command { command: command(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Command { command: command(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| Error::io("writing", path, e))
}

/// Creates the bridge (once) with the gateway address, and turns on forwarding and
/// `route_localnet`, so DNAT of `127.0.0.1:PORT` to a container is routed.
pub(crate) fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    if !std::path::Path::new("/sys/class/net").join(name).exists() || std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/route_localnet")).is_err() {
        let _ = ip_batch(&format!("link add {name} type bridge\naddr add {gateway}/{prefix} dev {name}\nlink set {name} up\n"));
    }
    sysctl("net.ipv4.ip_forward", "1")?;
    sysctl(&format!("net.ipv4.conf.{name}.route_localnet"), "1")
}

/// The inside half of an endpoint: the veth whose peer goes to the supervisor's namespace,
/// its address, and the default route when `route` is set. The MAC address is made from the
/// IP address, as Docker makes it (02:42 and the four bytes): a container that gets the
/// address of one just gone then has its MAC too, so the bridge's neighbour cache, which
/// may still hold the old entry for up to half a minute, does not send its packets nowhere.
fn inside_lines(ep: &Endpoint, route: bool) -> String {
    let [a, b, c, d] = ep.ip.octets();
    let mut s = format!(
        "link add {ifname} address 02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x} type veth peer name {veth} netns {supervisor}\naddr add {ip}/{prefix} dev {ifname}\nlink set {ifname} up\n",
        ifname = ep.ifname,
        veth = ep.veth,
        supervisor = std::process::id(),
        ip = ep.ip,
        prefix = ep.prefix,
    );
    if route {
        s.push_str(&format!("route add default via {}\n", ep.gateway));
    }
    s
}

fn outside_lines(ep: &Endpoint) -> String {
    format!("link set {veth} master {bridge}\nlink set {veth} type bridge_slave hairpin on\nlink set {veth} up\n", veth = ep.veth, bridge = ep.bridge)
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
    remove_stale_veths(endpoints)?;
    let mut inside = String::from("link set lo up\n");
    let route = endpoints.iter().position(|e| !e.internal);
    for (i, ep) in endpoints.iter().enumerate() {
        inside.push_str(&inside_lines(ep, route == Some(i)));
    }
    // A thread of our own enters the new namespace; what it spawns starts there too.
    let (netns, sockets) = std::thread::spawn(move || -> Result<(OwnedFd, Option<DnsSockets>)> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("creating", "a network namespace", e.into()))?;
        let ns = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| Error::io("opening", "/proc/thread-self/ns/net", e))?;
        ip_batch(&inside)?;
        let sockets = if dns { Some(bind_dns()?) } else { None };
        Ok((OwnedFd::from(ns), sockets))
    })
    .join()
    .map_err(|_| Error::Command { command: "setting up the network namespace".into(), message: "the thread panicked".into() })??;
    let _ = netns.as_raw_fd();
    let outside: String = endpoints.iter().map(outside_lines).collect();
    if !outside.is_empty() {
        ip_batch(&outside)?;
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
fn remove_stale_veths(endpoints: &[Endpoint]) -> Result<()> {
    let stale: String = endpoints.iter().filter(|e| std::path::Path::new("/sys/class/net").join(&e.veth).exists()).map(|e| format!("link del {}\n", e.veth)).collect();
    if stale.is_empty() { Ok(()) } else { ip_batch(&stale) }
}

/// Adds an endpoint to a running container's namespace (`network connect`).
pub(crate) fn add_link(netns: &std::path::Path, ep: &Endpoint, route: bool) -> Result<()> {
    remove_stale_veths(std::slice::from_ref(ep))?;
    let inside = inside_lines(ep, route);
    in_netns(netns, move || ip_batch(&inside))?;
    ip_batch(&outside_lines(ep))
}

/// Removes an endpoint's interface from a running container's namespace (`network disconnect`).
pub(crate) fn remove_link(netns: &std::path::Path, ifname: &str) -> Result<()> {
    let line = format!("link del {ifname}\n");
    in_netns(netns, move || ip_batch(&line))
}

/// Creates a user-defined network's bridge if it is missing (after a reboot, in a new namespace).
pub(crate) fn ensure_network_bridge(net: &Network) -> Result<()> {
    let (Some(subnet), Some(gateway)) = (net.subnet, net.gateway) else { return Ok(()) };
    let _lock = crate::nft::lock()?;
    ensure_bridge(&net.bridge, gateway, subnet.prefix)
}

/// Deletes a user-defined network's bridge (`network rm`); a missing one is fine.
pub(crate) fn delete_bridge(net: &Network) {
    if std::path::Path::new("/sys/class/net").join(&net.bridge).exists() {
        let _ = ip_batch(&format!("link del {}\n", net.bridge));
    }
    crate::nft::remove_bridge(&net.bridge);
}
