//! The `scim-proxy` binary: the command line lives in `scim_proxy::cli`.

fn main() -> std::process::ExitCode {
    scim_proxy::cli::main()
}
