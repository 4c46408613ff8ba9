//! The `flotilla-agent` binary: the runtime agent flotilla copies onto each host.
//! It links only `api` and `agent`, never the console.

fn main() -> std::process::ExitCode {
    flotilla::agent::cli::main()
}
