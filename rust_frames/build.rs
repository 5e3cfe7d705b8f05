//! The build check of the Python package: building the extension (the `python` feature, what
//! maturin builds for a wheel, an sdist's wheel or `maturin develop`) fails when the files the
//! server serves are not in the package: `pyserver/_static/MANIFEST` and every file it lists
//! (the socket.io-client bundles, the demo's pages), written by `scripts/pack_static.py` from
//! the npm packages. The pure codec (`--no-default-features`, the Rust tests) needs none.

use std::path::Path;

fn main() {
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let packaged = Path::new(&crate_dir).join("../pyserver/_static");
    let manifest = packaged.join("MANIFEST");
    // A path that does not exist is always out of date: a missing manifest is checked again.
    println!("cargo::rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|err| {
        panic!(
            "{}: {err}. The package must carry the socket.io client and the demo's pages: \
             run scripts/pack_static.py (after npm ci in web/) before building",
            manifest.display()
        )
    });
    let missing: Vec<&str> = text
        .lines()
        .skip(1) // the client's name and version
        .filter(|rel| !rel.is_empty() && !packaged.join(rel).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "pyserver/_static lacks {missing:?}: run scripts/pack_static.py before building"
    );
}
