//! Search engine over RSS news feeds: `feeds` (fetch, parse, cache), `search`, `web`, `server`.

pub mod feeds;
