//! One module per command group; each owns its clap `Subcommand` enum.

pub mod build;
pub mod compose;
pub mod container;
pub mod format;
pub mod image;
pub mod info;
pub mod inspect;
pub mod parse;
pub mod serve;
pub mod system;
pub mod network;
pub mod volume;

/// Sizes in SI units with 3 significant digits, as Docker prints them.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{bytes}B");
    }
    // Three significant digits, trailing zeros dropped (Go's %.3g): 1.06MB, 72.8MB, 128MB, 1.5MB.
    let decimals = if v < 10.0 { 2 } else if v < 100.0 { 1 } else { 0 };
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", units[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_have_three_significant_digits_as_docker_prints_them() {
        let cases = [(999, "999B"), (1_062_000, "1.06MB"), (72_800_000, "72.8MB"), (128_000_000, "128MB"), (1_500_000, "1.5MB"), (28_672, "28.7kB"), (1_000, "1kB")];
        for (n, want) in cases {
            assert_eq!(super::human_size(n), want, "{n}");
        }
    }
}
