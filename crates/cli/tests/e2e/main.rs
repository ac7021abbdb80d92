//! End-to-end tests of the `builder` binary. Everything compiles into this one
//! test binary; each command group has its own module, helpers live in `util`.

mod util;

/// The whole suite runs in a network namespace of its own, entered before `main` (while the
/// process has one thread, so every test thread and every process it starts is in it):
/// containers now get the default bridge, and its bridge, NAT rules and published ports
/// must never touch the machine's network. Loopback works as before (the registries and
/// servers the tests start listen there); nothing else is reachable. The namespace goes
/// with the last process in it.
#[used]
#[unsafe(link_section = ".init_array")]
static ENTER_OWN_NETWORK_NAMESPACE: extern "C" fn() = enter_own_network_namespace;

extern "C" fn enter_own_network_namespace() {
    // The machine's namespace stays open for the few steps that need the outside (debootstrap,
    // image builds that install packages): see util::on_machine_network.
    if let Ok(f) = std::fs::File::open("/proc/self/ns/net") {
        let _ = util::MACHINE_NETWORK.set(f);
    }
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok() {
        let _ = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
    }
}
pub mod util_registry;

mod build;
mod build_compat;
mod build_sources;
mod clean;
mod cache_explain;
mod cache_share;
mod compose;
mod container;
mod container_life;
mod image;
mod image_list;
mod info_search;
mod inspect;
mod network;
mod parse;
mod serve;
mod stories;
mod volume;
