//! `GET /api/search`: the query string parsed into a [`Query`] and the outcome as JSON.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use super::{HttpResponse, WebError, text_response};
use crate::feeds::Source;
use crate::search::{Outcome, Query, QueryError};

#[derive(Serialize)]
struct Response<'a> {
    term: &'a str,
    sources: &'a [String],
    first: bool,
    count: usize,
    elapsed_ms: f64,
    hits: Vec<Hit<'a>>,
    notes: Vec<Note<'a>>,
}

#[derive(Serialize)]
struct Hit<'a> {
    source: &'a str,
    title: &'a str,
    link: Option<&'a str>,
    description: &'a str,
}

#[derive(Serialize)]
struct Note<'a> {
    source: &'a str,
    feed: &'a str,
    error: &'a str,
    /// True when the last good copy of the feed is still being searched.
    stale: bool,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// `term` (required), `sources` (comma-separated ids, default all), `first` (true/false).
pub fn parse(query: &str, sources: &[Source]) -> Result<(Query, Vec<String>), WebError> {
    let mut term = None;
    let mut selected: Option<Vec<String>> = None;
    let mut first = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "term" => term = Some(value.into_owned()),
            "sources" => {
                let mut ids = Vec::new();
                for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !sources.iter().any(|s| s.id == id) {
                        let known: Vec<&str> = sources.iter().map(|s| s.id.as_str()).collect();
                        return Err(
                            QueryError::UnknownSource(id.to_owned(), known.join(", ")).into()
                        );
                    }
                    ids.push(id.to_owned());
                }
                selected = Some(ids);
            }
            "first" => {
                first = match &*value {
                    "true" | "1" | "on" | "" => true,
                    "false" | "0" | "off" => false,
                    _ => {
                        return Err(WebError::BadParam {
                            name: "first",
                            value: value.into_owned(),
                            expected: "use true or false",
                        });
                    }
                }
            }
            _ => {}
        }
    }
    // No `sources` (or an empty list) means every source.
    let selected: Vec<String> = match selected {
        Some(ids) if !ids.is_empty() => sources
            .iter()
            .filter(|s| ids.contains(&s.id))
            .map(|s| s.id.clone())
            .collect(),
        _ => sources.iter().map(|s| s.id.clone()).collect(),
    };
    let term = term.ok_or(WebError::MissingTerm)?;
    let query = Query::new(&term, selected.clone(), first)?.ok_or(WebError::MissingTerm)?;
    Ok((query, selected))
}

pub fn render(query: &Query, selected: &[String], outcome: &Outcome) -> HttpResponse {
    let body = Response {
        term: query.term(),
        sources: selected,
        first: query.first(),
        count: outcome.hit_count(),
        elapsed_ms: outcome.elapsed.as_secs_f64() * 1000.0,
        hits: outcome
            .sources
            .iter()
            .flat_map(|s| {
                s.hits().map(|i| Hit {
                    source: &s.id,
                    title: &i.title,
                    link: i.link.as_deref(),
                    description: &i.description,
                })
            })
            .collect(),
        notes: outcome
            .notes
            .iter()
            .map(|n| Note {
                source: &n.source_id,
                feed: &n.note.location,
                error: &n.note.error,
                stale: n.note.stale,
            })
            .collect(),
    };
    json(StatusCode::OK, &body)
}

pub fn error(e: &WebError) -> HttpResponse {
    json(
        e.status(),
        &ErrorBody {
            error: e.to_string(),
        },
    )
}

fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    // Serializing these plain structs into a Vec cannot fail.
    let bytes = serde_json::to_vec(body).expect("JSON of plain structs");
    text_response(status, "application/json", Bytes::from(bytes))
}
