//! The `segward` binary: everything lives in the library; see `segward::cli`.

fn main() -> std::process::ExitCode {
    segward::cli::main()
}
