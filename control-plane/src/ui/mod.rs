//! The dashboard at `/ui`, on the admin address: server-rendered HTML (askama templates under
//! `control-plane/templates/ui`, checked at compile time), no JavaScript needed to read it.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the pages and the router |
//! | `session.rs` | sign-in with the admin token, the session cookie, CSRF |
//! | `admin_api.rs` | every read and change goes through the admin API, in process |
//! | `entities.rs` | teams, customers and model configs, from one table |
//! | `views.rs` | what the pages show, shaped from the admin API's JSON |
//! | `simulator.rs` | a request, or every key × tool, decided by `policy/` on the published records |
//!
//! Every page but the sign-in answers only a live session; every change carries its CSRF token.

mod admin_api;
mod entities;
mod session;
mod simulator;
mod views;

#[cfg(test)]
mod tests;

use crate::admin::{AppState, token_hash};
use admin_api::AdminApi;
use askama::Template;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use session::{Session, Sessions};
use std::sync::Arc;
use views::{BudgetBar, Card, KeyRow, NodeRow, UsageGroup};
use warden_policy::mcp::{INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER};

/// The most `/ui/me` sessions one virtual key keeps open.
const HOLDER_SESSIONS: usize = 4;

/// What every page handler reads.
#[derive(Clone)]
pub struct Ui {
    api: AdminApi,
    state: AppState,
    /// Operators, signed in with the admin token.
    sessions: Arc<Sessions<()>>,
    /// Key holders at `/ui/me`, each session holding the virtual key it signed in with.
    holders: Arc<Sessions<String>>,
}

/// The dashboard's routes; `admin` is the admin API router it calls in process.
pub fn router(state: AppState, admin: axum::Router) -> Router {
    let ui = Ui {
        api: AdminApi(admin),
        state,
        // Operators all hold the admin token: as many sessions as the store keeps.
        sessions: Arc::new(Sessions::new("warden_ui", "/ui", usize::MAX)),
        holders: Arc::new(Sessions::new("warden_me", "/ui/me", HOLDER_SESSIONS)),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/me/login", get(me_login_page).post(me_login))
        .route("/ui/me/logout", post(me_logout))
        .route("/ui/me", get(me))
        .route("/ui", get(overview))
        .route("/ui/keys", get(keys).post(create_key))
        .route("/ui/keys/{id}", get(key))
        .route("/ui/keys/{id}/{action}", post(key_action))
        .route("/ui/org/{kind}", get(entities::list).post(entities::create))
        .route("/ui/org/{kind}/{id}", get(entities::one))
        .route("/ui/org/{kind}/{id}/{action}", post(entities::act))
        .route("/ui/providers", get(providers).post(add_provider))
        .route("/ui/providers/{name}/rotate", post(rotate_key))
        .route("/ui/prices", get(prices).post(set_price))
        .route("/ui/prices/remove", post(remove_price))
        .route("/ui/usage", get(usage))
        .route("/ui/usage.csv", get(usage_csv))
        .route("/ui/mcp", get(mcp))
        .route("/ui/mcp/{id}/reconnect", post(reconnect))
        .route("/ui/fleet", get(fleet))
        .route("/ui/audit", get(audit))
        .route("/ui/simulator", get(simulator_page).post(simulate))
        .with_state(ui)
}

/// Why a page or a change is refused.
pub enum Refusal {
    /// No live session: to the sign-in.
    SignIn,
    /// A form whose CSRF token is not the session's.
    StaleForm,
    /// A form whose content cannot be sent on.
    Malformed(&'static str),
    /// A page that does not exist.
    NoSuchPage,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => Redirect::to("/ui/login").into_response(),
            Refusal::StaleForm => {
                (StatusCode::FORBIDDEN, "This form is stale or came from another site: reload the page.")
                    .into_response()
            }
            Refusal::Malformed(why) => (StatusCode::BAD_REQUEST, why).into_response(),
            Refusal::NoSuchPage => (StatusCode::NOT_FOUND, "No such page.").into_response(),
        }
    }
}

/// Every page but the sign-in takes the session its cookie names.
impl FromRequestParts<Ui> for Session {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Session, Refusal> {
        ui.sessions.of(&parts.headers).map(|(session, ())| session).ok_or(Refusal::SignIn)
    }
}

/// A change needs the session's CSRF token in its form.
fn may_change(session: &Session, csrf: &str) -> Result<(), Refusal> {
    if session.allows(csrf) { Ok(()) } else { Err(Refusal::StaleForm) }
}

fn page(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be rendered.").into_response()
        }
    }
}

/// A sign-in form: the operator's (admin token) or a key holder's (their virtual key).
#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    title: &'static str,
    action: &'static str,
    /// The form field's name.
    field: &'static str,
    label: &'static str,
    autocomplete: &'static str,
    failure: &'static str,
    failed: bool,
}

const OPERATOR_SIGN_IN: LoginPage = LoginPage {
    title: "Warden",
    action: "/ui/login",
    field: "token",
    label: "Admin token",
    autocomplete: "current-password",
    failure: "That is not the admin token.",
    failed: false,
};

const HOLDER_SIGN_IN: LoginPage = LoginPage {
    title: "Your key",
    action: "/ui/me/login",
    field: "key",
    label: "Your virtual key",
    autocomplete: "off",
    failure: "That key is not known here.",
    failed: false,
};

async fn login_page() -> Response {
    page(OPERATOR_SIGN_IN)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(ui): State<Ui>, Form(form): Form<LoginForm>) -> Response {
    // Hashes are compared, so the time taken does not depend on the token's content.
    if token_hash(form.token.trim()) != ui.state.admin_token_sha256 {
        return (StatusCode::UNAUTHORIZED, page(LoginPage { failed: true, ..OPERATOR_SIGN_IN })).into_response();
    }
    let id = ui.sessions.open(());
    (StatusCode::SEE_OTHER, [(SET_COOKIE, ui.sessions.set_cookie(&id)), (LOCATION, "/ui".to_owned())]).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(ui): State<Ui>, session: Session, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    ui.sessions.close(&headers);
    (StatusCode::SEE_OTHER, [(SET_COOKIE, ui.sessions.clear_cookie()), (LOCATION, "/ui/login".to_owned())])
        .into_response()
}

async fn me_login_page() -> Response {
    page(HOLDER_SIGN_IN)
}

#[derive(Deserialize)]
struct KeyForm {
    key: String,
}

/// The quota a virtual key may see of itself: the admin API's self-service answer.
async fn own_quota(ui: &Ui, key: &str) -> Option<Value> {
    let answer = ui.api.as_key_holder(key, "/api/governance/virtual-keys/quota").await;
    answer.status.is_success().then_some(answer.body)
}

async fn me_login(State(ui): State<Ui>, Form(form): Form<KeyForm>) -> Response {
    let key = form.key.trim().to_owned();
    if own_quota(&ui, &key).await.is_none() {
        return (StatusCode::UNAUTHORIZED, page(LoginPage { failed: true, ..HOLDER_SIGN_IN })).into_response();
    }
    let id = ui.holders.open(key);
    (StatusCode::SEE_OTHER, [(SET_COOKIE, ui.holders.set_cookie(&id)), (LOCATION, "/ui/me".to_owned())]).into_response()
}

async fn me_logout(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    match ui.holders.of(&headers) {
        Some((session, _)) if session.allows(&form.csrf) => ui.holders.close(&headers),
        Some(_) => return Refusal::StaleForm.into_response(),
        None => {}
    }
    (StatusCode::SEE_OTHER, [(SET_COOKIE, ui.holders.clear_cookie()), (LOCATION, "/ui/me/login".to_owned())])
        .into_response()
}

#[derive(Template)]
#[template(path = "ui/me.html")]
struct MePage {
    csrf: String,
    name: String,
    active: bool,
    budgets: Vec<BudgetBar>,
    limits: Vec<views::LimitRow>,
    models: Vec<String>,
}

/// A key holder's own page: only what their key may see of itself.
async fn me(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let Some((session, key)) = ui.holders.of(&headers) else { return Redirect::to("/ui/me/login").into_response() };
    let Some(quota) = own_quota(&ui, &key).await else {
        // The key is gone: so is the session.
        ui.holders.close(&headers);
        return Redirect::to("/ui/me/login").into_response();
    };
    page(MePage {
        csrf: session.csrf,
        name: quota["virtual_key_name"].as_str().unwrap_or_default().to_owned(),
        active: quota["is_active"].as_bool().unwrap_or(false),
        budgets: BudgetBar::all(&quota["budgets"]),
        limits: views::LimitRow::all(&quota["rate_limits"]),
        models: views::allowed_models(&quota["allowed_model_configs"]),
    })
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct OverviewPage {
    page: &'static str,
    csrf: String,
    today: Card,
    month: Card,
    budgets: Vec<BudgetBar>,
    groups: Vec<UsageGroup>,
}

async fn overview(State(ui): State<Ui>, session: Session) -> Response {
    let (day, month) = views::day_and_month_start(chrono::Utc::now());
    let today = Card::of(&ui.api.get(&format!("/api/usage?from={day}")).await.body["totals"]);
    let month_totals = Card::of(&ui.api.get(&format!("/api/usage?from={month}")).await.body["totals"]);
    let mut groups = Vec::new();
    for (title, by) in
        [("key", "key"), ("team", "team"), ("customer", "customer"), ("model", "model"), ("provider", "provider")]
    {
        let answer = ui.api.get(&format!("/api/usage?from={month}&group_by={by}")).await;
        groups.push(UsageGroup::of(title, &answer.body["groups"]));
    }
    // The ledger knows keys by id; people know them by name.
    let keys = key_rows(&ui, &KeyFilter::default()).await;
    for row in groups.iter_mut().filter(|g| g.title == "key").flat_map(|g| g.rows.iter_mut()) {
        if let Some(key) = keys.iter().find(|k| k.id == row.name) {
            row.name = key.name.clone();
        }
    }
    let mut budgets = BudgetBar::all(&ui.api.get("/api/governance/budgets").await.body["budgets"]);
    for bar in &mut budgets {
        if let Some(key) = keys.iter().find(|k| bar.key_id.as_deref() == Some(k.id.as_str())) {
            bar.owner = format!("key {}", key.name);
        }
    }
    page(OverviewPage { page: "overview", csrf: session.csrf, today, month: month_totals, budgets, groups })
}

#[derive(Template)]
#[template(path = "ui/keys.html")]
struct KeysPage {
    page: &'static str,
    csrf: String,
    rows: Vec<KeyRow>,
    q: String,
    active: String,
    created: Option<Created>,
    error: Option<String>,
}

/// A key just created: its value, shown this once.
struct Created {
    name: String,
    value: String,
}

#[derive(Deserialize, Default)]
struct KeyFilter {
    #[serde(default)]
    q: String,
    #[serde(default)]
    active: String,
    #[serde(default)]
    sort: String,
}

async fn key_rows(ui: &Ui, filter: &KeyFilter) -> Vec<KeyRow> {
    let answer = ui.api.get("/api/governance/virtual-keys").await;
    let mut rows = KeyRow::all(&answer.body["virtual_keys"]);
    let q = filter.q.to_lowercase();
    rows.retain(|k| k.name.to_lowercase().contains(&q));
    match filter.active.as_str() {
        "true" => rows.retain(|k| k.active),
        "false" => rows.retain(|k| !k.active),
        _ => {}
    }
    match filter.sort.as_str() {
        "team" => rows.sort_by(|a, b| a.team.cmp(&b.team).then_with(|| a.name.cmp(&b.name))),
        "active" => rows.sort_by(|a, b| b.active.cmp(&a.active).then_with(|| a.name.cmp(&b.name))),
        _ => rows.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    rows
}

async fn keys(State(ui): State<Ui>, session: Session, Query(filter): Query<KeyFilter>) -> Response {
    let rows = key_rows(&ui, &filter).await;
    let KeyFilter { q, active, .. } = filter;
    page(KeysPage { page: "keys", csrf: session.csrf, rows, q, active, created: None, error: None })
}

#[derive(Deserialize)]
struct CreateForm {
    csrf: String,
    name: String,
    #[serde(default)]
    body: String,
}

async fn create_key(State(ui): State<Ui>, session: Session, Form(form): Form<CreateForm>) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let mut body: Value = match form.body.trim() {
        "" => json!({}),
        text => match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::Null,
        },
    };
    let (created, error) = if body.is_null() {
        (None, Some("The body is not a JSON object.".to_owned()))
    } else {
        body["name"] = json!(form.name);
        let answer = ui.api.call(Method::POST, "/api/governance/virtual-keys", Some(&body)).await;
        let created = answer.error().is_none().then(|| Created {
            name: answer.body["virtual_key"]["name"].as_str().unwrap_or_default().to_owned(),
            value: answer.body["virtual_key"]["value"].as_str().unwrap_or_default().to_owned(),
        });
        (created, answer.error())
    };
    let rows = key_rows(&ui, &KeyFilter::default()).await;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let shown =
        KeysPage { page: "keys", csrf: session.csrf, rows, q: String::new(), active: String::new(), created, error };
    (status, page(shown)).into_response()
}

#[derive(Template)]
#[template(path = "ui/key.html")]
struct KeyPage {
    page: &'static str,
    csrf: String,
    id: String,
    name: String,
    active: bool,
    json: String,
    usage: Card,
    budgets: Vec<BudgetBar>,
    leases: Vec<views::LeaseView>,
    confirm: Option<views::Confirm>,
    error: Option<String>,
    done: Option<String>,
}

#[derive(Deserialize, Default)]
struct KeyQuery {
    confirm: Option<String>,
}

/// A key's page; `None` when there is no such key.
async fn key_page(ui: &Ui, csrf: String, id: &str, confirm: Option<views::Confirm>) -> Option<KeyPage> {
    let answer = ui.api.get(&format!("/api/governance/virtual-keys/{}", views::url_encoded(id))).await;
    if !answer.status.is_success() {
        return None;
    }
    let key = &answer.body["virtual_key"];
    let (_, month) = views::day_and_month_start(chrono::Utc::now());
    let usage = Card::of(
        &ui.api.get(&format!("/api/usage?from={month}&key_id={}", views::url_encoded(id))).await.body["totals"],
    );
    let mut budgets = BudgetBar::all(&ui.api.get("/api/governance/budgets").await.body["budgets"]);
    budgets.retain(|b| b.key_id.as_deref() == Some(id));
    // The key's own limits and budgets are counted under `vk:<id>`: each Envoy's share of them.
    let mut leases = Vec::new();
    for prefix in ["warden:budget:vk:", "warden:rl:vk:"] {
        let counter = views::url_encoded(&format!("{prefix}{id}:"));
        leases
            .extend(views::LeaseView::all(&ui.api.get(&format!("/api/leases?counter={counter}")).await.body["leases"]));
    }
    Some(KeyPage {
        page: "keys",
        csrf,
        id: id.to_owned(),
        name: key["name"].as_str().unwrap_or_default().to_owned(),
        active: key["is_active"].as_bool().unwrap_or(false),
        json: views::editable(key),
        usage,
        budgets,
        leases,
        confirm,
        error: None,
        done: None,
    })
}

async fn key(State(ui): State<Ui>, session: Session, Path(id): Path<String>, Query(q): Query<KeyQuery>) -> Response {
    let confirm = q.confirm.as_deref().and_then(views::key_action);
    match key_page(&ui, session.csrf, &id, confirm).await {
        Some(shown) => page(shown),
        None => (StatusCode::NOT_FOUND, "No such key.").into_response(),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    body: String,
}

/// Block, unblock, delete or edit a key.
async fn key_action(
    State(ui): State<Ui>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let path = format!("/api/governance/virtual-keys/{}", views::url_encoded(&id));
    let answer = match action.as_str() {
        "block" => ui.api.call(Method::PUT, &path, Some(&json!({"is_active": false}))).await,
        "unblock" => ui.api.call(Method::PUT, &path, Some(&json!({"is_active": true}))).await,
        "delete" => {
            let answer = ui.api.call(Method::DELETE, &path, None).await;
            if answer.error().is_none() {
                return Redirect::to("/ui/keys").into_response();
            }
            answer
        }
        "edit" => match serde_json::from_str::<Value>(&form.body) {
            Ok(body @ Value::Object(_)) => ui.api.call(Method::PUT, &path, Some(&body)).await,
            _ => {
                let mut shown = match key_page(&ui, session.csrf, &id, None).await {
                    Some(p) => p,
                    None => return (StatusCode::NOT_FOUND, "No such key.").into_response(),
                };
                shown.error = Some("The key is not a JSON object.".into());
                shown.json = form.body;
                return (StatusCode::BAD_REQUEST, page(shown)).into_response();
            }
        },
        _ => return (StatusCode::NOT_FOUND, "No such action.").into_response(),
    };
    let Some(mut shown) = key_page(&ui, session.csrf, &id, None).await else {
        return (StatusCode::NOT_FOUND, "No such key.").into_response();
    };
    let status = if answer.status.is_success() { StatusCode::OK } else { answer.status };
    shown.error = answer.error();
    if shown.error.is_none() {
        let applied = answer.body["applied"].as_str().map(|a| format!(" ({a})")).unwrap_or_default();
        shown.done = Some(format!("Saved: every Envoy enforces it now{applied}."));
    }
    (status, page(shown)).into_response()
}

#[derive(Template)]
#[template(path = "ui/providers.html")]
struct ProvidersPage {
    page: &'static str,
    csrf: String,
    error: Option<String>,
    done: Option<String>,
    providers: Vec<views::ProviderRow>,
}

async fn providers_page(ui: &Ui, csrf: String, error: Option<String>, done: Option<String>) -> Response {
    let providers = views::ProviderRow::all(&ui.api.get("/api/providers").await.body["providers"]);
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, page(ProvidersPage { page: "providers", csrf, error, done, providers })).into_response()
}

async fn providers(State(ui): State<Ui>, session: Session) -> Response {
    providers_page(&ui, session.csrf, None, None).await
}

#[derive(Deserialize)]
struct BodyForm {
    csrf: String,
    body: String,
}

async fn add_provider(State(ui): State<Ui>, session: Session, Form(form): Form<BodyForm>) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let Ok(body @ Value::Object(_)) = serde_json::from_str::<Value>(&form.body) else {
        return providers_page(&ui, session.csrf, Some("The provider is not a JSON object.".into()), None).await;
    };
    let answer = ui.api.call(Method::POST, "/api/providers", Some(&body)).await;
    let done = answer.error().is_none().then(|| "Provider added; every Envoy has its cluster now.".to_owned());
    providers_page(&ui, session.csrf, answer.error(), done).await
}

#[derive(Deserialize)]
struct RotateForm {
    csrf: String,
    key_id: String,
    value: String,
}

/// Replaces one API key's value; the provider's other keys keep theirs.
async fn rotate_key(
    State(ui): State<Ui>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<RotateForm>,
) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let path = format!("/api/providers/{}", views::url_encoded(&name));
    let current = ui.api.get(&path).await;
    let ids: Vec<String> = current.body["provider"]["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["id"].as_str().map(str::to_owned))
        .collect();
    if !ids.contains(&form.key_id) {
        return providers_page(&ui, session.csrf, Some(format!("'{name}' has no key '{}'.", form.key_id)), None).await;
    }
    // A listed id without a value keeps its stored value.
    let keys: Vec<Value> = ids
        .iter()
        .map(|id| if *id == form.key_id { json!({"id": id, "value": form.value}) } else { json!({"id": id}) })
        .collect();
    let answer = ui.api.call(Method::PUT, &path, Some(&json!({"keys": keys}))).await;
    let done = answer.error().is_none().then(|| format!("Key '{}' of '{name}' rotated.", form.key_id));
    providers_page(&ui, session.csrf, answer.error(), done).await
}

#[derive(Template)]
#[template(path = "ui/prices.html")]
struct PricesPage {
    page: &'static str,
    csrf: String,
    error: Option<String>,
    done: Option<String>,
    prices: Vec<views::PriceRow>,
}

async fn prices_page(ui: &Ui, csrf: String, error: Option<String>, done: Option<String>) -> Response {
    let prices = views::PriceRow::all(&ui.api.get("/api/prices").await.body["prices"]);
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, page(PricesPage { page: "prices", csrf, error, done, prices })).into_response()
}

async fn prices(State(ui): State<Ui>, session: Session) -> Response {
    prices_page(&ui, session.csrf, None, None).await
}

#[derive(Deserialize)]
struct PriceForm {
    csrf: String,
    name: String,
    input_per_mtok: String,
    output_per_mtok: String,
}

async fn set_price(State(ui): State<Ui>, session: Session, Form(form): Form<PriceForm>) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let (Ok(input), Ok(output)) =
        (form.input_per_mtok.trim().parse::<u64>(), form.output_per_mtok.trim().parse::<u64>())
    else {
        return prices_page(&ui, session.csrf, Some("Prices are whole micro-dollars.".into()), None).await;
    };
    let body = json!({"input_per_mtok": input, "output_per_mtok": output});
    let answer =
        ui.api.call(Method::PUT, &format!("/api/prices/{}", views::url_encoded(form.name.trim())), Some(&body)).await;
    let done = answer
        .error()
        .is_none()
        .then(|| format!("The price of '{}' is set; every Envoy charges it now.", form.name.trim()));
    prices_page(&ui, session.csrf, answer.error(), done).await
}

#[derive(Deserialize)]
struct NameForm {
    csrf: String,
    name: String,
}

async fn remove_price(State(ui): State<Ui>, session: Session, Form(form): Form<NameForm>) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let answer = ui.api.call(Method::DELETE, &format!("/api/prices/{}", views::url_encoded(&form.name)), None).await;
    let done = answer.error().is_none().then(|| format!("The override of '{}' is removed.", form.name));
    prices_page(&ui, session.csrf, answer.error(), done).await
}

/// The usage explorer's filters: those of `GET /api/usage`.
#[derive(Deserialize, Default)]
struct UsageFilter {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    group_by: String,
}

/// The group-by choices: `/api/usage`'s `group_by` values and their labels.
const GROUPS: [(&str, &str); 6] = [
    ("", "nothing"),
    ("key", "key"),
    ("team", "team"),
    ("customer", "customer"),
    ("model", "model"),
    ("provider", "provider"),
];

impl UsageFilter {
    fn fields(&self) -> [(&'static str, &'static str, &str); 7] {
        [
            ("key_id", "Key id", &self.key_id),
            ("team_id", "Team id", &self.team_id),
            ("customer_id", "Customer id", &self.customer_id),
            ("model", "Model", &self.model),
            ("provider", "Provider", &self.provider),
            ("from", "From (RFC 3339 or Unix ms, inclusive)", &self.from),
            ("to", "To (exclusive)", &self.to),
        ]
    }

    /// The query string of the set filters (and the grouping).
    fn query(&self) -> String {
        let group = GROUPS.iter().find(|(g, _)| !g.is_empty() && *g == self.group_by).map(|(g, _)| ("group_by", *g));
        let set = self.fields().into_iter().filter(|(_, _, v)| !v.is_empty()).map(|(n, _, v)| (n, v)).chain(group);
        set.map(|(n, v)| format!("{n}={}", views::url_encoded(v))).collect::<Vec<_>>().join("&")
    }
}

#[derive(Template)]
#[template(path = "ui/usage.html")]
struct UsagePage {
    page: &'static str,
    csrf: String,
    error: Option<String>,
    filters: Vec<views::Field>,
    group_choices: [(&'static str, &'static str); 6],
    group_by: String,
    query: String,
    totals: Card,
    group: Option<UsageGroup>,
}

async fn usage(State(ui): State<Ui>, session: Session, Query(filter): Query<UsageFilter>) -> Response {
    let query = filter.query();
    let answer = ui.api.get(&format!("/api/usage?{query}")).await;
    let title = GROUPS.iter().find(|(g, _)| !g.is_empty() && *g == filter.group_by).map(|(_, label)| *label);
    let filters =
        filter.fields().into_iter().map(|(name, label, value)| views::Field::new(name, label, value)).collect();
    page(UsagePage {
        page: "usage",
        csrf: session.csrf,
        error: answer.error(),
        filters,
        group_choices: GROUPS,
        group_by: filter.group_by.clone(),
        query,
        totals: Card::of(&answer.body["totals"]),
        group: title.map(|title| UsageGroup::of(title, &answer.body["groups"])),
    })
}

/// The explorer's answer as CSV: one row per group (or the totals).
async fn usage_csv(State(ui): State<Ui>, _session: Session, Query(filter): Query<UsageFilter>) -> Response {
    let answer = ui.api.get(&format!("/api/usage?{}", filter.query())).await;
    if let Some(error) = answer.error() {
        return (StatusCode::BAD_REQUEST, error).into_response();
    }
    let rows = match answer.body["groups"].as_array() {
        Some(groups) => groups.clone(),
        None => vec![answer.body["totals"].clone()],
    };
    let headers = [
        (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"warden-usage.csv\""),
    ];
    (headers, views::usage_csv(&rows)).into_response()
}

#[derive(Template)]
#[template(path = "ui/mcp.html")]
struct McpPage {
    page: &'static str,
    csrf: String,
    error: Option<String>,
    clients: Vec<views::ClientRow>,
    include_clients: String,
    include_tools: String,
    tools: Vec<String>,
    matrix: Vec<simulator::MatrixRow>,
}

#[derive(Deserialize, Default)]
struct IncludeQuery {
    #[serde(default)]
    include_clients: String,
    #[serde(default)]
    include_tools: String,
}

async fn mcp_page(ui: &Ui, csrf: String, include: IncludeQuery, error: Option<String>) -> Response {
    let clients = views::ClientRow::all(&ui.api.get("/api/mcp/clients").await.body["clients"]);
    let mut headers = String::new();
    if !include.include_clients.is_empty() {
        headers.push_str(&format!("{}: {}\n", INCLUDE_CLIENTS_HEADER, include.include_clients));
    }
    if !include.include_tools.is_empty() {
        headers.push_str(&format!("{}: {}\n", INCLUDE_TOOLS_HEADER, include.include_tools));
    }
    let (tools, matrix) = match simulator::tool_matrix(&ui.state, &headers).await {
        Ok(matrix) => matrix,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("The store could not be read: {e}")).into_response();
        }
    };
    let IncludeQuery { include_clients, include_tools } = include;
    page(McpPage { page: "mcp", csrf, error, clients, include_clients, include_tools, tools, matrix })
}

async fn mcp(State(ui): State<Ui>, session: Session, Query(include): Query<IncludeQuery>) -> Response {
    mcp_page(&ui, session.csrf, include, None).await
}

async fn reconnect(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let answer =
        ui.api.call(Method::POST, &format!("/api/mcp/client/{}/reconnect", views::url_encoded(&id)), None).await;
    mcp_page(&ui, session.csrf, IncludeQuery::default(), answer.error()).await
}

#[derive(Template)]
#[template(path = "ui/fleet.html")]
struct FleetPage {
    page: &'static str,
    csrf: String,
    policy_version: String,
    policy_records: String,
    filter_version: String,
    nodes: Vec<NodeRow>,
}

async fn fleet(State(ui): State<Ui>, session: Session) -> Response {
    let body = ui.api.get("/api/envoy/nodes").await.body;
    page(FleetPage {
        page: "fleet",
        csrf: session.csrf,
        policy_version: body["policy_version"].to_string(),
        policy_records: body["policy_records"].to_string(),
        filter_version: body["filter_version"].as_str().unwrap_or("none").to_owned(),
        nodes: NodeRow::all(&body["nodes"]),
    })
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    page: &'static str,
    csrf: String,
    verified: bool,
    verify_detail: String,
    entries: Vec<views::AuditRow>,
}

async fn audit(State(ui): State<Ui>, session: Session) -> Response {
    let check = ui.api.get("/api/audit/verify").await.body;
    let verified = check["intact"].as_bool().unwrap_or(false);
    let verify_detail = match check["first_broken"].as_i64() {
        Some(seq) => format!("first broken entry: {seq}"),
        None => format!("{} entries", check["rows"]),
    };
    let entries = views::AuditRow::all(&ui.api.get("/api/audit?limit=200").await.body["entries"]);
    page(AuditPage { page: "audit", csrf: session.csrf, verified, verify_detail, entries })
}

#[derive(Template)]
#[template(path = "ui/simulator.html")]
struct SimulatorPage {
    page: &'static str,
    csrf: String,
    keys: Vec<KeyRow>,
    key_id: String,
    method: String,
    path: String,
    headers: String,
    body: String,
    verdict: Option<simulator::Verdict>,
}

#[derive(Deserialize, Default)]
struct SimulatorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    body: String,
}

async fn simulator_page(State(ui): State<Ui>, session: Session, Query(q): Query<SimulatorForm>) -> Response {
    let keys = key_rows(&ui, &KeyFilter::default()).await;
    let body = r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}"#;
    page(SimulatorPage {
        page: "simulator",
        csrf: session.csrf,
        keys,
        key_id: q.key_id,
        method: if q.method.is_empty() { "POST".into() } else { q.method },
        path: if q.path.is_empty() { "/v1/chat/completions".into() } else { q.path },
        headers: q.headers,
        body: if q.body.is_empty() { body.into() } else { q.body },
        verdict: None,
    })
}

async fn simulate(State(ui): State<Ui>, session: Session, Form(form): Form<SimulatorForm>) -> Response {
    if let Err(refused) = may_change(&session, &form.csrf) {
        return refused.into_response();
    }
    let verdict = simulator::decide(&ui.state, &form.key_id, &form.method, &form.path, &form.headers, &form.body).await;
    let keys = key_rows(&ui, &KeyFilter::default()).await;
    let SimulatorForm { key_id, method, path, headers, body, .. } = form;
    page(SimulatorPage {
        page: "simulator",
        csrf: session.csrf,
        keys,
        key_id,
        method,
        path,
        headers,
        body,
        verdict: Some(verdict),
    })
}
