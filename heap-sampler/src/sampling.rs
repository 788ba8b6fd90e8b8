//! The sampling math: how far the next sample is, and how many bytes a sample stands for.
//!
//! Sampling is a Poisson process over allocated bytes, as in Go (`runtime.MemProfileRate`,
//! `nextSample` in src/runtime/malloc.go) and tcmalloc: the distance to the next sampled byte is
//! drawn from an exponential distribution with mean `rate`. An allocation of `size` bytes
//! that crosses the sample point is sampled, and the distance is drawn afresh (not carried
//! over), so by memorylessness each allocation is sampled independently with probability
//!
//! ```text
//! p(size) = 1 - exp(-size / rate)
//! ```
//!
//! and the unbiased estimate for one sampled allocation is `1/p` objects and `size/p` bytes.
//! That is Go's `scaleHeapSample` (src/runtime/pprof/protomem.go): for a bucket of `count`
//! samples totalling `size` bytes, `scale = 1 / (1 - exp(-(size/count) / rate))` and the bucket
//! reports `count * scale` objects and `size * scale` bytes.
//!
//! Choice for the `alloc` probe: it carries the weight in bytes, `size / p(size)`, computed
//! here per sample with the rate in force when the sample was taken, rather than the rate and
//! leaving the reader to compute. The weight is exact per sample even when the rate changes at
//! run time, and a reader needs no floating point. A reader gets the object estimate as
//! `weight / size` (that is `1/p`). Go's per-bucket formula on average sizes is
//! [`scale_heap_sample`], for readers that aggregate samples before scaling.

/// Go's default `MemProfileRate`: one sample per 512 KiB allocated, on average.
pub const DEFAULT_RATE: u64 = 512 * 1024;

/// The countdown after a sample when sampling is disabled (rate 0): large enough to cost
/// nothing, small enough that a rate set later takes effect within a GiB of allocation.
pub(crate) const DISABLED_COUNTDOWN: i64 = 1 << 30;

/// The bytes one sampled allocation of `size` bytes stands for: `size / (1 - exp(-size/rate))`.
/// With `rate <= 1` every allocation is sampled (Go's `MemProfileRate = 1`), so the weight is
/// the size itself.
pub fn sample_weight(size: u64, rate: u64) -> u64 {
    if rate <= 1 || size == 0 {
        return size;
    }
    let p = probability(size as f64, rate as f64);
    (size as f64 / p).round() as u64
}

/// Go's `scaleHeapSample`: the unbiased (objects, bytes) for `count` sampled allocations
/// totalling `bytes`, sampled at `rate`. Uses the average size of the bucket, as Go does.
pub fn scale_heap_sample(count: u64, bytes: u64, rate: u64) -> (f64, f64) {
    if count == 0 || bytes == 0 {
        return (0.0, 0.0);
    }
    if rate <= 1 {
        return (count as f64, bytes as f64);
    }
    let avg = bytes as f64 / count as f64;
    let scale = 1.0 / probability(avg, rate as f64);
    (count as f64 * scale, bytes as f64 * scale)
}

/// `1 - exp(-size/rate)`, computed as `-expm1(-x)` so that small sizes keep their precision.
fn probability(size: f64, rate: f64) -> f64 {
    -(-size / rate).exp_m1()
}

/// The bytes to allocate before the next sample: an exponential draw with mean `rate`.
pub(crate) fn next_countdown(rng: &mut Xorshift, rate: u64) -> i64 {
    match rate {
        0 => DISABLED_COUNTDOWN,
        // Every allocation is sampled: any size crosses a countdown of 0.
        1 => 0,
        _ => {
            // u in (0, 1], so ln(u) is finite; `as` saturates the rare huge draw.
            let u = ((rng.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
            (-u.ln() * rate as f64) as i64
        }
    }
}

/// xorshift64*: a few instructions per draw, no state beyond one word, good enough to place
/// samples. Seeded per thread; a zero state is never used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Xorshift(u64);

impl Xorshift {
    /// Mixes `seed` (splitmix64 finaliser) so that nearby seeds (thread-local addresses, a
    /// counter) give unrelated streams.
    pub(crate) fn seeded(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(z | 1)
    }

    pub(crate) fn state(self) -> u64 {
        self.0
    }

    pub(crate) fn from_state(state: u64) -> Self {
        Self(state | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_of_a_small_block_is_about_the_rate() {
        // p(64) ≈ 64/rate, so the weight ≈ rate + size/2.
        let w = sample_weight(64, DEFAULT_RATE);
        assert!((DEFAULT_RATE..DEFAULT_RATE + 64).contains(&w), "{w}");
    }

    #[test]
    fn weight_of_a_huge_block_is_its_size() {
        let size = 64 * DEFAULT_RATE;
        assert_eq!(sample_weight(size, DEFAULT_RATE), size);
    }

    #[test]
    fn rate_one_samples_everything_at_face_value() {
        assert_eq!(sample_weight(100, 1), 100);
        assert_eq!(scale_heap_sample(3, 300, 1), (3.0, 300.0));
        let mut rng = Xorshift::seeded(7);
        assert_eq!(next_countdown(&mut rng, 1), 0);
    }

    #[test]
    fn go_formula_matches_per_sample_weight_for_equal_sizes() {
        let (objects, bytes) = scale_heap_sample(10, 10 * 4096, DEFAULT_RATE);
        let w = sample_weight(4096, DEFAULT_RATE) as f64;
        assert!((bytes - 10.0 * w).abs() < 10.0, "{bytes} vs {}", 10.0 * w);
        assert!((objects - bytes / 4096.0).abs() < 1e-9);
        assert_eq!(scale_heap_sample(0, 0, DEFAULT_RATE), (0.0, 0.0));
    }

    #[test]
    fn countdowns_have_the_rate_as_mean() {
        let mut rng = Xorshift::seeded(42);
        let n = 200_000;
        let sum: f64 = (0..n)
            .map(|_| next_countdown(&mut rng, DEFAULT_RATE) as f64)
            .sum();
        let mean = sum / n as f64;
        // The standard error of the mean of an exponential is rate/sqrt(n) ≈ 0.22% here.
        let err = (mean - DEFAULT_RATE as f64).abs() / DEFAULT_RATE as f64;
        assert!(err < 0.02, "mean {mean}");
    }

    #[test]
    fn disabled_sampling_waits_a_gib() {
        let mut rng = Xorshift::seeded(1);
        assert_eq!(next_countdown(&mut rng, 0), DISABLED_COUNTDOWN);
    }
}
