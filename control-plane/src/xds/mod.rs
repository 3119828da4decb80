//! The xDS server: Envoy's own configuration (the filter over ECDS) and Warden's policy records
//! (incremental resources on the same ADS service), served from one cache.

pub mod cache;
pub mod resources;
pub mod server;
pub mod status;

pub use cache::Cache;
pub use server::AdsServer;
pub use status::NodeRegistry;
