//! One module per command group; each owns its clap `Subcommand` enum.

pub mod build;
pub mod container;
pub mod image;
pub mod parse;
pub mod serve;

/// Sizes in SI units with 3 significant digits, as Docker prints them.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{bytes}B") } else { format!("{:.3}", v).trim_end_matches('0').trim_end_matches('.').to_string() + units[i] }
}
