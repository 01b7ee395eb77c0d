//! `lbproxy`: parses the command line and hands over to the library.

use clap::Parser;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    lbproxy::logging::init();
    lbproxy::cli::run(lbproxy::cli::Cli::parse())
}
