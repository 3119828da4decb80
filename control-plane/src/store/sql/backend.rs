//! The only place where SQLite and PostgreSQL differ: the pool, transactions, rows and bound
//! parameters, each an enum over the two sqlx drivers. Everything above it writes a statement
//! once, as a [`Sql`] (text with `$1, $2 …` placeholders, which both drivers accept, plus its
//! parameters), and decodes rows once, through [`DbRow::get`].
//!
//! Rejected: sqlx's `Any` driver, which refuses SQLite's BOOLEAN columns and whose query builder
//! writes `?` placeholders that PostgreSQL rejects; and generic code over `sqlx::Database`, whose
//! bounds would repeat on every function. Here each driver call is expanded once per database by
//! [`each_backend!`], so both are type-checked, and written once.

use crate::store::StoreError;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Database, Decode, Encode, Postgres, Row, Sqlite, Transaction, Type};
use std::str::FromStr;
use std::time::Duration;

/// How long a caller waits for a pooled connection before the store reports a failure.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `$body` for whichever database `$value` (a [`Pool`], [`Tx`] or [`DbRow`]) is on, with
/// `$inner` bound to the driver's own value: the body is compiled once per driver.
macro_rules! each_backend {
    ($value:expr, $enum:ident, |$inner:ident| $body:expr) => {
        match $value {
            $enum::Sqlite($inner) => $body,
            $enum::Postgres($inner) => $body,
        }
    };
}

/// A statement with its parameters in placeholder order: `sql!("… $1 … $2", a, b)`.
macro_rules! sql {
    ($text:expr $(, $param:expr)* $(,)?) => {
        $crate::store::sql::backend::Sql::with($text, vec![$($crate::store::sql::backend::Param::from($param)),*])
    };
}
pub(crate) use sql;

/// A connection pool to one of the two databases.
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction; dropping it without [`Tx::commit`] rolls it back.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A result row.
pub enum DbRow {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A bound parameter: the three column types of the schema, each nullable.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
    Flag(Option<bool>),
}

/// A row to write: (column, value) pairs, the identifying column last (see [`Sql::update`]).
pub type Columns = Vec<(&'static str, Param)>;

/// SQL text and its parameters. Placeholders are `$n`, numbered in the order of `params`.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    /// A statement to be continued with [`Sql::push`] and [`Sql::bind`].
    pub fn new(text: impl Into<String>) -> Sql {
        Sql { text: text.into(), params: Vec::new() }
    }

    /// A statement whose text already holds `$1 … $n` for `params`.
    pub fn with(text: impl Into<String>, params: Vec<Param>) -> Sql {
        Sql { text: text.into(), params }
    }

    /// Appends text.
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder, bound to `value`.
    pub fn bind(&mut self, value: impl Into<Param>) -> &mut Sql {
        self.params.push(value.into());
        self.text.push_str(&format!("${}", self.params.len()));
        self
    }

    /// Appends `($n, $n+1, …)` bound to `values`: one row of an `INSERT … VALUES`.
    pub fn tuple(&mut self, values: impl IntoIterator<Item = Param>) -> &mut Sql {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            self.push(if i == 0 { "" } else { ", " }).bind(value);
        }
        self.push(")")
    }

    /// `INSERT INTO <table> (<columns>) VALUES (<values>)`.
    pub fn insert(table: &str, row: Columns) -> Sql {
        let (columns, values): (Vec<&str>, Vec<Param>) = row.into_iter().unzip();
        let mut sql = Sql::new(format!("INSERT INTO {table} ({}) VALUES ", columns.join(", ")));
        sql.tuple(values);
        sql
    }

    /// `UPDATE <table> SET <column> = <value>, … WHERE <last column> = <last value>`.
    pub fn update(table: &str, mut row: Columns) -> Sql {
        let mut sql = Sql::new(format!("UPDATE {table} SET "));
        let Some((key, id)) = row.pop() else { return sql };
        for (i, (column, value)) in row.into_iter().enumerate() {
            sql.push(if i == 0 { "" } else { ", " }).push(column).push(" = ").bind(value);
        }
        sql.push(" WHERE ").push(key).push(" = ").bind(id);
        sql
    }
}

/// The sqlx query for `sql` on database `DB`.
fn query<DB: Database>(sql: &Sql) -> sqlx::query::Query<'_, DB, DB::Arguments<'_>>
where
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
{
    sql.params.iter().fold(sqlx::query(&sql.text), |query, param| match param {
        Param::Text(v) => query.bind(v.clone()),
        Param::Int(v) => query.bind(*v),
        Param::Flag(v) => query.bind(*v),
    })
}

/// Where a statement runs: on the pool (its own transaction) or inside an open one.
enum On<'a> {
    Pool(&'a Pool),
    Tx(&'a mut Tx),
}

/// Like [`each_backend!`] over an [`On`]: `$executor` is the driver's pool or connection.
macro_rules! each_executor {
    ($on:expr, |$executor:ident| $body:expr) => {
        match $on {
            On::Pool(Pool::Sqlite($executor)) => $body,
            On::Pool(Pool::Postgres($executor)) => $body,
            On::Tx(Tx::Sqlite(tx)) => {
                let $executor = &mut **tx;
                $body
            }
            On::Tx(Tx::Postgres(tx)) => {
                let $executor = &mut **tx;
                $body
            }
        }
    };
}

impl On<'_> {
    async fn execute(self, sql: &Sql) -> Result<u64, sqlx::Error> {
        Ok(each_executor!(self, |e| query(sql).execute(e).await?.rows_affected()))
    }

    async fn fetch_all(self, sql: &Sql) -> Result<Vec<DbRow>, sqlx::Error> {
        Ok(each_executor!(self, |e| query(sql).fetch_all(e).await?.into_iter().map(DbRow::from).collect()))
    }
}

impl From<SqliteRow> for DbRow {
    fn from(row: SqliteRow) -> DbRow {
        DbRow::Sqlite(row)
    }
}

impl From<PgRow> for DbRow {
    fn from(row: PgRow) -> DbRow {
        DbRow::Postgres(row)
    }
}

impl Pool {
    /// A pool for `url`: `sqlite:…` (the file is created if missing) or `postgres://…` /
    /// `postgresql://…`. The URL is not repeated in errors (it may hold a password).
    pub async fn connect(url: &str) -> Result<Pool, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new().max_connections(4).acquire_timeout(ACQUIRE_TIMEOUT);
            Ok(Pool::Sqlite(pool.connect_with(options).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(ACQUIRE_TIMEOUT);
            Ok(Pool::Postgres(pool.connect_with(options).await?))
        } else {
            let scheme = url.split_once(':').map_or("none", |(scheme, _)| scheme);
            Err(sqlx::Error::Configuration(
                format!("unsupported database URL scheme `{scheme}`: use sqlite://<file> or postgres://<user>@<host>/<database>")
                    .into(),
            ))
        }
    }

    /// A private in-memory SQLite database on one connection (every connection to `:memory:`
    /// is a database of its own).
    pub async fn in_memory() -> Result<Pool, sqlx::Error> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        Ok(Pool::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_with(options).await?))
    }

    /// Applies the migrations not yet applied. PostgreSQL: under the migrator's advisory lock,
    /// so replicas starting together migrate one after the other.
    pub async fn migrate(&self, migrator: &Migrator) -> Result<(), MigrateError> {
        each_backend!(self, Pool, |pool| migrator.run(pool).await)
    }

    /// Runs a statement; how many rows it changed.
    pub async fn execute(&self, sql: Sql) -> Result<u64, sqlx::Error> {
        On::Pool(self).execute(&sql).await
    }

    /// Runs a statement; every row it returns.
    pub async fn fetch_all(&self, sql: Sql) -> Result<Vec<DbRow>, sqlx::Error> {
        On::Pool(self).fetch_all(&sql).await
    }

    /// The first row, if any (for statements that match at most one).
    pub async fn fetch_optional(&self, sql: Sql) -> Result<Option<DbRow>, sqlx::Error> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }

    /// A transaction that will write. SQLite: `BEGIN IMMEDIATE`, the file's write lock from the
    /// first statement on; a read that later upgraded to a write would fail at once with
    /// SQLITE_BUSY when another writer got in between, whereas this waits (busy timeout).
    /// PostgreSQL: a plain `BEGIN` (READ COMMITTED); row locks order concurrent writers.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Pool::Sqlite(pool) => pool.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
            Pool::Postgres(pool) => pool.begin().await.map(Tx::Postgres),
        }
    }

    /// `"SQLite"` or `"PostgreSQL"`.
    pub fn name(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => Sqlite::NAME,
            Pool::Postgres(_) => Postgres::NAME,
        }
    }
}

/// The same statements as on [`Pool`], inside the transaction.
impl Tx {
    pub async fn execute(&mut self, sql: Sql) -> Result<u64, sqlx::Error> {
        On::Tx(self).execute(&sql).await
    }

    pub async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<DbRow>, sqlx::Error> {
        On::Tx(self).fetch_all(&sql).await
    }

    pub async fn fetch_optional(&mut self, sql: Sql) -> Result<Option<DbRow>, sqlx::Error> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        each_backend!(self, Tx, |tx| tx.commit().await)
    }

    /// Waits until this transaction alone holds `lock`, across every process using the
    /// database, until it ends. PostgreSQL: a transaction-scoped advisory lock (several
    /// `warden` replicas may share the database). SQLite: nothing more to do, the transaction
    /// came from [`Pool::begin_write`] and is already the file's only writer.
    pub async fn exclusive(&mut self, lock: i64) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

impl DbRow {
    /// Column `name`, decoded alike on both databases.
    pub fn get<T>(&self, name: &str) -> Result<T, StoreError>
    where
        T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>,
    {
        each_backend!(self, DbRow, |row| row.try_get(name)).map_err(super::backend)
    }

    /// A BIGINT column that holds a `u64` (counts, sums, milliseconds); a negative value,
    /// which the store never writes, reads as 0.
    pub fn unsigned(&self, name: &str) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.get::<i64>(name)?).unwrap_or(0))
    }
}

/// `From<$type> for Param`, one line per type a statement binds.
macro_rules! param_from {
    ($($type:ty => |$v:ident| $param:expr),* $(,)?) => {
        $(impl From<$type> for Param {
            fn from($v: $type) -> Param {
                $param
            }
        })*
    };
}

param_from! {
    String => |v| Param::Text(Some(v)),
    &str => |v| Param::Text(Some(v.to_owned())),
    &String => |v| Param::Text(Some(v.clone())),
    Option<String> => |v| Param::Text(v),
    &Option<String> => |v| Param::Text(v.clone()),
    Option<&str> => |v| Param::Text(v.map(str::to_owned)),
    i64 => |v| Param::Int(Some(v)),
    Option<i64> => |v| Param::Int(v),
    bool => |v| Param::Flag(Some(v)),
    Option<bool> => |v| Param::Flag(v),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_update_number_their_placeholders_in_column_order() {
        let row = || -> Columns { vec![("name", "a".into()), ("active", true.into()), ("id", "x".into())] };
        let insert = Sql::insert("t", row());
        assert_eq!(insert.text, "INSERT INTO t (name, active, id) VALUES ($1, $2, $3)");
        let update = Sql::update("t", row());
        assert_eq!(update.text, "UPDATE t SET name = $1, active = $2 WHERE id = $3");
        assert_eq!(update.params, vec![Param::from("a"), Param::from(true), Param::from("x")]);
        let mut built = sql!("SELECT * FROM t WHERE a = $1", 7_i64);
        built.push(" AND b = ").bind(None::<String>);
        assert_eq!(built.text, "SELECT * FROM t WHERE a = $1 AND b = $2");
    }
}
