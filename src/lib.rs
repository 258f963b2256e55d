//! mcp-proxy: connects any MCP client to any MCP server, whatever transport each side speaks.
//!
//! Layers, bottom up: [`jsonrpc`] (messages read only as deep as routing needs),
//! [`transport`] (wires towards servers), [`route`] (what a client session talks to),
//! [`server`] (wires towards clients), [`era`] (2026-07-28 and the revisions before it),
//! [`servers`] (named servers from an `mcpServers` file), [`gateway`] (running them, and
//! reloading them live), [`config`] (validated settings),
//! [`app`] (wiring it up).
#![deny(unsafe_code)]

pub mod access;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod curation;
pub mod demo;
pub mod era;
pub mod gateway;
pub mod health;
pub mod jsonrpc;
pub mod limits;
pub mod oauth;
pub mod route;
pub mod server;
pub mod servers;
pub mod supervisor;
pub mod telemetry;
pub mod throttle;
pub mod transport;
