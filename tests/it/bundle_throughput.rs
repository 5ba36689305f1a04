//! Verification throughput on a 1 GiB bundle, compared with `openssl dgst -sha256` on the same
//! zip. Ignored by default (it writes 2 GiB); run it with
//! `cargo test --release --test bundle_throughput -- --ignored --nocapture`.
//! `benches/verify_1gib.sh` measures the same through the CLI, with peak RSS.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qasid::bundle::{self, CreateOptions};
use qasid::keys::SecretKey;
use qasid::limits::BundleLimits;

const GIB: u64 = 1 << 30;

/// 1 GiB of xorshift noise: incompressible, and much faster to make than /dev/urandom.
fn write_noise(path: &Path) {
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..GIB / chunk.len() as u64 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).unwrap();
    }
    file.flush().unwrap();
}

fn best_of_3(mut run: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Peak resident set size of this process so far, from /proc (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[test]
#[ignore = "writes 2 GiB; run explicitly with --release --ignored"]
fn verifying_1gib_runs_close_to_openssl_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("article-1gib");
    fs::create_dir(&src).unwrap();
    fs::write(
        src.join("article.md"),
        "---\ntitle: Benchmark article\nauthor: qasid bench\ndate: 2026-01-01\nlanguage: en\n---\n\nOne big stored file.\n",
    )
    .unwrap();
    write_noise(&src.join("video.bin"));
    let key = SecretKey::from_seed(&[0x42; 32]);
    let zip = dir.path().join("bench.zip");
    let created = bundle::create(&src, &key, &zip, &CreateOptions::default()).unwrap();
    let size = created.size() as f64;
    let rss_before = peak_rss_mib();

    let limits = BundleLimits::default();
    let qasid = best_of_3(|| {
        bundle::verify_file(&zip, key.public(), &limits).unwrap();
    });
    let mb_per_s = |d: Duration| size / 1e6 / d.as_secs_f64();
    println!(
        "qasid verify_file:  {:.2} s, {:.0} MB/s",
        qasid.as_secs_f64(),
        mb_per_s(qasid)
    );
    if let (Some(before), Some(after)) = (rss_before, peak_rss_mib()) {
        println!(
            "peak RSS of the test process: {before:.1} MiB before verifying, {after:.1} MiB after"
        );
    }

    let openssl_available = Command::new("openssl").arg("version").output().is_ok();
    if !openssl_available {
        println!("openssl is not installed: no comparison");
        return;
    }
    let openssl = best_of_3(|| {
        let status = Command::new("openssl")
            .args(["dgst", "-sha256"])
            .arg(&zip)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    });
    let ratio = qasid.as_secs_f64() / openssl.as_secs_f64();
    println!(
        "openssl dgst -sha256: {:.2} s, {:.0} MB/s; qasid/openssl time ratio {ratio:.2}",
        openssl.as_secs_f64(),
        mb_per_s(openssl)
    );
    // Generous, since shared machines are noisy: verifying hashes each byte once (plus a crc32),
    // so it must stay in the same league as hashing alone.
    assert!(
        ratio < 2.0,
        "verification is {ratio:.2}x slower than sha256 alone"
    );
}
