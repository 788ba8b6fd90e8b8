//! Grafana Pyroscope's ingestion formats, as its documentation states them (the protocol
//! facts are in `shared/reference/next-capabilities.md` §3):
//!
//! - **Push** (Connect, stable public API): `POST /push.v1.PusherService/Push` with
//!   `Content-Type: application/proto` and a `PushRequest` body: series of labels
//!   (`__name__` such as `process_cpu`, `service_name`, ...) each with raw samples holding
//!   gzipped pprof bytes. Connect unary calls are plain HTTP/1.1 POSTs, no gRPC framing.
//! - **Ingest** (the older API): `POST /ingest?name=APP{k=v,...}&from=S&until=S&format=pprof`
//!   with a `multipart/form-data` body whose `profile` file field holds the pprof bytes.
//!
//! The messages are declared here with prost's derive, field numbers as in
//! `api/push/v1/push.proto` and `api/types/v1/types.proto`.

use std::fmt::Write as _;

use prost::Message;

pub const PUSH_PATH: &str = "/push.v1.PusherService/Push";
pub const INGEST_PATH: &str = "/ingest";

/// `push.v1.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

/// `push.v1.RawProfileSeries`: one label set and its profiles.
#[derive(Clone, PartialEq, Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

/// `types.v1.LabelPair`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `push.v1.RawSample`: gzipped pprof bytes and an id unique to this profile.
#[derive(Clone, PartialEq, Message)]
pub struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    pub id: String,
}

/// The body of a Push call: one series with one profile.
pub fn push_body(labels: &[(String, String)], pprof_gz: Vec<u8>, id: String) -> Vec<u8> {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: labels
                .iter()
                .map(|(name, value)| LabelPair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: vec![RawSample {
                raw_profile: pprof_gz,
                id,
            }],
        }],
    }
    .encode_to_vec()
}

/// Whether `name` is a label name Pyroscope (Prometheus' rules) accepts.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The query of an `/ingest` call. With `format=pprof` the name is a prefix (Pyroscope names
/// the series `APP.cpu` and so on from the sample types) and the labels ride in braces.
/// `__name__` is Push's and is left out.
pub fn ingest_query(service: &str, labels: &[(String, String)], from: u64, until: u64) -> String {
    let mut name = format!("{}{{", ingest_safe(service));
    let mut first = true;
    for (k, v) in labels {
        if k == "__name__" || k == "service_name" {
            continue;
        }
        if !first {
            name.push(',');
        }
        first = false;
        let _ = write!(name, "{k}={}", ingest_safe(v));
    }
    name.push('}');
    form_urlencoded::Serializer::new(String::new())
        .append_pair("name", &name)
        .append_pair("from", &from.to_string())
        .append_pair("until", &until.to_string())
        .append_pair("format", "pprof")
        .append_pair("spyName", "profiler")
        .finish()
}

/// The ingest name syntax gives `{`, `}`, `,` and `=` a meaning: they cannot be in a value.
fn ingest_safe(s: &str) -> String {
    s.chars()
        .map(|c| if "{},=".contains(c) { '_' } else { c })
        .collect()
}

/// A `multipart/form-data` body with the profile as the `profile` file field; returns the
/// body and its content type.
pub fn ingest_body(pprof_gz: &[u8], boundary: &str) -> (Vec<u8>, String) {
    let mut body = Vec::with_capacity(pprof_gz.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(pprof_gz);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// 16 random bytes as a version-4 UUID string, for `RawSample.ID` and multipart boundaries.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most len bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Unique is what matters, not unpredictable: time and pid will do.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_body_round_trips_with_the_documented_field_numbers() {
        let labels = vec![
            ("__name__".to_string(), "process_cpu".to_string()),
            ("service_name".to_string(), "search-server".to_string()),
        ];
        let bytes = push_body(&labels, vec![0x1f, 0x8b, 1, 2], "id-1".into());
        // Field 1 (series), length-delimited: tag byte 0x0a.
        assert_eq!(bytes[0], 0x0a);
        let back = PushRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.series.len(), 1);
        assert_eq!(back.series[0].labels[0].name, "__name__");
        assert_eq!(back.series[0].labels[1].value, "search-server");
        assert_eq!(
            back.series[0].samples[0].raw_profile,
            vec![0x1f, 0x8b, 1, 2]
        );
        assert_eq!(back.series[0].samples[0].id, "id-1");
    }

    #[test]
    fn label_names_and_ingest_names() {
        assert!(valid_label_name("env"));
        assert!(valid_label_name("_x9"));
        assert!(!valid_label_name("9x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
        let q = ingest_query(
            "search-server",
            &[
                ("__name__".into(), "process_cpu".into()),
                ("env".into(), "a,b".into()),
                ("pid".into(), "42".into()),
            ],
            100,
            115,
        );
        let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs[0],
            ("name".into(), "search-server{env=a_b,pid=42}".into())
        );
        assert!(pairs.contains(&("format".into(), "pprof".into())));
        assert!(pairs.contains(&("from".into(), "100".into())));
        assert!(pairs.contains(&("until".into(), "115".into())));
    }

    #[test]
    fn multipart_and_ids() {
        let (body, ct) = ingest_body(b"PPROF", "b0und");
        assert_eq!(ct, "multipart/form-data; boundary=b0und");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("--b0und\r\n"));
        assert!(text.contains("name=\"profile\""));
        assert!(text.ends_with("PPROF\r\n--b0und--\r\n"));
        let a = random_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, random_id());
    }
}
