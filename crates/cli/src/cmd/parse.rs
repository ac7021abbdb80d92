//! `builder parse`: reads a Dockerfile and prints it, so users (and tests) can
//! see exactly how it is understood.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse a Dockerfile and print it.
    ///
    /// `--format dump` prints the syntax tree in BuildKit's AST dump format
    /// (one S-expression per instruction), exactly as BuildKit's parser reads
    /// the file; like BuildKit's parser it does not judge instruction names or
    /// flags. `--format json` prints the typed instructions, grouped into
    /// stages, with their positions; every instruction and flag is checked.
    /// Errors are printed as FILE:LINE:COL: message, then the offending line;
    /// the exit code is then 1.
    Parse(ParseArgs),
}

#[derive(clap::Args, Debug)]
pub struct ParseArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Dump)]
    format: Format,
    /// The Dockerfile to read; `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Dockerfile")]
    file: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// BuildKit's AST dump.
    Dump,
    /// The typed instructions as JSON.
    Json,
}

impl Command {
    pub fn run(self, _globals: &Globals) -> anyhow::Result<ExitCode> {
        match self {
            Command::Parse(args) => parse(args),
        }
    }
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (source, name) = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading the Dockerfile from standard input")?;
        (buf, "Dockerfile".to_string())
    } else {
        let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
        (bytes, args.file.display().to_string())
    };
    let output = match args.format {
        Format::Dump => dockerfile::ast::parse(&source, &name).map(|ast| ast.dump()).map_err(dockerfile::Error::from),
        Format::Json => dockerfile::Dockerfile::parse(&source, &name).and_then(|df| {
            let mut text = serde_json::to_string_pretty(&df).map_err(|e| dockerfile::Error::Io {
                path: args.file.clone(),
                source: std::io::Error::other(e),
            })?;
            text.push('\n');
            Ok(text)
        }),
    };
    match output {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).context("writing to standard output")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(dockerfile::Error::Dockerfile(e)) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
