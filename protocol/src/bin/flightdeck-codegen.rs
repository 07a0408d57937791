//! Writes the JSON Schema and TypeScript definitions of every wire type into `protocol/generated/`.
//! With `--check`, writes nothing and exits 1 when the committed files are stale.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("generated");
    let mut stale = Vec::new();
    for (name, contents) in flightdeck_protocol::codegen::generated_files() {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == contents {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, contents)) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            eprintln!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "stale generated files (run `cargo run -p flightdeck-protocol --bin flightdeck-codegen`): {}",
            stale.join(", ")
        );
        ExitCode::FAILURE
    }
}
