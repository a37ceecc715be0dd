//! The `vrypt-server` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    vrypt_server::main()
}
