//! What openraft's suite does not check (it never reopens a store): the openraft adapter's vote,
//! purged log id, committed hint and entries survive drop and reopen, and a purge interrupted after
//! its log id was recorded is finished on reopen; with several groups on one engine, each group's
//! come back as its own.

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

/// Several groups on one engine: each group's vote, purged log id, committed hint and entries come
/// back after a reopen as that group's own, and group 0 is what `open` serves.
#[test]
fn each_groups_vote_purge_committed_and_entries_survive_reopen() {
    C::run(async {
        let dir = tempfile::tempdir().unwrap();
        let engine_dir = dir.path().join(ENGINE_DIR);
        let hint = |g: u64| dir.path().join(format!("committed-{g}.json"));
        // (group, term, leader node, last index, purged index, committed index)
        let plan = [
            (0u64, 7u64, 3u64, 20u64, 9u64, 15u64),
            (5, 4, 2, 30, 12, 28),
            (9, 11, 1, 8, 2, 6),
        ];
        {
            let engine = TieredEngine::open(&engine_dir, Config::default()).await.unwrap();
            for (g, term, node, last, purged, committed) in plan {
                let group = engine.create_group(g).await.unwrap();
                let mut store = OpenraftLogStore::<C>::with_group(group, hint(g)).await.unwrap();
                assert_eq!(store.group_id(), g);
                store
                    .save_vote(&VoteOf::<C>::new_committed(term, node))
                    .await
                    .unwrap();
                let entries = (0..=last)
                    .map(|i| EntryOf::<C>::new_blank(log_id(term, node, i)))
                    .collect();
                append(&mut store, entries).await;
                store.purge(log_id(term, node, purged)).await.unwrap();
                store
                    .save_committed(Some(log_id(term, node, committed)))
                    .await
                    .unwrap();
            }
            engine.close().await.unwrap();
        }
        let engine = TieredEngine::open(&engine_dir, Config::default()).await.unwrap();
        assert_eq!(engine.groups(), vec![0, 5, 9]);
        for (g, term, node, last, purged, committed) in plan {
            let mut store = OpenraftLogStore::<C>::with_group(engine.group(g).unwrap(), hint(g))
                .await
                .unwrap();
            let vote = store.read_vote().await.unwrap().expect("vote survives reopen");
            assert_eq!(vote, VoteOf::<C>::new_committed(term, node), "group {g}");
            let state = store.get_log_state().await.unwrap();
            assert_eq!(
                state.last_purged_log_id,
                Some(log_id(term, node, purged)),
                "group {g}"
            );
            assert_eq!(state.last_log_id, Some(log_id(term, node, last)), "group {g}");
            assert_eq!(
                store.read_committed().await.unwrap(),
                Some(log_id(term, node, committed)),
                "group {g}"
            );
            let got = store.try_get_log_entries(0..100).await.unwrap();
            assert_eq!(
                got.iter().map(|e| e.log_id()).collect::<Vec<_>>(),
                (purged + 1..=last)
                    .map(|i| log_id(term, node, i))
                    .collect::<Vec<_>>(),
                "group {g}"
            );
        }
        engine.close().await.unwrap();
        // `open` serves group 0 of the same directory (its hint file is another one, so no hint).
        let mut store = OpenraftLogStore::<C>::open(dir.path(), Config::default())
            .await
            .unwrap();
        assert_eq!(store.group_id(), 0);
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(VoteOf::<C>::new_committed(7, 3))
        );
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(log_id(7, 3, 20))
        );
    });
}

#[test]
fn a_groups_metadata_that_is_not_the_adapters_is_an_error_naming_the_group() {
    C::run(async {
        let dir = tempfile::tempdir().unwrap();
        let engine = TieredEngine::open(dir.path(), Config::default()).await.unwrap();
        let group = engine.create_group(3).await.unwrap();
        group.meta_store().save_app_meta(b"{not json").unwrap();
        let err = OpenraftLogStore::<C>::with_group(group, dir.path().join("hint.json"))
            .await
            .err()
            .expect("unreadable vote metadata must not be ignored");
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("group 3"), "{err}");
        // Another group's metadata is not touched by it.
        let other = engine.create_group(4).await.unwrap();
        OpenraftLogStore::<C>::with_group(other, dir.path().join("hint4.json"))
            .await
            .unwrap();
    });
}
