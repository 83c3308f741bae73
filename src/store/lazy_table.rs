//! A table of a write transaction opened on first use: a batch of mail
//! touches about half of the store's tables, and opening all ~25 up front
//! took ~11 % of the writer's CPU in a perf profile.

use std::cell::OnceCell;

use redb::{Key, Table, TableDefinition, Value, WriteTransaction};

use super::StoreError;

pub struct LazyTable<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    def: TableDefinition<'static, K, V>,
    table: OnceCell<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> LazyTable<'t, K, V> {
    pub fn new(txn: &'t WriteTransaction, def: TableDefinition<'static, K, V>) -> Self {
        LazyTable {
            txn,
            def,
            table: OnceCell::new(),
        }
    }

    /// The table for reading, opened now if this transaction has not yet.
    pub fn r(&self) -> Result<&Table<'t, K, V>, StoreError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = self.txn.open_table(self.def)?;
        Ok(self.table.get_or_init(|| table))
    }

    /// The table for writing, opened now if this transaction has not yet.
    pub fn w(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        if self.table.get().is_none() {
            let table = self.txn.open_table(self.def)?;
            let _ = self.table.set(table);
        }
        Ok(self.table.get_mut().expect("opened above"))
    }
}
