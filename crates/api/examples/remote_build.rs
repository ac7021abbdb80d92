//! A minimal remote-build client on the `api` crate, for `benches/remote_build.sh` and for
//! trying a server by hand:
//!
//!     cargo run --release -p api --example remote_build -- tcp://127.0.0.1:8765 ./ctx [-t TAG] [--build-arg K=V]
//!
//! It builds `CONTEXT/Dockerfile` on the server (TLS and token from `BUILDER_TLS_*` and
//! `BUILDER_TOKEN`, as `builder --addr` does) and prints one `key=value` line per fact:
//! image digest, files in the context, files and bytes sent. Progress goes to stderr.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(context)) = (args.first(), args.get(1)) else {
        eprintln!("usage: remote_build ADDR CONTEXT [-t TAG]... [--build-arg K=V]...");
        std::process::exit(2);
    };
    let context = PathBuf::from(context);
    let mut options = api::BuildOptions { dockerfile_name: "Dockerfile".into(), ..Default::default() };
    options.dockerfile = std::fs::read(context.join("Dockerfile"))?;
    let mut rest = args[2..].iter();
    while let Some(a) = rest.next() {
        match (a.as_str(), rest.next()) {
            ("-t", Some(tag)) => options.tags.push(tag.clone()),
            ("--build-arg", Some(kv)) => {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                options.build_args.insert(k.to_string(), v.to_string());
            }
            _ => {
                eprintln!("unknown argument {a}");
                std::process::exit(2);
            }
        }
    }
    let quiet = std::env::var_os("QUIET").is_some();
    let result = api::client::build(addr, &options, &context, |e| {
        if !quiet {
            eprintln!("{e:?}");
        }
    })?;
    println!("digest={}", result.outcome.image_digest);
    println!("files_total={}", result.context.files_total);
    println!("files_sent={}", result.context.files_received);
    println!("bytes_sent={}", result.bytes_sent);
    println!("bytes_received_by_server={}", result.context.bytes_received);
    Ok(())
}
