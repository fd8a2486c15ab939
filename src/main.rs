use clap::Parser;

fn main() {
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
