//! What openraft's suite does not check (it never reopens a store): the openraft adapter's vote,
//! purged log id, committed hint and entries survive drop and reopen, and a purge interrupted after
//! its log id was recorded is finished on reopen.

use openraft::LogId;
use openraft::alias::{EntryOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft_memstore::TypeConfig;
use tierlog::adapters::openraft::{ENGINE_DIR, OpenraftLogStore};
use tierlog::{Config, LogStore, StorageEngine, TieredEngine};

type C = TypeConfig;

fn log_id(term: u64, node: u64, index: u64) -> LogId<openraft::impls::leader_id_adv::LeaderId<u64, u64>> {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId { term, node_id: node },
        index,
    )
}

/// Appends and checks that the flush callback reported success.
async fn append(store: &mut OpenraftLogStore<C>, entries: Vec<EntryOf<C>>) {
    let (tx, rx) = C::oneshot();
    store
        .append(entries, openraft::storage::IOFlushed::signal(tx))
        .await
        .unwrap();
    rx.await
        .expect("append must call its callback")
        .expect("flush reported Ok");
}

#[test]
fn vote_purge_committed_and_entries_survive_reopen() {
    C::run(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = OpenraftLogStore::<C>::open(dir.path(), Config::default())
                .await
                .unwrap();
            let vote = VoteOf::<C>::new_committed(7, 3);
            store.save_vote(&vote).await.unwrap();
            let entries = (0..=20)
                .map(|i| EntryOf::<C>::new_blank(log_id(7, 3, i)))
                .collect();
            append(&mut store, entries).await;
            store.purge(log_id(7, 3, 9)).await.unwrap();
            store.save_committed(Some(log_id(7, 3, 15))).await.unwrap();
        }
        let mut store = OpenraftLogStore::<C>::open(dir.path(), Config::default())
            .await
            .unwrap();
        let vote = store.read_vote().await.unwrap().expect("vote survives reopen");
        assert_eq!(
            vote.leader_id(),
            &openraft::impls::leader_id_adv::LeaderId { term: 7, node_id: 3 }
        );
        assert!(vote.is_committed(), "the committed flag must survive reopen");
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(7, 3, 9)));
        assert_eq!(state.last_log_id, Some(log_id(7, 3, 20)));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(7, 3, 15)));
        let got = store.try_get_log_entries(0..100).await.unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.log_id().index).collect();
        assert_eq!(indexes, (10..=20).collect::<Vec<_>>());
        // openraft index i is tierlog index i + 1.
        assert_eq!(store.engine().log_store().last_index(), 21);
    });
}

#[test]
fn purge_recorded_but_not_applied_is_finished_on_reopen() {
    C::run(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = OpenraftLogStore::<C>::open(dir.path(), Config::default())
                .await
                .unwrap();
            let entries = (0..=10)
                .map(|i| EntryOf::<C>::new_blank(log_id(2, 1, i)))
                .collect();
            append(&mut store, entries).await;
            store.purge(log_id(2, 1, 4)).await.unwrap();
        }
        // Simulate a crash between recording the purge and purging the engine: put entries back
        // below the boundary (reset the engine and re-append through a store that does not know of
        // the purge), then put back the recorded metadata, which still says 4 is purged.
        {
            let engine = TieredEngine::open(dir.path().join(ENGINE_DIR), Config::default())
                .await
                .unwrap();
            let meta = engine.meta_store();
            let recorded = meta.load_app_meta().unwrap().expect("the purge was recorded");
            meta.save_app_meta(br#"{"format":1,"vote":null,"last_purged":null}"#)
                .unwrap();
            let log = engine.log_store();
            log.reset().await.unwrap();
            let mut store = OpenraftLogStore::<C>::with_engine(engine.clone(), dir.path().join("hint.json"))
                .await
                .unwrap();
            let entries = (0..=10)
                .map(|i| EntryOf::<C>::new_blank(log_id(2, 1, i)))
                .collect();
            append(&mut store, entries).await;
            assert_eq!(log.load_purge_boundary().unwrap(), None);
            meta.save_app_meta(&recorded).unwrap();
        }
        let store = OpenraftLogStore::<C>::open(dir.path(), Config::default())
            .await
            .unwrap();
        let boundary = store.engine().log_store().load_purge_boundary().unwrap();
        assert_eq!(
            boundary.map(|b| b.index),
            Some(5),
            "openraft index 4 is tierlog index 5"
        );
        assert!(store.engine().log_store().entry(5).await.unwrap().is_none());
        assert!(store.engine().log_store().entry(6).await.unwrap().is_some());
    });
}

#[test]
fn metadata_that_is_not_the_adapters_is_an_error_naming_the_file() {
    C::run(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = TieredEngine::open(dir.path().join(ENGINE_DIR), Config::default())
                .await
                .unwrap();
            engine.meta_store().save_app_meta(b"{not json").unwrap();
        }
        let err = OpenraftLogStore::<C>::open(dir.path(), Config::default())
            .await
            .err()
            .expect("unreadable vote metadata must not be ignored");
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("appmeta"), "{err}");
    });
}
