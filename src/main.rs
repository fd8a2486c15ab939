use clap::Parser;

fn main() {
    let cli = nubes::cli::Cli::parse_from(std::env::args_os());
    std::process::exit(nubes::app::run(cli));
}
