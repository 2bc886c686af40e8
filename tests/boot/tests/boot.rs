//! The boot test, as an integration test with its own runner: one kernel
//! per process, so the cases run in order against one boot.
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // child mode: a boot that must fail cleanly
    if std::env::var_os("LKL_BOOT_TEST_TINY_MEM").is_some() {
        let opts = lkl::BootOptions {
            memory: 4 << 20,
            ..Default::default()
        };
        return match lkl::boot(&opts) {
            Ok(_) => {
                println!("booted with mem=4M");
                ExitCode::SUCCESS
            }
            Err(err) => {
                println!("boot error: {err}");
                ExitCode::from(3)
            }
        };
    }

    let (mut passed, mut failed) = lkl_boot_test::run_all();

    // mem= too small: a clear error, in a process of its own, no hang
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .env("LKL_BOOT_TEST_TINY_MEM", "1")
        .output()
        .expect("spawn the tiny-mem child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stdout.contains("boot error") && stderr.contains("too small")
    {
        passed += 1;
        println!("test boot::tiny_mem_is_a_clear_error ... ok");
    } else {
        failed += 1;
        println!(
            "test boot::tiny_mem_is_a_clear_error ... FAILED: status {:?}, stdout {stdout:?}, stderr {stderr:?}",
            out.status
        );
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
