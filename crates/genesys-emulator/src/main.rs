//! `genesys-emulator`: the Genesys Cloud emulator as a program of its own, for trying things and for
//! other people's tests. The same flags as `genesys-provisioner emulator` (both are `cli::run`).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "genesys-emulator", version, about = "A Genesys Cloud emulator: OAuth, SCIM users and groups, faults")]
struct Cli {
    #[command(flatten)]
    args: genesys_emulator::cli::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(genesys_emulator::cli::run(cli.args, Vec::new())),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
