//! Generates the system call name table (`names.rs` in `OUT_DIR`) from
//! `syscall_64.tbl`, the kernel's own x86-64 table.
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let table = manifest.join("syscall_64.tbl");
    println!("cargo:rerun-if-changed={}", table.display());
    let text =
        std::fs::read_to_string(&table).unwrap_or_else(|e| panic!("{}: {e}", table.display()));

    let mut names: Vec<String> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [nr, abi, name, ..] = fields[..] else {
            panic!(
                "{}:{}: expected <number> <abi> <name>",
                table.display(),
                lineno + 1
            );
        };
        if abi == "x32" {
            continue;
        }
        let nr: usize = nr
            .parse()
            .unwrap_or_else(|_| panic!("{}:{}: bad number {nr}", table.display(), lineno + 1));
        if names.len() <= nr {
            names.resize(nr + 1, String::new());
        }
        assert!(
            names[nr].is_empty(),
            "{}:{}: number {nr} assigned twice",
            table.display(),
            lineno + 1
        );
        names[nr] = name.to_owned();
    }

    let mut out = String::new();
    writeln!(out, "/// Number of entries in [`NAMES`].").unwrap();
    writeln!(out, "pub const COUNT: usize = {};", names.len()).unwrap();
    writeln!(
        out,
        "/// `NAMES[nr]` is the name of syscall `nr`, or `\"\"` for an unassigned number."
    )
    .unwrap();
    writeln!(out, "pub static NAMES: [&str; COUNT] = [").unwrap();
    for n in &names {
        writeln!(out, "    {n:?},").unwrap();
    }
    writeln!(out, "];").unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("names.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
