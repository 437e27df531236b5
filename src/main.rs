//! The `lab` binary: parse the arguments, run the command, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lab::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return lab::exit::ExitStatus::Unreachable.into();
        }
    };
    runtime.block_on(lab::run(cli)).into()
}
