//! `profiler` binary: parse the command line, run, print an error once, exit non-zero.

fn main() {
    let code = match profiler::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("profiler: error: {err:#}");
            1
        }
    };
    std::process::exit(code);
}
