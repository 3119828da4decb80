//! Usage and quota: the ledger service the filters report to.

mod ledger;

pub use ledger::LedgerServer;
