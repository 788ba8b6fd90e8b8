//! The search page: an askama template (HTML-escaped by default: every feed and request
//! value is untrusted) rendered into one pre-sized buffer.

use askama::Template;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue};

use super::params::Form;
use super::{HttpResponse, WebError, text_response};
use crate::feeds::{EscapedHtml, Item, Source};
use crate::search::{Outcome, Query};

/// A source's checkbox on the form.
pub struct SourceBox<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage<'a> {
    pub term: &'a str,
    pub sources: Vec<SourceBox<'a>>,
    pub first: bool,
    pub query: Option<&'a Query>,
    pub outcome: Option<&'a Outcome>,
    pub error: Option<String>,
    pub elapsed: String,
}

impl SearchPage<'_> {
    /// The item's link if it is http(s). The feeds module already drops other schemes; this
    /// second check keeps a `javascript:` URL out of an `href` whatever the parser does.
    /// [`Self::link_of`], as the item's pre-escaped attribute value.
    fn href_of<'i>(&self, item: &'i Item) -> Option<&'i EscapedHtml> {
        self.link_of(item)?;
        item.link_html.as_ref()
    }

    fn link_of<'i>(&self, item: &'i Item) -> Option<&'i str> {
        let link = item.link.as_deref()?;
        let scheme_end = link.find(':')?;
        let scheme = &link[..scheme_end];
        (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
            .then_some(link)
    }
}

/// Bytes of page around the hits (head, form, footer): the starting size of the buffer.
const PAGE_FRAME_BYTES: usize = 2 * 1024;
/// Bytes of markup per hit besides its text.
const HIT_MARKUP_BYTES: usize = 160;

pub fn render(
    sources: &[Source],
    form: &Form,
    searched: Option<(&Query, &Outcome)>,
    error: Option<&WebError>,
    status: StatusCode,
) -> HttpResponse {
    let page = SearchPage {
        term: form.term.as_deref().unwrap_or(""),
        sources: sources
            .iter()
            .map(|s| SourceBox {
                id: &s.id,
                name: &s.name,
                checked: form.is_checked(&s.id),
            })
            .collect(),
        first: form.first,
        query: searched.map(|(q, _)| q),
        outcome: searched.map(|(_, o)| o),
        error: error.map(ToString::to_string),
        elapsed: searched
            .map(|(_, o)| format_elapsed(o.elapsed))
            .unwrap_or_default(),
    };
    let mut buf = String::with_capacity(estimate(searched.map(|(_, o)| o)));
    match page.render_into(&mut buf) {
        Ok(()) => {}
        Err(e) => {
            // Rendering writes into a String and only fails if a value's Display fails.
            tracing::error!(error = %e, "rendering the search page failed");
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "the page could not be rendered; see the server log\n",
            );
        }
    }
    let mut resp = text_response(status, "text/html; charset=utf-8", Bytes::from(buf));
    // Defence in depth beside escaping: no script may run on this page at all.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn estimate(outcome: Option<&Outcome>) -> usize {
    let hits = outcome.map_or(0, |o| {
        o.sources
            .iter()
            .flat_map(|s| s.hits())
            .map(|i| {
                HIT_MARKUP_BYTES
                    + i.title_html.as_str().len()
                    + i.description_html.as_str().len()
                    + i.link_html.as_ref().map_or(0, |l| l.as_str().len())
            })
            .sum::<usize>()
    });
    // The item text is printed already escaped, so its size is known exactly: no slack, and
    // no buffer much larger than the page held per connection in flight.
    PAGE_FRAME_BYTES + hits
}

fn format_elapsed(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::FeedLocation;
    use std::time::Duration;

    fn sources() -> Vec<Source> {
        vec![Source {
            id: "cnn".into(),
            name: "CNN".into(),
            feeds: vec![FeedLocation::Url("http://x".into())],
        }]
    }

    fn body(resp: HttpResponse) -> String {
        use http_body_util::BodyExt;
        let bytes = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn request_values_are_escaped() {
        let form = Form {
            term: Some("\"><script>alert(1)</script>".into()),
            checked: vec!["cnn".into()],
            first: true,
        };
        let html = body(render(&sources(), &form, None, None, StatusCode::OK));
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&#34;&#62;&#60;script&#62;")
                || html.contains("&quot;&gt;&lt;script&gt;"),
            "{html}"
        );
        assert!(html.contains(r#"name="cnn" checked"#));
        assert!(html.contains(r#"name="first" checked"#));
    }

    #[test]
    fn only_http_links_become_hrefs() {
        let page = SearchPage {
            term: "",
            sources: vec![],
            first: false,
            query: None,
            outcome: None,
            error: None,
            elapsed: String::new(),
        };
        let item = |l: &str| Item::new("t".into(), Some(l.into()), String::new());
        assert_eq!(
            page.link_of(&item("https://example.com/a")),
            Some("https://example.com/a")
        );
        assert_eq!(
            page.link_of(&item("HTTP://example.com/")),
            Some("HTTP://example.com/")
        );
        assert_eq!(page.link_of(&item("javascript:alert(1)")), None);
        assert_eq!(page.link_of(&item(" javascript:alert(1)")), None);
        assert_eq!(page.link_of(&item("data:text/html,x")), None);
        assert_eq!(page.link_of(&item("//evil.example/")), None);
    }

    #[tokio::test]
    async fn the_buffer_is_sized_to_the_page() {
        let cache = crate::feeds::FeedCache::new(
            crate::feeds::sources::embedded(),
            crate::feeds::CacheOptions::default(),
        );
        cache.refresh_all().await;
        let all = vec!["cnn".to_string(), "bbc".into(), "nyt".into()];
        for term in ["house", "storm", "market", "zebra"] {
            let query = Query::new(term, all.clone(), false).unwrap().unwrap();
            let outcome = crate::search::run(
                cache.as_ref(),
                cache.sources(),
                &query,
                crate::search::Matching::Fast,
            )
            .await;
            let estimate = estimate(Some(&outcome));
            let form = Form {
                term: Some(term.into()),
                checked: all.clone(),
                first: false,
            };
            let page = body(render(
                cache.sources(),
                &form,
                Some((&query, &outcome)),
                None,
                StatusCode::OK,
            ));
            // Never short (the buffer would double), never much over (held per request).
            assert!(
                estimate >= page.len(),
                "{term}: {estimate} < {}",
                page.len()
            );
            assert!(
                estimate <= page.len() + page.len() / 8 + 1024,
                "{term}: {estimate} is far over {}",
                page.len()
            );
        }
    }

    #[test]
    fn elapsed_is_readable() {
        assert_eq!(format_elapsed(Duration::from_micros(123)), "0.12 ms");
        assert_eq!(format_elapsed(Duration::from_millis(42)), "42 ms");
        assert_eq!(format_elapsed(Duration::from_millis(2500)), "2.50 s");
    }
}
