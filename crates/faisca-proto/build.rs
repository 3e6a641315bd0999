//! Compiles `proto/faisca/v1/*.proto` with protox (pure Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with `env!`: a build-script binary reused from a shared
    // target directory (CI's cache, built in another clone) must look in this checkout.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("faisca/v1/faisca.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let descriptors = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        .bytes(".faisca.v1.LaunchTask.plan")
        .compile_fds(descriptors)?;
    Ok(())
}
