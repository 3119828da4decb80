//! The store's half for MCP clients, composed into [`super::Store`].

use super::StoreError;
use crate::model::McpClient;
use async_trait::async_trait;

#[async_trait]
pub trait McpStore: Send + Sync {
    /// Adds a client; a taken name is a conflict on `name`.
    async fn insert_mcp_client(&self, client: &McpClient) -> Result<(), StoreError>;
    /// Replaces a client by id; `false` if there is none.
    async fn update_mcp_client(&self, client: &McpClient) -> Result<bool, StoreError>;
    async fn delete_mcp_client(&self, id: &str) -> Result<Option<McpClient>, StoreError>;
    async fn mcp_client(&self, id: &str) -> Result<Option<McpClient>, StoreError>;
    /// Every client, by name.
    async fn mcp_clients(&self) -> Result<Vec<McpClient>, StoreError>;
}
