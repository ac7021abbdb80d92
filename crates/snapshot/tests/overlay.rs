//! Real overlay mounts (root only, as CI runs): many layers, whiteouts, and unmount on drop.

use std::path::PathBuf;

use snapshot::Overlay;

fn mounted(target: &std::path::Path) -> bool {
    let t = target.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(t))
}

#[test]
fn overlay_of_300_layers_with_long_paths_mounts_and_unmounts_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut lowers: Vec<PathBuf> = Vec::new();
    for i in 0..300 {
        // Long names: 300 * ~100 bytes is far past a page of mount options.
        let l = dir.path().join(format!("layer-{i:03}-{}", "x".repeat(80)));
        std::fs::create_dir(&l).unwrap();
        std::fs::write(l.join(format!("f{i}")), i.to_string()).unwrap();
        std::fs::write(l.join("top"), i.to_string()).unwrap();
        lowers.push(l);
    }
    lowers.reverse(); // top first: layer-299 is on top
    let (upper, work, target) = (dir.path().join("upper"), dir.path().join("work"), dir.path().join("merged"));
    for d in [&upper, &work, &target] {
        std::fs::create_dir(d).unwrap();
    }
    let ov = Overlay { lowers, upper: upper.clone(), work };
    let guard = ov.mount(&target).unwrap();
    assert!(guard.is_overlay());
    assert_eq!(std::fs::read_to_string(target.join("top")).unwrap(), "299");
    assert_eq!(std::fs::read_to_string(target.join("f0")).unwrap(), "0");
    std::fs::write(target.join("new"), "n").unwrap();
    assert!(upper.join("new").exists(), "writes land in the upper dir");
    drop(guard);
    assert!(!mounted(&target));
}

#[test]
fn copy_fallback_applies_whiteouts_in_layer_order() {
    let dir = tempfile::tempdir().unwrap();
    let (bottom, top, upper, target) = (dir.path().join("b"), dir.path().join("t"), dir.path().join("u"), dir.path().join("m"));
    for d in [&bottom, &top, &upper, &target] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(bottom.join("gone"), "x").unwrap();
    std::fs::write(bottom.join("kept"), "old").unwrap();
    std::fs::write(top.join("kept"), "new").unwrap();
    let wh = std::ffi::CString::new(top.join("gone").to_str().unwrap()).unwrap();
    // SAFETY: valid C string; a 0/0 character device is an overlay whiteout.
    assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, 0) }, 0);
    let ov = Overlay { lowers: vec![top, bottom], upper, work: dir.path().join("w") };
    ov.copy_into(&target).unwrap();
    assert!(!target.join("gone").exists());
    assert_eq!(std::fs::read_to_string(target.join("kept")).unwrap(), "new");
}
