//! One suite of behaviours every `ConversationStore` keeps, run against every
//! backend: the in-process store, `TableStore` on a table of its own in the shared
//! Azurite, and `CosmosStore` on a container of its own in the shared Cosmos DB
//! stand-in; among them the expectation rules (an append states what it found,
//! and is refused, storing nothing, once that no longer holds). Then what only
//! the durable stores promise: several stores (as several handler processes)
//! sharing one table or container.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};
use session_rag::domain::{CustomerId, NewTurn, SessionId};
use session_rag::storage::{
    Appended, ConversationStore, Deleted, Expectation, InProcessStore, ListPosition,
    SessionSummary, StorageError, TableStore, Window,
};

use crate::azurite::{shared_table_endpoint, unique_table_name};
use crate::cosmos::{cosmos_store, unique_container_name};
use crate::helpers::{
    delete_as_read, insert_batched, raw_table_client, sessions_table_for, shared_table_store,
    stored_rows,
};

/// A fresh, empty store of one kind.
struct Backend {
    store: Arc<dyn ConversationStore>,
    kind: Kind,
}

#[derive(Debug, PartialEq)]
enum Kind {
    InProcess,
    Table,
    Cosmos,
}

fn in_process() -> Backend {
    Backend {
        store: Arc::new(InProcessStore::new(1 << 30)),
        kind: Kind::InProcess,
    }
}

fn table_storage() -> Backend {
    Backend {
        store: Arc::new(shared_table_store(&unique_table_name("conformance"))),
        kind: Kind::Table,
    }
}

async fn cosmos_db() -> Backend {
    Backend {
        store: Arc::new(cosmos_store(&unique_container_name("conformance")).await),
        kind: Kind::Cosmos,
    }
}

/// Runs each behaviour once per backend, as `in_process::name`, `table_storage::name`
/// and `cosmos_db::name`.
macro_rules! conformance_suite {
    ($($behaviour:ident),+ $(,)?) => {
        mod in_process {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(super::in_process()).await;
            })+
        }
        mod table_storage {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(super::table_storage()).await;
            })+
        }
        mod cosmos_db {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(super::cosmos_db().await).await;
            })+
        }
    };
}

conformance_suite!(
    appends_are_numbered_from_zero,
    recent_returns_the_last_turns_oldest_first_with_the_total,
    all_returns_every_turn_with_its_fields,
    delete_removes_a_session_and_numbering_starts_again,
    concurrent_appends_get_unique_gap_free_numbers,
    awkward_session_ids_stay_isolated,
    long_content_round_trips_byte_identical,
    a_turn_too_large_for_one_entity,
    owned_sessions_are_listed_for_their_owner_only,
    a_deleted_session_leaves_the_listing,
    purge_deletes_sessions_whose_last_turn_is_before_the_cutoff,
    the_first_turn_names_the_owner,
    pages_run_latest_first_ties_by_session_id_and_continue_exactly,
    pages_leave_out_what_expired_before_the_cutoff,
    a_continued_conversation_moves_up_and_is_listed_once,
    concurrent_turns_of_one_conversation_leave_one_entry,
    turn_zero_is_refused_once_taken_and_its_owner_owns_the_conversation,
    a_continuation_is_refused_once_another_turn_follows,
    a_continuation_is_refused_after_a_delete,
    a_continuation_is_refused_after_a_restart,
    a_restart_replaces_only_the_conversation_it_saw,
    a_restart_is_refused_once_the_conversation_was_continued,
    a_delete_leaves_a_restart_made_since_its_read_alone,
    the_window_names_turn_zeros_owner_and_its_last_version,
    the_version_an_append_returns_is_the_one_a_read_finds,
);

fn session(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

fn turn(user: &str) -> NewTurn {
    NewTurn {
        user: user.into(),
        assistant: format!("answer to {user}"),
        metadata_json: "{}".into(),
        timestamp: Utc::now(),
        owner: None,
    }
}

fn users(turns: &[session_rag::domain::Turn]) -> Vec<&str> {
    turns.iter().map(|t| t.user.as_str()).collect()
}

/// Appends `turn` as a query does: after the last turn it reads, reading again
/// whenever the session changed first. Its number, or the store's error.
pub(crate) async fn append(
    store: &dyn ConversationStore,
    session: &SessionId,
    turn: NewTurn,
) -> Result<u64, StorageError> {
    loop {
        let expected = store.recent(session, 1).await?.continuation();
        match store.append(session, turn.clone(), expected).await? {
            Appended::Stored { number, .. } => return Ok(number),
            Appended::Changed => continue,
        }
    }
}

async fn append_all(store: &dyn ConversationStore, session: &SessionId, count: usize) {
    for n in 0..count {
        append(store, session, turn(&format!("q{n}")))
            .await
            .unwrap();
    }
}

async fn appends_are_numbered_from_zero(backend: Backend) {
    let s = session("numbering");
    for expected in 0..5 {
        assert_eq!(
            append(backend.store.as_ref(), &s, turn("q")).await,
            Ok(expected)
        );
    }
}

async fn recent_returns_the_last_turns_oldest_first_with_the_total(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("window");
    append_all(store, &s, 7).await;

    let window = store.recent(&s, 3).await.unwrap();
    assert_eq!(window.total, 7);
    assert_eq!(users(&window.turns), ["q4", "q5", "q6"]);
    assert_eq!(
        window.turns.iter().map(|t| t.index).collect::<Vec<_>>(),
        [4, 5, 6]
    );

    let everything = store.recent(&s, 50).await.unwrap();
    assert_eq!(everything.total, 7);
    assert_eq!(
        users(&everything.turns),
        ["q0", "q1", "q2", "q3", "q4", "q5", "q6"]
    );

    let unknown = store.recent(&session("never-used"), 10).await.unwrap();
    assert_eq!(unknown.total, 0);
    assert!(unknown.turns.is_empty());
}

async fn all_returns_every_turn_with_its_fields(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("fields");
    let when: DateTime<Utc> = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let written = [
        NewTurn {
            user: "What does LONPF2 do?".into(),
            assistant: "It reads the loan payment file.".into(),
            metadata_json: r#"{"channel":"teams","n":1}"#.into(),
            timestamp: when + chrono::Duration::milliseconds(999),
            owner: Some(CustomerId::parse("customer-7").unwrap()),
        },
        NewTurn {
            user: "What copybooks does it use?".into(),
            assistant: "LNPAYREC and DATEWS.".into(),
            metadata_json: "{}".into(),
            timestamp: when + chrono::Duration::seconds(61),
            owner: None,
        },
    ];
    for turn in &written {
        append(store, &s, turn.clone()).await.unwrap();
    }
    let stored = store.all(&s).await.unwrap();
    assert_eq!(stored.len(), written.len());
    // A Cosmos DB document has one owner, its turn 0's; Table Storage keeps one per turn.
    let conversation_owner = written[0].owner.clone();
    for (index, (stored, written)) in stored.iter().zip(&written).enumerate() {
        assert_eq!(stored.index, index as u64);
        assert_eq!(stored.user, written.user);
        assert_eq!(stored.assistant, written.assistant);
        assert_eq!(stored.metadata_json, written.metadata_json);
        if backend.kind == Kind::Cosmos {
            assert_eq!(stored.owner, conversation_owner);
        } else {
            assert_eq!(stored.owner, written.owner);
        }
        // Stored to the second (RFC 3339, as the contract writes it).
        assert_eq!(stored.timestamp.timestamp(), written.timestamp.timestamp());
    }
    assert!(store.all(&session("nobody")).await.unwrap().is_empty());
}

async fn delete_removes_a_session_and_numbering_starts_again(backend: Backend) {
    let store = backend.store.as_ref();
    let (doomed, kept) = (session("doomed"), session("kept"));
    append_all(store, &doomed, 3).await;
    append_all(store, &kept, 2).await;

    let seen = store.recent(&doomed, 1).await.unwrap().seen().unwrap();
    assert_eq!(
        store.delete(&doomed, seen.clone()).await,
        Ok(Deleted::Deleted)
    );
    assert_eq!(store.recent(&doomed, 10).await.unwrap().total, 0);
    assert!(store.all(&doomed).await.unwrap().is_empty());
    assert_eq!(
        store.delete(&doomed, seen.clone()).await,
        Ok(Deleted::Missing)
    );
    assert_eq!(append(store, &doomed, turn("again")).await, Ok(0));
    assert_eq!(store.recent(&kept, 10).await.unwrap().total, 2);

    // Started again, it is not the conversation seen any more.
    assert_eq!(store.delete(&doomed, seen).await, Ok(Deleted::Changed));
    assert_eq!(stored_users(store, &doomed).await, ["again"]);
}

async fn concurrent_appends_get_unique_gap_free_numbers(backend: Backend) {
    append_concurrently(&[backend.store], &session("busy"), 50, None).await;
}

/// `appends` concurrent appends to `s` (owned by `owner`), spread over `stores` as
/// over handler processes; asserts their numbers are unique and gap-free and each
/// turn is stored once, under the number its append was told.
async fn append_concurrently(
    stores: &[Arc<dyn ConversationStore>],
    s: &SessionId,
    appends: usize,
    owner: Option<&CustomerId>,
) {
    let appends = (0..appends).map(|n| {
        let store = stores[n % stores.len()].clone();
        let s = s.clone();
        let turn = NewTurn {
            owner: owner.cloned(),
            ..turn(&format!("concurrent {n}"))
        };
        tokio::spawn(async move {
            let user = turn.user.clone();
            let number = append(store.as_ref(), &s, turn).await.unwrap();
            (number, user)
        })
    });
    let mut acknowledged: Vec<(u64, String)> = futures::future::join_all(appends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    acknowledged.sort();
    let numbers: Vec<u64> = acknowledged.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (0..acknowledged.len() as u64).collect::<Vec<_>>());

    let stored = stores[0].all(s).await.unwrap();
    let stored: Vec<(u64, String)> = stored.into_iter().map(|t| (t.index, t.user)).collect();
    assert_eq!(stored, acknowledged);
}

async fn awkward_session_ids_stay_isolated(backend: Backend) {
    let store = backend.store.as_ref();
    // Look-alikes side by side: quotes (doubled and not), spaces, case, accents,
    // scripts, and an id that would widen a filter if quotes were not escaped.
    let ids = [
        "o'brien",
        "o''brien",
        "obrien",
        "o brien",
        " o brien ",
        "O'Brien",
        "Zoë",
        "Zoe\u{0308}",
        "会话",
        "會話",
        "x' or PartitionKey ne '",
        "'",
    ];
    for (i, id) in ids.iter().enumerate() {
        for n in 0..=i {
            append(store, &session(id), turn(&format!("{id}#{n}")))
                .await
                .unwrap();
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let window = store.recent(&session(id), 100).await.unwrap();
        assert_eq!(window.total, i as u64 + 1, "{id:?}");
        let expected: Vec<String> = (0..=i).map(|n| format!("{id}#{n}")).collect();
        assert_eq!(users(&window.turns), expected, "{id:?}");
        assert_eq!(store.all(&session(id)).await.unwrap().len(), i + 1);
    }
    assert_eq!(
        delete_as_read(store, &session("o'brien")).await,
        Ok(Deleted::Deleted)
    );
    assert_eq!(
        store.recent(&session("o''brien"), 10).await.unwrap().total,
        2
    );
    assert_eq!(
        store
            .recent(&session("x' or PartitionKey ne '"), 100)
            .await
            .unwrap()
            .total,
        11
    );
}

async fn long_content_round_trips_byte_identical(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("long");
    // 100,000 characters with emoji (two UTF-16 units each) everywhere, so any split
    // at a fixed unit count would land inside one.
    let pattern: Vec<char> = "ab😀é中🎉\u{10FFFF}z".chars().collect();
    let long = |offset: usize| -> String {
        (0..100_000)
            .map(|i| pattern[(i + offset) % pattern.len()])
            .collect()
    };
    let (question, answer) = (long(0), long(3));
    let written = NewTurn {
        user: question.clone(),
        assistant: answer.clone(),
        metadata_json: "{}".into(),
        timestamp: Utc::now(),
        owner: None,
    };
    assert_eq!(append(store, &s, written).await, Ok(0));
    let stored = store.all(&s).await.unwrap();
    assert_eq!(stored[0].user.as_bytes(), question.as_bytes());
    assert_eq!(stored[0].assistant.as_bytes(), answer.as_bytes());
    let window = store.recent(&s, 10).await.unwrap();
    assert_eq!(window.turns[0].assistant, answer);
}

/// Table Storage caps an entity at 1 MiB, so that store refuses such a turn (never
/// truncating it). Cosmos DB caps a whole conversation's document at 2 MB: it keeps
/// the turn and refuses the one that would cross that. The in-process store has no
/// per-turn limit (its cap is on all sessions together) and keeps it.
async fn a_turn_too_large_for_one_entity(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("huge");
    let huge = NewTurn {
        user: "q".into(),
        assistant: "x".repeat(600_000),
        metadata_json: "{}".into(),
        timestamp: Utc::now(),
        owner: None,
    };
    let result = append(store, &s, huge).await;
    match backend.kind {
        Kind::Table => {
            match result {
                Err(StorageError::Rejected(message)) => {
                    assert!(message.contains("1 MiB"), "{message}")
                }
                other => panic!("expected Rejected, got {other:?}"),
            }
            assert_eq!(store.recent(&s, 10).await.unwrap().total, 0);
        }
        Kind::InProcess => {
            assert_eq!(result, Ok(0));
            assert_eq!(store.all(&s).await.unwrap()[0].assistant.len(), 600_000);
        }
        Kind::Cosmos => {
            assert_eq!(result, Ok(0));
            let over = NewTurn {
                assistant: "x".repeat(1_500_000),
                ..turn("q")
            };
            match append(store, &s, over).await {
                Err(StorageError::Rejected(message)) => {
                    assert!(message.contains("2 MB"), "{message}")
                }
                other => panic!("expected Rejected, got {other:?}"),
            }
            let stored = store.all(&s).await.unwrap();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].assistant.len(), 600_000);
        }
    }
}

fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).unwrap()
}

/// Appends a turn asked by `owner` at `timestamp` and lists it, as a query does.
async fn append_listed(
    store: &dyn ConversationStore,
    session: &SessionId,
    owner: Option<&CustomerId>,
    user: &str,
    timestamp: DateTime<Utc>,
) -> u64 {
    let turn = NewTurn {
        owner: owner.cloned(),
        timestamp,
        ..self::turn(user)
    };
    let number = append(store, session, turn.clone()).await.unwrap();
    store.update_listing(session, number, &turn).await.unwrap();
    number
}

/// `owner`'s whole listing in listing order, `limit` to a page, expired or not.
async fn pages(
    store: &dyn ConversationStore,
    owner: &CustomerId,
    limit: usize,
    cutoff: Option<DateTime<Utc>>,
) -> Vec<SessionSummary> {
    let mut listed = Vec::new();
    let mut after: Option<ListPosition> = None;
    loop {
        let page = store
            .sessions_page(owner, limit, after.as_ref(), cutoff)
            .await
            .unwrap();
        assert!(page.sessions.len() <= limit);
        listed.extend(page.sessions);
        match page.next {
            None => return listed,
            Some(next) => {
                assert_eq!(Some(&next), listed.last().map(ListPosition::of).as_ref());
                after = Some(next);
            }
        }
        assert!(listed.len() < 1_000, "the continuation never ends");
    }
}

/// `owner`'s listing, by session id.
async fn listing(store: &dyn ConversationStore, owner: &CustomerId) -> Vec<SessionSummary> {
    let mut sessions = pages(store, owner, 100, None).await;
    sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    sessions
}

async fn listed_ids(store: &dyn ConversationStore, owner: &CustomerId) -> Vec<SessionId> {
    listing(store, owner)
        .await
        .into_iter()
        .map(|s| s.session_id)
        .collect()
}

async fn owned_sessions_are_listed_for_their_owner_only(backend: Backend) {
    let store = backend.store.as_ref();
    let (alice, bob) = (customer("alice"), customer("o'bob"));
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let at = |seconds| start + TimeDelta::seconds(seconds);
    let long_question = format!("What does LONPF2 do {}", "and why ".repeat(20));
    append_listed(store, &session("a-1"), Some(&alice), &long_question, at(0)).await;
    append_listed(store, &session("a-1"), Some(&alice), "Who calls it?", at(5)).await;
    append_listed(
        store,
        &session("a-2"),
        Some(&alice),
        "Zoë's question",
        at(2),
    )
    .await;
    append_listed(store, &session("b-1"), Some(&bob), "Bob's question", at(3)).await;
    append_listed(
        store,
        &session("anonymous"),
        None,
        "Nobody's question",
        at(4),
    )
    .await;

    let alices = listing(store, &alice).await;
    assert_eq!(
        alices,
        [
            SessionSummary {
                session_id: session("a-1"),
                owner: alice.clone(),
                title: session_rag::domain::title_of(&long_question),
                turns: 2,
                created_at: at(0),
                updated_at: at(5),
            },
            SessionSummary {
                session_id: session("a-2"),
                owner: alice.clone(),
                title: "Zoë's question".into(),
                turns: 1,
                created_at: at(2),
                updated_at: at(2),
            },
        ]
    );
    assert!(alices[0].title.chars().count() <= 80);
    let bobs = listing(store, &bob).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].session_id, session("b-1"));
    assert!(listing(store, &customer("o''bob")).await.is_empty());
    assert!(listing(store, &customer("nobody")).await.is_empty());
}

async fn a_deleted_session_leaves_the_listing(backend: Backend) {
    let store = backend.store.as_ref();
    let alice = customer("alice");
    for id in ["kept", "doomed"] {
        append_listed(store, &session(id), Some(&alice), "q", Utc::now()).await;
    }
    assert_eq!(
        delete_as_read(store, &session("doomed")).await,
        Ok(Deleted::Deleted)
    );
    assert_eq!(listed_ids(store, &alice).await, [session("kept")]);

    // Started again, it is listed again from its new first turn.
    append_listed(store, &session("doomed"), Some(&alice), "again", Utc::now()).await;
    let again = listing(store, &alice).await;
    assert_eq!(again.len(), 2);
    assert_eq!((again[0].title.as_str(), again[0].turns), ("again", 1));
}

async fn purge_deletes_sessions_whose_last_turn_is_before_the_cutoff(backend: Backend) {
    let store = backend.store.as_ref();
    let alice = customer("alice");
    let now = Utc::now();
    let days_ago = |days| now - TimeDelta::days(days);
    // Expired: every turn is old, owned or not.
    append_listed(store, &session("old"), Some(&alice), "q0", days_ago(10)).await;
    append_listed(store, &session("old"), Some(&alice), "q1", days_ago(9)).await;
    append_listed(store, &session("old anonymous"), None, "q0", days_ago(8)).await;
    // Kept: its last turn is recent, though its first is old.
    append_listed(store, &session("revived"), Some(&alice), "q0", days_ago(10)).await;
    append_listed(store, &session("revived"), Some(&alice), "q1", now).await;
    append_listed(store, &session("fresh"), None, "q0", now).await;

    assert_eq!(store.purge_before(days_ago(1)).await, Ok(2));
    for gone in ["old", "old anonymous"] {
        assert!(
            store.all(&session(gone)).await.unwrap().is_empty(),
            "{gone}"
        );
    }
    assert_eq!(store.all(&session("revived")).await.unwrap().len(), 2);
    assert_eq!(store.all(&session("fresh")).await.unwrap().len(), 1);
    assert_eq!(listed_ids(store, &alice).await, [session("revived")]);
    // An id purged starts again from turn 0.
    assert_eq!(append(store, &session("old"), turn("new")).await, Ok(0));
    assert_eq!(store.purge_before(days_ago(1)).await, Ok(0));
}

fn ids(sessions: &[SessionSummary]) -> Vec<&str> {
    sessions.iter().map(|s| s.session_id.as_str()).collect()
}

async fn the_first_turn_names_the_owner(backend: Backend) {
    let store = backend.store.as_ref();
    let (alice, s) = (customer("alice"), session("owned"));
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    append_listed(store, &s, Some(&alice), "first", start).await;
    append_listed(
        store,
        &s,
        Some(&alice),
        "second",
        start + TimeDelta::seconds(1),
    )
    .await;
    let first = store.first_turn(&s).await.unwrap().unwrap();
    assert_eq!(
        (first.index, first.user.as_str(), first.owner),
        (0, "first", Some(alice))
    );
    assert_eq!(store.first_turn(&session("nobody")).await, Ok(None));
    delete_as_read(store, &s).await.unwrap();
    assert_eq!(store.first_turn(&s).await, Ok(None));
}

/// The paging rules: latest last turn first, equal times by session id, each page
/// continuing exactly after the previous one's last conversation, whatever the size.
async fn pages_run_latest_first_ties_by_session_id_and_continue_exactly(backend: Backend) {
    let store = backend.store.as_ref();
    let (alice, bob) = (customer("alice"), customer("bob"));
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let at = |seconds| start + TimeDelta::seconds(seconds);
    // Whole seconds: Table Storage keeps times to the second.
    for (id, second) in [("d", 5), ("b", 5), ("c", 5), ("a", 1), ("e", 9), ("f", 0)] {
        append_listed(store, &session(id), Some(&alice), id, at(second)).await;
    }
    append_listed(store, &session("bob's"), Some(&bob), "q", at(7)).await;
    let expected = ["e", "b", "c", "d", "a", "f"];
    for limit in [1, 2, 4, 5, 6, 100] {
        assert_eq!(
            ids(&pages(store, &alice, limit, None).await),
            expected,
            "{limit}"
        );
    }
    let first = store.sessions_page(&alice, 6, None, None).await.unwrap();
    assert_eq!(first.next, None, "no next page when exactly the rest fits");
    assert_eq!(first.sessions[0].updated_at, at(9));

    // A position is a place in the order, not an entry: it still works after its
    // conversation was deleted, and a new conversation sorts into it.
    let after_c = ListPosition::of(&first.sessions[2]);
    delete_as_read(store, &session("c")).await.unwrap();
    append_listed(store, &session("cc"), Some(&alice), "q", at(5)).await;
    let rest = store
        .sessions_page(&alice, 10, Some(&after_c), None)
        .await
        .unwrap();
    assert_eq!(ids(&rest.sessions), ["cc", "d", "a", "f"]);
    let nothing_left = ListPosition {
        updated_at: at(-1),
        session_id: session("z"),
    };
    let empty = store
        .sessions_page(&alice, 10, Some(&nothing_left), None)
        .await
        .unwrap();
    assert_eq!((empty.sessions.len(), empty.next), (0, None));
}

async fn pages_leave_out_what_expired_before_the_cutoff(backend: Backend) {
    let store = backend.store.as_ref();
    let alice = customer("alice");
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let at = |seconds| start + TimeDelta::seconds(seconds);
    for (id, second) in [("old", 1), ("edge", 10), ("new", 20)] {
        append_listed(store, &session(id), Some(&alice), id, at(second)).await;
    }
    // Continued past the cutoff: kept, though its first turn is older.
    append_listed(store, &session("revived"), Some(&alice), "q", at(0)).await;
    append_listed(store, &session("revived"), Some(&alice), "q", at(15)).await;
    let cutoff = Some(at(10));
    assert_eq!(
        ids(&pages(store, &alice, 1, cutoff).await),
        ["new", "revived", "edge"]
    );
    let page = store.sessions_page(&alice, 3, None, cutoff).await.unwrap();
    assert_eq!(page.next, None, "what expired does not make a next page");
    assert!(pages(store, &alice, 10, Some(at(21))).await.is_empty());
    assert_eq!(pages(store, &alice, 10, None).await.len(), 4);
}

async fn a_continued_conversation_moves_up_and_is_listed_once(backend: Backend) {
    let store = backend.store.as_ref();
    let alice = customer("alice");
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let at = |seconds| start + TimeDelta::seconds(seconds);
    append_listed(store, &session("one"), Some(&alice), "first", at(0)).await;
    append_listed(store, &session("two"), Some(&alice), "q", at(1)).await;
    append_listed(store, &session("one"), Some(&alice), "again", at(2)).await;
    let listed = pages(store, &alice, 1, None).await;
    assert_eq!(ids(&listed), ["one", "two"]);
    assert_eq!(
        (
            listed[0].title.as_str(),
            listed[0].turns,
            listed[0].created_at,
            listed[0].updated_at
        ),
        ("first", 2, at(0), at(2))
    );
    if backend.kind == Kind::Table {
        // Only the new sorted entry is stored.
        assert_eq!(pages(store, &alice, 100, Some(at(1))).await.len(), 2);
        assert_eq!(pages(store, &alice, 100, Some(at(2))).await.len(), 1);
    }
}

/// Many turns of one conversation at once, each recorded in the listing as soon as
/// it is stored: one entry, holding the latest.
async fn concurrent_turns_of_one_conversation_leave_one_entry(backend: Backend) {
    const TURNS: i64 = 12;
    let alice = customer("alice");
    let s = session("busy");
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let turns = (0..TURNS).map(|n| {
        let (store, alice, s) = (backend.store.clone(), alice.clone(), s.clone());
        tokio::spawn(async move {
            append_listed(
                store.as_ref(),
                &s,
                Some(&alice),
                "q",
                start + TimeDelta::seconds(n),
            )
            .await
        })
    });
    futures::future::join_all(turns).await;
    let listed = pages(backend.store.as_ref(), &alice, 100, None).await;
    assert_eq!(ids(&listed), ["busy"]);
    assert_eq!(listed[0].turns, TURNS as u64);
    let last = start + TimeDelta::seconds(TURNS - 1);
    match backend.kind {
        // The latest time any turn recorded.
        Kind::Table => assert_eq!(listed[0].updated_at, last),
        // The time of the turn stored last.
        Kind::InProcess | Kind::Cosmos => assert!((start..=last).contains(&listed[0].updated_at)),
    }
}

// Only the durable store: stores sharing one table, as handler processes do.

/// Two stores on a fresh table, as two handler processes would be.
fn two_stores_on_one_table(prefix: &str) -> (TableStore, TableStore) {
    let table = unique_table_name(prefix);
    (shared_table_store(&table), shared_table_store(&table))
}

#[tokio::test]
async fn stores_sharing_a_table_continue_each_others_sessions() {
    let (first, second) = two_stores_on_one_table("shared");
    let s = session("shared");
    append_all(&first, &s, 3).await;
    // `second` has never seen the session; `first` now holds a stale count.
    assert_eq!(append(&second, &s, turn("from second")).await, Ok(3));
    assert_eq!(append(&second, &s, turn("again")).await, Ok(4));
    let window = first.recent(&s, 2).await.unwrap();
    assert_eq!(window.total, 5);
    assert_eq!(users(&window.turns), ["from second", "again"]);
    assert_eq!(append(&first, &s, turn("from first")).await, Ok(5));

    // A delete elsewhere leaves `first` with a count that is too high.
    assert_eq!(delete_as_read(&second, &s).await, Ok(Deleted::Deleted));
    let window = first.recent(&s, 2).await.unwrap();
    assert_eq!(window.total, 0);
    assert!(window.turns.is_empty());
    assert_eq!(append(&first, &s, turn("fresh")).await, Ok(0));
}

#[tokio::test]
async fn a_window_overtaken_by_another_store_is_refused_and_the_reload_finds_the_next_number() {
    let (first, second) = two_stores_on_one_table("conflict");
    let s = session("conflict");
    append_all(&first, &s, 2).await;
    let seen = first.recent(&s, 10).await.unwrap();
    append_all(&second, &s, 40).await;
    // `first` answered from turns 0..1; 2..41 are taken since.
    assert_eq!(
        first.append(&s, turn("late"), seen.continuation()).await,
        Ok(Appended::Changed)
    );
    assert_eq!(append(&first, &s, turn("late")).await, Ok(42));
    let all = second.all(&s).await.unwrap();
    assert_eq!(all.len(), 43);
    assert!(all.iter().enumerate().all(|(i, t)| t.index == i as u64));
}

#[tokio::test]
async fn a_session_longer_than_one_page_is_found_by_probing() {
    let table = unique_table_name("probing");
    let writer = shared_table_store(&table);
    let s = session("long-running");
    append_all(&writer, &s, 150).await;

    // A store that has never seen the session (a fresh handler process).
    let reader = shared_table_store(&table);
    let window = reader.recent(&s, 10).await.unwrap();
    assert_eq!(window.total, 150);
    let expected: Vec<String> = (140..150).map(|n| format!("q{n}")).collect();
    assert_eq!(users(&window.turns), expected);
    assert_eq!(append(&reader, &s, turn("next")).await, Ok(150));
    let cold_appender = shared_table_store(&table);
    assert_eq!(append(&cold_appender, &s, turn("after")).await, Ok(151));
}

// The expectation rules: an append states what it found, and the store refuses it
// (storing nothing) when that no longer holds.

fn owned(user: &str, owner: &str) -> NewTurn {
    NewTurn {
        owner: Some(customer(owner)),
        ..turn(user)
    }
}

/// The number an append stored its turn under (panics if it was refused).
fn number(appended: Result<Appended, StorageError>) -> u64 {
    match appended {
        Ok(Appended::Stored { number, .. }) => number,
        other => panic!("expected the turn to be stored, got {other:?}"),
    }
}

async fn stored_users(store: &dyn ConversationStore, s: &SessionId) -> Vec<String> {
    store
        .all(s)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.user)
        .collect()
}

async fn turn_zero_is_refused_once_taken_and_its_owner_owns_the_conversation(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("contested");
    let empty = store.recent(&s, 10).await.unwrap();
    assert_eq!(empty.continuation(), Expectation::New);
    // Alice and Bob both saw no turn; Alice's turn 0 lands first.
    assert_eq!(
        number(
            store
                .append(&s, owned("alice's", "alice"), empty.continuation())
                .await
        ),
        0
    );
    assert_eq!(
        store
            .append(&s, owned("bob's", "bob"), empty.continuation())
            .await,
        Ok(Appended::Changed)
    );
    assert_eq!(stored_users(store, &s).await, ["alice's"]);
    let window = store.recent(&s, 10).await.unwrap();
    assert_eq!(window.owner, Some(customer("alice")));
    // Alice herself, having lost a race, continues at the next number.
    assert_eq!(
        number(
            store
                .append(&s, owned("alice's second", "alice"), window.continuation())
                .await
        ),
        1
    );
}

async fn a_continuation_is_refused_once_another_turn_follows(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("overtaken");
    append_all(store, &s, 2).await;
    let seen = store.recent(&s, 10).await.unwrap();
    assert_eq!(
        number(store.append(&s, turn("first"), seen.continuation()).await),
        2
    );
    assert_eq!(
        store.append(&s, turn("second"), seen.continuation()).await,
        Ok(Appended::Changed)
    );
    assert_eq!(stored_users(store, &s).await, ["q0", "q1", "first"]);
}

async fn a_continuation_is_refused_after_a_delete(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("deleted meanwhile");
    append_all(store, &s, 3).await;
    let seen = store.recent(&s, 10).await.unwrap();
    assert_eq!(delete_as_read(store, &s).await, Ok(Deleted::Deleted));
    assert_eq!(
        store.append(&s, turn("late"), seen.continuation()).await,
        Ok(Appended::Changed)
    );
    assert!(store.all(&s).await.unwrap().is_empty(), "no orphan turn");
}

async fn a_continuation_is_refused_after_a_restart(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("restarted meanwhile");
    append_all(store, &s, 3).await;
    let seen = store.recent(&s, 10).await.unwrap();
    assert_eq!(
        number(store.append(&s, turn("again"), seen.restart()).await),
        0
    );
    // The same number (3) is free again only after two more turns: still refused.
    append_all(store, &s, 2).await;
    assert_eq!(
        store.append(&s, turn("late"), seen.continuation()).await,
        Ok(Appended::Changed)
    );
    assert_eq!(stored_users(store, &s).await, ["again", "q0", "q1"]);
}

async fn a_restart_replaces_only_the_conversation_it_saw(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("expired");
    for n in 0..3 {
        append(store, &s, owned(&format!("old {n}"), "alice"))
            .await
            .unwrap();
    }
    let seen = store.recent(&s, 2).await.unwrap();
    assert_eq!(seen.owner, Some(customer("alice")));
    // Two requests saw it expired; the first starts it again, for Bob.
    assert_eq!(
        number(
            store
                .append(&s, owned("bob's", "bob"), seen.restart())
                .await
        ),
        0
    );
    // The second must not delete the turn just stored.
    assert_eq!(
        store
            .append(&s, owned("carol's", "carol"), seen.restart())
            .await,
        Ok(Appended::Changed)
    );
    assert_eq!(stored_users(store, &s).await, ["bob's"]);
    let window = store.recent(&s, 10).await.unwrap();
    assert_eq!((window.total, window.owner), (1, Some(customer("bob"))));
    store
        .update_listing(&s, 0, &owned("bob's", "bob"))
        .await
        .unwrap();
    assert!(listed_ids(store, &customer("alice")).await.is_empty());
    assert_eq!(listed_ids(store, &customer("bob")).await, [s]);
}

async fn a_restart_is_refused_once_the_conversation_was_continued(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("continued meanwhile");
    append_all(store, &s, 2).await;
    let seen = store.recent(&s, 10).await.unwrap();
    assert_eq!(
        number(store.append(&s, turn("kept"), seen.continuation()).await),
        2
    );
    assert_eq!(
        store.append(&s, turn("restart"), seen.restart()).await,
        Ok(Appended::Changed)
    );
    assert_eq!(stored_users(store, &s).await, ["q0", "q1", "kept"]);
}

/// Alice's delete read her conversation; then it expired and Bob started it again.
/// With one turn, Bob's turn 0 has the number Alice saw last (only its version
/// differs); with three, that number is gone.
async fn a_delete_leaves_a_restart_made_since_its_read_alone(backend: Backend) {
    let store = backend.store.as_ref();
    let (alice, bob) = (customer("alice"), customer("bob"));
    for turns in [1, 3] {
        let s = session(&format!("restarted before its delete ({turns})"));
        for n in 0..turns {
            append_listed(store, &s, Some(&alice), &format!("old {n}"), Utc::now()).await;
        }
        let alices = store.recent(&s, 1).await.unwrap();
        let bobs = owned("bob's", "bob");
        assert_eq!(
            number(store.append(&s, bobs.clone(), alices.restart()).await),
            0
        );
        store.update_listing(&s, 0, &bobs).await.unwrap();

        let seen = alices.seen().unwrap();
        assert_eq!(
            store.delete(&s, seen).await,
            Ok(Deleted::Changed),
            "{turns}"
        );
        assert_eq!(stored_users(store, &s).await, ["bob's"], "{turns}");
        let first = store.first_turn(&s).await.unwrap().unwrap();
        assert_eq!(first.owner.as_ref(), Some(&bob));
        assert!(listed_ids(store, &bob).await.contains(&s), "{turns}");
    }
    assert_eq!(listed_ids(store, &bob).await.len(), 2);
}

async fn the_window_names_turn_zeros_owner_and_its_last_version(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("owned");
    append(store, &s, owned("alice's", "alice")).await.unwrap();
    for n in 1..4 {
        append(store, &s, owned(&format!("later {n}"), "alice"))
            .await
            .unwrap();
    }
    // Turn 0 is not in a window of one turn; the owner still comes from it.
    let window: Window = store.recent(&s, 1).await.unwrap();
    assert_eq!(window.turns.len(), 1);
    assert_eq!(window.turns[0].index, 3);
    assert_eq!(window.owner, Some(customer("alice")));
    assert!(window.last.is_some());
    assert_eq!(
        store.recent(&session("nobody's"), 1).await.unwrap(),
        Window::default()
    );
}

/// A process continues (or restarts) from the version its own append returned,
/// without reading: it must be the version a read would find.
async fn the_version_an_append_returns_is_the_one_a_read_finds(backend: Backend) {
    let store = backend.store.as_ref();
    let s = session("held");
    let Ok(Appended::Stored { number, version }) =
        store.append(&s, turn("first"), Expectation::New).await
    else {
        panic!("turn 0 of a new session is stored");
    };
    assert_eq!(
        store.recent(&s, 10).await.unwrap().last,
        Some(version.clone())
    );
    let after = Expectation::After {
        last: number,
        version,
    };
    let Ok(Appended::Stored { number, version }) = store.append(&s, turn("second"), after).await
    else {
        panic!("a continuation from the returned version is stored");
    };
    assert_eq!(number, 1);
    let restart = Expectation::Restart {
        last: number,
        version,
    };
    assert!(matches!(
        store.append(&s, turn("again"), restart).await,
        Ok(Appended::Stored { number: 0, .. })
    ));
    assert_eq!(stored_users(store, &s).await, ["again"]);
}

// Cosmos DB: stores sharing one container, as handler processes do.

#[tokio::test]
async fn stores_sharing_a_container_append_each_turn_exactly_once() {
    let container = unique_container_name("shared");
    let stores: [Arc<dyn ConversationStore>; 2] = [
        Arc::new(cosmos_store(&container).await),
        Arc::new(cosmos_store(&container).await),
    ];
    let s = session("contended");
    append_concurrently(&stores, &s, 40, Some(&customer("alice"))).await;

    // A delete through one store is seen by the other, which starts again at 0.
    assert_eq!(
        delete_as_read(stores[0].as_ref(), &s).await,
        Ok(Deleted::Deleted)
    );
    assert_eq!(stores[1].recent(&s, 10).await.unwrap().total, 0);
    assert_eq!(append(stores[1].as_ref(), &s, turn("fresh")).await, Ok(0));
}

/// The listing rows of `owner` naming `session`: its record and its sorted entries.
async fn listing_rows(table: &str, owner: &str, session: &str) -> (usize, usize) {
    let index = raw_table_client(&shared_table_endpoint(), &sessions_table_for(table));
    let rows = stored_rows(&index, owner).await;
    let records = rows
        .iter()
        .filter(|row| row["RowKey"] == session && row.get("session_id").is_none())
        .count();
    let sorted = rows
        .iter()
        .filter(|row| row.get("session_id") == Some(&Value::from(session)))
        .count();
    (records, sorted)
}

/// Two processes recording turns of one conversation at the same instant: each
/// transaction is conditional on the record it read, so one sorted entry remains.
#[tokio::test]
async fn turns_listed_by_two_processes_at_once_leave_one_entry() {
    const ROUNDS: usize = 10;
    const TURNS: i64 = 8;
    let table = unique_table_name("listrace");
    let stores: [Arc<dyn ConversationStore>; 2] = [
        Arc::new(shared_table_store(&table)),
        Arc::new(shared_table_store(&table)),
    ];
    let alice = customer("alice");
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    for round in 0..ROUNDS {
        let s = session(&format!("race-{round}"));
        // The turns are stored one after the other (numbers in time order, as the
        // service stores them); their listing updates then race.
        let mut stored = Vec::new();
        for n in 0..TURNS {
            let store = stores[n as usize % 2].clone();
            // Pairs share a second: some turns move the entry, some only count.
            let turn = NewTurn {
                owner: Some(alice.clone()),
                timestamp: start + TimeDelta::seconds(round as i64 * 100 + n / 2),
                ..self::turn("q")
            };
            let number = append(store.as_ref(), &s, turn.clone()).await.unwrap();
            stored.push((store, number, turn));
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(TURNS as usize));
        let turns = stored.into_iter().map(|(store, number, turn)| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.update_listing(&s, number, &turn).await.unwrap();
            })
        });
        for turn in futures::future::join_all(turns).await {
            turn.unwrap();
        }
        assert_eq!(
            listing_rows(&table, "alice", s.as_str()).await,
            (1, 1),
            "round {round}"
        );
    }
    let listed = pages(stores[1].as_ref(), &alice, 3, None).await;
    assert_eq!(listed.len(), ROUNDS);
    assert!(listed.iter().all(|s| s.turns == TURNS as u64));
    assert_eq!(
        listed[0].session_id,
        session(&format!("race-{}", ROUNDS - 1))
    );
}

/// A rename is a listing transaction like a turn's, conditional on the record as
/// read: racing the turns of its conversation recorded by other processes, it never
/// leaves a second sorted entry, never loses the title, never moves the count back.
#[tokio::test]
async fn renames_racing_turns_leave_one_titled_entry() {
    use session_rag::domain::Title;
    const ROUNDS: usize = 10;
    const TURNS: i64 = 6;
    const RENAMES: usize = 3;
    let table = unique_table_name("renamerace");
    let stores: [Arc<dyn ConversationStore>; 3] = [
        Arc::new(shared_table_store(&table)),
        Arc::new(shared_table_store(&table)),
        Arc::new(shared_table_store(&table)),
    ];
    let alice = customer("alice");
    let title = Title::parse("Loan posting").unwrap();
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    for round in 0..ROUNDS {
        let s = session(&format!("race-{round}"));
        let at = |n: i64| start + TimeDelta::seconds(round as i64 * 100 + n);
        append_listed(stores[0].as_ref(), &s, Some(&alice), "q", at(0)).await;
        let mut stored = Vec::new();
        for n in 1..TURNS {
            let store = stores[n as usize % 2].clone();
            let turn = NewTurn {
                owner: Some(alice.clone()),
                timestamp: at(n),
                ..self::turn("q")
            };
            let number = append(store.as_ref(), &s, turn.clone()).await.unwrap();
            stored.push((store, number, turn));
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(stored.len() + RENAMES));
        let mut racers = Vec::new();
        for (store, number, turn) in stored {
            let (s, barrier) = (s.clone(), barrier.clone());
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                store.update_listing(&s, number, &turn).await.unwrap();
            }));
        }
        for n in 0..RENAMES {
            let store = stores[n % 3].clone();
            let (s, barrier, alice, title) =
                (s.clone(), barrier.clone(), alice.clone(), title.clone());
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                let renamed = store.rename(&alice, &s, &title, None).await.unwrap();
                assert_eq!(renamed.map(|r| r.title), Some("Loan posting".into()));
            }));
        }
        for racer in futures::future::join_all(racers).await {
            racer.unwrap();
        }
        assert_eq!(
            listing_rows(&table, "alice", s.as_str()).await,
            (1, 1),
            "round {round}"
        );
        let listed = pages(stores[2].as_ref(), &alice, 100, None).await;
        let entry = listed.iter().find(|e| e.session_id == s).unwrap();
        assert_eq!(
            (entry.title.as_str(), entry.turns, entry.updated_at),
            ("Loan posting", TURNS as u64, at(TURNS - 1)),
            "round {round}"
        );
        let record = stores[2].summary(&alice, &s).await.unwrap();
        assert_eq!(record.as_ref(), Some(entry), "round {round}");
    }
}

/// Deleting all of alice's conversations while bob starts one of them again (as
/// after its expiry), from another process: every turn row goes only as it was read,
/// so either the restart lands first and bob's conversation stays whole, or the
/// delete does and the restart is refused; alice's listing ends empty either way.
#[tokio::test]
async fn delete_all_racing_a_restart_by_someone_else_never_deletes_the_new_conversation() {
    use tokio::time::Instant;
    const ROUNDS: usize = 30;
    let table = unique_table_name("delallrace");
    let deleter: Arc<dyn ConversationStore> = Arc::new(shared_table_store(&table));
    let restarter: Arc<dyn ConversationStore> = Arc::new(shared_table_store(&table));
    let (alice, bob) = (customer("alice"), customer("bob"));
    let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
    let mut outcomes = [0; 2];
    for round in 0..ROUNDS {
        let s = session(&format!("race-{round}"));
        // One turn: the restart replaces that very row (a longer conversation would
        // also lose rows to it, which fails any delete sent after it whole).
        append_listed(deleter.as_ref(), &s, Some(&alice), "q", start).await;
        let seen = restarter.recent(&s, 10).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let deleting = {
            let (store, barrier, alice) = (deleter.clone(), barrier.clone(), alice.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let until = Instant::now() + std::time::Duration::from_secs(60);
                store.delete_all(&alice, until).await.unwrap()
            })
        };
        let restarting = {
            let (store, s, bob) = (restarter.clone(), s.clone(), bob.clone());
            // Later and later: the restart lands before, during and after the delete.
            let delay = std::time::Duration::from_micros(500 * round as u64);
            tokio::spawn(async move {
                barrier.wait().await;
                tokio::time::sleep(delay).await;
                let turn = NewTurn {
                    owner: Some(bob),
                    timestamp: Utc::now(),
                    ..self::turn("bob's")
                };
                match store.append(&s, turn, seen.restart()).await.unwrap() {
                    Appended::Stored { number: 0, .. } => true,
                    Appended::Changed => false,
                    other => panic!("{other:?}"),
                }
            })
        };
        let deleted = deleting.await.unwrap();
        let restarted = restarting.await.unwrap();
        outcomes[usize::from(restarted)] += 1;
        // A restart that came first removes alice's listing rows itself, before or
        // after the delete-all does (which then counts them).
        assert!(deleted.complete, "round {round}");
        assert!(
            deleted.deleted == 1 || restarted,
            "round {round}: {deleted:?}"
        );
        let left: Vec<(u64, String, Option<CustomerId>)> = restarter
            .all(&s)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.index, t.user, t.owner))
            .collect();
        if restarted {
            assert_eq!(
                left,
                [(0, "bob's".into(), Some(bob.clone()))],
                "round {round}"
            );
        } else {
            assert_eq!(left, [], "round {round}");
        }
        assert_eq!(listing_rows(&table, "alice", s.as_str()).await, (0, 0));
    }
    println!(
        "restarts first / deletes first: {} / {}",
        outcomes[1], outcomes[0]
    );
}

/// Entries of the previous format (RowKey = session id, no sorted entry), as a
/// handler before the sorted listing wrote them: the owner's first listing
/// converts them all, a turn converts its own; each is then listed once, in order.
#[tokio::test]
async fn entries_of_the_previous_format_are_converted_on_first_touch() {
    let table = unique_table_name("listformat");
    let index = raw_table_client(&shared_table_endpoint(), &sessions_table_for(&table));
    index.create().await.unwrap();
    let entry = |owner: &str, session: &str, second: u32, turns: u32| {
        let time = format!("2026-11-01T10:00:{second:02}Z");
        json!({
            "PartitionKey": owner, "RowKey": session, "title": format!("title of {session}"),
            "turns": turns, "created_at": "2026-11-01T09:00:00Z", "updated_at": time,
        })
    };
    // 120 of olga's (more than one conversion transaction), one of peter's.
    let olgas: Vec<Value> = (0..120)
        .map(|n| entry("olga", &format!("old-{n:03}"), n % 60, 1 + n % 7))
        .collect();
    insert_batched(&index, "olga", &olgas).await;
    index
        .insert::<_, Value>(entry("peter", "p-old", 0, 3))
        .unwrap()
        .await
        .unwrap();

    let store = shared_table_store(&table);
    // Peter's conversation is continued before any listing: the turn converts it.
    let (olga, peter) = (customer("olga"), customer("peter"));
    let later = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let turn = NewTurn {
        owner: Some(peter.clone()),
        timestamp: later,
        ..self::turn("q")
    };
    store
        .update_listing(&session("p-old"), 3, &turn)
        .await
        .unwrap();
    assert_eq!(listing_rows(&table, "peter", "p-old").await, (1, 1));
    let peters = pages(&store, &peter, 10, None).await;
    assert_eq!(peters.len(), 1);
    assert_eq!(
        (
            peters[0].title.as_str(),
            peters[0].turns,
            peters[0].updated_at
        ),
        ("title of p-old", 4, later)
    );

    // Olga's first listing converts all of hers, and lists them in order.
    let mut expected: Vec<(String, String)> = olgas
        .iter()
        .map(|e| {
            (
                e["updated_at"].as_str().unwrap().to_owned(),
                e["RowKey"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
    let first_page = store.sessions_page(&olga, 20, None, None).await.unwrap();
    assert_eq!(ids(&first_page.sessions), expected[..20]);
    assert_eq!(
        first_page.sessions[0].title,
        format!("title of {}", expected[0])
    );
    assert_eq!(
        first_page.sessions[0].created_at,
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
    );
    // Another process (which has not seen olga's listing) reads the converted one.
    let other = shared_table_store(&table);
    assert_eq!(ids(&pages(&other, &olga, 50, None).await), expected);
    for n in [0, 59, 119] {
        assert_eq!(
            listing_rows(&table, "olga", &format!("old-{n:03}")).await,
            (1, 1)
        );
    }
    // A converted entry moves when its conversation is continued, and is deleted with it.
    let turn = NewTurn {
        owner: Some(olga.clone()),
        timestamp: later,
        ..self::turn("q")
    };
    append(&store, &session("old-007"), turn.clone())
        .await
        .unwrap();
    store
        .update_listing(&session("old-007"), 8, &turn)
        .await
        .unwrap();
    assert_eq!(
        ids(&pages(&other, &olga, 1, Some(later)).await),
        ["old-007"]
    );
    assert_eq!(
        delete_as_read(&store, &session("old-007")).await,
        Ok(Deleted::Deleted)
    );
    assert_eq!(listing_rows(&table, "olga", "old-007").await, (0, 0));
    assert_eq!(pages(&other, &olga, 100, None).await.len(), 119);
    // Listing a customer without conversations writes nothing.
    assert!(pages(&other, &customer("nobody"), 10, None)
        .await
        .is_empty());
    assert!(stored_rows(&index, "nobody").await.is_empty());
}

// The conversation manager: titles, deleting a customer's conversations, feedback.

mod manager {
    use super::*;
    use session_rag::domain::{Feedback, Rating, Title};
    use session_rag::storage::{DeletedAll, Rated};
    use tokio::time::Instant;

    conformance_suite!(
        a_rename_changes_the_title_in_the_owners_listing_only,
        delete_all_removes_one_owners_conversations_and_nothing_else,
        delete_all_stops_at_its_deadline_and_the_next_call_finishes,
        feedback_is_set_changed_and_removed_on_its_own_turn,
        feedback_needs_an_existing_turn_the_requester_may_access,
    );

    fn title(text: &str) -> Title {
        Title::parse(text).unwrap()
    }

    /// Plenty of time for one call.
    fn in_a_minute() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    async fn a_rename_changes_the_title_in_the_owners_listing_only(backend: Backend) {
        let store = backend.store.as_ref();
        let (alice, bob) = (customer("alice"), customer("bob"));
        let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
        let s = session("renamed");
        append_listed(store, &s, Some(&alice), "What does LONPF2 do?", start).await;
        append_listed(
            store,
            &s,
            Some(&alice),
            "Who calls it?",
            start + TimeDelta::seconds(5),
        )
        .await;
        append_listed(store, &session("open"), None, "Nobody's", start).await;

        let renamed = store
            .rename(&alice, &s, &title("Loan posting"), None)
            .await
            .unwrap()
            .expect("alice owns it");
        assert_eq!(renamed.title, "Loan posting");
        assert_eq!(
            (renamed.turns, renamed.updated_at),
            (2, start + TimeDelta::seconds(5))
        );
        assert_eq!(listing(store, &alice).await, std::slice::from_ref(&renamed));
        assert_eq!(
            store.summary(&alice, &s).await.unwrap(),
            Some(renamed.clone())
        );

        // A later turn keeps the title.
        append_listed(
            store,
            &s,
            Some(&alice),
            "And then?",
            start + TimeDelta::seconds(9),
        )
        .await;
        let later = store.summary(&alice, &s).await.unwrap().unwrap();
        assert_eq!((later.title.as_str(), later.turns), ("Loan posting", 3));

        // Nobody else can rename it, nor anything that is not listed for them.
        let cutoff_after_last_turn = Some(start + TimeDelta::seconds(10));
        for (owner, id, cutoff) in [
            (&bob, "renamed", None),
            (&alice, "open", None),
            (&bob, "open", None),
            (&alice, "never-used", None),
            (&alice, "renamed", cutoff_after_last_turn),
        ] {
            let refused = store
                .rename(owner, &session(id), &title("Mine now"), cutoff)
                .await;
            assert_eq!(refused, Ok(None), "{owner} {id} {cutoff:?}");
        }
        assert_eq!(
            store.summary(&alice, &s).await.unwrap().unwrap().title,
            "Loan posting"
        );
        assert_eq!(store.summary(&bob, &s).await, Ok(None));
        assert!(listing(store, &bob).await.is_empty());
        assert_eq!(store.summary(&alice, &session("open")).await, Ok(None));
    }

    async fn delete_all_removes_one_owners_conversations_and_nothing_else(backend: Backend) {
        let store = backend.store.as_ref();
        let (alice, bob) = (customer("o'alice"), customer("bob"));
        // One conversation longer than a transaction holds.
        for n in 0..120 {
            append_listed(
                store,
                &session("alice-long"),
                Some(&alice),
                &format!("q{n}"),
                Utc::now(),
            )
            .await;
        }
        for id in ["alice-1", "alice 2", "o'alice-3"] {
            append_listed(store, &session(id), Some(&alice), "q", Utc::now()).await;
        }
        append_listed(store, &session("bob-1"), Some(&bob), "q", Utc::now()).await;
        append_listed(store, &session("open"), None, "q", Utc::now()).await;

        let outcome = store.delete_all(&alice, in_a_minute()).await.unwrap();
        assert_eq!(
            outcome,
            DeletedAll {
                deleted: 4,
                complete: true
            }
        );
        assert!(listing(store, &alice).await.is_empty());
        for id in ["alice-long", "alice-1", "alice 2", "o'alice-3"] {
            assert!(store.all(&session(id)).await.unwrap().is_empty(), "{id}");
            assert_eq!(
                store.recent(&session(id), 10).await.unwrap().total,
                0,
                "{id}"
            );
        }
        assert_eq!(listed_ids(store, &bob).await, [session("bob-1")]);
        assert_eq!(store.all(&session("bob-1")).await.unwrap().len(), 1);
        assert_eq!(store.all(&session("open")).await.unwrap().len(), 1);

        // Again: nothing left to delete.
        let again = store.delete_all(&alice, in_a_minute()).await.unwrap();
        assert_eq!(
            again,
            DeletedAll {
                deleted: 0,
                complete: true
            }
        );
        // A deleted id starts again from turn 0.
        assert_eq!(append(store, &session("alice-1"), turn("new")).await, Ok(0));
    }

    /// Table Storage and Cosmos DB work through the listing and stop when the time is up; the
    /// in-process store deletes under one lock, at once.
    async fn delete_all_stops_at_its_deadline_and_the_next_call_finishes(backend: Backend) {
        let store = backend.store.as_ref();
        let alice = customer("alice");
        for n in 0..3 {
            append_listed(
                store,
                &session(&format!("a-{n}")),
                Some(&alice),
                "q",
                Utc::now(),
            )
            .await;
        }
        let out_of_time = store.delete_all(&alice, Instant::now()).await.unwrap();
        let rest = match backend.kind {
            Kind::Table | Kind::Cosmos => {
                assert_eq!(
                    out_of_time,
                    DeletedAll {
                        deleted: 0,
                        complete: false
                    }
                );
                assert_eq!(listing(store, &alice).await.len(), 3);
                3
            }
            Kind::InProcess => {
                assert_eq!(
                    out_of_time,
                    DeletedAll {
                        deleted: 3,
                        complete: true
                    }
                );
                0
            }
        };
        let finished = store.delete_all(&alice, in_a_minute()).await.unwrap();
        assert_eq!(
            finished,
            DeletedAll {
                deleted: rest,
                complete: true
            }
        );
        assert!(listing(store, &alice).await.is_empty());
    }

    fn feedback(rating: Rating, comment: Option<&str>) -> Feedback {
        Feedback {
            rating,
            comment: comment.map(str::to_owned),
            // Stored to the second.
            updated_at: Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap(),
        }
    }

    async fn feedback_on(store: &dyn ConversationStore, s: &SessionId) -> Vec<Option<Feedback>> {
        store
            .all(s)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.feedback)
            .collect()
    }

    async fn feedback_is_set_changed_and_removed_on_its_own_turn(backend: Backend) {
        let store = backend.store.as_ref();
        let alice = customer("alice");
        let s = session("rated");
        for n in 0..3 {
            append_listed(store, &s, Some(&alice), &format!("q{n}"), Utc::now()).await;
        }
        let before = store.all(&s).await.unwrap();
        let up = feedback(Rating::Up, Some("Exactly the copybooks, Zoë. 👍"));
        // Each write says what it replaced: the figures count exactly that change.
        assert_eq!(
            store.set_feedback(&s, 1, Some(&alice), Some(&up)).await,
            Ok(Some(Rated {
                owner: Some(alice.clone()),
                asked_at: before[1].timestamp,
                previous: None,
            }))
        );
        assert_eq!(feedback_on(store, &s).await, [None, Some(up.clone()), None]);

        let down = feedback(Rating::Down, None);
        assert_eq!(
            replaced(store.set_feedback(&s, 1, Some(&alice), Some(&down)).await),
            Some(Some(Rating::Up))
        );
        assert_eq!(feedback_on(store, &s).await, [None, Some(down), None]);

        assert_eq!(
            replaced(store.set_feedback(&s, 1, Some(&alice), None).await),
            Some(Some(Rating::Down))
        );
        assert_eq!(
            replaced(store.set_feedback(&s, 1, Some(&alice), None).await),
            Some(None)
        );
        assert_eq!(feedback_on(store, &s).await, [None, None, None]);

        // Everything else about the turns is as it was.
        let after = store.all(&s).await.unwrap();
        assert_eq!(after, before);
        assert_eq!(store.recent(&s, 10).await.unwrap().total, 3);
    }

    async fn feedback_needs_an_existing_turn_the_requester_may_access(backend: Backend) {
        let store = backend.store.as_ref();
        let (alice, bob) = (customer("alice"), customer("bob"));
        let owned = session("owned");
        append_listed(store, &owned, Some(&alice), "q0", Utc::now()).await;
        append_listed(store, &owned, Some(&alice), "q1", Utc::now()).await;
        let up = feedback(Rating::Up, None);
        for (id, turn, requester) in [
            ("owned", 0, Some(&bob)),
            ("owned", 1, None),
            ("owned", 2, Some(&alice)),
            ("owned", 999_999_999_999, Some(&alice)),
            ("never-used", 0, Some(&alice)),
        ] {
            let refused = store
                .set_feedback(&session(id), turn, requester, Some(&up))
                .await;
            assert_eq!(refused, Ok(None), "{id} turn {turn} by {requester:?}");
        }
        assert_eq!(feedback_on(store, &owned).await, [None, None]);
        // No turn was created by any of that.
        assert_eq!(store.recent(&owned, 10).await.unwrap().total, 2);
        assert!(store.all(&session("never-used")).await.unwrap().is_empty());
        assert_eq!(append(store, &owned, turn("q2")).await, Ok(2));

        // A conversation without an owner takes feedback from whoever knows its id.
        let open = session("open");
        append_listed(store, &open, None, "q0", Utc::now()).await;
        let rated = store.set_feedback(&open, 0, Some(&bob), Some(&up)).await;
        assert_eq!(
            rated.unwrap().map(|r| (r.owner, r.previous)),
            Some((None, None))
        );
        assert_eq!(
            replaced(store.set_feedback(&open, 0, None, None).await),
            Some(Some(Rating::Up))
        );
    }

    /// The rating a feedback write replaced; `None` when it changed nothing.
    fn replaced(result: Result<Option<Rated>, StorageError>) -> Option<Option<Rating>> {
        result.unwrap().map(|rated| rated.previous)
    }
}

/// Feedback and renames are Merges guarded by the ETag read when ownership was
/// checked. Racing a delete, an unguarded Merge (an upsert) would leave behind a
/// turn row holding nothing but feedback, or a listing entry holding only a title.
#[tokio::test]
async fn feedback_and_renames_racing_a_delete_leave_nothing_behind() {
    use session_rag::domain::{Feedback, Rating, Title};
    const ROUNDS: usize = 30;
    const WRITERS: usize = 4;
    const WRITES: usize = 5;
    let table = unique_table_name("racing");
    let store = Arc::new(shared_table_store(&table));
    let index = raw_table_client(&shared_table_endpoint(), &sessions_table_for(&table));
    let alice = customer("alice");
    let up = Feedback {
        rating: Rating::Up,
        comment: None,
        updated_at: Utc::now(),
    };
    let title = Title::parse("Raced").unwrap();
    for round in 0..ROUNDS {
        let s = session(&format!("race-{round}"));
        append_listed(store.as_ref(), &s, Some(&alice), "q", Utc::now()).await;
        // Writers keep at it while the delete runs, so some write lands meanwhile.
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let (store, s, alice, up, title) = (
                store.clone(),
                s.clone(),
                alice.clone(),
                up.clone(),
                title.clone(),
            );
            writers.push(tokio::spawn(async move {
                // Four writers on one turn can wear out each other's attempts: a
                // write that gives up is fine here, one that fails otherwise is not.
                let settled = |result: Result<_, StorageError>| {
                    assert!(
                        !matches!(result, Err(ref e) if !matches!(e, StorageError::Unavailable(_))),
                        "{result:?}"
                    )
                };
                for _ in 0..WRITES {
                    settled(
                        store
                            .set_feedback(&s, 0, Some(&alice), Some(&up))
                            .await
                            .map(|_| ()),
                    );
                    settled(store.rename(&alice, &s, &title, None).await.map(|_| ()));
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // Deletes remove the conversation only as read (feedback meanwhile changes
        // its turn, so the delete says it changed); asked again once the writers
        // are done, it ends the conversation.
        let deleted = delete_as_read(store.as_ref(), &s).await;
        for writer in writers {
            writer.await.unwrap();
        }
        if deleted != Ok(Deleted::Deleted) {
            assert_eq!(
                delete_as_read(store.as_ref(), &s).await,
                Ok(Deleted::Deleted),
                "round {round}"
            );
        }
        assert_eq!(
            store.all(&s).await.unwrap(),
            [],
            "round {round}: a row came back"
        );
        let entries = stored_rows(&index, "alice").await;
        assert_eq!(entries, [], "round {round}: a listing entry came back");
    }
}

mod sharing {
    use super::*;
    use crate::helpers::shares_table_for;
    use session_rag::domain::ShareId;
    use session_rag::storage::{Share, ShareOrigin};

    conformance_suite!(
        a_share_reads_back_until_its_conversation_revokes_it,
        a_snapshot_larger_than_an_entity_reads_back_whole,
        every_share_has_an_origin_and_one_can_be_revoked_alone,
    );

    fn share_of(session: &SessionId, document: String) -> Share {
        Share {
            id: ShareId::generate().unwrap(),
            session: session.clone(),
            owner: customer("o'alice"),
            started_at: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap()
                + TimeDelta::nanoseconds(123_456_789),
            created_at: Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 0).unwrap(),
            turns: 3,
            document,
        }
    }

    async fn a_share_reads_back_until_its_conversation_revokes_it(backend: Backend) {
        let store = backend.store.as_ref();
        let (awkward, other) = (session("o'brien 会话 1"), session("other"));
        let first = share_of(&awkward, r#"{"title":"Zoë's \"first\""}"#.into());
        let second = share_of(&awkward, "{}".into());
        let elsewhere = share_of(&other, "{}".into());
        for share in [&first, &second, &elsewhere] {
            store.create_share(share).await.unwrap();
        }
        assert_eq!(store.shared(&first.id).await, Ok(Some(first.clone())));
        assert_eq!(store.shared(&second.id).await, Ok(Some(second.clone())));
        let unknown = ShareId::generate().unwrap();
        assert_eq!(store.shared(&unknown).await, Ok(None));

        assert_eq!(store.revoke_shares(&awkward).await, Ok(2));
        assert_eq!(store.shared(&first.id).await, Ok(None));
        assert_eq!(store.shared(&second.id).await, Ok(None));
        assert_eq!(
            store.shared(&elsewhere.id).await,
            Ok(Some(elsewhere.clone())),
            "another conversation's share stays"
        );
        assert_eq!(store.revoke_shares(&awkward).await, Ok(0));
        assert_eq!(store.revoke_shares(&session("never-shared")).await, Ok(0));
    }

    /// More text, non-ASCII and astral characters included, than one entity
    /// (1 MiB) could hold: read back exactly, never cut.
    async fn a_snapshot_larger_than_an_entity_reads_back_whole(backend: Backend) {
        let store = backend.store.as_ref();
        let s = session("long snapshot");
        let document = format!(
            "{}{}{}",
            "a".repeat(600_000),
            "é😀".repeat(200_000),
            "z".repeat(10)
        );
        let share = share_of(&s, document);
        store.create_share(&share).await.unwrap();
        let read = store.shared(&share.id).await.unwrap().expect("stored");
        assert_eq!(read.document.len(), share.document.len());
        assert!(read.document == share.document, "the text changed");
        assert_eq!(read, share);
        assert_eq!(store.revoke_shares(&s).await, Ok(1));
        assert_eq!(store.shared(&share.id).await, Ok(None));
    }

    async fn every_share_has_an_origin_and_one_can_be_revoked_alone(backend: Backend) {
        let store = backend.store.as_ref();
        let (s, t) = (session("o'brien 会话 1"), session("other"));
        let (first, second) = (share_of(&s, "{}".into()), share_of(&s, "{}".into()));
        let elsewhere = share_of(&t, "{}".into());
        for share in [&first, &second, &elsewhere] {
            store.create_share(share).await.unwrap();
        }
        let origins = |mut origins: Vec<ShareOrigin>| {
            origins.sort_by(|a, b| a.id.cmp(&b.id));
            origins
        };
        assert_eq!(
            origins(store.share_origins().await.unwrap()),
            origins(vec![first.origin(), second.origin(), elsewhere.origin()])
        );

        assert_eq!(store.revoke_share(&s, &first.id).await, Ok(true));
        assert_eq!(store.revoke_share(&s, &first.id).await, Ok(false));
        // Only with its own session.
        assert_eq!(store.revoke_share(&t, &second.id).await, Ok(false));
        assert_eq!(store.shared(&first.id).await, Ok(None));
        assert_eq!(store.shared(&second.id).await, Ok(Some(second.clone())));
        assert_eq!(
            origins(store.share_origins().await.unwrap()),
            origins(vec![second.origin(), elsewhere.origin()])
        );
    }

    /// Shares live in a table of their own: the seed's session partition and the
    /// owner's listing partition get no row, and a large snapshot spans rows.
    #[tokio::test]
    async fn shares_keep_out_of_the_history_and_listing_tables() {
        let table = unique_table_name("sharing");
        let store = shared_table_store(&table);
        let endpoint = shared_table_endpoint();
        let alice = customer("o'alice");
        let s = session("shared-conversation");
        append_listed(&store, &s, Some(&alice), "q0", Utc::now()).await;
        let history = stored_rows(&raw_table_client(&endpoint, &table), s.as_str()).await;
        let listing = raw_table_client(&endpoint, &sessions_table_for(&table));
        let listed = stored_rows(&listing, alice.as_str()).await;

        let share = share_of(&s, "x".repeat(1_000_000));
        store.create_share(&share).await.unwrap();
        let shares = raw_table_client(&endpoint, &shares_table_for(&table));
        let parts = stored_rows(&shares, s.as_str()).await;
        assert_eq!(parts.len(), 3, "about 900 KiB a part");
        assert_eq!(stored_rows(&shares, share.id.as_str()).await.len(), 1);
        let unchanged =
            |rows: &[serde_json::Map<String, serde_json::Value>],
             before: &[serde_json::Map<String, serde_json::Value>]| {
                let keys = |rows: &[serde_json::Map<String, serde_json::Value>]| {
                    rows.iter()
                        .map(|row| row["RowKey"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                };
                assert_eq!(keys(rows), keys(before));
            };
        unchanged(
            &stored_rows(&raw_table_client(&endpoint, &table), s.as_str()).await,
            &history,
        );
        unchanged(&stored_rows(&listing, alice.as_str()).await, &listed);

        assert_eq!(store.revoke_shares(&s).await, Ok(1));
        assert_eq!(stored_rows(&shares, s.as_str()).await, []);
        assert_eq!(stored_rows(&shares, share.id.as_str()).await, []);
    }
}

// The daily figures behind analytics.

mod figures {
    use super::*;
    use chrono::NaiveDate;
    use session_rag::domain::DayRange;
    use session_rag::storage::{DayCounts, Scope};

    conformance_suite!(
        counts_add_up_per_scope_and_day_and_no_add_is_lost,
        a_customer_is_seen_first_once,
    );

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    fn days(from: Option<u32>, to: Option<u32>) -> DayRange {
        DayRange {
            from: from.map(day),
            to: to.map(day),
        }
    }

    fn counts(conversations: i64, turns: i64, up: i64, down: i64) -> DayCounts {
        DayCounts {
            conversations,
            turns,
            up,
            down,
            customers: 0,
        }
    }

    async fn counts_add_up_per_scope_and_day_and_no_add_is_lost(backend: Backend) {
        let store = backend.store.clone();
        let alice = Scope::Customer(customer("alice"));
        let bob = Scope::Customer(customer("bob"));
        assert_eq!(
            store.day_counts(&alice, &days(None, None)).await,
            Ok(vec![])
        );

        // Many writers at once on one customer's day: every add lands once.
        let adds = (0..24).map(|n| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                let change = counts(i64::from(n % 3 == 0), 1, 0, 0);
                store.add_counts(&alice, day(10), change).await
            })
        });
        for added in futures::future::join_all(adds).await {
            assert_eq!(added.unwrap(), Ok(()));
        }
        store
            .add_counts(&alice, day(10), counts(0, 0, 2, 1))
            .await
            .unwrap();
        // A change of mind: one up less, one down more.
        store
            .add_counts(&alice, day(10), counts(0, 0, -1, 1))
            .await
            .unwrap();
        store
            .add_counts(&alice, day(12), counts(1, 2, 0, 0))
            .await
            .unwrap();
        store
            .add_counts(&bob, day(11), counts(1, 1, 0, 1))
            .await
            .unwrap();
        let app = DayCounts {
            customers: 1,
            ..counts(1, 1, 0, 0)
        };
        store.add_counts(&Scope::App, day(11), app).await.unwrap();

        assert_eq!(
            store.day_counts(&alice, &days(None, None)).await,
            Ok(vec![
                (day(10), counts(8, 24, 1, 2)),
                (day(12), counts(1, 2, 0, 0))
            ])
        );
        assert_eq!(
            store.day_counts(&alice, &days(Some(11), None)).await,
            Ok(vec![(day(12), counts(1, 2, 0, 0))])
        );
        assert_eq!(
            store.day_counts(&alice, &days(None, Some(11))).await,
            Ok(vec![(day(10), counts(8, 24, 1, 2))])
        );
        assert_eq!(
            store.day_counts(&alice, &days(Some(12), Some(12))).await,
            Ok(vec![(day(12), counts(1, 2, 0, 0))])
        );
        assert_eq!(
            store.day_counts(&alice, &days(Some(11), Some(11))).await,
            Ok(vec![])
        );
        assert_eq!(
            store.day_counts(&bob, &days(None, None)).await,
            Ok(vec![(day(11), counts(1, 1, 0, 1))])
        );
        assert_eq!(
            store.day_counts(&Scope::App, &days(None, None)).await,
            Ok(vec![(day(11), app)])
        );
    }

    async fn a_customer_is_seen_first_once(backend: Backend) {
        let store = backend.store.clone();
        let firsts = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.first_seen(&customer("alice")).await })
        });
        let mut first = 0;
        for seen in futures::future::join_all(firsts).await {
            first += usize::from(seen.unwrap().unwrap());
        }
        assert_eq!(first, 1, "exactly one caller sees alice first");
        assert_eq!(store.first_seen(&customer("alice")).await, Ok(false));
        assert_eq!(store.first_seen(&customer("bob")).await, Ok(true));
    }

    /// Forty stores (as forty processes) add to one customer's day at once: more
    /// stores than a day has rows, so some share a row and race on it. Each add
    /// lands once: a write is conditional on the ETag its values were read with.
    #[tokio::test]
    async fn stores_racing_on_one_days_counters_lose_no_add() {
        const STORES: usize = 40;
        const ADDS: usize = 10;
        let table = unique_table_name("counters");
        let stores: Vec<Arc<TableStore>> = (0..STORES)
            .map(|_| Arc::new(shared_table_store(&table)))
            .collect();
        let alice = Scope::Customer(customer("alice"));
        // Each store adds one after another, all stores at once: a store sharing a
        // row with another finds it changed since its own last write.
        let adders = stores.iter().map(|store| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                for _ in 0..ADDS {
                    store
                        .add_counts(&alice, day(10), counts(0, 1, 0, 0))
                        .await?;
                }
                Ok::<_, StorageError>(())
            })
        });
        for added in futures::future::join_all(adders).await {
            assert_eq!(added.unwrap(), Ok(()));
        }
        let total = (STORES * ADDS) as i64;
        assert_eq!(
            stores[0].day_counts(&alice, &days(None, None)).await,
            Ok(vec![(day(10), counts(0, total, 0, 0))])
        );
    }
}
