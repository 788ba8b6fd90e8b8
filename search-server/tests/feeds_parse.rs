//! Parser tests on the fixture documents in tests/fixtures/feeds/: each format, each encoding,
//! CDATA and entities, missing fields, malformed and hostile input, and size limits.

use std::path::PathBuf;

use search_server::feeds::parse::{Limits, ParseError, html_to_text, parse, parse_with};
use search_server::feeds::{Feed, Item, sources};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/feeds")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_fixture(name: &str) -> Feed {
    parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn titles(feed: &Feed) -> Vec<&str> {
    feed.items.iter().map(|i| i.title.as_str()).collect()
}

#[test]
fn rss2_items_and_namespaced_fields() {
    let feed = parse_fixture("rss2.xml");
    assert_eq!(feed.title, "Example News");
    assert_eq!(
        titles(&feed),
        ["First story", "Second story", "Third story"]
    );
    let first = &feed.items[0];
    assert_eq!(
        first.link.as_deref(),
        Some("https://news.example.org/first")
    );
    // media:title / media:description must not replace the item's own fields.
    assert_eq!(first.description, "Plain description of the first story.");
    // A permalink guid stands in for a missing <link>; description wins over content:encoded.
    assert_eq!(
        feed.items[1].link.as_deref(),
        Some("https://news.example.org/second")
    );
    assert_eq!(feed.items[1].description, "Second description.");
    // content:encoded is the fallback description.
    assert_eq!(feed.items[2].description, "Only content:encoded here.");
    assert_eq!(
        feed.items[2].link.as_deref(),
        Some("https://news.example.org/third")
    );
}

#[test]
fn rss1_rdf_items_are_siblings_of_the_channel() {
    let feed = parse_fixture("rss1-rdf.xml");
    assert_eq!(feed.title, "RDF Site Summary");
    assert_eq!(titles(&feed), ["RDF item A", "RDF item B"]);
    assert_eq!(feed.items[0].description, "Storm over the market");
    assert_eq!(
        feed.items[1].link.as_deref(),
        Some("https://rdf.example.org/b")
    );
    assert_eq!(feed.items[1].description, "");
}

#[test]
fn atom_entries_links_and_content_types() {
    let feed = parse_fixture("atom.xml");
    assert_eq!(feed.title, "Atom Example");
    assert_eq!(
        titles(&feed),
        ["Atom entry one", "Entry two", "Entry three, text summary"]
    );
    let [one, two, three] = &feed.items[..] else {
        panic!("three entries")
    };
    // rel="self" is skipped; the alternate link (rel absent) is taken.
    assert_eq!(one.link.as_deref(), Some("https://atom.example.org/one"));
    assert_eq!(one.description, "Escaped HTML summary & more");
    assert_eq!(two.link.as_deref(), Some("https://atom.example.org/two"));
    assert_eq!(two.description, "Inline xhtml content");
    assert_eq!(three.link, None, "javascript: link must be dropped");
    assert_eq!(three.description, "Plain text with 1 < 2 kept");
}

#[test]
fn latin1_declared_in_prolog_is_decoded() {
    let feed = parse_fixture("latin1.xml");
    assert_eq!(feed.title, "Café du Monde");
    assert_eq!(feed.items[0].title, "Crème brûlée à la française");
    assert_eq!(
        feed.items[0].description,
        "Naïve café owners in Köln £ ½ price"
    );
}

#[test]
fn windows1252_declared_in_prolog_is_decoded() {
    let feed = parse_fixture("windows1252.xml");
    assert_eq!(
        feed.items[0].title,
        "\u{201c}Smart\u{201d} quotes \u{2013} and the euro €"
    );
    assert_eq!(
        feed.items[0].description,
        "It\u{2019}s … a \u{2018}test\u{2019} — œuvre"
    );
}

#[test]
fn utf8_with_bom_is_decoded() {
    let feed = parse_fixture("utf8-bom.xml");
    assert_eq!(feed.title, "BOM feed");
    assert_eq!(feed.items[0].title, "日本語 über naïve");
    assert_eq!(feed.items[0].description, "Emoji 😀 survives");
}

#[test]
fn unknown_declared_encoding_is_an_error_naming_it() {
    let doc = br#"<?xml version="1.0" encoding="x-klingon"?><rss><channel/></rss>"#;
    let err = parse(doc).unwrap_err();
    assert_eq!(err, ParseError::UnknownEncoding("x-klingon".into()));
    assert!(err.to_string().contains("x-klingon"), "{err}");
}

#[test]
fn cdata_and_entities() {
    let feed = parse_fixture("cdata-entities.xml");
    assert_eq!(feed.title, "Entities & CDATA");
    let [a, b, c] = &feed.items[..] else {
        panic!("three items")
    };
    assert_eq!(a.title, "CDATA title with bold & ampersand");
    assert_eq!(a.link.as_deref(), Some("https://ex.org/cdata?a=1&b=2"));
    assert_eq!(
        a.description,
        "Paragraph one & two. Café \u{201c}quoted\u{201d} text"
    );
    assert_eq!(b.title, "Escaped title & ☺ ☃");
    assert_eq!(
        b.description,
        "Escaped HTML one two It\u{2019}s AT&T's \"deal\""
    );
    assert_eq!(c.title, "Mixed whitespace across lines");
    assert_eq!(c.description, "lots of space here");
}

#[test]
fn folded_text_is_lowercased_title_and_description() {
    let feed = parse_fixture("latin1.xml");
    let item = &feed.items[0];
    assert_eq!(
        item.folded,
        format!(
            "{}\n{}",
            item.title.to_lowercase(),
            item.description.to_lowercase()
        )
    );
    assert!(item.folded.contains("crème"));
}

#[test]
fn missing_fields() {
    let feed = parse_fixture("missing-fields.xml");
    // A channel without a title is fine.
    assert_eq!(feed.title, "");
    let items = &feed.items;
    assert_eq!(items.len(), 3, "{items:#?}");
    // No description: still an item, searchable by its title.
    assert_eq!(items[0].title, "Title only, no description, no link");
    assert_eq!(items[0].description, "");
    assert_eq!(items[0].link, None);
    assert!(items[0].folded.contains("title only"));
    // No title: one is derived from the description.
    assert!(
        items[1]
            .title
            .starts_with("Description only: the title is derived"),
        "{}",
        items[1].title
    );
    assert!(items[1].title.ends_with('…'));
    assert_eq!(items[1].link.as_deref(), Some("https://ex.org/desc-only"));
    // Items with neither title nor description are dropped; relative links are dropped.
    assert_eq!(items[2].title, "Relative link dropped");
    assert_eq!(items[2].link, None);
    let parsed = parse_with(&fixture("missing-fields.xml"), &Limits::default()).unwrap();
    assert_eq!(parsed.dropped_items, 2);
}

#[test]
fn malformed_document_is_an_error_not_a_panic() {
    let err = parse(&fixture("malformed.xml")).unwrap_err();
    let ParseError::Xml { position, message } = &err else {
        panic!("{err:?}")
    };
    assert!(*position > 0);
    assert!(
        message.contains("channel") || message.contains("item"),
        "{message}"
    );
}

#[test]
fn truncated_document_is_an_error() {
    let err = parse(&fixture("truncated.xml")).unwrap_err();
    assert!(matches!(err, ParseError::Truncated { .. }), "{err:?}");
}

#[test]
fn html_page_is_not_a_feed() {
    let err = parse(&fixture("not-a-feed.html")).unwrap_err();
    // An HTML error page may not even be well-formed XML; either way it is an error that says so.
    match &err {
        ParseError::NotAFeed { root } => assert_eq!(root, "html"),
        ParseError::Xml { .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
    assert_eq!(parse(b"  \n ").unwrap_err(), ParseError::Empty);
    assert!(matches!(
        parse(b"<feedx/>").unwrap_err(),
        ParseError::NotAFeed { .. }
    ));
    assert!(matches!(
        parse(b"just text").unwrap_err(),
        ParseError::NotAFeed { .. }
    ));
}

#[test]
fn garbage_never_panics() {
    // Every prefix of every fixture: truncation at any byte is an Err or a (partial) feed.
    for name in [
        "rss2.xml",
        "atom.xml",
        "rss1-rdf.xml",
        "hostile.xml",
        "latin1.xml",
    ] {
        let doc = fixture(name);
        for cut in 0..doc.len() {
            let _ = parse(&doc[..cut]);
        }
    }
    let _ = parse(&[0xff, 0xfe, 0x00, 0x3c]);
    let _ = parse("<rss><channel><item><title>\u{0}</title></item></channel></rss>".as_bytes());
}

#[test]
fn billion_laughs_expands_nothing() {
    let doc = fixture("billion-laughs.xml");
    let feed = parse(&doc).expect("the document itself is well-formed");
    let item = &feed.items[0];
    // The references stay literal, so nothing grew: every field is about as long as written.
    assert_eq!(item.title, "Billion &lol9; laughs");
    assert_eq!(
        item.description,
        "Expands to &lol9; nothing; external &xxe; neither"
    );
    assert!(
        !item.description.contains("root:"),
        "external entity must not be read"
    );
    assert!(feed.title.len() < 64);
}

#[test]
fn deep_nesting_is_refused() {
    let mut doc = String::from("<rss><channel><item><description>");
    doc.push_str(&"<div>".repeat(10_000));
    let err = parse(doc.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ParseError::TooDeep {
            limit: Limits::default().max_depth
        }
    );
}

fn big_feed(items: usize) -> Vec<u8> {
    let mut doc =
        String::from("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Big</title>");
    for i in 0..items {
        doc.push_str(&format!(
            "<item><title>Item {i}</title><link>https://ex.org/{i}</link>\
             <description><![CDATA[<p>Body of item <b>{i}</b> about the market.</p>]]></description></item>"
        ));
    }
    doc.push_str("</channel></rss>");
    doc.into_bytes()
}

#[test]
fn twenty_thousand_items_are_capped_in_order() {
    let doc = big_feed(20_000);
    let limits = Limits::default();
    let parsed = parse_with(&doc, &limits).unwrap();
    assert_eq!(parsed.feed.items.len(), limits.max_items);
    assert_eq!(parsed.dropped_items, 20_000 - limits.max_items);
    assert_eq!(parsed.feed.items[0].title, "Item 0");
    let last = &parsed.feed.items[limits.max_items - 1];
    assert_eq!(last.title, format!("Item {}", limits.max_items - 1));
    assert_eq!(
        last.description,
        format!("Body of item {} about the market.", limits.max_items - 1)
    );

    // With a higher cap all 20,000 are kept.
    let all = parse_with(
        &doc,
        &Limits {
            max_items: 20_000,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(all.feed.items.len(), 20_000);
    assert_eq!(all.dropped_items, 0);
    assert_eq!(
        all.feed.items[19_999].link.as_deref(),
        Some("https://ex.org/19999")
    );
}

#[test]
fn long_fields_are_truncated() {
    let long = "word ".repeat(10_000);
    let doc = format!(
        "<rss><channel><item><title>{long}</title><description>{long}</description>\
         <link>https://ex.org/{}</link></item></channel></rss>",
        "a".repeat(5_000)
    );
    let limits = Limits::default();
    let parsed = parse_with(doc.as_bytes(), &limits).unwrap();
    let item = &parsed.feed.items[0];
    assert_eq!(item.title.chars().count(), limits.max_title_chars);
    assert!(item.title.ends_with('…'));
    assert!(item.description.chars().count() <= limits.max_description_chars + 1);
    assert_eq!(item.link, None, "a 5 KB link is dropped");
    assert!(parsed.truncated_fields >= 2);
}

#[test]
fn hostile_content_is_reduced_to_inert_text() {
    let feed = parse_fixture("hostile.xml");
    assert_eq!(feed.title, "Hostile");
    let [a, b, c] = &feed.items[..] else {
        panic!("three items: {:#?}", feed.items)
    };
    assert_eq!(a.title, "Breaking news");
    assert_eq!(a.link, None, "javascript: link");
    assert_eq!(a.description, "Click link text");
    assert_eq!(b.link, None, "data: link");
    assert_eq!(
        c.link, None,
        "javascript: with odd case and spaces; vbscript: guid"
    );
    for item in &feed.items {
        for text in [&item.title, &item.description] {
            let lower = text.to_lowercase();
            assert!(!lower.contains("<script"), "{text}");
            assert!(!lower.contains("onerror"), "{text}");
            assert!(!lower.contains("document.cookie"), "{text}");
            assert!(!lower.contains("alert(3)"), "{text}");
            assert!(!lower.contains("display:none"), "{text}");
        }
    }
    // Escaped markup that spells a tag after decoding is text, shown literally, never markup.
    assert!(b.description.contains("nested trick"), "{}", b.description);
    assert!(c.description.ends_with("end"), "{}", c.description);
}

#[test]
fn html_to_text_drops_script_and_style_content() {
    assert_eq!(
        html_to_text("<div>a<script>var x = '<p>b</p>';</script><style>.c{}</style>c</div>"),
        "ac",
        "as a browser renders it: hidden content leaves no gap"
    );
    assert_eq!(
        html_to_text("1 &lt; 2 &amp;&amp; 3 &gt; 2"),
        "1 < 2 && 3 > 2"
    );
    assert_eq!(html_to_text("<p>one</p><p>two</p>"), "one two");
}

#[test]
fn item_new_folds_unicode_case() {
    let item = Item::new("ÉCOLE House".into(), None, "STRASSE Ärger".into());
    assert_eq!(item.folded, "école house\nstrasse ärger");
}

#[test]
fn embedded_feed_set_shape() {
    let mut total = 0;
    let mut house = 0;
    let mut market_sources = 0;
    let mut storm_sources = 0;
    for source in sources::embedded() {
        let (mut market, mut storm) = (false, false);
        for location in &source.feeds {
            let search_server::feeds::FeedLocation::Embedded { bytes, name } = location else {
                panic!("embedded set holds embedded feeds")
            };
            let feed = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                (25..=60).contains(&feed.items.len()),
                "{name}: {}",
                feed.items.len()
            );
            assert!(!feed.title.is_empty(), "{name}");
            for item in &feed.items {
                assert!(
                    item.link
                        .as_deref()
                        .is_some_and(|l| l.starts_with("https://")),
                    "{name}"
                );
                assert!(
                    !item.description.contains('<'),
                    "{name}: markup left: {}",
                    item.description
                );
                assert!(!item.description.contains("&amp;"), "{name}: entity left");
                house += usize::from(item.folded.contains("house"));
                market |= item.folded.contains("market");
                storm |= item.folded.contains("storm");
            }
            total += feed.items.len();
        }
        market_sources += usize::from(market);
        storm_sources += usize::from(storm);
    }
    assert!((550..=650).contains(&total), "{total} items");
    assert!((26..=34).contains(&house), "'house' hits {house} items");
    assert_eq!(market_sources, 3);
    assert_eq!(storm_sources, 3);
}
