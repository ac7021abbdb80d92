//! `builder container prune`.

use std::process::ExitCode;

use container::{Containers, Status};

/// `docker container prune`: removes every container that is not running.
pub(super) fn container_prune(store: &Containers, force: bool) -> anyhow::Result<ExitCode> {
    if !force {
        print!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in store.list()?.into_iter().filter(|c| c.status != Status::Running) {
        reclaimed += solver::cache::dir_size(&store.dir_of(&c.id));
        store.remove(&c, false, false)?;
        deleted.push(c.id);
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", crate::cmd::human_size(reclaimed));
    Ok(ExitCode::SUCCESS)
}

