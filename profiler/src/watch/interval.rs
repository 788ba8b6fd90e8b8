//! One interval of `watch`: the figures two consecutive [`Snapshot`]s give, and their text
//! form (the `SCHED` and `ALLOC` lines, in the spirit of Go's schedtrace and gctrace, and one
//! line per thread with `--detail`) and JSON form. Pure: no I/O.
//!
//! Rates in the `SCHED` and `ALLOC` lines are per second; amounts in the thread lines are for
//! the interval (as scheddetail shows a state, not a rate). A figure that could not be read
//! prints as `-` (JSON `null`).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::snapshot::{ProbeCounts, Snapshot};
use crate::trace::summary::LatencyHistogram;

/// Why the last interval ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    /// The target exited.
    Exited,
    /// Ctrl-C.
    Interrupted,
}

impl End {
    pub fn word(self) -> &'static str {
        match self {
            End::Exited => "exited",
            End::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    /// Since the watch started, at the end of this interval.
    pub elapsed_ms: u64,
    pub interval_ms: u64,
    pub pid: u32,
    /// Set on a last, shorter interval.
    pub end: Option<End>,
    pub sched: SchedFigures,
    pub alloc: AllocFigures,
    /// With `--detail`: every thread alive at the end of the interval, by tid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Vec<ThreadFigures>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedFigures {
    pub cpus: Option<u32>,
    pub threads: Option<u64>,
    /// CPU time of the process over the interval, % of one CPU (user + system).
    pub cpu_pct: Option<f64>,
    pub usr_pct: Option<f64>,
    pub sys_pct: Option<f64>,
    /// Threads on a CPU, on average over the interval.
    pub running: Option<f64>,
    /// Threads runnable but waiting for a CPU, on average.
    pub runnable: Option<f64>,
    /// Run-queue latency (wake-up or preemption to running) of the waits that ended in the
    /// interval.
    pub rqlat_count: u64,
    pub rqlat_p50_ns: Option<u64>,
    pub rqlat_p99_ns: Option<u64>,
    pub rqlat_max_ns: Option<u64>,
    pub vcsw_per_s: f64,
    pub ivcsw_per_s: f64,
    pub migr_per_s: f64,
}

/// Where the allocation figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocSource {
    /// The heap sampler's exact counters, read from the target's memory.
    HeapSampler,
    /// Uprobes on the allocator's functions, counting every call (`--alloc-probes`).
    AllocProbes,
    /// None: memory and page faults only.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllocFigures {
    pub source: AllocSource,
    pub allocs_per_s: Option<f64>,
    pub frees_per_s: Option<f64>,
    pub alloc_bytes_per_s: Option<f64>,
    /// Bytes allocated and not freed (exact with the heap sampler), and the change over the
    /// interval.
    pub live_bytes: Option<u64>,
    pub live_delta_bytes: Option<i64>,
    pub rss_bytes: Option<u64>,
    pub rss_delta_bytes: Option<i64>,
    pub anon_bytes: Option<u64>,
    pub minflt_per_s: Option<f64>,
    pub majflt_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadFigures {
    pub tid: u32,
    pub name: String,
    pub state: String,
    pub last_cpu: Option<u32>,
    /// On a CPU during the interval, ns.
    pub oncpu_ns: u64,
    /// Runnable but waiting for a CPU during the interval, ns.
    pub runqueue_ns: u64,
    pub vcsw: u64,
    pub ivcsw: u64,
    pub migr: u64,
    /// Where it last blocked: the leaf user function and the first caller outside the system
    /// libraries and Rust's standard library (`read<-app::serve`).
    pub wait: Option<String>,
    /// The user frames it last blocked in, leaf first (functions, inlined ones included).
    pub wait_frames: Vec<String>,
}

/// What the interval computation needs besides the two snapshots.
pub struct Context<'a> {
    pub pid: u32,
    /// Since the watch started, at `cur`.
    pub elapsed: Duration,
    pub end: Option<End>,
    pub detail: bool,
    /// Symbolized wait frames by tid (function names, leaf first).
    pub waits: &'a HashMap<u32, Vec<String>>,
}

impl Interval {
    pub fn between(prev: &Snapshot, cur: &Snapshot, ctx: &Context<'_>) -> Self {
        let span = match (prev.at, cur.at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        let secs = span.as_secs_f64().max(1e-9);
        let ns = secs * 1e9;
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;

        let (pp, cp) = (prev.process.as_ref(), cur.process.as_ref());
        let both = pp.zip(cp);
        let pct = |f: fn(&super::snapshot::ProcessStats) -> u64| {
            both.map(|(a, b)| 100.0 * f(b).saturating_sub(f(a)) as f64 / ns)
        };
        let usr_pct = pct(|p| p.user_ns);
        let sys_pct = pct(|p| p.system_ns);
        // Threads alive at both reads; a thread born in between counts from zero.
        let sum = |f: fn(&super::snapshot::ThreadStats) -> u64| -> u64 {
            cur.threads
                .iter()
                .map(|(tid, t)| f(t).saturating_sub(prev.threads.get(tid).map_or(0, f)))
                .sum()
        };
        let have_threads = !cur.threads.is_empty();
        let running = have_threads.then(|| sum(|t| t.oncpu_ns) as f64 / ns);
        let runnable = have_threads.then(|| sum(|t| t.runqueue_ns) as f64 / ns);

        let (s0, s1) = (&prev.sched, &cur.sched);
        let buckets: Vec<u64> = s1
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(s0.latency_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let hist = LatencyHistogram::from_buckets(
            &buckets,
            s1.latency_sum_ns.saturating_sub(s0.latency_sum_ns),
            s1.latency_max_ns,
        );
        let (v0, i0, m0) = s0.totals(ctx.pid);
        let (v1, i1, m1) = s1.totals(ctx.pid);
        let sched = SchedFigures {
            cpus: cp.and_then(|p| p.cpus),
            threads: cp.map(|p| p.threads),
            cpu_pct: usr_pct.zip(sys_pct).map(|(u, s)| u + s),
            usr_pct,
            sys_pct,
            running,
            runnable,
            rqlat_count: hist.count(),
            rqlat_p50_ns: hist.quantile(0.5),
            rqlat_p99_ns: hist.quantile(0.99),
            rqlat_max_ns: hist.max(),
            vcsw_per_s: rate(v0, v1),
            ivcsw_per_s: rate(i0, i1),
            migr_per_s: rate(m0, m1),
        };

        let heap = prev.heap.zip(cur.heap);
        let probes = prev.probes.zip(cur.probes);
        let delta = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b as i64 - a as i64);
        let rss = |s: &Snapshot| s.process.as_ref().and_then(|p| p.rss_bytes);
        // Both sources count the same three things; the live heap only the sampler knows.
        let counts = |h: fn(&heap_sampler::Totals) -> u64, p: fn(&ProbeCounts) -> u64| {
            heap.map(|(a, b)| rate(h(&a), h(&b)))
                .or_else(|| probes.map(|(a, b)| rate(p(&a), p(&b))))
        };
        let alloc = AllocFigures {
            source: if cur.heap.is_some() {
                AllocSource::HeapSampler
            } else if cur.probes.is_some() {
                AllocSource::AllocProbes
            } else {
                AllocSource::None
            },
            allocs_per_s: counts(|t| t.allocs, |p| p.allocs),
            frees_per_s: counts(|t| t.frees, |p| p.frees),
            alloc_bytes_per_s: counts(|t| t.alloc_bytes, |p| p.alloc_bytes),
            live_bytes: cur.heap.map(|h| h.live_bytes()),
            live_delta_bytes: heap.map(|(a, b)| b.live_bytes() as i64 - a.live_bytes() as i64),
            rss_bytes: rss(cur),
            rss_delta_bytes: delta(rss(prev), rss(cur)),
            anon_bytes: cp.and_then(|p| p.anon_bytes),
            minflt_per_s: both.map(|(a, b)| rate(a.minflt, b.minflt)),
            majflt_per_s: both.map(|(a, b)| rate(a.majflt, b.majflt)),
        };

        let threads = ctx.detail.then(|| {
            cur.threads
                .iter()
                .map(|(&tid, t)| {
                    let before = prev.threads.get(&tid);
                    let k1 = s1.threads.get(&tid);
                    let k0 = s0.threads.get(&tid);
                    let count = |f: fn(&crate::record::sched::ThreadSched) -> u64| {
                        k1.map_or(0, f).saturating_sub(k0.map_or(0, f))
                    };
                    let frames = ctx.waits.get(&tid).cloned().unwrap_or_default();
                    ThreadFigures {
                        tid,
                        name: t.name.clone(),
                        state: t.state.to_string(),
                        last_cpu: t.last_cpu,
                        oncpu_ns: t.oncpu_ns.saturating_sub(before.map_or(0, |b| b.oncpu_ns)),
                        runqueue_ns: t
                            .runqueue_ns
                            .saturating_sub(before.map_or(0, |b| b.runqueue_ns)),
                        vcsw: count(|k| k.voluntary),
                        ivcsw: count(|k| k.involuntary),
                        migr: count(|k| k.migrations),
                        wait: wait_site(&frames),
                        wait_frames: frames,
                    }
                })
                .collect()
        });

        Interval {
            elapsed_ms: ctx.elapsed.as_millis() as u64,
            interval_ms: span.as_millis() as u64,
            pid: ctx.pid,
            end: ctx.end,
            sched,
            alloc,
            threads,
        }
    }
}

/// `leaf<-caller`: the function a thread blocked in and the first caller that is the
/// program's own (not the C library, the loader, or Rust's standard library).
pub fn wait_site(frames: &[String]) -> Option<String> {
    let leaf = frames.first()?;
    let own = |f: &&String| {
        ![
            "std::", "core::", "alloc::", "<std::", "<core::", "<alloc::",
        ]
        .iter()
        .any(|p| f.starts_with(p))
            && !f.starts_with("__")
            && !f.contains('+')
    };
    let caller = frames.iter().skip(1).find(own);
    let short = |f: &str| plain(f).to_string();
    Some(match caller {
        Some(c) => format!("{}<-{}", short(leaf), short(c)),
        None => short(leaf),
    })
}

/// `crate::f::h0123456789abcdef` → `crate::f`.
fn plain(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

// ---- Text lines ----

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// 14us, 3.1ms, 1.20s (no spaces, so awk sees one field).
pub fn duration(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.0}us", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// 310, 182.0k, 3.2M.
pub fn count(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{:.1}M", v / 1e6)
    }
}

/// 512B, 4.0KiB, 41.2MiB, 1.50GiB; negative for a shrink.
pub fn bytes(v: f64) -> String {
    let a = v.abs();
    if a < 1024.0 {
        format!("{v:.0}B")
    } else if a < 1024.0 * 1024.0 {
        format!("{:.1}KiB", v / 1024.0)
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}MiB", v / (1024.0 * 1024.0))
    } else {
        format!("{:.2}GiB", v / (1024.0 * 1024.0 * 1024.0))
    }
}

fn signed_bytes(v: i64) -> String {
    if v >= 0 {
        format!("+{}", bytes(v as f64))
    } else {
        bytes(v as f64)
    }
}

fn with_delta(v: Option<u64>, d: Option<i64>) -> String {
    match (v, d) {
        (Some(v), Some(d)) => format!("{}({})", bytes(v as f64), signed_bytes(d)),
        (Some(v), None) => bytes(v as f64),
        _ => "-".into(),
    }
}

impl fmt::Display for Interval {
    /// The `SCHED` line, the `ALLOC` line, and with `--detail` a line per thread.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.sched;
        let pct = |v: Option<f64>| opt(v, |v| format!("{v:.0}%"));
        let avg = |v: Option<f64>| opt(v, |v| format!("{v:.2}"));
        let lat = |v: Option<u64>| opt(v, duration);
        write!(
            f,
            "SCHED {}ms: cpus={} threads={} cpu={} usr={} sys={} running={} runnable={} \
             rqlat_p50={} rqlat_p99={} rqlat_max={} vcsw={} ivcsw={} migr={}",
            self.elapsed_ms,
            opt(s.cpus, |v| v.to_string()),
            opt(s.threads, |v| v.to_string()),
            pct(s.cpu_pct),
            pct(s.usr_pct),
            pct(s.sys_pct),
            avg(s.running),
            avg(s.runnable),
            lat(s.rqlat_p50_ns),
            lat(s.rqlat_p99_ns),
            lat(s.rqlat_max_ns),
            count(s.vcsw_per_s),
            count(s.ivcsw_per_s),
            count(s.migr_per_s),
        )?;
        if let Some(end) = self.end {
            write!(f, " end={}", end.word())?;
        }
        writeln!(f)?;
        let a = &self.alloc;
        write!(f, "ALLOC {}ms: source=", self.elapsed_ms)?;
        match a.source {
            AllocSource::HeapSampler => write!(
                f,
                "heap-sampler allocs={} frees={} alloc_bytes={} live={} ",
                opt(a.allocs_per_s, count),
                opt(a.frees_per_s, count),
                opt(a.alloc_bytes_per_s, bytes),
                with_delta(a.live_bytes, a.live_delta_bytes),
            )?,
            AllocSource::AllocProbes => write!(
                f,
                "alloc-probes allocs={} frees={} alloc_bytes={} ",
                opt(a.allocs_per_s, count),
                opt(a.frees_per_s, count),
                opt(a.alloc_bytes_per_s, bytes),
            )?,
            AllocSource::None => write!(f, "none ")?,
        }
        writeln!(
            f,
            "rss={} anon={} minflt={} majflt={}",
            with_delta(a.rss_bytes, a.rss_delta_bytes),
            opt(a.anon_bytes, |v| bytes(v as f64)),
            opt(a.minflt_per_s, count),
            opt(a.majflt_per_s, count),
        )?;
        for t in self.threads.iter().flatten() {
            writeln!(
                f,
                "  T{} {:?} state={} cpu={} oncpu={} rq={} vcsw={} ivcsw={} migr={} wait={}",
                t.tid,
                t.name,
                t.state,
                opt(t.last_cpu, |c| c.to_string()),
                duration(t.oncpu_ns),
                duration(t.runqueue_ns),
                t.vcsw,
                t.ivcsw,
                t.migr,
                t.wait.as_deref().unwrap_or("-"),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::record::sched::{SchedReading, ThreadSched};
    use crate::watch::snapshot::{ProcessStats, ThreadStats};
    use profiler_ebpf::sched::{LATENCY_BUCKETS, latency_bucket};

    const PID: u32 = 4242;
    const MS: u64 = 1_000_000;

    fn thread(name: &str, oncpu_ns: u64, runqueue_ns: u64) -> ThreadStats {
        ThreadStats {
            name: name.into(),
            state: 'S',
            last_cpu: Some(1),
            oncpu_ns,
            runqueue_ns,
        }
    }

    fn snapshot(at: Instant, scale: u64, latencies: &[u64], max: u64) -> Snapshot {
        let mut sched = SchedReading {
            latency_buckets: vec![0; LATENCY_BUCKETS],
            latency_max_ns: max,
            ..SchedReading::default()
        };
        for &l in latencies {
            sched.latency_buckets[latency_bucket(l)] += 1;
            sched.latency_count += 1;
            sched.latency_sum_ns += l;
        }
        sched.threads.insert(
            PID,
            ThreadSched {
                pid: PID,
                voluntary: 100 * scale,
                involuntary: 10 * scale,
                migrations: scale,
                wait_ips: vec![],
                exited: false,
            },
        );
        Snapshot {
            at: Some(at),
            process: Some(ProcessStats {
                cpus: Some(2),
                threads: 2,
                user_ns: 900 * MS * scale,
                system_ns: 100 * MS * scale,
                minflt: 50 * scale,
                majflt: 0,
                rss_bytes: Some((10 + scale) << 20),
                anon_bytes: Some(8 << 20),
            }),
            threads: BTreeMap::from([
                (PID, thread("main", 100 * MS * scale, 5 * MS * scale)),
                (PID + 1, thread("spin", 900 * MS * scale, 20 * MS * scale)),
            ]),
            sched,
            heap: None,
            probes: None,
        }
    }

    #[test]
    fn figures_are_deltas_per_second() {
        let t0 = Instant::now();
        let a = snapshot(t0, 1, &[10_000, 20_000], 20_000);
        let b = snapshot(
            t0 + Duration::from_secs(2),
            3,
            &[10_000, 20_000, 12_000, 13_000, 14_000, 3_000_000],
            3_000_000,
        );
        let waits = HashMap::from([(
            PID,
            vec![
                "__futex_abstimed_wait_common".to_string(),
                "std::sync::Condvar::wait".to_string(),
                "app::queue::pop::h0123456789abcdef".to_string(),
            ],
        )]);
        let i = Interval::between(
            &a,
            &b,
            &Context {
                pid: PID,
                elapsed: Duration::from_secs(3),
                end: None,
                detail: true,
                waits: &waits,
            },
        );
        let s = &i.sched;
        // 2 s of 1.8 s user + 0.2 s system per second of scale.
        assert_eq!(s.cpu_pct, Some(100.0));
        assert_eq!(s.usr_pct, Some(90.0));
        assert_eq!(s.running, Some(1.0));
        assert_eq!(s.runnable, Some(0.025));
        assert_eq!(
            (s.vcsw_per_s, s.ivcsw_per_s, s.migr_per_s),
            (100.0, 10.0, 1.0)
        );
        assert_eq!(s.rqlat_count, 4);
        assert_eq!(s.rqlat_max_ns, Some(3_000_000));
        // The median of 12, 13, 14 us and 3 ms: the top of 13 us's bucket.
        assert!((13_000..13_500).contains(&s.rqlat_p50_ns.unwrap()), "{s:?}");
        assert_eq!(i.alloc.rss_delta_bytes, Some(2 << 20));
        assert_eq!(i.alloc.minflt_per_s, Some(50.0));
        let threads = i.threads.as_ref().unwrap();
        assert_eq!(threads[0].oncpu_ns, 200 * MS);
        assert_eq!(threads[0].vcsw, 200);
        assert_eq!(
            threads[0].wait.as_deref(),
            Some("__futex_abstimed_wait_common<-app::queue::pop")
        );
        let text = i.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SCHED 3000ms: cpus=2 threads=2 cpu=100% usr=90% sys=10% running=1.00 runnable=0.03 \
             rqlat_p50=13us rqlat_p99=3.0ms rqlat_max=3.0ms vcsw=100 ivcsw=10 migr=1"
        );
        assert_eq!(
            lines[1],
            "ALLOC 3000ms: source=none rss=13.0MiB(+2.0MiB) anon=8.0MiB minflt=50 majflt=0"
        );
        assert!(
            lines[2].starts_with("  T4242 \"main\" state=S cpu=1 oncpu=200.0ms rq=10.0ms vcsw=200"),
            "{}",
            lines[2]
        );
        // Every key=value field is one awk field.
        for l in &lines[..2] {
            for field in l.split(' ').skip(2) {
                assert!(field.contains('='), "{field:?} in {l}");
            }
        }
    }

    #[test]
    fn a_gone_process_prints_dashes_not_errors() {
        let t0 = Instant::now();
        let a = snapshot(t0, 1, &[], 0);
        let b = Snapshot {
            at: Some(t0 + Duration::from_millis(300)),
            sched: a.sched.clone(),
            ..Snapshot::default()
        };
        let i = Interval::between(
            &a,
            &b,
            &Context {
                pid: PID,
                elapsed: Duration::from_millis(1300),
                end: Some(End::Exited),
                detail: false,
                waits: &HashMap::new(),
            },
        );
        let text = i.to_string();
        assert!(
            text.starts_with("SCHED 1300ms: cpus=- threads=- cpu=- usr=- sys=- running=- "),
            "{text}"
        );
        assert!(
            text.lines().next().unwrap().ends_with(" end=exited"),
            "{text}"
        );
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(json["end"], "exited");
        assert!(json["sched"]["cpu_pct"].is_null());
        assert!(json.get("threads").is_none());
    }

    #[test]
    fn units_for_people() {
        assert_eq!(duration(950), "950ns");
        assert_eq!(duration(14_200), "14us");
        assert_eq!(duration(3_100_000), "3.1ms");
        assert_eq!(count(310.0), "310");
        assert_eq!(count(182_000.0), "182.0k");
        assert_eq!(bytes(41.2 * 1024.0 * 1024.0), "41.2MiB");
        assert_eq!(signed_bytes(-2048), "-2.0KiB");
        assert_eq!(wait_site(&[]), None);
        assert_eq!(
            wait_site(&["read".into(), "std::io::Read::read".into()]).as_deref(),
            Some("read")
        );
    }
}
