//! Teams, customers and model configs: the owners of limits that are not keys. One table says
//! where each lives in the admin API; one set of pages lists, creates, edits and deletes them.

use super::session::Session;
use super::views::url_encoded;
use super::{Refusal, Ui, may_change, page};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One kind of owner.
pub struct Kind {
    /// Under `/ui/org/` and `/api/governance/`.
    pub path: &'static str,
    pub title: &'static str,
    pub one_title: &'static str,
    /// The list's field in the admin API's answer, and one entity's.
    list: &'static str,
    one: &'static str,
    /// The fields a `PUT` takes.
    editable: &'static [&'static str],
    /// A body to start a creation from.
    pub example: &'static str,
}

const KINDS: [Kind; 3] = [
    Kind {
        path: "teams",
        title: "Teams",
        one_title: "team",
        list: "teams",
        one: "team",
        editable: &["name", "customer_id", "budgets", "rate_limit", "calendar_aligned"],
        example: r#"{"name": "research", "budgets": [{"max_limit": 100.0, "reset_duration": "1M"}]}"#,
    },
    Kind {
        path: "customers",
        title: "Customers",
        one_title: "customer",
        list: "customers",
        one: "customer",
        editable: &["name", "budgets", "rate_limit", "calendar_aligned"],
        example: r#"{"name": "acme", "budgets": [{"max_limit": 500.0, "reset_duration": "1M"}]}"#,
    },
    Kind {
        path: "model-configs",
        title: "Model configs",
        one_title: "model config",
        list: "model_configs",
        one: "model_config",
        editable: &["model_name", "provider", "budgets", "rate_limit", "calendar_aligned"],
        example: r#"{"model_name": "gpt-4o", "rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1m"}}"#,
    },
];

fn kind_of(path: &str) -> Result<&'static Kind, Refusal> {
    KINDS.iter().find(|k| k.path == path).ok_or(Refusal::NoSuchPage)
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// One owner in a list.
pub struct Row {
    pub id: String,
    pub name: String,
    pub budgets: usize,
    pub rate_limit: String,
}

#[derive(Template)]
#[template(path = "ui/entities.html")]
struct ListPage {
    page: &'static str,
    csrf: String,
    kind: &'static Kind,
    rows: Vec<Row>,
    error: Option<String>,
    done: Option<String>,
}

async fn list_page(
    ui: &Ui,
    csrf: String,
    kind: &'static Kind,
    error: Option<String>,
    done: Option<String>,
) -> Response {
    let answer = ui.api.get(&format!("/api/governance/{}", kind.path)).await;
    let rows = answer.body[kind.list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Row {
            id: text(&e["id"]),
            name: text(e.get("name").or_else(|| e.get("model_name")).unwrap_or(&Value::Null)),
            budgets: e["budgets"].as_array().map_or(0, Vec::len),
            rate_limit: if e["rate_limit"].is_object() { e["rate_limit"].to_string() } else { String::new() },
        })
        .collect();
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, page(ListPage { page: kind.path, csrf, kind, rows, error, done })).into_response()
}

pub async fn list(State(ui): State<Ui>, session: Session, Path(kind): Path<String>) -> Response {
    match kind_of(&kind) {
        Ok(kind) => list_page(&ui, session.csrf, kind, None, None).await,
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub struct BodyForm {
    csrf: String,
    #[serde(default)]
    body: String,
}

fn object(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text).ok().filter(Value::is_object)
}

pub async fn create(
    State(ui): State<Ui>,
    session: Session,
    Path(kind): Path<String>,
    Form(form): Form<BodyForm>,
) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let kind = match kind_of(&kind) {
        Ok(kind) => kind,
        Err(r) => return r.into_response(),
    };
    let Some(body) = object(&form.body) else {
        return list_page(&ui, session.csrf, kind, Some("The body is not a JSON object.".into()), None).await;
    };
    let answer = ui.api.call(Method::POST, &format!("/api/governance/{}", kind.path), Some(&body)).await;
    let done = answer.error().is_none().then(|| format!("Created {}.", kind.one_title));
    list_page(&ui, session.csrf, kind, answer.error(), done).await
}

#[derive(Template)]
#[template(path = "ui/entity.html")]
struct OnePage {
    page: &'static str,
    csrf: String,
    kind: &'static Kind,
    id: String,
    name: String,
    json: String,
    confirm: bool,
    error: Option<String>,
    done: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ConfirmQuery {
    confirm: Option<String>,
}

async fn one_page(ui: &Ui, csrf: String, kind: &'static Kind, id: &str, confirm: bool) -> Option<OnePage> {
    let answer = ui.api.get(&format!("/api/governance/{}/{}", kind.path, url_encoded(id))).await;
    if !answer.status.is_success() {
        return None;
    }
    let entity = &answer.body[kind.one];
    let kept: Map<String, Value> =
        kind.editable.iter().filter_map(|f| entity.get(*f).map(|v| ((*f).to_owned(), v.clone()))).collect();
    Some(OnePage {
        page: kind.path,
        csrf,
        kind,
        id: id.to_owned(),
        name: text(entity.get("name").or_else(|| entity.get("model_name")).unwrap_or(&Value::Null)),
        json: serde_json::to_string_pretty(&Value::Object(kept)).unwrap_or_default(),
        confirm,
        error: None,
        done: None,
    })
}

pub async fn one(
    State(ui): State<Ui>,
    session: Session,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<ConfirmQuery>,
) -> Response {
    let kind = match kind_of(&kind) {
        Ok(kind) => kind,
        Err(r) => return r.into_response(),
    };
    match one_page(&ui, session.csrf, kind, &id, q.confirm.as_deref() == Some("delete")).await {
        Some(shown) => page(shown),
        None => (StatusCode::NOT_FOUND, "No such entity.").into_response(),
    }
}

/// Saves (`edit`) or deletes (`delete`) one owner.
pub async fn act(
    State(ui): State<Ui>,
    session: Session,
    Path((kind, id, action)): Path<(String, String, String)>,
    Form(form): Form<BodyForm>,
) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let kind = match kind_of(&kind) {
        Ok(kind) => kind,
        Err(r) => return r.into_response(),
    };
    let path = format!("/api/governance/{}/{}", kind.path, url_encoded(&id));
    let answer = match action.as_str() {
        "delete" => {
            let answer = ui.api.call(Method::DELETE, &path, None).await;
            if answer.error().is_none() {
                return Redirect::to(&format!("/ui/org/{}", kind.path)).into_response();
            }
            answer
        }
        "edit" => match object(&form.body) {
            Some(body) => ui.api.call(Method::PUT, &path, Some(&body)).await,
            None => return Refusal::Malformed("The body is not a JSON object.").into_response(),
        },
        _ => return (StatusCode::NOT_FOUND, "No such action.").into_response(),
    };
    let Some(mut shown) = one_page(&ui, session.csrf, kind, &id, false).await else {
        return (StatusCode::NOT_FOUND, "No such entity.").into_response();
    };
    let status = if answer.status.is_success() { StatusCode::OK } else { answer.status };
    shown.done = answer.error().is_none().then(|| "Saved: every Envoy enforces it now.".to_owned());
    shown.error = answer.error();
    (status, page(shown)).into_response()
}
