//! Feed documents to items: RSS 2.0, RSS 1.0 (RDF) and Atom, parsed with quick-xml. Pure
//! (bytes in, items out), defensive against hostile input: no DTD entity expansion, caps on
//! items, fields and nesting, markup in descriptions reduced to plain text, links only
//! http/https. A broken document is an `Err` for that document alone, never a panic.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use encoding_rs::{Encoding, UTF_8};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use super::{Feed, Item};

/// Why a document could not be read as a feed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the document is empty")]
    Empty,
    #[error("the XML prolog declares encoding {0:?}, which is not a known encoding")]
    UnknownEncoding(String),
    #[error("malformed XML at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("not a feed: the root element is <{root}>, expected <rss>, <rdf:RDF> or <feed>")]
    NotAFeed { root: String },
    #[error("the document ends inside <{element}> (truncated?)")]
    Truncated { element: String },
    #[error("elements are nested deeper than {limit} levels")]
    TooDeep { limit: usize },
}

/// Caps that keep a hostile or broken feed from costing much. Defaults suit news feeds
/// (real ones carry tens of items with descriptions of a few hundred characters).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Items kept per feed; later ones are counted in [`Parsed::dropped_items`].
    pub max_items: usize,
    /// Characters kept of a title after reduction to text.
    pub max_title_chars: usize,
    /// Characters kept of a description after reduction to text.
    pub max_description_chars: usize,
    /// Bytes of a link; longer links are dropped.
    pub max_link_bytes: usize,
    /// Bytes of raw field content (markup included) collected before reduction: bounds the
    /// HTML cleaning work per field.
    pub max_raw_field_bytes: usize,
    /// Element nesting depth.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_items: 10_000,
            max_title_chars: 500,
            max_description_chars: 4_000,
            max_link_bytes: 2_048,
            max_raw_field_bytes: 64 * 1024,
            max_depth: 256,
        }
    }
}

/// A parsed feed and what the caps removed from it.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub feed: Feed,
    /// Items past [`Limits::max_items`], or with neither title nor description.
    pub dropped_items: usize,
    /// Fields cut to their cap.
    pub truncated_fields: usize,
}

/// Parses a feed document with the default [`Limits`].
pub fn parse(bytes: &[u8]) -> Result<Feed, ParseError> {
    parse_with(bytes, &Limits::default()).map(|parsed| parsed.feed)
}

/// Parses a feed document: decodes it (BOM, else the encoding named in the XML prolog, else
/// UTF-8), then reads items from RSS 2.0, RSS 1.0 or Atom.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let text = decode(bytes)?;
    Parser::new(limits).run(&text)
}

/// Decodes the document to UTF-8. Invalid sequences become U+FFFD rather than errors: one bad
/// byte in a description should not cost the whole feed.
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return Ok(text);
    }
    let encoding = match declared_encoding(bytes) {
        None => UTF_8,
        Some(label) => match Encoding::for_label(label.as_bytes()) {
            // A prolog readable as ASCII cannot be UTF-16: the declaration is wrong, and
            // UTF-8 is what the bytes are (the XML spec's own rule).
            Some(e) if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE => UTF_8,
            Some(e) => e,
            None => return Err(ParseError::UnknownEncoding(label)),
        },
    };
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    Ok(text)
}

/// The `encoding="..."` of an `<?xml ...?>` prolog at the very start, if any.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let prolog = bytes.strip_prefix(b"<?xml")?;
    let end = prolog.iter().take(512).position(|&b| b == b'>')?;
    let prolog = &prolog[..end];
    let at = prolog.windows(8).position(|w| w == b"encoding")?;
    let rest = &prolog[at + 8..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii_start();
    let quote = *rest.first().filter(|q| **q == b'"' || **q == b'\'')?;
    let value = &rest[1..];
    let close = value.iter().position(|&b| b == quote)?;
    Some(String::from_utf8_lossy(&value[..close]).trim().to_owned())
}

const RSS_10: &[u8] = b"http://purl.org/rss/1.0/";
const RSS_090: &[u8] = b"http://my.netscape.com/rdf/simple/0.9/";
const ATOM: &[u8] = b"http://www.w3.org/2005/Atom";
const ATOM_03: &[u8] = b"http://purl.org/atom/ns#";
const RDF: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const CONTENT: &[u8] = b"http://purl.org/rss/1.0/modules/content/";

/// The namespace families the parser cares about; `dc:`, `media:` and others are skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// RSS 2.0 (no namespace), RSS 1.0/0.90, or Atom: the feed vocabulary itself.
    Core,
    Atom,
    Rdf,
    Content,
    Other,
}

fn family(ns: &ResolveResult<'_>) -> Family {
    match ns {
        ResolveResult::Unbound => Family::Core,
        ResolveResult::Bound(Namespace(uri)) => match *uri {
            RSS_10 | RSS_090 => Family::Core,
            ATOM | ATOM_03 => Family::Atom,
            RDF => Family::Rdf,
            CONTENT => Family::Content,
            _ => Family::Other,
        },
        ResolveResult::Unknown(_) => Family::Other,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    Channel,
    Item,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    FeedTitle,
    Title,
    Link,
    Guid { permalink: bool },
    Description,
    Summary,
    Content,
}

/// Text being collected from one field element (and anything nested in it, as Atom's
/// `type="xhtml"` content nests markup).
struct Capture {
    target: Target,
    /// Stack depth of the field element: the capture ends when it closes.
    depth: usize,
    html: bool,
    buf: String,
    truncated: bool,
    /// Stack depth of a nested script/style-like element whose text is being skipped.
    hidden_from: Option<usize>,
}

#[derive(Default)]
struct ItemDraft {
    title: Option<String>,
    link: Option<String>,
    guid_link: Option<String>,
    description: Option<String>,
    summary: Option<String>,
    content: Option<String>,
}

struct Parser<'l> {
    limits: &'l Limits,
    stack: Vec<Node>,
    root_is_atom: bool,
    capture: Option<Capture>,
    item: Option<ItemDraft>,
    /// Whether the current item is past the cap and only counted.
    skipping_item: bool,
    out: Parsed,
}

impl<'l> Parser<'l> {
    fn new(limits: &'l Limits) -> Self {
        Self {
            limits,
            stack: Vec::new(),
            root_is_atom: false,
            capture: None,
            item: None,
            skipping_item: false,
            out: Parsed::default(),
        }
    }

    fn run(mut self, text: &str) -> Result<Parsed, ParseError> {
        let mut reader = NsReader::from_str(text);
        let config = reader.config_mut();
        // Feeds in the wild carry bare '&' ("AT&T"); keep it as text instead of failing.
        config.allow_dangling_amp = true;
        config.check_end_names = true;
        let mut seen_root = false;
        loop {
            let (ns, event) = match reader.read_resolved_event() {
                Ok(next) => next,
                Err(e) => {
                    let message = e.to_string();
                    return Err(ParseError::Xml {
                        position: reader.error_position(),
                        message,
                    });
                }
            };
            let fam = family(&ns);
            match event {
                Event::Start(start) => {
                    if !seen_root {
                        seen_root = true;
                        self.check_root(fam, &start)?;
                    }
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(ParseError::TooDeep {
                            limit: self.limits.max_depth,
                        });
                    }
                    self.open(fam, &start, false);
                }
                Event::Empty(start) => {
                    if !seen_root {
                        seen_root = true;
                        self.check_root(fam, &start)?;
                    }
                    self.open(fam, &start, true);
                }
                Event::End(_) => self.close(),
                Event::Text(t) => {
                    if let Some(c) = self.capture.as_mut() {
                        let text = t.decode().map_err(|e| xml_error(&reader, e))?;
                        push_capped(c, &text, self.limits.max_raw_field_bytes);
                    }
                }
                Event::CData(t) => {
                    if let Some(c) = self.capture.as_mut() {
                        let text = t.decode().map_err(|e| xml_error(&reader, e))?;
                        push_capped(c, &text, self.limits.max_raw_field_bytes);
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(c) = self.capture.as_mut() {
                        let resolved = resolve_reference(&r);
                        push_capped(c, &resolved, self.limits.max_raw_field_bytes);
                    }
                }
                Event::Eof => break,
                // The DOCTYPE (and any entities it declares) is deliberately ignored: undeclared
                // references stay literal text, so a billion-laughs document expands nothing.
                Event::DocType(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
        }
        if !seen_root {
            return Err(ParseError::NotAFeed {
                root: "(no element)".into(),
            });
        }
        if !self.stack.is_empty() {
            let element = if self.item.is_some() {
                "item"
            } else {
                "the feed"
            };
            return Err(ParseError::Truncated {
                element: element.into(),
            });
        }
        self.out.feed.build_index();
        Ok(self.out)
    }

    fn check_root(&mut self, fam: Family, start: &BytesStart<'_>) -> Result<(), ParseError> {
        let local = start.local_name();
        let ok = match (fam, local.as_ref()) {
            (Family::Core, b"rss") | (Family::Rdf, b"RDF") => true,
            (Family::Atom | Family::Core, b"feed") => {
                self.root_is_atom = true;
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ParseError::NotAFeed {
                root: String::from_utf8_lossy(start.name().as_ref())
                    .chars()
                    .take(64)
                    .collect(),
            })
        }
    }

    fn open(&mut self, fam: Family, start: &BytesStart<'_>, empty: bool) {
        let depth = self.stack.len();
        if let Some(capture) = self.capture.as_mut() {
            // Markup nested inside a field (Atom xhtml, or raw tags in a sloppy RSS feed):
            // keep words apart, and drop what a reader would never see.
            capture.buf.push(' ');
            if !empty {
                let local = start.local_name();
                let hidden = DROPPED_CONTENT
                    .iter()
                    .any(|t| t.as_bytes().eq_ignore_ascii_case(local.as_ref()));
                if hidden && capture.hidden_from.is_none() {
                    capture.hidden_from = Some(depth);
                }
                self.stack.push(Node::Other);
            }
            return;
        }
        let parent = self.stack.last().copied();
        let local = start.local_name();
        let local = local.as_ref();
        let core = matches!(fam, Family::Core | Family::Atom);
        let mut node = Node::Other;
        match parent {
            None => node = Node::Root,
            Some(Node::Root | Node::Channel) if core && (local == b"item" || local == b"entry") => {
                node = Node::Item;
                self.start_item();
            }
            Some(Node::Root) if core && local == b"channel" => node = Node::Channel,
            Some(Node::Channel) if core && local == b"title" => {
                self.begin(Target::FeedTitle, depth, start, fam);
            }
            Some(Node::Root) if self.root_is_atom && core && local == b"title" => {
                self.begin(Target::FeedTitle, depth, start, fam);
            }
            Some(Node::Item) if !self.skipping_item => {
                let target = match (fam, local) {
                    (Family::Core | Family::Atom, b"title") => Some(Target::Title),
                    (Family::Core | Family::Atom, b"link") => {
                        self.link_from_attributes(start);
                        Some(Target::Link)
                    }
                    (Family::Core, b"guid") => {
                        let permalink = attribute(start, b"isPermaLink")
                            .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
                        Some(Target::Guid { permalink })
                    }
                    (Family::Core, b"description") => Some(Target::Description),
                    (Family::Core | Family::Atom, b"summary") => Some(Target::Summary),
                    (Family::Core | Family::Atom, b"content") | (Family::Content, b"encoded") => {
                        Some(Target::Content)
                    }
                    _ => None,
                };
                if let Some(target) = target {
                    self.begin(target, depth, start, fam);
                }
            }
            _ => {}
        }
        if empty {
            // `<title/>` and friends: a capture that opened and closed at once.
            if self.capture.as_ref().is_some_and(|c| c.depth == depth) {
                self.finish_capture();
            }
            if node == Node::Item {
                self.finish_item();
            }
        } else {
            self.stack.push(node);
        }
    }

    fn close(&mut self) {
        let node = self.stack.pop();
        let depth = self.stack.len();
        if let Some(capture) = self.capture.as_mut()
            && capture.hidden_from == Some(depth)
        {
            capture.hidden_from = None;
        }
        if self.capture.as_ref().is_some_and(|c| c.depth == depth) {
            self.finish_capture();
        }
        if node == Some(Node::Item) {
            self.finish_item();
        }
    }

    fn begin(&mut self, target: Target, depth: usize, start: &BytesStart<'_>, fam: Family) {
        // RSS titles and descriptions are routinely HTML; Atom says so with type="html".
        let html = match attribute(start, b"type").as_deref() {
            Some("html") | Some("text/html") => true,
            Some(_) => false,
            None => fam != Family::Atom && !self.root_is_atom,
        };
        self.capture = Some(Capture {
            target,
            depth,
            html,
            buf: String::new(),
            truncated: false,
            hidden_from: None,
        });
    }

    fn start_item(&mut self) {
        if self.out.feed.items.len() >= self.limits.max_items {
            self.skipping_item = true;
        } else {
            self.item = Some(ItemDraft::default());
        }
    }

    fn link_from_attributes(&mut self, start: &BytesStart<'_>) {
        let Some(href) = attribute(start, b"href") else {
            return;
        };
        let rel = attribute(start, b"rel");
        if rel.as_deref().is_none_or(|r| r == "alternate")
            && let Some(item) = self.item.as_mut()
            && item.link.is_none()
        {
            item.link = safe_link(&href, self.limits.max_link_bytes);
        }
    }

    fn finish_capture(&mut self) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        if capture.truncated {
            self.out.truncated_fields += 1;
        }
        let limits = self.limits;
        let reduce = |max: usize, out: &mut Parsed| {
            let text = if capture.html {
                html_to_text(&capture.buf)
            } else {
                collapse(&capture.buf)
            };
            let (text, cut) = truncate_chars(text, max);
            out.truncated_fields += usize::from(cut);
            text
        };
        if capture.target == Target::FeedTitle {
            if self.out.feed.title.is_empty() {
                self.out.feed.title = reduce(limits.max_title_chars, &mut self.out);
            }
            return;
        }
        let Some(mut item) = self.item.take() else {
            return;
        };
        match capture.target {
            Target::FeedTitle => {}
            Target::Title if item.title.is_none() => {
                item.title = Some(reduce(limits.max_title_chars, &mut self.out));
            }
            Target::Link if item.link.is_none() => {
                item.link = safe_link(&capture.buf, limits.max_link_bytes);
            }
            Target::Guid { permalink: true } if item.guid_link.is_none() => {
                item.guid_link = safe_link(&capture.buf, limits.max_link_bytes);
            }
            Target::Description if item.description.is_none() => {
                item.description = Some(reduce(limits.max_description_chars, &mut self.out));
            }
            Target::Summary if item.summary.is_none() => {
                item.summary = Some(reduce(limits.max_description_chars, &mut self.out));
            }
            Target::Content if item.content.is_none() => {
                item.content = Some(reduce(limits.max_description_chars, &mut self.out));
            }
            _ => {}
        }
        self.item = Some(item);
    }

    fn finish_item(&mut self) {
        if std::mem::take(&mut self.skipping_item) {
            self.out.dropped_items += 1;
            return;
        }
        let Some(draft) = self.item.take() else {
            return;
        };
        let description = [draft.description, draft.summary, draft.content]
            .into_iter()
            .flatten()
            .find(|d| !d.is_empty())
            .unwrap_or_default();
        let mut title = draft.title.unwrap_or_default();
        if title.is_empty() {
            if description.is_empty() {
                self.out.dropped_items += 1;
                return;
            }
            // Shown as the link text; without one the hit would be unclickable.
            title = truncate_chars(description.clone(), 80).0;
        }
        let link = draft.link.or(draft.guid_link);
        self.out
            .feed
            .items
            .push(Item::new(title, link, description));
    }
}

fn xml_error(reader: &NsReader<&[u8]>, e: impl std::fmt::Display) -> ParseError {
    ParseError::Xml {
        position: reader.buffer_position(),
        message: e.to_string(),
    }
}

/// An attribute's unescaped value; malformed attributes count as absent.
fn attribute(start: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    start
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| {
            let raw = String::from_utf8_lossy(&a.value);
            // Unknown entities in an attribute: keep the raw text rather than lose the value.
            quick_xml::escape::unescape(&raw).map_or_else(|_| raw.to_string(), Cow::into_owned)
        })
}

/// The five XML entities and character references resolve; anything else (HTML names like
/// `&nbsp;`, or entities a DOCTYPE declares) stays literal for the HTML stage, which knows
/// HTML's names and leaves others alone. Nothing is ever expanded from a DTD.
fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Cow<'static, str> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Cow::Owned(c.to_string()),
            _ => Cow::Borrowed("\u{FFFD}"),
        };
    }
    let name = r.decode().unwrap_or_default();
    match name.as_ref() {
        "amp" => Cow::Borrowed("&"),
        "lt" => Cow::Borrowed("<"),
        "gt" => Cow::Borrowed(">"),
        "quot" => Cow::Borrowed("\""),
        "apos" => Cow::Borrowed("'"),
        other => Cow::Owned(format!("&{other};")),
    }
}

fn push_capped(capture: &mut Capture, text: &str, max: usize) {
    if capture.truncated || capture.hidden_from.is_some() {
        return;
    }
    let room = max.saturating_sub(capture.buf.len());
    if text.len() <= room {
        capture.buf.push_str(text);
    } else {
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        capture.buf.push_str(&text[..cut]);
        capture.truncated = true;
    }
}

/// Keeps a link only if it is an absolute http(s) URL of sane length, normalized.
fn safe_link(raw: &str, max_bytes: usize) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > max_bytes {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    let url = String::from(url);
    (url.len() <= max_bytes).then_some(url)
}

/// Tags kept through cleaning only as word boundaries (they become spaces below).
const BLOCK_TAGS: &[&str] = &[
    "p",
    "br",
    "div",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "td",
    "th",
    "table",
    "blockquote",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "figure",
    "figcaption",
    "img",
];

/// Elements whose content is never text for a reader.
const DROPPED_CONTENT: &[&str] = &[
    "script", "style", "noscript", "template", "iframe", "object", "svg", "math", "head", "title",
];

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(BLOCK_TAGS.iter().copied().collect())
        .tag_attributes(HashMap::new())
        .generic_attributes(HashSet::new())
        .link_rel(None)
        .strip_comments(true)
        .clean_content_tags(DROPPED_CONTENT.iter().copied().collect());
    builder
});

/// Reduces an HTML fragment to plain text: tags removed (block tags become spaces), the
/// content of script/style and similar dropped, entities decoded, whitespace collapsed.
pub fn html_to_text(html: &str) -> String {
    if !html.contains(['<', '&']) {
        return collapse(html);
    }
    let cleaned = CLEANER.clean(html).to_string();
    // The cleaner serializes with every text '<' and '>' escaped and no attributes left, so each
    // '<'..'>' span in its output is one of BLOCK_TAGS.
    let mut spaced = String::with_capacity(cleaned.len());
    let mut in_tag = false;
    for ch in cleaned.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                spaced.push(' ');
            }
            _ if in_tag => {}
            _ => spaced.push(ch),
        }
    }
    collapse(&html_escape::decode_html_entities(&spaced))
}

/// Collapses runs of whitespace (including non-breaking spaces) to one space, trimmed.
fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Cuts `text` to at most `max` characters (plus an ellipsis); says whether it cut.
fn truncate_chars(text: String, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        None => (text, false),
        Some((at, _)) => {
            let mut cut = text[..at].trim_end().to_owned();
            cut.push('…');
            (cut, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_reduces_to_text() {
        let html = "<p>Fire &amp; rain</p><p>next<br>line</p><script>alert(1)</script>\
                    <style>p{}</style><img src=x onerror=alert(1)>&nbsp;end &lt;b&gt;";
        assert_eq!(html_to_text(html), "Fire & rain next line end <b>");
    }

    #[test]
    fn plain_text_is_only_collapsed() {
        assert_eq!(html_to_text("  a \n\t b  "), "a b");
    }

    #[test]
    fn links_must_be_http() {
        assert_eq!(
            safe_link(" https://ex.org/a b ", 100).as_deref(),
            Some("https://ex.org/a%20b")
        );
        assert_eq!(safe_link("javascript:alert(1)", 100), None);
        assert_eq!(safe_link("data:text/html,x", 100), None);
        assert_eq!(safe_link("/relative", 100), None);
        assert_eq!(safe_link("https://ex.org/long", 10), None);
    }

    #[test]
    fn prolog_encoding_is_read() {
        assert_eq!(
            declared_encoding(b"<?xml version='1.0' encoding = 'ISO-8859-1' ?><rss/>").as_deref(),
            Some("ISO-8859-1")
        );
        assert_eq!(declared_encoding(b"<?xml version=\"1.0\"?><rss/>"), None);
        assert_eq!(declared_encoding(b"<rss/>"), None);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(
            truncate_chars("héllo world".into(), 5),
            ("héllo…".into(), true)
        );
        assert_eq!(truncate_chars("short".into(), 5), ("short".into(), false));
    }
}
