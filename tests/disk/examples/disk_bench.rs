//! Sequential throughput through virtio-blk: a file read from and written
//! to an ext4 image inside LKL, beside the same read on the host (page
//! cache warm on both sides of the image file).
//!
//! `cargo run --release -p lkl-disk-test --example disk_bench [MIB]`

use std::time::Instant;

use lkl_disk_test::{lkl_read, lkl_write, noise, run, scratch, sparse};

fn main() -> Result<(), String> {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(Ok(100), |a| a.parse())
        .map_err(|e| format!("MIB: {e}"))?;
    let dir = scratch();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    let data = noise(mib << 20, 42);
    std::fs::write(src.join("big"), &data).map_err(|e| e.to_string())?;
    let img = dir.join("bench.img");
    sparse(&img, (3 * mib as u64 + 64) << 20)?;
    let img_s = img.to_str().ok_or("utf-8 path")?;
    run(
        "mkfs.ext4",
        &["-q", "-F", "-d", src.to_str().ok_or("utf-8")?, img_s],
    )?;

    let t = Instant::now();
    let host = std::fs::read(src.join("big")).map_err(|e| e.to_string())?;
    let host_read = t.elapsed();
    drop(host);

    let id = lkl::add_disk(lkl::Disk::open(&img, false).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let kernel = lkl::boot(&lkl::BootOptions {
        memory: 256 << 20,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let mnt = lkl::mount_disk(id, None, "ext4", None, false).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let got = lkl_read(mnt.join("big"))?;
    let lkl_read_t = t.elapsed();
    if got != data {
        return Err("read back different contents".into());
    }
    let t = Instant::now();
    lkl_write(mnt.join("copy"), &data)?;
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    let lkl_write_t = t.elapsed();
    let stats = lkl::disk_stats(id).map_err(|e| e.to_string())?;
    kernel.halt().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);

    let rate = |d: std::time::Duration| mib as f64 / d.as_secs_f64();
    println!("{mib} MiB file");
    println!(
        "host read (page cache):        {:8.0} MiB/s",
        rate(host_read)
    );
    println!(
        "LKL read (cold kernel cache):  {:8.0} MiB/s",
        rate(lkl_read_t)
    );
    println!(
        "LKL write + umount:            {:8.0} MiB/s",
        rate(lkl_write_t)
    );
    println!(
        "requests: {} reads ({} KiB avg), {} writes ({} KiB avg), {} flushes",
        stats.reads,
        stats.bytes_read / stats.reads.max(1) / 1024,
        stats.writes,
        stats.bytes_written / stats.writes.max(1) / 1024,
        stats.flushes
    );
    Ok(())
}
