//! `profiler` binary: parse the command line, run, print an error once (with its causes),
//! exit non-zero. Only the binary knows clap and anyhow; the library does the work.

mod cli;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("profiler: error: {err:#}");
            1
        }
    };
    std::process::exit(code);
}
