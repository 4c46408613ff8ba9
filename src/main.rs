//! The `flotilla` binary: the console and the kubectl-style command line.

fn main() -> std::process::ExitCode {
    flotilla::cli::main()
}
