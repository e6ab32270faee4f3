//! Outbound to Genesys Cloud: auth (token cache), client (pacing, retries, error mapping),
//! scim (typed SCIM calls), types (serde models of the Genesys schemas).

pub mod auth;
pub mod client;
pub mod events;
pub mod models;
pub mod scim;
pub mod types;

pub use client::{ClientSettings, GenesysClient, GenesysError};
