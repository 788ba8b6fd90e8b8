//! Search engine over RSS news feeds: `config` (CLI), `feeds` (fetch, parse, cache),
//! `search` (matching and merging), `web` (routes, pages, metrics), `server` (connections).

pub mod feeds;
pub mod search;
