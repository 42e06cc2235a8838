//! `pubky-edge check` verifies a stopped server's data directory offline; `pubky-edge
//! compact` rewrites its database into a fresh one.

use crate::app;
use crate::config::Config;

/// `pubky-edge check`: opens the store as the server would (which also sweeps what a crash
/// can leave behind) and runs its full consistency check.
pub fn run(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    anyhow::ensure!(
        data_dir.join("db").is_dir(),
        "no store in {} (nothing has been stored there yet, or --data-dir is wrong)",
        data_dir.display()
    );
    let store = crate::store::Store::open(data_dir, app::store_config(config))
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let report = store
        .check()
        .context("the check could not read the store")?;
    smol::block_on(store.close()).context("closing the store")?;
    println!("files:       {}", report.entries);
    println!("blob files:  {}", report.blob_files);
    for (user, used) in &report.used_bytes {
        let who = crate::pubkey::PublicKey::from_bytes(*user)
            .map_or_else(|_| "<invalid key>".to_string(), |k| k.to_string());
        println!("user {who}: {used} bytes used");
    }
    if report.problems.is_empty() {
        println!("store is consistent");
        return Ok(());
    }
    for p in &report.problems {
        println!("problem:     {p}");
    }
    anyhow::bail!(
        "{} problem(s) found in {}",
        report.problems.len(),
        data_dir.display()
    )
}

/// `pubky-edge compact`: the store's own compaction, the server stopped.
pub fn compact(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        data_dir.join("db").is_dir(),
        "no store in {} (nothing has been stored there yet, or --data-dir is wrong)",
        data_dir.display()
    );
    let started = std::time::Instant::now();
    let r = crate::store::Store::compact(data_dir, &app::store_config(config))
        .map_err(|e| anyhow::anyhow!("cannot compact the store in {}: {e}", data_dir.display()))?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("records:     {}", r.records);
    println!(
        "database:    {:.1} MiB before, {:.1} MiB after ({:.1} s)",
        mib(r.bytes_before),
        mib(r.bytes_after),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
