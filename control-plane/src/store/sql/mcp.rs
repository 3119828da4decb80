//! [`McpStore`] on SQL: each client, and each Virtual MCP, is one JSON document.

use super::backend::{Columns, DbRow, Sql, sql};
use super::{SqlStore, from_json, json};
use crate::model::{McpClient, VirtualMcp};
use crate::store::{McpStore, StoreError};
use async_trait::async_trait;

fn client_from_row(row: &DbRow) -> Result<McpClient, StoreError> {
    from_json(row, "config")
}

/// The columns written on insert and update, `client_id` (the key) last.
fn client_columns(c: &McpClient) -> Result<Columns, StoreError> {
    Ok(vec![("name", (&c.name).into()), ("config", json(c)?.into()), ("client_id", (&c.client_id).into())])
}

fn vmcp_from_row(row: &DbRow) -> Result<VirtualMcp, StoreError> {
    from_json(row, "config")
}

/// The columns written on insert and update, `id` (the key) last.
fn vmcp_columns(v: &VirtualMcp) -> Result<Columns, StoreError> {
    Ok(vec![("endpoint_slug", (&v.endpoint_slug).into()), ("config", json(v)?.into()), ("id", (&v.id).into())])
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

    async fn insert_virtual_mcp(&self, vmcp: &VirtualMcp) -> Result<(), StoreError> {
        self.write(Sql::insert("virtual_mcps", vmcp_columns(vmcp)?), "endpoint_slug").await.map(drop)
    }

    async fn update_virtual_mcp(&self, vmcp: &VirtualMcp) -> Result<bool, StoreError> {
        self.write(Sql::update("virtual_mcps", vmcp_columns(vmcp)?), "endpoint_slug").await
    }

    async fn delete_virtual_mcp(&self, id: &str) -> Result<Option<VirtualMcp>, StoreError> {
        self.one(sql!("DELETE FROM virtual_mcps WHERE id = $1 RETURNING *", id), vmcp_from_row).await
    }

    async fn virtual_mcp(&self, id: &str) -> Result<Option<VirtualMcp>, StoreError> {
        self.one(sql!("SELECT * FROM virtual_mcps WHERE id = $1", id), vmcp_from_row).await
    }

    async fn virtual_mcps(&self) -> Result<Vec<VirtualMcp>, StoreError> {
        let mut all = self.all(sql!("SELECT * FROM virtual_mcps"), vmcp_from_row).await?;
        all.sort_by(|a, b| a.endpoint_slug.cmp(&b.endpoint_slug));
        Ok(all)
    }
}
