//! openraft 0.10.0-alpha.37's own log-storage conformance suite (`openraft::testing::log::Suite`, 45
//! cases) against tierlog through the openraft adapter, with openraft-memstore's state machine.
//!
//! Run: `cargo test -p tierlog-adapter-tests openraft_suite` (the binary needs `protoc`, see main.rs).

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft_memstore::{BlockConfig, MemStateMachine, TypeConfig};
use tierlog::Config;
use tierlog::adapters::openraft::OpenraftLogStore;

/// Every case gets a fresh, empty store in its own temporary directory.
struct TierlogBuilder {
    config: Config,
}

impl StoreBuilder<TypeConfig, OpenraftLogStore<TypeConfig>, Arc<MemStateMachine>, tempfile::TempDir>
    for TierlogBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            OpenraftLogStore<TypeConfig>,
            Arc<MemStateMachine>,
        ),
        StorageError<TypeConfig>,
    > {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = OpenraftLogStore::<TypeConfig>::open(dir.path(), self.config.clone())
            .await
            .expect("open tierlog");
        let sm = Arc::new(MemStateMachine::new(BlockConfig::default()));
        Ok((dir, store, sm))
    }
}

#[test]
fn openraft_log_suite_default_config() {
    TypeConfig::run(async {
        Suite::test_all(TierlogBuilder {
            config: Config::default(),
        })
        .await
        .unwrap();
    });
}

/// The same 45 cases with every entry pushed towards the cold tier as soon as possible.
#[test]
fn openraft_log_suite_small_budget() {
    TypeConfig::run(async {
        Suite::test_all(TierlogBuilder {
            config: Config {
                memory_budget_bytes: 1 << 20,
                compaction_trigger_bytes: 1 << 10,
                hot_tail_entries: 1,
                compaction_interval_ms: 1,
                ..Config::default()
            },
        })
        .await
        .unwrap();
    });
}
