//! Writes the fuzz seed corpus (`podgraft::fuzzing::seeds`) to `fuzz/seeds/<target>/`; run by
//! hand after changing the seeds: `cargo run --example write-fuzz-seeds`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, name, data) in podgraft::fuzzing::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), data)?;
    }
    println!("seeds written to {}", root.display());
    Ok(())
}
