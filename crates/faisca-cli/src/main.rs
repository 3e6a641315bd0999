//! The `faisca` binary. See `faisca --help`.

fn main() {
    faisca_cli::main();
}
