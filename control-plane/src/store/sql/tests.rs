//! The store through its traits, each test on SQLite and on PostgreSQL (a server this test
//! process starts, one fresh database per test; see `warden-test-support`).

use super::*;
use crate::model::{Customer, ModelConfig, Provider, ProviderKey, ProviderKind, Team, Timeouts, VirtualKey};
use crate::store::audit::chain_hash;
use crate::store::{
    AuditEvent, AuditStore, CustomerQuery, Deletion, GovernanceStore, GroupBy, KeyQuery, LeaseStore, LedgerStore,
    ModelConfigQuery, OnReferenced, ProviderStore, Store, TeamQuery, UsageQuery,
};
use warden_policy::lease::LeaseWant;
use warden_policy::ledger::UsageRecord;
use warden_policy::pricing::Price;

/// Each test runs on a private in-memory SQLite database and on a fresh PostgreSQL one.
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test(crate::store::SqlStore::in_memory().await.unwrap()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::postgres().await).await;
            })*
        }
    };
}

/// Each test gets one database that it may open several times, as replicas would: a SQLite
/// file, and a PostgreSQL database.
macro_rules! on_both_shared {
    ($($test:ident),* $(,)?) => {
        mod sqlite_shared {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let dir = tempfile::tempdir().unwrap();
                super::$test(&format!("sqlite://{}", dir.path().join("warden.db").display())).await;
            })*
        }
        mod postgres_shared {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(&warden_test_support::fresh_database()).await;
            })*
        }
    };
}

on_both!(
    tampering_breaks_the_audit_chain,
    a_removed_audit_row_is_detected,
    usage_is_stored_once_per_id,
    usage_totals_group_filter_and_exceed_32_bits,
    a_key_reads_back_as_written,
    key_conflicts_name_their_field,
    keys_are_listed_searched_and_paged,
    governance_crud_and_conflicts,
    deleting_an_owner_refuses_or_detaches,
    providers_round_trip,
    a_setting_is_inserted_once,
    envoys_asking_at_once_are_never_granted_more_than_the_budget,
    a_want_names_its_window_and_old_windows_are_forgotten,
);

on_both_shared!(
    replicas_append_to_one_audit_chain,
    replicas_store_each_usage_record_once,
    replicas_agree_on_one_setting,
    replicas_never_grant_the_same_dollar_twice,
    a_database_from_the_pre_release_migrations_is_refused,
);

/// Replicas bumping one counter at once each get a value of their own.
async fn replicas_count_one_by_one(url: &str) {
    let (a, b) = (SqlStore::connect(url).await.unwrap(), SqlStore::connect(url).await.unwrap());
    let bumps = |store: SqlStore| {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..20 {
                seen.push(store.bump_setting("generation").await.unwrap());
            }
            seen
        })
    };
    let (one, two) = tokio::join!(bumps(a), bumps(b));
    let mut all: Vec<u64> = one.unwrap().into_iter().chain(two.unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u64>>());
}

async fn postgres() -> SqlStore {
    SqlStore::connect(&warden_test_support::fresh_database()).await.unwrap()
}

fn at(seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 123_456_789).unwrap()
}

fn event(n: u16) -> AuditEvent {
    AuditEvent {
        actor: "admin".into(),
        action: format!("PUT /api/x/{n}"),
        target: format!("/api/x/{n}"),
        status: 200,
        detail: format!("{{\"n\":{n}}}"),
    }
}

fn key(n: u32, name: &str) -> VirtualKey {
    VirtualKey {
        id: format!("vk-{n}"),
        name: name.into(),
        description: format!("key number {n}"),
        is_active: true,
        value_prefix: "sk-bf-ab".into(),
        value_hash: format!("{n:064x}"),
        provider_configs: Vec::new(),
        mcp_configs: Vec::new(),
        team_id: None,
        customer_id: None,
        budgets: Vec::new(),
        rate_limit: None,
        calendar_aligned: false,
        allow_all_providers: false,
        max_concurrent_requests: None,
        prices: Default::default(),
        expires_at: None,
        delete_after_expire: None,
        disable_content_logging: None,
        created_at: at(i64::from(n)),
        updated_at: at(i64::from(n)),
    }
}

fn team(id: &str, customer: Option<&str>) -> Team {
    Team {
        id: id.into(),
        name: format!("Team {id}"),
        customer_id: customer.map(Into::into),
        budgets: vec![crate::model::Budget { max_limit: 12.5, reset_duration: "1M".into(), ..Default::default() }],
        rate_limit: Some(warden_policy::RateLimit { request_max_limit: Some(10), ..Default::default() }),
        calendar_aligned: true,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn customer(id: &str) -> Customer {
    Customer {
        id: id.into(),
        name: format!("Customer {id}"),
        budgets: Vec::new(),
        rate_limit: None,
        calendar_aligned: false,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn model_config(id: &str, model: &str, provider: Option<&str>) -> ModelConfig {
    ModelConfig {
        id: id.into(),
        model_name: model.into(),
        provider: provider.map(Into::into),
        budgets: Vec::new(),
        rate_limit: None,
        calendar_aligned: false,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn record(id: &str, key: &str, cost_micros: u64) -> UsageRecord {
    UsageRecord {
        id: id.into(),
        at_ms: 1_800_000_000_000,
        key_id: key.into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        input_tokens: 10,
        output_tokens: 5,
        cost_micros,
        status: 200,
        ..Default::default()
    }
}

// === audit ===

async fn tampering_breaks_the_audit_chain(store: SqlStore) {
    for n in 1..=4 {
        store.append_audit(event(n)).await.unwrap();
    }
    assert_eq!(store.verify_audit().await.unwrap(), crate::store::audit::ChainCheck { rows: 4, first_broken: None });
    let newest = store.audit(10, 0).await.unwrap();
    assert_eq!(newest[0].seq, 4);
    assert_eq!(newest[1].hash, newest[0].prev_hash);
    assert_eq!(store.audit(2, 3).await.unwrap().len(), 1);

    store.execute_raw("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 2").await;
    assert_eq!(store.verify_audit().await.unwrap().first_broken, Some(2));
    // Rewriting the row's own hash does not help: the next row's link breaks instead.
    let tampered = AuditEvent { detail: "{\"n\":99}".into(), ..event(2) };
    let at = store.fetch_text("SELECT at FROM audit_log WHERE seq = 2", "at").await;
    let prev = store.fetch_text("SELECT prev_hash FROM audit_log WHERE seq = 2", "prev_hash").await;
    let rehash = chain_hash(&prev, 2, &at, &tampered);
    store.execute_raw(&format!("UPDATE audit_log SET hash = '{rehash}' WHERE seq = 2")).await;
    assert_eq!(store.verify_audit().await.unwrap().first_broken, Some(3));
}

async fn a_removed_audit_row_is_detected(store: SqlStore) {
    for n in 1..=3 {
        store.append_audit(event(n)).await.unwrap();
    }
    store.execute_raw("DELETE FROM audit_log WHERE seq = 2").await;
    assert_eq!(store.verify_audit().await.unwrap().first_broken, Some(3));
}

// === usage ===

async fn usage_is_stored_once_per_id(store: SqlStore) {
    let denied = UsageRecord { denial: "rate_limited/key".into(), status: 429, ..record("c", "vk-1", 0) };
    let first = store.write_usage(&[record("a", "vk-1", 7), record("b", "vk-1", 3), denied.clone()]).await.unwrap();
    assert_eq!(first.ids, ["a", "b", "c"]);
    assert_eq!(first.new_ids, ["a", "b", "c"]);
    assert_eq!(first.new_denials, std::slice::from_ref(&denied));

    // A resend, with a new record in the middle and an id twice in one batch.
    let again =
        store.write_usage(&[record("a", "vk-1", 7), record("d", "vk-1", 1), denied, record("d", "vk-1", 1)]).await;
    let again = again.unwrap();
    assert_eq!(again.ids, ["a", "d", "c", "d"], "every id is acknowledged");
    assert_eq!(again.new_ids, ["d"]);
    assert!(again.new_denials.is_empty());

    let totals = store.usage(&UsageQuery::default()).await.unwrap();
    assert_eq!((totals[0].requests, totals[0].cost_micros), (3, 11), "denials are not usage");
    assert_eq!(store.denials_by_type().await.unwrap(), [("rate_limited/key".to_owned(), 1)]);
    assert!(store.write_usage(&[]).await.unwrap().ids.is_empty());
}

async fn usage_totals_group_filter_and_exceed_32_bits(store: SqlStore) {
    let big = 5_000_000_000;
    let records = [
        UsageRecord { team_id: "t-1".into(), input_tokens: big, ..record("a", "vk-1", big) },
        UsageRecord { team_id: "t-1".into(), at_ms: 1_800_000_100_000, ..record("b", "vk-1", 2) },
        UsageRecord { model: "gpt-4o".into(), ..record("c", "vk-2", 2) },
        UsageRecord { provider: "gemini".into(), ..record("d", "vk-3", 2) },
    ];
    store.write_usage(&records).await.unwrap();

    let all = store.usage(&UsageQuery::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].group.as_deref(), all[0].requests), (None, 4));
    assert_eq!((all[0].input_tokens, all[0].output_tokens, all[0].cost_micros), (big + 30, 20, big + 6));

    let by_team = store.usage(&UsageQuery { group_by: Some(GroupBy::Team), ..Default::default() }).await.unwrap();
    let groups: Vec<_> = by_team.iter().map(|t| (t.group.clone(), t.requests, t.cost_micros)).collect();
    assert_eq!(groups, [(Some("t-1".into()), 2, big + 2), (None, 2, 4)], "largest cost first");

    let by_key = store.usage(&UsageQuery { group_by: Some(GroupBy::Key), ..Default::default() }).await.unwrap();
    let keys: Vec<_> = by_key.iter().map(|t| t.group.clone().unwrap()).collect();
    assert_eq!(keys, ["vk-1", "vk-2", "vk-3"], "equal costs by group");

    let window = UsageQuery { from_ms: Some(1_800_000_000_000), to_ms: Some(1_800_000_100_000), ..Default::default() };
    assert_eq!(store.usage(&window).await.unwrap()[0].requests, 3, "from inclusive, to exclusive");
    let filtered = UsageQuery { team_id: Some("t-1".into()), key_id: Some("vk-1".into()), ..Default::default() };
    assert_eq!(store.usage(&filtered).await.unwrap()[0].requests, 2);
    let nothing = store.usage(&UsageQuery { model: Some("none".into()), ..Default::default() }).await.unwrap();
    assert_eq!((nothing[0].requests, nothing[0].cost_micros), (0, 0), "no rows sum to zero");

    let by_model = store.usage_by_model().await.unwrap();
    let models: Vec<_> = by_model.iter().map(|(p, m, t)| (p.as_str(), m.as_str(), t.requests)).collect();
    assert_eq!(models, [("gemini", "gpt-4o-mini", 1), ("openai", "gpt-4o", 1), ("openai", "gpt-4o-mini", 2)]);
    assert_eq!(by_model[2].2.input_tokens, big + 10);
}

// === virtual keys ===

async fn a_key_reads_back_as_written(store: SqlStore) {
    let mut written = key(1, "full");
    written.team_id = Some("t-1".into());
    written.max_concurrent_requests = Some(3);
    written.prices.insert(
        "gpt-4o".into(),
        Price { input_per_mtok: 2_500_000, output_per_mtok: 10_000_000, ..Default::default() },
    );
    written.rate_limit = Some(warden_policy::RateLimit { token_max_limit: Some(1000), ..Default::default() });
    written.expires_at = Some(at(3600));
    written.delete_after_expire = Some(true);
    written.disable_content_logging = Some(false);
    store.insert_virtual_key(&written).await.unwrap();
    assert_eq!(store.virtual_key("vk-1").await.unwrap(), Some(written.clone()));
    assert_eq!(store.virtual_key_by_hash(&written.value_hash).await.unwrap(), Some(written.clone()));
    assert_eq!(store.virtual_key("vk-9").await.unwrap(), None);

    let updated = VirtualKey { is_active: false, team_id: None, updated_at: at(7200), ..written.clone() };
    assert!(store.update_virtual_key(&updated).await.unwrap());
    assert_eq!(store.virtual_key("vk-1").await.unwrap(), Some(updated.clone()));
    assert!(!store.update_virtual_key(&key(9, "ghost")).await.unwrap());

    assert_eq!(store.delete_virtual_key("vk-1").await.unwrap(), Some(updated));
    assert_eq!(store.delete_virtual_key("vk-1").await.unwrap(), None);
}

async fn key_conflicts_name_their_field(store: SqlStore) {
    store.insert_virtual_key(&key(1, "one")).await.unwrap();
    let same_name = key(2, "one");
    let same_value = VirtualKey { value_hash: key(1, "x").value_hash, ..key(3, "three") };
    let conflict = |r: Result<(), StoreError>| match r {
        Err(StoreError::Conflict { field }) => field,
        other => panic!("expected a conflict, got {other:?}"),
    };
    assert_eq!(conflict(store.insert_virtual_key(&same_name).await), "name");
    assert_eq!(conflict(store.insert_virtual_key(&same_value).await), "value");
    store.insert_virtual_key(&key(4, "four")).await.unwrap();
    let renamed = VirtualKey { name: "one".into(), ..key(4, "four") };
    assert!(matches!(store.update_virtual_key(&renamed).await, Err(StoreError::Conflict { field: "name" })));
}

async fn keys_are_listed_searched_and_paged(store: SqlStore) {
    let names = ["Alpha one", "alpha two", "Beta!", "100% gamma", "under_score"];
    for (n, name) in (1..).zip(names) {
        let mut k = key(n, name);
        if n % 2 == 0 {
            k.team_id = Some("t-1".into());
        }
        store.insert_virtual_key(&k).await.unwrap();
    }
    let list = |query: KeyQuery| {
        let store = &store;
        async move {
            let (keys, total) = store.virtual_keys(&query).await.unwrap();
            (keys.into_iter().map(|k| k.name).collect::<Vec<_>>(), total)
        }
    };
    let search = |text: &str| KeyQuery { search: Some(text.into()), ..Default::default() };
    assert_eq!(list(KeyQuery::default()).await, (names.map(String::from).to_vec(), 5), "in creation order");
    assert_eq!(list(search("ALPHA")).await.1, 2, "case does not matter");
    assert_eq!(list(search("number 3")).await.0, ["Beta!"], "the description is searched too");
    assert_eq!(list(search("a!")).await.0, ["Beta!"], "! is literal");
    assert_eq!(list(search("%")).await.0, ["100% gamma"], "% is literal");
    assert_eq!(list(search("r_s")).await.0, ["under_score"], "_ is literal");
    assert_eq!(list(search("a_o")).await.1, 0);
    let team = KeyQuery { team_id: Some("t-1".into()), ..Default::default() };
    assert_eq!(list(team).await.0, ["alpha two", "100% gamma"]);
    let page = KeyQuery { limit: Some(2), offset: 1, ..Default::default() };
    assert_eq!(list(page).await, (vec!["alpha two".to_owned(), "Beta!".to_owned()], 5));
    let past_the_end = KeyQuery { limit: Some(2), offset: 10, ..Default::default() };
    assert_eq!(list(past_the_end).await, (Vec::new(), 5));
    let searched_page = KeyQuery { search: Some("a".into()), limit: Some(1), offset: 0, ..Default::default() };
    assert_eq!(list(searched_page).await, (vec!["Alpha one".to_owned()], 4));
}

// === governance ===

async fn governance_crud_and_conflicts(store: SqlStore) {
    store.insert_customer(&customer("c-1")).await.unwrap();
    store.insert_team(&team("t-1", Some("c-1"))).await.unwrap();
    store.insert_team(&team("t-2", None)).await.unwrap();
    assert_eq!(store.team("t-1").await.unwrap(), Some(team("t-1", Some("c-1"))));
    assert_eq!(store.customer("c-1").await.unwrap(), Some(customer("c-1")));

    let taken = Team { id: "t-3".into(), ..team("t-1", None) };
    assert!(matches!(store.insert_team(&taken).await, Err(StoreError::Conflict { field: "name" })));
    let taken = Customer { id: "c-2".into(), ..customer("c-1") };
    assert!(matches!(store.insert_customer(&taken).await, Err(StoreError::Conflict { field: "name" })));

    let moved = Team { customer_id: None, rate_limit: None, updated_at: at(60), ..team("t-1", Some("c-1")) };
    assert!(store.update_team(&moved).await.unwrap());
    assert_eq!(store.team("t-1").await.unwrap(), Some(moved));
    assert!(!store.update_customer(&customer("c-9")).await.unwrap());

    let (teams, total) =
        store.teams(&TeamQuery { search: Some("TEAM T-2".into()), ..Default::default() }).await.unwrap();
    assert_eq!((teams.len(), total, teams[0].id.as_str()), (1, 1, "t-2"));
    let (customers, _) = store.customers(&CustomerQuery::default()).await.unwrap();
    assert_eq!(customers, [customer("c-1")]);

    store.insert_model_config(&model_config("m-1", "gpt-4o", None)).await.unwrap();
    store.insert_model_config(&model_config("m-2", "gpt-4o", Some("openai"))).await.unwrap();
    let twice = model_config("m-3", "gpt-4o", None);
    assert!(
        matches!(store.insert_model_config(&twice).await, Err(StoreError::Conflict { field: "model_name" })),
        "one config per model without a provider"
    );
    let exact = ModelConfigQuery { model_name: Some("gpt-4o".into()), ..Default::default() };
    assert_eq!(store.model_configs(&exact).await.unwrap().1, 2);
    let updated = ModelConfig { calendar_aligned: true, ..model_config("m-2", "gpt-4o", Some("openai")) };
    assert!(store.update_model_config(&updated).await.unwrap());
    assert_eq!(store.model_config("m-2").await.unwrap(), Some(updated.clone()));
    assert_eq!(store.delete_model_config("m-2").await.unwrap(), Some(updated));
    assert_eq!(store.model_config("m-2").await.unwrap(), None);
}

async fn deleting_an_owner_refuses_or_detaches(store: SqlStore) {
    store.insert_customer(&customer("c-1")).await.unwrap();
    store.insert_team(&team("t-1", Some("c-1"))).await.unwrap();
    store.insert_virtual_key(&VirtualKey { team_id: Some("t-1".into()), ..key(1, "team key") }).await.unwrap();
    store.insert_virtual_key(&VirtualKey { customer_id: Some("c-1".into()), ..key(2, "customer key") }).await.unwrap();

    let refused = store.delete_customer("c-1", OnReferenced::Refuse).await.unwrap();
    assert!(matches!(refused, Deletion::Referenced { teams: 1, keys: 1 }), "{refused:?}");
    let refused = store.delete_team("t-1", OnReferenced::Refuse).await.unwrap();
    assert!(matches!(refused, Deletion::Referenced { teams: 0, keys: 1 }), "{refused:?}");
    assert!(matches!(store.delete_team("t-9", OnReferenced::Refuse).await.unwrap(), Deletion::NotFound));

    let Deletion::Deleted { entity, detached_teams, detached_keys } =
        store.delete_customer("c-1", OnReferenced::Detach { at: at(99) }).await.unwrap()
    else {
        panic!("not deleted")
    };
    assert_eq!(entity, customer("c-1"));
    assert_eq!(
        detached_teams.iter().map(|t| (t.id.as_str(), t.customer_id.clone(), t.updated_at)).collect::<Vec<_>>(),
        [("t-1", None, at(99))]
    );
    assert_eq!(
        detached_keys.iter().map(|k| (k.id.as_str(), k.customer_id.clone())).collect::<Vec<_>>(),
        [("vk-2", None)]
    );
    assert_eq!(store.customer("c-1").await.unwrap(), None);

    let Deletion::Deleted { detached_keys, .. } =
        store.delete_team("t-1", OnReferenced::Detach { at: at(100) }).await.unwrap()
    else {
        panic!("not deleted")
    };
    assert_eq!(detached_keys.len(), 1);
    assert_eq!(store.virtual_key("vk-1").await.unwrap().unwrap().team_id, None);
    assert_eq!(store.virtual_key("vk-1").await.unwrap().unwrap().updated_at, at(100));
}

// === providers ===

fn provider(name: &str) -> Provider {
    Provider {
        name: name.into(),
        kind: ProviderKind::Openai,
        base_url: "https://api.example.com/v1".into(),
        models: vec!["gpt-4o".into()],
        keys: vec![ProviderKey { id: "k1".into(), value: "sk-secret".into() }],
        timeouts: Timeouts::default(),
        rate_limit: None,
        budgets: Vec::new(),
        calendar_aligned: false,
        created_at: at(0),
        updated_at: at(0),
    }
}

async fn providers_round_trip(store: SqlStore) {
    for name in ["open_ai", "open-ai", "Open", "a"] {
        store.insert_provider(&provider(name)).await.unwrap();
    }
    assert!(matches!(store.insert_provider(&provider("a")).await, Err(StoreError::Conflict { field: "name" })));
    let names: Vec<_> = store.providers().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["Open", "a", "open-ai", "open_ai"], "by bytes");
    assert_eq!(store.provider("a").await.unwrap(), Some(provider("a")), "with the key's value");
    let rotated = Provider { keys: vec![ProviderKey { id: "k2".into(), value: "sk-new".into() }], ..provider("a") };
    assert!(store.update_provider(&rotated).await.unwrap());
    assert!(!store.update_provider(&provider("nope")).await.unwrap());
    assert_eq!(store.delete_provider("a").await.unwrap(), Some(rotated));
    assert_eq!(store.provider("a").await.unwrap(), None);
}

// === settings ===

async fn a_setting_is_inserted_once(store: SqlStore) {
    assert_eq!(store.setting("s").await.unwrap(), None);
    assert!(store.insert_setting("s", "first").await.unwrap());
    assert!(!store.insert_setting("s", "second").await.unwrap());
    assert_eq!(store.setting("s").await.unwrap().as_deref(), Some("first"));
    store.put_setting("s", "third").await.unwrap();
    assert_eq!(store.setting("s").await.unwrap().as_deref(), Some("third"));
}

// === leases ===

fn want(used: u64) -> LeaseWant {
    LeaseWant {
        counter: "warden:budget:vk:k:1d".into(),
        window_start_ms: 0,
        window_end_ms: 86_400_000,
        max: 1_000_000,
        used,
        more: true,
        keep: None,
        need: 0,
    }
}

async fn envoys_asking_at_once_are_never_granted_more_than_the_budget(store: SqlStore) {
    three_envoys_share_one_budget(&[std::sync::Arc::new(store)]).await;
}

/// Three Envoys ask for leases of one budget at once, 60 times, envoy `n` through `stores[n % len]`.
async fn three_envoys_share_one_budget(stores: &[std::sync::Arc<SqlStore>]) {
    // Each Envoy has called in before (a heartbeat): the fleet is known to be three.
    for n in 0..3 {
        stores[n % stores.len()].lease(&format!("envoy-{n}"), &[], 900).await.unwrap();
    }
    let mut held = [0u64; 3];
    for _ in 0..60 {
        let calls = (0..3).map(|n| {
            let store = stores[n % stores.len()].clone();
            let used = held[n];
            async move { store.lease(&format!("envoy-{n}"), &[want(used)], 1_000).await.unwrap() }
        });
        for (n, grants) in futures::future::join_all(calls).await.into_iter().enumerate() {
            held[n] = grants[0].granted;
        }
        assert!(held.iter().sum::<u64>() <= 1_000_000, "{held:?}");
    }
    assert_eq!(held.iter().sum::<u64>(), 1_000_000, "the whole budget ends up granted: {held:?}");
    // Each got a part of it worth having, though the first to ask got the most.
    eprintln!("three Envoys' shares: {held:?}");
    assert!(held.iter().all(|&h| h > 100_000), "{held:?}");
    let rows = stores[0].leases("warden:budget:vk:").await.unwrap();
    let listed: Vec<u64> = rows.iter().map(|r| r.granted).collect();
    assert_eq!(listed, held);
    assert!(rows.iter().all(|r| r.max_micros == 1_000_000 && r.window_end_ms == 86_400_000));
    assert!(stores[0].leases("warden:budget:team:").await.unwrap().is_empty());
}

async fn a_want_names_its_window_and_old_windows_are_forgotten(store: SqlStore) {
    let grants = store.lease("envoy-0", &[want(0)], 1_000).await.unwrap();
    assert_eq!((grants[0].window_start_ms, grants[0].granted), (0, 1_000_000), "alone, it gets it all");
    // A day and more than an hour later the window is gone: a new call starts it afresh.
    let later = 86_400_000 + 3_600_001;
    let grants = store.lease("envoy-0", &[LeaseWant { more: false, ..want(0) }], later).await.unwrap();
    assert_eq!((grants[0].granted, grants[0].free), (0, 1_000_000));
}

// === replicas ===

async fn replicas_append_to_one_audit_chain(url: &str) {
    let (a, b) = (SqlStore::connect(url).await.unwrap(), SqlStore::connect(url).await.unwrap());
    let appends = |store: SqlStore, base: u16| {
        tokio::spawn(async move {
            for n in 0..25 {
                store.append_audit(event(base + n)).await.unwrap();
            }
        })
    };
    let (one, two) = tokio::join!(appends(a, 0), appends(b, 100));
    one.unwrap();
    two.unwrap();
    let check = SqlStore::connect(url).await.unwrap().verify_audit().await.unwrap();
    assert_eq!(check, crate::store::audit::ChainCheck { rows: 50, first_broken: None });
}

async fn replicas_store_each_usage_record_once(url: &str) {
    let (a, b) = (SqlStore::connect(url).await.unwrap(), SqlStore::connect(url).await.unwrap());
    // Both get every record, in opposite orders, in batches of 10.
    let records: Vec<UsageRecord> = (0..200).map(|n| record(&format!("r-{n:03}"), "vk-1", 1)).collect();
    let reversed: Vec<UsageRecord> = records.iter().rev().cloned().collect();
    let writes = |store: SqlStore, records: Vec<UsageRecord>| {
        tokio::spawn(async move {
            let mut new = Vec::new();
            for batch in records.chunks(10) {
                new.extend(store.write_usage(batch).await.unwrap().new_ids);
            }
            new
        })
    };
    let (one, two) = tokio::join!(writes(a, records.clone()), writes(b, reversed));
    let mut new = one.unwrap();
    new.extend(two.unwrap());
    new.sort();
    let mut all: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    all.sort();
    assert_eq!(new, all, "each record is new to exactly one replica");
    let totals = SqlStore::connect(url).await.unwrap().usage(&UsageQuery::default()).await.unwrap();
    assert_eq!((totals[0].requests, totals[0].cost_micros), (200, 200));
}

async fn replicas_agree_on_one_setting(url: &str) {
    replicas_count_one_by_one(url).await;
    // Connected one after the other: SQLite has no migration lock across connections.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(SqlStore::connect(url).await.unwrap());
    }
    let inserted = futures::future::join_all(
        stores.iter().enumerate().map(|(n, s)| s.insert_setting("token", if n == 0 { "zero" } else { "other" })),
    )
    .await;
    assert_eq!(inserted.into_iter().filter(|r| *r.as_ref().unwrap()).count(), 1, "exactly one wins");
    let values = futures::future::join_all(stores.iter().map(|s| s.setting("token"))).await;
    let values: std::collections::BTreeSet<_> = values.into_iter().map(Result::unwrap).collect();
    assert_eq!(values.len(), 1, "everyone reads the winner's value: {values:?}");
}

async fn replicas_never_grant_the_same_dollar_twice(url: &str) {
    let a = std::sync::Arc::new(SqlStore::connect(url).await.unwrap());
    let b = std::sync::Arc::new(SqlStore::connect(url).await.unwrap());
    three_envoys_share_one_budget(&[a, b]).await;
}

async fn a_database_from_the_pre_release_migrations_is_refused(url: &str) {
    let store = SqlStore::connect(url).await.unwrap();
    // What the old migrations 0001-0009 leave behind, as far as the migrator looks: versions
    // this build does not have.
    store
        .execute_raw(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             SELECT 8, 'key prices', success, checksum, execution_time FROM _sqlx_migrations WHERE version = 1",
        )
        .await;
    drop(store);
    let e = SqlStore::connect(url).await.err().unwrap();
    let message = format!("{e:#}");
    assert!(message.contains("pre-release schema") && message.contains("move it away"), "{message}");
}

// === connecting ===

#[test]
fn a_url_is_shown_without_its_password() {
    assert_eq!(redacted_url("postgres://warden:s3cret@db:5432/warden"), "postgres://warden:***@db:5432/warden");
    assert_eq!(redacted_url("postgres://a:b@c@db/w?sslmode=require"), "postgres://a:***@db/w?sslmode=require");
    assert_eq!(redacted_url("postgres://db/w?user=u&password=p"), "postgres://db/w?user=u&password=***");
    assert_eq!(redacted_url("postgres://u:pa/ss@db/w"), "postgres://u:***@db/w");
    assert_eq!(redacted_url("postgresql://warden@db/warden"), "postgresql://warden@db/warden");
    assert_eq!(redacted_url("sqlite://data/warden.db"), "sqlite://data/warden.db");
}

#[tokio::test]
async fn connection_errors_do_not_show_the_password() {
    let e = SqlStore::connect("mysql://root:hunter2@db/w").await.err().unwrap();
    assert!(format!("{e:#}").contains("unsupported database URL scheme `mysql`"), "{e:#}");
    assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");

    let server = warden_test_support::Postgres::shared();
    let missing = server.url("no_such_database").replace("postgres@", "postgres:hunter2@");
    let e = SqlStore::connect(&missing).await.err().unwrap();
    assert!(format!("{e:#}").contains("no_such_database"), "{e:#}");
    assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
}

#[tokio::test]
async fn each_database_says_what_it_is() {
    assert_eq!(SqlStore::in_memory().await.unwrap().database(), "SQLite");
    assert_eq!(postgres().await.database(), "PostgreSQL");
}
