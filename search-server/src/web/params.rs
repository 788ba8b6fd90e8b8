//! The search form's parameters, gathered from an urlencoded query string and/or body.

use crate::feeds::Source;

/// What the form submitted: the term, the ticked sources (by id) and the `first` box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub term: Option<String>,
    /// Ticked source ids, in configured source order, each once.
    pub checked: Vec<String>,
    pub first: bool,
}

impl Form {
    /// Adds the parameters of one urlencoded string. Called for the query string first and
    /// the body second, so a term in the body wins; ticked boxes from either count.
    pub fn absorb(&mut self, urlencoded: &[u8], sources: &[Source]) {
        for (key, value) in form_urlencoded::parse(urlencoded) {
            if key == "term" {
                self.term = Some(value.into_owned());
            } else if key == "first" {
                self.first = ticked(&value);
            } else if let Some(source) = sources.iter().find(|s| s.id == key)
                && ticked(&value)
                && !self.checked.contains(&source.id)
            {
                self.checked.push(source.id.clone());
            }
        }
        // Keep the configured order whatever order the parameters came in.
        self.checked
            .sort_by_key(|id| sources.iter().position(|s| &s.id == id));
    }

    pub fn is_checked(&self, source_id: &str) -> bool {
        self.checked.iter().any(|c| c == source_id)
    }
}

/// A checkbox sends "on" when ticked (and nothing when not); accept the usual spellings of
/// "no" for hand-made requests.
fn ticked(value: &str) -> bool {
    !matches!(
        value.to_ascii_lowercase().as_str(),
        "off" | "false" | "0" | "no"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::FeedLocation;

    fn sources() -> Vec<Source> {
        ["cnn", "bbc", "nyt"]
            .iter()
            .map(|id| Source {
                id: (*id).into(),
                name: id.to_uppercase(),
                feeds: vec![FeedLocation::Url("http://x".into())],
            })
            .collect()
    }

    #[test]
    fn query_string_alone() {
        let mut f = Form::default();
        f.absorb(b"term=house&cnn=on&bbc=on&nyt=on", &sources());
        assert_eq!(
            f,
            Form {
                term: Some("house".into()),
                checked: vec!["cnn".into(), "bbc".into(), "nyt".into()],
                first: false
            }
        );
    }

    #[test]
    fn body_term_wins_and_boxes_merge_in_source_order() {
        let s = sources();
        let mut f = Form::default();
        f.absorb(b"term=old&nyt=on", &s);
        f.absorb(b"term=White+House%21&first=on&cnn=on&unknown=on", &s);
        assert_eq!(f.term.as_deref(), Some("White House!"));
        assert_eq!(f.checked, ["cnn", "nyt"]);
        assert!(f.first);
    }

    #[test]
    fn unticked_spellings() {
        let mut f = Form::default();
        f.absorb(b"cnn=off&bbc=0&nyt=false&first=no", &sources());
        assert!(f.checked.is_empty());
        assert!(!f.first);
    }
}
