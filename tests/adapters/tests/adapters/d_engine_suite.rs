//! d-engine 0.2.4's own storage conformance suite (`StorageEngineTestSuite`, 15 cases including the
//! four drop-and-reopen durability cases) against tierlog through the d-engine adapter.
//!
//! Run: `PROTOC=$(cargo xtask protoc) cargo test --features d-engine-tests --test adapters d_engine_suite`
//! (`cargo xtask test` runs it with everything else).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use d_engine::storage_engine_test::{StorageEngineBuilder, StorageEngineTestSuite};
use tierlog::Config;
use tierlog::adapters::d_engine::{DEngineStorage, to_d_engine_error};

/// Reopens the same directory on every build, as the suite's durability cases require.
struct TierlogBuilder {
    dir: PathBuf,
    config: Config,
}

#[async_trait]
impl StorageEngineBuilder for TierlogBuilder {
    type Engine = DEngineStorage;

    async fn build(&self) -> Result<Arc<DEngineStorage>, d_engine::Error> {
        let storage = DEngineStorage::open(&self.dir, self.config.clone())
            .await
            .map_err(to_d_engine_error)?;
        Ok(Arc::new(storage))
    }

    async fn cleanup(&self) -> Result<(), d_engine::Error> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_engine_storage_suite_default_config() {
    let dir = tempfile::tempdir().unwrap();
    let builder = TierlogBuilder {
        dir: dir.path().join("engine"),
        config: Config::default(),
    };
    StorageEngineTestSuite::run_all_tests(builder).await.unwrap();
}

/// Same suite with `sync_on_persist` (is_write_durable() == true, so no flush is ever called).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_engine_storage_suite_sync_on_persist() {
    let dir = tempfile::tempdir().unwrap();
    let builder = TierlogBuilder {
        dir: dir.path().join("engine"),
        config: Config {
            sync_on_persist: true,
            ..Config::default()
        },
    };
    StorageEngineTestSuite::run_all_tests(builder).await.unwrap();
}

/// d-engine drives storage from a current-thread runtime on its IO thread; the suite must pass there
/// too (dropping the engine inside such a runtime must release the directory).
#[tokio::test(flavor = "current_thread")]
async fn d_engine_storage_suite_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let builder = TierlogBuilder {
        dir: dir.path().join("engine"),
        config: Config {
            memory_budget_bytes: 1 << 20,
            // A trigger below the block size once livelocked the compactor (tests/contract/engine_drop_hang.rs).
            compaction_trigger_bytes: 1 << 10,
            hot_tail_entries: 4,
            ..Config::default()
        },
    };
    StorageEngineTestSuite::run_all_tests(builder).await.unwrap();
}
