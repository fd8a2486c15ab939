use clap::Parser;

fn main() {
    // State bodies and site files pass through in 4 MiB buffers (state::azure,
    // deploy::static_site). glibc raises its mmap threshold to the size of the largest
    // freed mmapped chunk, after which such buffers come from per-thread arenas that are
    // seldom returned to the system, so the peak RSS grew with the size of the document
    // though nubes never held more than a few buffers (issue 19). A fixed threshold keeps
    // every buffer of 1 MiB or more in its own mapping, returned when freed.
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match nubes::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if let Some(tip) = nubes::cli::usage_tip(e.kind(), &args) {
                eprintln!("{tip}");
            }
            std::process::exit(e.exit_code());
        }
    };
    std::process::exit(nubes::app::run(cli));
}
