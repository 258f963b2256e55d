//! End-to-end tests: the real `mcp-proxy` binary between real MCP peers.
//! One test binary (modules below) keeps link time down.

mod admin;
mod conformance;
mod era;
mod era_matrix;
mod hardening;
mod inbound;
mod oauth;
mod observability;
mod outside;
mod protocol;
mod reload;
mod sdk;
mod servers;
mod util;
