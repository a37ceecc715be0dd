//! Command-line entry point: parse, then serve or run the health check.

use std::process::ExitCode;
use vrypt_server::config::{parse_args, usage, Command};
use vrypt_server::log::{quote, set_level, Level};

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let command = match parse_args(std::env::args_os().skip(1), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vrypt-server: error: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("vrypt-server {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Healthcheck { url, timeout } => {
            ExitCode::from(vrypt_server::healthcheck::run(&url, timeout).clamp(0, 255) as u8)
        }
        Command::Serve(cfg) => {
            set_level(cfg.log_level);
            match vrypt_server::server::run(*cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    vrypt_server::log!(Level::Error, "fatal", "error={}", quote(&e.to_string()));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
