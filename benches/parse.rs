//! Parsing speed: a generated Dockerfile of 10,000 instructions of every
//! kind (with flags, continuations, heredocs, exec and shell forms), parsed
//! to typed instructions. Reports MB/s (criterion throughput); instructions/s
//! is 10,000 divided by the time per iteration.
//!
//! Run: `cargo bench -p benches --bench parse`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn parse(c: &mut Criterion) {
    let text = benches::generated_dockerfile();
    let df = dockerfile::Dockerfile::parse(text.as_bytes(), "Dockerfile").expect("benchmark Dockerfile parses");
    let count = df.global_args.len() + df.stages.iter().map(|s| 1 + s.instructions.len()).sum::<usize>();
    eprintln!("parse bench: {count} instructions, {} bytes", text.len());
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("typed_10k_instructions", |b| {
        b.iter(|| dockerfile::Dockerfile::parse(std::hint::black_box(text.as_bytes()), "Dockerfile").map(|d| d.stages.len()))
    });
    group.bench_function("syntax_tree_10k_instructions", |b| {
        b.iter(|| dockerfile::ast::parse(std::hint::black_box(text.as_bytes()), "Dockerfile").map(|a| a.nodes.len()))
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
