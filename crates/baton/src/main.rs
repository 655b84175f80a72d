//! `baton`: the server (`baton serve`) and the admin CLI in one binary. This file only parses
//! the command line and hands over; each command lives in `cli/`.

mod bench;
mod cli;
mod output;
mod process;
mod sim;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An exit status without a message was explained already (e.g. by `baton terminal`).
            let line = cli::describe(&e);
            if !line.is_empty() {
                eprintln!("error: {line}");
            }
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
