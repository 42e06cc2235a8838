//! `pubky-edge`: argv → [`pubky_edge::cli`] → exit code.

fn main() -> std::process::ExitCode {
    pubky_edge::cli::main(std::env::args().skip(1))
}
