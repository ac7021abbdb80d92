//! Linux capabilities by name, as bit numbers.

/// The number of a capability named like "CAP_CHOWN" (or "chown").
pub fn capability_number(name: &str) -> Option<u32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    Some(match n {
        "CHOWN" => 0, "DAC_OVERRIDE" => 1, "DAC_READ_SEARCH" => 2, "FOWNER" => 3, "FSETID" => 4, "KILL" => 5,
        "SETGID" => 6, "SETUID" => 7, "SETPCAP" => 8, "LINUX_IMMUTABLE" => 9, "NET_BIND_SERVICE" => 10,
        "NET_BROADCAST" => 11, "NET_ADMIN" => 12, "NET_RAW" => 13, "IPC_LOCK" => 14, "IPC_OWNER" => 15,
        "SYS_MODULE" => 16, "SYS_RAWIO" => 17, "SYS_CHROOT" => 18, "SYS_PTRACE" => 19, "SYS_PACCT" => 20,
        "SYS_ADMIN" => 21, "SYS_BOOT" => 22, "SYS_NICE" => 23, "SYS_RESOURCE" => 24, "SYS_TIME" => 25,
        "SYS_TTY_CONFIG" => 26, "MKNOD" => 27, "LEASE" => 28, "AUDIT_WRITE" => 29, "AUDIT_CONTROL" => 30,
        "SETFCAP" => 31, "MAC_OVERRIDE" => 32, "MAC_ADMIN" => 33, "SYSLOG" => 34, "WAKE_ALARM" => 35,
        "BLOCK_SUSPEND" => 36, "AUDIT_READ" => 37, "PERFMON" => 38, "BPF" => 39, "CHECKPOINT_RESTORE" => 40,
        _ => return None,
    })
}

/// The highest capability number this runtime knows; bounding-set drops go up to the kernel's last cap.
pub const LAST_KNOWN_CAP: u32 = 40;

/// A bit set of capabilities from names (unknown names are ignored, as runc does).
pub fn mask_of<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names.into_iter().filter_map(capability_number).fold(0u64, |m, c| m | (1u64 << c))
}

/// The kernel's highest capability number (/proc/sys/kernel/cap_last_cap).
pub fn kernel_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(LAST_KNOWN_CAP)
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_default_capabilities_have_the_expected_mask() {
        // CapBnd of `docker run busybox grep CapBnd /proc/self/status`.
        assert_eq!(super::mask_of(crate::spec::DEFAULT_CAPABILITIES.iter().copied()), 0x00000000a80425fb);
    }
}
