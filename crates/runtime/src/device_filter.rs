//! Device rules on cgroup v2: v2 has no `devices` controller, so a container's rules become a
//! small BPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`) attached to its cgroup, which the kernel
//! runs on every open and `mknod` of a device node by a process in it (and in its children).
//!
//! The rules keep the v1 controller's meaning, so both hierarchies enforce the same list:
//! [`Policy::from_rules`] replays them as the kernel's v1 code does (an `a` rule sets the
//! default and clears the exceptions; a rule of the default's kind takes access away from an
//! equal exception, one of the other kind adds it), and [`Policy::program`] turns the result
//! into instructions: with a default deny, an access is allowed when an exception of its type,
//! major and minor has every bit asked; with a default allow, it is denied when one has any.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// `access_type`'s low 16 bits (the kernel's `BPF_DEVCG_DEV_*`).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `access_type >> 16` (the kernel's `BPF_DEVCG_ACC_*`).
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;

/// One device rule as the kernel compares it: `None` is a wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// [`DEV_BLOCK`] or [`DEV_CHAR`].
    kind: i32,
    major: Option<u32>,
    minor: Option<u32>,
    /// `ACC_*` bits.
    access: u8,
}

/// What a rule list comes to: a default and the exceptions to it, as the v1 controller keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub default_allow: bool,
    pub exceptions: Vec<Exception>,
}

fn access_bits(rule: &LinuxDeviceCgroup) -> Result<u8> {
    let Some(access) = rule.access().as_deref().filter(|a| !a.is_empty()) else { return Ok(ACC_MKNOD | ACC_READ | ACC_WRITE) };
    access.chars().try_fold(0, |bits, c| match c {
        'r' => Ok(bits | ACC_READ),
        'w' => Ok(bits | ACC_WRITE),
        'm' => Ok(bits | ACC_MKNOD),
        _ => Err(Error::InvalidSpec(format!("device rule {rule}: access {access:?} is not made of r, w and m"))),
    })
}

/// A major or minor number as the kernel's `u32`; `Err` for a wildcard-less rule no device
/// can match (negative, or beyond what a device number holds).
fn number(rule: &LinuxDeviceCgroup, n: Option<i64>) -> Result<Option<u32>> {
    match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n).ok().filter(|n| *n <= i32::MAX as u32).map(Some).ok_or_else(|| Error::InvalidSpec(format!("device rule {rule}: {n} is not a device number"))),
    }
}

impl Policy {
    /// Replays `rules` in order from the kernel's own start (allow all).
    pub fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Policy> {
        let mut policy = Policy { default_allow: true, exceptions: Vec::new() };
        for rule in rules {
            let access = access_bits(rule)?;
            let kind = match rule.typ().unwrap_or_default() {
                LinuxDeviceType::A => {
                    policy = Policy { default_allow: rule.allow(), exceptions: Vec::new() };
                    continue;
                }
                LinuxDeviceType::B => DEV_BLOCK,
                LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
                // The devices controller has no FIFOs: opening one is never checked.
                LinuxDeviceType::P => continue,
            };
            let ex = Exception { kind, major: number(rule, rule.major())?, minor: number(rule, rule.minor())?, access };
            let same = policy.exceptions.iter().position(|e| (e.kind, e.major, e.minor) == (ex.kind, ex.major, ex.minor));
            if rule.allow() == policy.default_allow {
                if let Some(i) = same {
                    policy.exceptions[i].access &= !access;
                    if policy.exceptions[i].access == 0 {
                        policy.exceptions.remove(i);
                    }
                }
            } else if let Some(i) = same {
                policy.exceptions[i].access |= access;
            } else {
                policy.exceptions.push(ex);
            }
        }
        Ok(policy)
    }

    /// The program: `r2` = type, `r3` = access, `r4` = major, `r5` = minor, then one block per
    /// exception that jumps to the next on a mismatch and else returns, and the default last.
    pub fn program(&self) -> Vec<Insn> {
        let mut prog = vec![
            Insn::ldx_w(2, 1, 0),
            Insn::mov_reg(3, 2),
            Insn::alu_imm(RSH, 3, 16),
            Insn::alu_imm(AND, 2, 0xffff),
            Insn::ldx_w(4, 1, 4),
            Insn::ldx_w(5, 1, 8),
        ];
        for ex in &self.exceptions {
            // Each check is a conditional jump to the end of the block, patched below.
            let mut block = vec![Insn::jump_imm(JNE, 2, ex.kind)];
            if let Some(major) = ex.major {
                block.push(Insn::jump_imm(JNE, 4, major as i32));
            }
            if let Some(minor) = ex.minor {
                block.push(Insn::jump_imm(JNE, 5, minor as i32));
            }
            block.push(Insn::mov_reg(0, 3));
            if self.default_allow {
                // Denied when any bit asked is in the exception.
                block.push(Insn::alu_imm(AND, 0, i32::from(ex.access)));
                block.push(Insn::jump_imm(JEQ, 0, 0));
            } else {
                // Allowed when every bit asked is.
                block.push(Insn::alu_imm(AND, 0, !i32::from(ex.access)));
                block.push(Insn::jump_imm(JNE, 0, 0));
            }
            block.push(Insn::mov_imm(0, i32::from(!self.default_allow)));
            block.push(Insn::exit());
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if insn.code & 0x07 == JMP && insn.code != JMP | EXIT {
                    insn.off = (len - 1 - i) as i16;
                }
            }
            prog.extend(block);
        }
        prog.push(Insn::mov_imm(0, i32::from(self.default_allow)));
        prog.push(Insn::exit());
        prog
    }
}

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// `dst_reg` in the low four bits, `src_reg` in the high four.
    regs: u8,
    off: i16,
    imm: i32,
}

// Instruction classes and operations (linux/bpf_common.h, linux/bpf.h).
const LDX: u8 = 0x01;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const MEM_W: u8 = 0x60; // BPF_MEM | BPF_W
const K: u8 = 0x00;
const X: u8 = 0x08;
const AND: u8 = 0x50;
const RSH: u8 = 0x70;
const MOV: u8 = 0xb0;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const EXIT: u8 = 0x90;

impl Insn {
    fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn { code: LDX | MEM_W, regs: dst | (src << 4), off, imm: 0 }
    }
    fn mov_reg(dst: u8, src: u8) -> Insn {
        Insn { code: ALU64 | MOV | X, regs: dst | (src << 4), off: 0, imm: 0 }
    }
    fn mov_imm(dst: u8, imm: i32) -> Insn {
        Insn { code: ALU64 | MOV | K, regs: dst, off: 0, imm }
    }
    fn alu_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn { code: ALU64 | op | K, regs: dst, off: 0, imm }
    }
    /// A jump whose offset [`Policy::program`] sets.
    fn jump_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn { code: JMP | op | K, regs: dst, off: 0, imm }
    }
    fn exit() -> Insn {
        Insn { code: JMP | EXIT, regs: 0, off: 0, imm: 0 }
    }
}

// bpf(2) commands, program and attach types, flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, zero-padded `union bpf_attr` prefix of the size passed; the
    // kernel reads (and for a query writes) only that many bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r) }
}

/// Loads `prog` as a cgroup device program. When the kernel refuses it, it is loaded again
/// with the verifier's log, which the error quotes.
fn load(prog: &[Insn]) -> std::result::Result<OwnedFd, String> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"builder_dev");
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match attempt(None) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let mut log = vec![0u8; 64 * 1024];
            let again = attempt(Some(&mut log));
            if let Ok(fd) = again {
                // SAFETY: as above.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let text = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).trim().to_string();
            Err(if text.is_empty() { format!("loading the device program (BPF_PROG_LOAD): {e}") } else { format!("loading the device program (BPF_PROG_LOAD): {e}; verifier: {text}") })
        }
    }
}

fn open_dir(cgroup: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(cgroup)
        .map_err(|e| Error::Cgroup { path: cgroup.into(), message: format!("opening: {e}") })
}

/// Enforces `rules` on the v2 cgroup `cgroup` (before any process is in it): their program is
/// loaded and attached. It stays attached, holding the program, until the cgroup is removed.
pub fn attach(cgroup: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = Policy::from_rules(rules)?.program();
    let fd = load(&prog).map_err(|message| Error::Cgroup { path: cgroup.into(), message })?;
    let dir = open_dir(cgroup)?;
    // ALLOW_MULTI: a program of an ancestor (systemd attaches some) still runs as well, and
    // every one must allow an access.
    let mut attr = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| Error::Cgroup { path: cgroup.into(), message: format!("attaching the device program (BPF_PROG_ATTACH): {e}") })?;
    Ok(())
}

/// How many device programs are attached to the v2 cgroup `cgroup` itself.
pub fn attached(cgroup: &Path) -> Result<u32> {
    let dir = open_dir(cgroup)?;
    let mut attr = ProgQueryAttr { target_fd: dir.as_raw_fd() as u32, attach_type: BPF_CGROUP_DEVICE, ..Default::default() };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| Error::Cgroup { path: cgroup.into(), message: format!("querying the device programs (BPF_PROG_QUERY): {e}") })?;
    Ok(attr.prog_cnt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(allow: bool, typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.into()));
        r
    }

    /// Runs `prog` on one access as the kernel would (the instructions the generator emits).
    fn run(prog: &[Insn], kind: i32, access: u8, major: u32, minor: u32) -> u64 {
        let mut r = [0u64; 11];
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut pc = 0;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                0x61 => r[dst] = u64::from(ctx[i.off as usize / 4]),
                0xbf => r[dst] = r[src],
                0xb7 => r[dst] = imm,
                0x77 => r[dst] >>= imm,
                0x57 => r[dst] &= imm,
                0x55 if r[dst] != imm => pc += i.off as usize,
                0x15 if r[dst] == imm => pc += i.off as usize,
                0x55 | 0x15 => {}
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn docker_like() -> Vec<LinuxDeviceCgroup> {
        use LinuxDeviceType::*;
        vec![
            rule(false, A, None, None, "rwm"),
            rule(true, C, None, None, "m"),
            rule(true, B, None, None, "m"),
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(true, C, Some(136), None, "rwm"),
            rule(true, C, Some(10), Some(259), "r"),
        ]
    }

    #[test]
    fn docker_rules_allow_the_default_nodes_any_mknod_and_a_read_only_device_for_reading() {
        let prog = Policy::from_rules(&docker_like()).unwrap().program();
        let can = |kind, access, major, minor| run(&prog, kind, access, major, minor) == 1;
        assert!(can(DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), "/dev/null rw");
        assert!(can(DEV_CHAR, ACC_WRITE, 136, 7), "a pty slave");
        assert!(can(DEV_CHAR, ACC_MKNOD, 8, 1) && can(DEV_BLOCK, ACC_MKNOD, 8, 1), "mknod of anything");
        assert!(!can(DEV_BLOCK, ACC_READ, 8, 1), "a disk");
        assert!(!can(DEV_BLOCK, ACC_READ, 1, 3), "block 1:3 is not char 1:3");
        assert!(can(DEV_CHAR, ACC_READ, 10, 259), "given :r");
        assert!(!can(DEV_CHAR, ACC_WRITE, 10, 259) && !can(DEV_CHAR, ACC_READ | ACC_WRITE, 10, 259), "not for writing");
        assert!(!can(DEV_CHAR, ACC_READ, 10, 229), "fuse stays denied");
    }

    #[test]
    fn rules_replay_as_the_v1_controller_keeps_them() {
        use LinuxDeviceType::*;
        // A later deny takes access away from the exception a previous allow made.
        let p = Policy::from_rules(&[rule(false, A, None, None, "rwm"), rule(true, C, Some(1), Some(3), "rwm"), rule(false, C, Some(1), Some(3), "w")]).unwrap();
        assert_eq!(p, Policy { default_allow: false, exceptions: vec![Exception { kind: DEV_CHAR, major: Some(1), minor: Some(3), access: ACC_READ | ACC_MKNOD }] });
        let prog = p.program();
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        // Default allow (no rules, or `a` allowed): exceptions deny on any bit.
        assert_eq!(Policy::from_rules(&[]).unwrap().program().len(), 8);
        let p = Policy::from_rules(&[rule(true, A, None, None, "rwm"), rule(false, B, Some(8), None, "w")]).unwrap();
        let prog = p.program();
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 16), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 8, 0), 1);
        // An `a` rule starts over.
        let p = Policy::from_rules(&[rule(true, C, Some(1), Some(3), "rwm"), rule(false, A, None, None, "rwm")]).unwrap();
        assert_eq!(p, Policy { default_allow: false, exceptions: vec![] });
    }

    #[test]
    fn a_bad_access_or_number_is_an_error_naming_the_rule() {
        let err = Policy::from_rules(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx")]).unwrap_err().to_string();
        assert!(err.contains("access \"rx\""), "{err}");
        let err = Policy::from_rules(&[rule(true, LinuxDeviceType::C, Some(-5), Some(3), "r")]).unwrap_err().to_string();
        assert!(err.contains("-5 is not a device number"), "{err}");
    }

    /// This process's cgroup in the v2 hierarchy (the `unified` mount on a hybrid host).
    fn own_v2_cgroup() -> std::path::PathBuf {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = info.lines().find_map(|l| l.split_once(" - ").filter(|(_, r)| r.starts_with("cgroup2 ")).map(|(left, _)| left.split(' ').nth(4).unwrap().to_string())).expect("tests need a cgroup v2 mount");
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        Path::new(&mount).join(path.trim_start_matches('/'))
    }

    #[test]
    fn an_attached_program_denies_the_processes_of_its_cgroup_what_the_rules_do_not_allow() {
        // A hybrid host's v1 devices controller allows all to this test: only the program decides.
        let dir = own_v2_cgroup().join(format!("builder-devtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        attach(&dir, &docker_like()).unwrap();
        assert_eq!(attached(&dir).unwrap(), 1);
        let nodes = tempfile::tempdir().unwrap();
        // The shell moves itself in, then tries each node; cpu_dma_latency (10:259) is given `r`.
        let script = format!(
            "echo $$ > {procs}; cd {nodes}; mknod lat c 10 259 && mknod sda b 8 0 && mknod fuse c 10 229 || exit 9; \
             for t in 'head -c1 /dev/null' 'echo x >/dev/null' 'head -c1 lat' 'echo 1 >lat' 'head -c1 sda' 'head -c1 fuse'; do if sh -c \"$t\" >/dev/null 2>err; then r=ok; elif grep -q 'not permitted' err; then r=EPERM; else r=$(cat err); fi; echo \"$t: $r\"; done",
            procs = dir.join("cgroup.procs").display(),
            nodes = nodes.path().display()
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "head -c1 /dev/null: ok\necho x >/dev/null: ok\nhead -c1 lat: ok\necho 1 >lat: EPERM\nhead -c1 sda: EPERM\nhead -c1 fuse: EPERM\n",
            "{out:?}"
        );
    }

    #[test]
    fn a_program_the_kernel_refuses_is_an_error_quoting_the_verifier() {
        // No exit: the verifier rejects it and says why.
        let err = load(&[Insn::mov_imm(0, 1)]).unwrap_err();
        assert!(err.contains("BPF_PROG_LOAD") && err.contains("verifier:"), "{err}");
    }
}
