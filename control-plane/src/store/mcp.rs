//! The store's half for MCP clients, composed into [`super::Store`].

use super::StoreError;
use crate::model::{McpClient, VirtualMcp};
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
    /// Adds a Virtual MCP; a taken slug is a conflict on `endpoint_slug`.
    async fn insert_virtual_mcp(&self, vmcp: &VirtualMcp) -> Result<(), StoreError>;
    /// Replaces a Virtual MCP by id; `false` if there is none.
    async fn update_virtual_mcp(&self, vmcp: &VirtualMcp) -> Result<bool, StoreError>;
    async fn delete_virtual_mcp(&self, id: &str) -> Result<Option<VirtualMcp>, StoreError>;
    async fn virtual_mcp(&self, id: &str) -> Result<Option<VirtualMcp>, StoreError>;
    /// Every Virtual MCP, by slug.
    async fn virtual_mcps(&self) -> Result<Vec<VirtualMcp>, StoreError>;
}
