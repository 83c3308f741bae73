//! Where a store's bytes go: per-table stored, metadata and fragmented
//! bytes of a mailgate redb file, for the compact bench (issue 12 goal 4).
//!
//!   cargo run --release --example store_stats -- path/to/mailgate.redb

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: store_stats FILE.redb")?;
    let file_size = std::fs::metadata(&path)?.len();
    let db = Database::open(&path)?;
    let txn = db.begin_read()?;
    if std::env::args().nth(2).as_deref() == Some("ticket_events") {
        let table = txn.open_table(redb::TableDefinition::<(u64, u64), &[u8]>::new(
            "ticket_events",
        ))?;
        for entry in table.iter()?.take(3) {
            let (k, v) = entry?;
            println!(
                "{:?} ({} bytes): {}",
                k.value(),
                v.value().len(),
                String::from_utf8_lossy(v.value())
            );
        }
        return Ok(());
    }
    if let Some(name) = std::env::args().nth(2) {
        // `store_stats FILE messages`: the first two values of a u64-keyed table.
        let table = txn.open_table(redb::TableDefinition::<u64, &[u8]>::new(&name))?;
        for entry in table.iter()?.take(2).chain(table.iter()?.rev().take(1)) {
            let (k, v) = entry?;
            println!(
                "{} ({} bytes): {}",
                k.value(),
                v.value().len(),
                String::from_utf8_lossy(v.value())
            );
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for handle in txn.list_tables()? {
        let table = txn.open_untyped_table(handle)?;
        let s = table.stats()?;
        rows.push((
            table.name().to_string(),
            table.len()?,
            s.stored_bytes(),
            s.metadata_bytes(),
            s.fragmented_bytes(),
            s.leaf_pages() + s.branch_pages(),
        ));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.2 + r.3 + r.4));
    println!(
        "{:<22} {:>8} {:>12} {:>10} {:>12} {:>8}",
        "table", "entries", "stored", "metadata", "fragmented", "pages"
    );
    let mut sum = (0, 0, 0, 0);
    for (name, len, stored, meta, frag, pages) in &rows {
        println!("{name:<22} {len:>8} {stored:>12} {meta:>10} {frag:>12} {pages:>8}");
        sum = (sum.0 + stored, sum.1 + meta, sum.2 + frag, sum.3 + pages);
    }
    println!(
        "{:<22} {:>8} {:>12} {:>10} {:>12} {:>8}",
        "total", "", sum.0, sum.1, sum.2, sum.3
    );
    drop(txn);
    let w = db.begin_write()?;
    let d = w.stats()?;
    println!(
        "database: file {file_size} bytes, allocated pages {} x {} = {} bytes, \
         stored {}, metadata {}, fragmented {}",
        d.allocated_pages(),
        d.page_size(),
        d.allocated_pages() * d.page_size() as u64,
        d.stored_bytes(),
        d.metadata_bytes(),
        d.fragmented_bytes()
    );
    w.abort()?;
    Ok(())
}
