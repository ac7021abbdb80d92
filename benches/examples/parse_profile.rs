//! Parses the parse benchmark's Dockerfile `N` times (default 1): for profiling
//! with `valgrind --tool=callgrind`, where criterion's own work would get in the way.
//!
//! Run: `cargo build --release -p benches --example parse_profile`

fn main() {
    let text = benches::generated_dockerfile();
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let syntax_only = std::env::args().nth(2).is_some_and(|a| a == "ast");
    for _ in 0..n {
        if syntax_only {
            let ast = dockerfile::ast::parse(std::hint::black_box(text.as_bytes()), "Dockerfile").expect("parses");
            std::hint::black_box(ast.nodes.len());
        } else {
            let df = dockerfile::Dockerfile::parse(std::hint::black_box(text.as_bytes()), "Dockerfile").expect("parses");
            std::hint::black_box(df.stages.len());
        }
    }
    eprintln!("{} bytes", text.len());
}
