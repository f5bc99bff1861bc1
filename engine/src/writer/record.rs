//! The open transaction's journal record (design.md §11.3): its logical ops, appended as the
//! transaction makes them, cut back by a savepoint rollback, and handed to the journal at
//! commit. A transaction whose ops outgrow `journal_record_max` stops recording: it commits
//! through a checkpoint instead (§11.5).

use arbor_format::journal::{Op, RecordBuilder, RecordLimits, RecordMark};

/// The open transaction's record.
pub(crate) struct TxnRecord {
    builder: RecordBuilder,
    /// The ops outgrew the limit: the commit goes through a checkpoint.
    oversize: bool,
}

/// Where a savepoint found the record.
#[derive(Clone, Copy)]
pub(crate) struct TxnRecordMark {
    at: RecordMark,
    oversize: bool,
}

impl TxnRecord {
    pub(crate) fn new(limits: RecordLimits) -> TxnRecord {
        TxnRecord { builder: RecordBuilder::new(limits), oversize: false }
    }

    /// Appends one op (keys and names were checked against the limits by the caller).
    pub(crate) fn push(&mut self, op: Op<'_>) {
        if self.oversize {
            return;
        }
        if self.builder.append(op).is_err() {
            self.oversize = true;
            self.builder.clear();
        }
    }

    /// Whether ops are still recorded (the record has not outgrown the limit).
    pub(crate) fn is_recording(&self) -> bool {
        !self.oversize
    }

    pub(crate) fn mark(&self) -> TxnRecordMark {
        TxnRecordMark { at: self.builder.mark(), oversize: self.oversize }
    }

    /// Forgets the ops recorded after `m`. A record that outgrew the limit after the mark
    /// stays oversize (its ops are gone): the commit then takes a checkpoint, which is
    /// slower but covers exactly what the transaction did.
    pub(crate) fn truncate(&mut self, m: TxnRecordMark) {
        if !self.oversize {
            self.builder.truncate(m.at);
        }
        debug_assert!(self.oversize || !m.oversize, "a record cannot shrink back under the limit");
    }

    /// Empties the record for the next transaction.
    pub(crate) fn reset(&mut self) {
        self.builder.clear();
        self.oversize = false;
    }

    /// The finished ops, or `None` if the transaction must commit through a checkpoint.
    pub(crate) fn ops(&self) -> Option<&RecordBuilder> {
        (!self.oversize).then_some(&self.builder)
    }
}
