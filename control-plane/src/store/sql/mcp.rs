//! [`McpStore`] on SQL: each client is one JSON document.

use super::backend::{Columns, DbRow, Sql, sql};
use super::{SqlStore, from_json, json};
use crate::model::McpClient;
use crate::store::{McpStore, StoreError};
use async_trait::async_trait;

fn client_from_row(row: &DbRow) -> Result<McpClient, StoreError> {
    from_json(row, "config")
}

/// The columns written on insert and update, `client_id` (the key) last.
fn client_columns(c: &McpClient) -> Result<Columns, StoreError> {
    Ok(vec![("name", (&c.name).into()), ("config", json(c)?.into()), ("client_id", (&c.client_id).into())])
}

#[async_trait]
impl McpStore for SqlStore {
    async fn insert_mcp_client(&self, client: &McpClient) -> Result<(), StoreError> {
        self.write(Sql::insert("mcp_clients", client_columns(client)?), "name").await.map(drop)
    }

    async fn update_mcp_client(&self, client: &McpClient) -> Result<bool, StoreError> {
        self.write(Sql::update("mcp_clients", client_columns(client)?), "name").await
    }

    async fn delete_mcp_client(&self, id: &str) -> Result<Option<McpClient>, StoreError> {
        self.one(sql!("DELETE FROM mcp_clients WHERE client_id = $1 RETURNING *", id), client_from_row).await
    }

    async fn mcp_client(&self, id: &str) -> Result<Option<McpClient>, StoreError> {
        self.one(sql!("SELECT * FROM mcp_clients WHERE client_id = $1", id), client_from_row).await
    }

    async fn mcp_clients(&self) -> Result<Vec<McpClient>, StoreError> {
        let mut clients = self.all(sql!("SELECT * FROM mcp_clients"), client_from_row).await?;
        clients.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(clients)
    }
}
