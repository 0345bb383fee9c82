//! The `scim-proxy` binary: the command line lives in `scim_proxy::cli`.

/// mimalloc instead of glibc's malloc: the request path allocates and frees small blocks from one
/// event-loop thread, where glibc spent about a tenth of the instructions per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    scim_proxy::cli::main()
}
