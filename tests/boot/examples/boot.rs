//! Boots LKL and runs the boot test's cases, printing each result:
//! `cargo run --release -p lkl-boot-test --example boot`.
fn main() {
    let (passed, failed) = lkl_boot_test::run_all();
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}
