//! openraft's own storage conformance suite (`openraft::testing::Suite`) against
//! `arbor-raft`: every test gets a fresh store on a temporary file.

use arbor_raft::{LogStore, LogSync, StateMachine, StorageError, StoreOptions, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct ArborBuilder {
    log_sync: LogSync,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for ArborBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        // O_DIRECT needs a real filesystem: the temporary directory is on disk here.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let opts = StoreOptions {
            engine: arbor::Options {
                file_initial_bytes: 8 << 20,
                ..StoreOptions::default().engine
            },
            log_sync: self.log_sync,
        };
        let (log, sm) = arbor_raft::open(&dir.path().join("node.arbor"), opts)
            .expect("creating a store on a temporary file");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_pipelined_appends() {
    Suite::test_all(ArborBuilder { log_sync: LogSync::Pipelined }).expect("storage suite");
}

#[test]
fn openraft_storage_suite_immediate_appends() {
    Suite::test_all(ArborBuilder { log_sync: LogSync::Immediate }).expect("storage suite");
}
