//! Search engine over RSS news feeds: `config` (CLI), `feeds` (fetch, parse, cache),
//! `search` (matching and merging), `web` (routes, pages, metrics), `server` (connections).

pub mod config;
pub mod feeds;
pub mod search;
pub mod server;
pub mod web;
