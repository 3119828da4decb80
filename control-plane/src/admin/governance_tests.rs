//! Teams, customers and model configs in process: shapes, references, deletes that detach, and
//! the records the filters receive.

use super::tests::{app, call};
use super::*;
use crate::publish::records::publish_governance;
use crate::xds::cache::PolicyChange;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warden_policy::RecordKind;
use warden_policy::records::{CustomerRecord, ModelRecord, TeamRecord};
use warden_policy::{KeyHash, VirtualKeyRecord};

const TEAMS: &str = "/api/governance/teams";
const CUSTOMERS: &str = "/api/governance/customers";
const MODEL_CONFIGS: &str = "/api/governance/model-configs";
const KEYS: &str = "/api/governance/virtual-keys";

/// POSTs `body` to `path`, expects 200, and returns the created entity under `field`.
async fn create(app: &Router, path: &str, field: &str, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, path, Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created[field].clone()
}

fn id(entity: &Value) -> &str {
    entity["id"].as_str().unwrap()
}

/// The record the cache serves under `name`, if any.
fn record<T: DeserializeOwned>(state: &AppState, name: &str) -> Option<T> {
    let (changes, _) = state.cache.since(0);
    changes.into_iter().find_map(|change| match change {
        PolicyChange::Upsert { name: n, entry } if n == name => Some(serde_json::from_slice(&entry.body).unwrap()),
        _ => None,
    })
}

fn key_record(state: &AppState, key: &Value) -> VirtualKeyRecord {
    let hash = KeyHash::of(key["value"].as_str().unwrap().as_bytes()).to_string();
    record(state, &RecordKind::VirtualKey.name(&hash)).unwrap()
}

fn fields(entity: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = entity.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap()
}

#[tokio::test]
async fn a_team_round_trips_and_its_record_follows() {
    let (app, state) = app().await;
    let customer = create(&app, CUSTOMERS, "customer", json!({"name": "acme"})).await;
    let body = json!({"name": "platform", "customer_id": id(&customer),
                      "budget": {"max_limit": 5, "reset_duration": "1d"},
                      "budgets": [{"max_limit": 50, "reset_duration": "1M"}],
                      "rate_limit": {"request_max_limit": 10, "request_reset_duration": "1m"},
                      "calendar_aligned": true});
    let (status, created) = call(&app, Method::POST, TEAMS, Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["message"], "Team created successfully");
    let team = created["team"].clone();
    assert_eq!(
        fields(&team),
        ["budgets", "calendar_aligned", "created_at", "customer_id", "id", "name", "rate_limit", "updated_at"]
    );
    assert!(uuid::Uuid::parse_str(id(&team)).is_ok());
    assert_eq!(team["customer_id"], customer["id"]);
    assert_eq!(team["budgets"].as_array().unwrap().len(), 2, "the singular budget joins the list");
    assert_eq!(team["rate_limit"], json!({"request_max_limit": 10, "request_reset_duration": "1m"}));

    let name = RecordKind::Team.name(id(&team));
    let published: TeamRecord = record(&state, &name).expect("published on create");
    assert_eq!((published.name.as_str(), published.customer_id.as_deref()), ("platform", customer["id"].as_str()));
    assert!(published.limits.calendar_aligned);
    assert_eq!(published.limits.rate_limit.unwrap().request_max_limit, Some(10));
    let created_at = chrono::DateTime::parse_from_rfc3339(team["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(published.limits.anchor_ms, crate::model::unix_ms(created_at.to_utc()));

    let path = format!("{TEAMS}/{}", id(&team));
    let (status, got) = call(&app, Method::GET, &path, None).await;
    let mut embedded = team.clone();
    (embedded["customer"], embedded["virtual_keys"]) = (customer.clone(), json!([]));
    embedded["budget_id"] = team["budgets"][0]["id"].clone();
    embedded["rate_limit_id"] = json!(format!("team_id:{}", id(&team)));
    assert_eq!((status, &got), (StatusCode::OK, &json!({"team": embedded})));

    create(&app, TEAMS, "team", json!({"name": "research"})).await;
    let (_, all) = call(&app, Method::GET, TEAMS, None).await;
    assert_eq!(
        (all["count"].clone(), all["total_count"].clone(), all["offset"].clone()),
        (json!(2), json!(2), json!(0))
    );
    let (_, page) = call(&app, Method::GET, &format!("{TEAMS}?limit=1&offset=1"), None).await;
    assert_eq!((page["teams"][0]["name"].clone(), page["limit"].clone()), (json!("research"), json!(1)));
    let (_, found) = call(&app, Method::GET, &format!("{TEAMS}?search=plat"), None).await;
    assert_eq!(found["teams"][0]["name"], "platform");
    let (_, of_customer) = call(&app, Method::GET, &format!("{TEAMS}?customer_id={}", id(&customer)), None).await;
    assert_eq!(of_customer["total_count"], 1);

    let (status, updated) =
        call(&app, Method::PUT, &path, Some(r#"{"name":"platform-2","rate_limit":null,"customer_id":null}"#)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["message"], "Team updated successfully");
    let team = &updated["team"];
    assert_eq!((team["rate_limit"].clone(), team["customer_id"].clone()), (Value::Null, Value::Null));
    assert_eq!(team["budgets"].as_array().unwrap().len(), 2, "omitted budgets stay");
    assert_eq!(team["calendar_aligned"], true);
    let published: TeamRecord = record(&state, &name).unwrap();
    assert_eq!(
        (published.name.as_str(), published.customer_id, published.limits.rate_limit),
        ("platform-2", None, None)
    );

    let (status, deleted) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"message": "Team deleted successfully"})));
    let (status, answer) = call(&app, Method::GET, &path, None).await;
    assert_eq!((status, message(&answer)), (StatusCode::NOT_FOUND, "Team not found"));
    assert!(record::<TeamRecord>(&state, &name).is_none(), "withdrawn on delete");
}

#[tokio::test]
async fn a_customer_round_trips_and_its_record_follows() {
    let (app, state) = app().await;
    let (status, created) = call(&app, Method::POST, CUSTOMERS, Some(r#"{"name":"acme"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["message"], "Customer created successfully");
    let customer = created["customer"].clone();
    assert_eq!(
        fields(&customer),
        ["budgets", "calendar_aligned", "created_at", "id", "name", "rate_limit", "updated_at"]
    );
    let name = RecordKind::Customer.name(id(&customer));
    let published: CustomerRecord = record(&state, &name).expect("published on create");
    assert_eq!((published.name.as_str(), published.limits.rate_limit), ("acme", None));

    let path = format!("{CUSTOMERS}/{}", id(&customer));
    let (status, updated) = call(
        &app,
        Method::PUT,
        &path,
        Some(r#"{"rate_limit":{"token_max_limit":1000,"token_reset_duration":"1h"},"budgets":[]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["message"], "Customer updated successfully");
    assert_eq!(updated["customer"]["name"], "acme");
    let published: CustomerRecord = record(&state, &name).unwrap();
    assert_eq!(published.limits.rate_limit.unwrap().token_max_limit, Some(1000));

    let (_, got) = call(&app, Method::GET, &path, None).await;
    let mut embedded = updated["customer"].clone();
    (embedded["teams"], embedded["virtual_keys"]) = (json!([]), json!([]));
    (embedded["budget_id"], embedded["rate_limit_id"]) = (Value::Null, json!(format!("customer_id:{}", id(&customer))));
    assert_eq!(got, json!({"customer": embedded}));
    let (_, listed) = call(&app, Method::GET, &format!("{CUSTOMERS}?search=cm"), None).await;
    assert_eq!((listed["count"].clone(), listed["customers"][0]["id"].clone()), (json!(1), customer["id"].clone()));

    let (status, deleted) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"message": "Customer deleted successfully"})));
    assert!(record::<CustomerRecord>(&state, &name).is_none(), "withdrawn on delete");
}

#[tokio::test]
async fn model_configs_of_one_model_share_one_record() {
    let (app, state) = app().await;
    let (status, created) = call(
        &app,
        Method::POST,
        MODEL_CONFIGS,
        Some(r#"{"model_name":"gpt-4o","rate_limit":{"request_max_limit":100,"request_reset_duration":"1m"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["message"], "Model config created successfully");
    let everywhere = created["model_config"].clone();
    assert_eq!(
        fields(&everywhere),
        ["budgets", "calendar_aligned", "created_at", "id", "model_name", "provider", "rate_limit", "updated_at"]
    );
    let on_openai =
        create(&app, MODEL_CONFIGS, "model_config", json!({"model_name": "gpt-4o", "provider": "openai"})).await;
    create(&app, MODEL_CONFIGS, "model_config", json!({"model_name": "claude", "provider": "anthropic"})).await;

    let gpt = RecordKind::Model.name("gpt-4o");
    let published: ModelRecord = record(&state, &gpt).expect("published on create");
    assert_eq!(published.model, "gpt-4o");
    let ids: Vec<(&str, Option<&str>)> =
        published.configs.iter().map(|c| (c.id.as_str(), c.provider.as_deref())).collect();
    assert_eq!(ids, [(id(&everywhere), None), (id(&on_openai), Some("openai"))]);
    assert_eq!(published.configs[0].limits.rate_limit.as_ref().unwrap().request_max_limit, Some(100));
    assert_eq!(record::<ModelRecord>(&state, &RecordKind::Model.name("claude")).unwrap().configs.len(), 1);

    for body in [r#"{"model_name":"gpt-4o"}"#, r#"{"model_name":"gpt-4o","provider":"openai"}"#] {
        let (status, answer) = call(&app, Method::POST, MODEL_CONFIGS, Some(body)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {answer}");
        assert!(message(&answer).starts_with("model_name: a model config for 'gpt-4o'"), "{answer}");
    }

    let (_, listed) = call(&app, Method::GET, &format!("{MODEL_CONFIGS}?model_name=gpt-4o"), None).await;
    assert_eq!((listed["count"].clone(), listed["total_count"].clone()), (json!(2), json!(2)));
    let (_, got) = call(&app, Method::GET, &format!("{MODEL_CONFIGS}/{}", id(&on_openai)), None).await;
    assert_eq!(got, json!({"model_config": on_openai}));

    // Moving a config to another model re-publishes both records.
    let path = format!("{MODEL_CONFIGS}/{}", id(&on_openai));
    let (status, updated) = call(&app, Method::PUT, &path, Some(r#"{"model_name":"claude","provider":null}"#)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["message"], "Model config updated successfully");
    assert_eq!(updated["model_config"]["provider"], Value::Null);
    assert_eq!(record::<ModelRecord>(&state, &gpt).unwrap().configs.len(), 1);
    assert_eq!(record::<ModelRecord>(&state, &RecordKind::Model.name("claude")).unwrap().configs.len(), 2);

    let (status, deleted) = call(&app, Method::DELETE, &format!("{MODEL_CONFIGS}/{}", id(&everywhere)), None).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"message": "Model config deleted successfully"})));
    assert!(record::<ModelRecord>(&state, &gpt).is_none(), "the last config's delete withdraws the record");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let (app, _) = app().await;
    create(&app, TEAMS, "team", json!({"name": "taken"})).await;
    create(&app, CUSTOMERS, "customer", json!({"name": "taken"})).await;
    let cases = [
        (TEAMS, r#"{"name":"a","colour":"red"}"#, 400, "unknown field `colour`"),
        (CUSTOMERS, r#"{"name":"a","team_id":"t"}"#, 400, "unknown field `team_id`"),
        (MODEL_CONFIGS, r#"{"model_name":"m","weight":1}"#, 400, "unknown field `weight`"),
        (TEAMS, r#"{"name":"a","rate_limit":{"token_max_limit":5}}"#, 400, "rate_limit.token_reset_duration"),
        (CUSTOMERS, r#"{"name":"a","rate_limit":{"request_max_limit":0}}"#, 400, "rate_limit.request_max_limit"),
        (MODEL_CONFIGS, r#"{"model_name":"m","rate_limit":{"tokens":5}}"#, 400, "rate_limit.tokens: unknown field"),
        (
            TEAMS,
            r#"{"name":"a","budgets":[{"max_limit":1,"reset_duration":"soon"}]}"#,
            400,
            "budgets[0].reset_duration",
        ),
        (TEAMS, r#"{"name":" "}"#, 400, "name: must not be empty"),
        (MODEL_CONFIGS, r#"{"model_name":"m","provider":""}"#, 400, "provider: must not be empty"),
        (TEAMS, r#"{"name":"a","customer_id":"nobody"}"#, 400, "customer_id: no customer with id 'nobody'"),
        (KEYS, r#"{"name":"a","team_id":"nobody"}"#, 400, "team_id: no team with id 'nobody'"),
        (KEYS, r#"{"name":"a","customer_id":"nobody"}"#, 400, "customer_id: no customer with id 'nobody'"),
        (TEAMS, r#"{"name":"taken"}"#, 409, "name: a team with this name already exists"),
        (CUSTOMERS, r#"{"name":"taken"}"#, 409, "name: a customer with this name already exists"),
    ];
    for (path, body, expected_status, expected) in cases {
        let (status, answer) = call(&app, Method::POST, path, Some(body)).await;
        assert_eq!(status.as_u16(), expected_status, "{path} {body}: {answer}");
        assert!(message(&answer).contains(expected), "{path} {body}: {answer}");
    }
}

#[tokio::test]
async fn updates_check_references_too() {
    let (app, _) = app().await;
    let team = create(&app, TEAMS, "team", json!({"name": "t"})).await;
    let key = create(&app, KEYS, "virtual_key", json!({"name": "k"})).await;
    let cases = [
        (format!("{TEAMS}/{}", id(&team)), r#"{"customer_id":"nobody"}"#, "customer_id: no customer"),
        (format!("{KEYS}/{}", id(&key)), r#"{"team_id":"nobody"}"#, "team_id: no team"),
        (format!("{TEAMS}/{}", id(&team)), r#"{"colour":"red"}"#, "unknown field `colour`"),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = call(&app, Method::PUT, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        assert!(message(&answer).contains(expected), "{path} {body}: {answer}");
    }
    let body = json!({"team_id": id(&team)}).to_string();
    let (status, answer) = call(&app, Method::PUT, &format!("{KEYS}/{}", id(&key)), Some(&body)).await;
    assert_eq!((status, answer["virtual_key"]["team_id"].clone()), (StatusCode::OK, team["id"].clone()));
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let (app, _) = app().await;
    for (path, not_found) in
        [(TEAMS, "Team not found"), (CUSTOMERS, "Customer not found"), (MODEL_CONFIGS, "Model config not found")]
    {
        let path = format!("{path}/no-such-id");
        for (method, body) in [(Method::GET, None), (Method::PUT, Some("{}")), (Method::DELETE, None)] {
            let (status, answer) = call(&app, method.clone(), &path, body).await;
            assert_eq!((status, message(&answer)), (StatusCode::NOT_FOUND, not_found), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_team_with_keys_is_deleted_and_they_are_detached_unless_strict() {
    let (app, state) = app().await;
    let team = create(&app, TEAMS, "team", json!({"name": "t"})).await;
    let key = create(&app, KEYS, "virtual_key", json!({"name": "k", "team_id": id(&team)})).await;
    assert_eq!(key_record(&state, &key).team_id.as_deref(), team["id"].as_str());

    let path = format!("{TEAMS}/{}", id(&team));
    let (status, answer) = call(&app, Method::DELETE, &format!("{path}?strict=true"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(message(&answer).contains("1 virtual key(s)") && message(&answer).contains("?strict=true"), "{answer}");
    assert!(
        record::<TeamRecord>(&state, &RecordKind::Team.name(id(&team))).is_some(),
        "a refused delete changes nothing"
    );

    let (status, answer) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"message": "Team deleted successfully"})));
    let (_, got) = call(&app, Method::GET, &format!("{KEYS}/{}", id(&key)), None).await;
    assert_eq!(got["virtual_key"]["team_id"], Value::Null);
    assert_ne!(got["virtual_key"]["updated_at"], key["updated_at"]);
    assert_eq!(key_record(&state, &key).team_id, None, "the key's record is re-published");
    assert!(record::<TeamRecord>(&state, &RecordKind::Team.name(id(&team))).is_none());
}

#[tokio::test]
async fn a_customer_with_teams_or_keys_is_deleted_and_they_are_detached_unless_strict() {
    let (app, state) = app().await;
    let customer = create(&app, CUSTOMERS, "customer", json!({"name": "c"})).await;
    let team = create(&app, TEAMS, "team", json!({"name": "t", "customer_id": id(&customer)})).await;
    let key = create(&app, KEYS, "virtual_key", json!({"name": "k", "customer_id": id(&customer)})).await;

    let path = format!("{CUSTOMERS}/{}", id(&customer));
    let (status, answer) = call(&app, Method::DELETE, &format!("{path}?strict=true"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(message(&answer).contains("1 team(s) and 1 virtual key(s)"), "{answer}");

    let (status, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = call(&app, Method::GET, &format!("{TEAMS}/{}", id(&team)), None).await;
    assert_eq!(got["team"]["customer_id"], Value::Null);
    let (_, got) = call(&app, Method::GET, &format!("{KEYS}/{}", id(&key)), None).await;
    assert_eq!(got["virtual_key"]["customer_id"], Value::Null);
    let team_record: TeamRecord = record(&state, &RecordKind::Team.name(id(&team))).unwrap();
    assert_eq!((team_record.customer_id, key_record(&state, &key).customer_id), (None, None));
    assert!(record::<CustomerRecord>(&state, &RecordKind::Customer.name(id(&customer))).is_none());
}

#[tokio::test]
async fn startup_publishes_what_the_store_holds() {
    let (app, state) = app().await;
    let customer = create(&app, CUSTOMERS, "customer", json!({"name": "c"})).await;
    let team = create(&app, TEAMS, "team", json!({"name": "t", "customer_id": id(&customer)})).await;
    for provider in [Value::Null, json!("openai")] {
        create(&app, MODEL_CONFIGS, "model_config", json!({"model_name": "gpt-4o", "provider": provider})).await;
    }

    let restarted = Cache::default();
    publish_governance(&restarted, state.store.as_ref()).await.unwrap();
    let (changes, _) = restarted.since(0);
    let mut names: Vec<String> = changes
        .into_iter()
        .map(|c| match c {
            PolicyChange::Upsert { name, .. } | PolicyChange::Remove { name } => name,
        })
        .collect();
    names.sort_unstable();
    let mut expected = vec![
        RecordKind::Customer.name(id(&customer)),
        RecordKind::Model.name("gpt-4o"),
        RecordKind::Team.name(id(&team)),
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    for name in &expected {
        let served = |cache: &Cache| {
            cache.since(0).0.into_iter().find_map(|c| match c {
                PolicyChange::Upsert { name: n, entry } if &n == name => Some(entry.version),
                _ => None,
            })
        };
        assert_eq!(served(&restarted), served(&state.cache), "{name} differs after a restart");
    }
}

#[tokio::test]
async fn reads_embed_bifrost_relations() {
    let (app, _state) = app().await;
    let customer = create(&app, CUSTOMERS, "customer", json!({"name": "acme"})).await;
    let team = create(&app, TEAMS, "team", json!({"name": "t", "customer_id": id(&customer)})).await;
    let budget = json!({"max_limit": 5.0, "reset_duration": "1d"});
    let in_team = create(&app, KEYS, "virtual_key", json!({"name": "a", "team_id": id(&team), "budget": budget})).await;
    let direct = create(&app, KEYS, "virtual_key", json!({"name": "b", "customer_id": id(&customer)})).await;

    let (_, got) = call(&app, Method::GET, &format!("{KEYS}/{}", id(&in_team)), None).await;
    let key = &got["virtual_key"];
    assert_eq!((key["team"]["id"].clone(), key["team"]["name"].clone()), (team["id"].clone(), json!("t")));
    assert_eq!((key["customer"].clone(), key["budgets"][0]["max_limit"].clone()), (Value::Null, json!(5.0)));
    let (_, listed) = call(&app, Method::GET, &format!("{KEYS}?customer_id={}", id(&customer)), None).await;
    assert_eq!(listed["virtual_keys"][0]["customer"]["name"], "acme", "{listed}");

    let (_, got) = call(&app, Method::GET, &format!("{TEAMS}/{}", id(&team)), None).await;
    assert_eq!(got["team"]["customer"]["id"], customer["id"]);
    let keys: Vec<&Value> = got["team"]["virtual_keys"].as_array().unwrap().iter().map(|k| &k["id"]).collect();
    assert_eq!(keys, [&in_team["id"]]);

    let (_, got) = call(&app, Method::GET, &format!("{CUSTOMERS}/{}", id(&customer)), None).await;
    let names = |list: &Value| list.as_array().unwrap().iter().map(|e| e["name"].clone()).collect::<Vec<_>>();
    assert_eq!(names(&got["customer"]["teams"]), [json!("t")]);
    assert_eq!(got["customer"]["virtual_keys"][0]["id"], direct["id"]);
    assert!(got["customer"]["virtual_keys"][0].get("value").is_none(), "no secret is embedded");
}

#[tokio::test]
async fn query_and_path_rejections_use_the_error_shape_and_from_memory_is_accepted_everywhere() {
    let (app, _state) = app().await;
    for path in [TEAMS, CUSTOMERS, KEYS] {
        let (status, body) = call(&app, Method::GET, &format!("{path}?from_memory=true"), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, body) = call(&app, Method::GET, &format!("{TEAMS}?limit=many"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("limit"), "{body}");
    assert_eq!(body["status_code"], 400, "{body}");
    // The legacy singular `budget` is accepted on a provider config too.
    let grant = json!({"provider": "openai", "budget": {"max_limit": 2.0, "reset_duration": "1M"}});
    let key = create(&app, KEYS, "virtual_key", json!({"name": "legacy", "provider_configs": [grant]})).await;
    let budget = &key["provider_configs"][0]["budgets"][0];
    assert_eq!((budget["max_limit"].clone(), budget["reset_duration"].clone()), (json!(2.0), json!("1M")), "{key}");
}

#[tokio::test]
async fn budgets_and_rate_limits_are_listed_as_resources_and_take_overrides() {
    let (app, state) = app().await;
    let team =
        create(&app, TEAMS, "team", json!({"name": "t", "budget": {"max_limit": 50.0, "reset_duration": "1M"}})).await;
    let limit = json!({"request_max_limit": 100, "request_reset_duration": "1h"});
    let body = json!({
        "name": "k",
        "team_id": id(&team),
        "budgets": [{"max_limit": 1.0, "reset_duration": "1d"}],
        "rate_limit": limit,
        "provider_configs": [{"provider": "openai", "budget": {"max_limit": 0.5, "reset_duration": "1d"}}],
    });
    let key = create(&app, KEYS, "virtual_key", body).await;
    let budget_id = key["budgets"][0]["id"].as_str().expect("a budget id").to_owned();
    assert!(key["provider_configs"][0]["budgets"][0]["id"].is_string(), "{key}");

    let (status, listed) = call(&app, Method::GET, "/api/governance/budgets", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["count"], 3, "the key's, its provider config's and the team's: {listed}");
    let mine = listed["budgets"].as_array().unwrap().iter().find(|b| b["id"] == budget_id.as_str()).unwrap();
    assert_eq!((mine["virtual_key_id"].clone(), mine["current_usage"].clone()), (key["id"].clone(), json!(0.0)));
    assert_eq!(mine["effective_max_limit"], 1.0);
    assert!(mine["resets_at"].is_string(), "{mine}");
    let team_budget = listed["budgets"].as_array().unwrap().iter().find(|b| b["team_id"] == team["id"]).unwrap();
    assert_eq!(team_budget["max_limit"], 50.0);

    let (_, limits) = call(&app, Method::GET, "/api/governance/rate-limits", None).await;
    assert_eq!(limits["count"], 1, "{limits}");
    let rl = &limits["rate_limits"][0];
    let (_, got) = call(&app, Method::GET, &format!("{KEYS}/{}", id(&key)), None).await;
    assert_eq!(
        (got["virtual_key"]["budget_id"].as_str(), &got["virtual_key"]["rate_limit_id"]),
        (Some(budget_id.as_str()), &rl["id"])
    );
    assert_eq!((rl["virtual_key_id"].clone(), rl["request_max_limit"].clone()), (key["id"].clone(), json!(100)));
    assert_eq!(rl["request_current_usage"], 0);

    // Two more dollars for three windows: the filter's record carries it, ending with the third.
    let path = format!("{KEYS}/{}/budgets/{budget_id}/override", id(&key));
    let (status, answer) =
        call(&app, Method::PUT, &path, Some(r#"{"amount": 2.0, "mode": "cycles", "cycles": 3}"#)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["effective_max_limit"].clone(), answer["budget"]["override_mode"].clone()),
        (json!(3.0), json!("cycles"))
    );
    let budget = &key_record(&state, &key).limits.budgets[0];
    assert_eq!(budget.override_micros, 2_000_000);
    let (start, end) = (
        answer["budget"]["override_anchor_reset"].as_str().unwrap(),
        answer["budget"]["override_ends_at"].as_str().unwrap(),
    );
    let days =
        chrono::DateTime::parse_from_rfc3339(end).unwrap() - chrono::DateTime::parse_from_rfc3339(start).unwrap();
    assert_eq!(days.num_days(), 3, "{start} .. {end}");
    let now = crate::model::unix_ms(chrono::Utc::now());
    assert_eq!((budget.max_at(now), budget.max_at(budget.override_until_ms)), (3_000_000, 1_000_000));
    let (_, listed) = call(&app, Method::GET, "/api/governance/budgets", None).await;
    let mine = listed["budgets"].as_array().unwrap().iter().find(|b| b["id"] == budget_id.as_str()).unwrap();
    assert_eq!(
        (mine["effective_max_limit"].clone(), mine["override_cycles_remaining"].clone()),
        (json!(3.0), json!(3))
    );

    // Bad overrides are 400s; an unknown budget is a 404.
    let (status, _) = call(&app, Method::PUT, &path, Some(r#"{"amount": -1, "mode": "forever"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&app, Method::PUT, &path, Some(r#"{"amount": 1, "mode": "cycles"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unknown = format!("{KEYS}/{}/budgets/nope/override", id(&key));
    let (status, _) = call(&app, Method::PUT, &unknown, Some(r#"{"amount": 1, "mode": "forever"}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, answer) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!((status, answer["effective_max_limit"].clone()), (StatusCode::OK, json!(1.0)));
    assert_eq!(key_record(&state, &key).limits.budgets[0].override_micros, 0);
}

#[tokio::test]
async fn unbounded_admin_input_is_a_400_naming_the_field() {
    let (app, _state) = app().await;
    let cases = [
        (KEYS, json!({"name": "k", "provider_configs": [{"provider": "openai", "allowed_models": ["regex:a)|(b"]}]})),
        (KEYS, json!({"name": "k", "budgets": [{"max_limit": 1.0, "reset_duration": "1e15M"}]})),
        (KEYS, json!({"name": "k", "budgets": [{"max_limit": 1.0, "reset_duration": "1d", "override_amount": -5.0}]})),
        (TEAMS, json!({"name": "t", "rate_limit": {"request_max_limit": 5, "request_reset_duration": "40000d"}})),
        ("/api/providers", json!({"name": "p", "base_url": "http://h/v1\r\nx-injected: 1", "keys": []})),
    ];
    for (path, body) in cases {
        let (status, answer) = call(&app, Method::POST, path, Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        assert_eq!(answer["status_code"], 400, "{answer}");
    }
    let settings = json!({"control_plane_cluster": "warden_xds", "staleness_bound_ms": 1u64 << 40});
    let (status, _) = call(&app, Method::PUT, "/api/envoy/filter-settings", Some(&settings.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
