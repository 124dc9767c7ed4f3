fn main() -> std::process::ExitCode {
    token_exchange::cli::run()
}
