//! Which customer the next request is for: a small deterministic PRNG (SplitMix64, one per
//! requester, seeded by its index so runs are repeatable) and the key skew, uniform or Zipf.
//!
//! Zipf(s) over N customers: rank k (1-based) has weight 1/k^s. The cumulative weights are
//! computed once (8 bytes per customer) and sampled by binary search; ranks are mapped to
//! customers through a fixed scatter so the hot customers are not all neighbours in the key
//! space (or in the table). `zipf:0` is uniform.

use std::str::FromStr;

/// SplitMix64: tiny, fast, good enough to pick keys (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// The key distribution of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Skew {
    Uniform,
    Zipf(f64),
}

impl FromStr for Skew {
    type Err = String;

    fn from_str(s: &str) -> Result<Skew, String> {
        if s == "uniform" {
            return Ok(Skew::Uniform);
        }
        match s.strip_prefix("zipf:").map(str::parse::<f64>) {
            Some(Ok(x)) if x.is_finite() && x >= 0.0 => Ok(if x == 0.0 {
                Skew::Uniform
            } else {
                Skew::Zipf(x)
            }),
            _ => Err(format!(
                "--skew {s}: expected uniform or zipf:<s> with s >= 0 (e.g. zipf:1.1)"
            )),
        }
    }
}

impl std::fmt::Display for Skew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skew::Uniform => f.write_str("uniform"),
            Skew::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Picks customer indexes `0..n` under a skew.
#[derive(Debug)]
pub struct KeyPicker {
    n: usize,
    /// Zipf only: cumulative weights of ranks 1..=n, normalised to end at 1.
    cdf: Vec<f64>,
    /// Step of the rank → customer scatter, coprime to n.
    step: u128,
}

impl KeyPicker {
    pub fn new(n: usize, skew: Skew) -> KeyPicker {
        let n = n.max(1);
        let cdf = match skew {
            Skew::Uniform => Vec::new(),
            Skew::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=n)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                cdf
            }
        };
        let mut step: u128 = 0x9E37_79B9_7F4A_7C15 % n as u128;
        while step == 0 || gcd(step, n as u128) != 1 {
            step += 1;
        }
        KeyPicker { n, cdf, step }
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.cdf.is_empty() {
            return rng.below(self.n);
        }
        let u = rng.next_f64();
        let rank = self.cdf.partition_point(|c| *c < u).min(self.n - 1);
        self.scatter(rank)
    }

    /// A fixed bijection of `0..n` (multiplication by a large odd constant modulo n would not be
    /// one for every n; an affine map with a step coprime to n is).
    fn scatter(&self, rank: usize) -> usize {
        ((rank as u128 * self.step + 7) % self.n as u128) as usize
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_makes_a_few_customers_hot_and_uniform_does_not() {
        let mut rng = Rng::new(1);
        let zipf = KeyPicker::new(1000, Skew::Zipf(1.1));
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.pick(&mut rng)] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = counts[..10].iter().sum();
        assert!(top10 > 30_000, "top 10 of 1000 got {top10} of 100000");

        let uniform = KeyPicker::new(1000, Skew::Uniform);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[uniform.pick(&mut rng)] += 1;
        }
        assert!(counts.iter().all(|c| *c > 40 && *c < 200));
    }

    #[test]
    fn scatter_is_a_permutation() {
        for n in [1usize, 2, 7, 10, 1000, 1024] {
            let p = KeyPicker::new(n, Skew::Zipf(1.0));
            let mut seen = vec![false; n];
            for r in 0..n {
                seen[p.scatter(r)] = true;
            }
            assert!(seen.iter().all(|s| *s), "n = {n}");
        }
    }

    #[test]
    fn skew_parses() {
        assert_eq!("uniform".parse::<Skew>(), Ok(Skew::Uniform));
        assert_eq!("zipf:1.2".parse::<Skew>(), Ok(Skew::Zipf(1.2)));
        assert!("zipf:x".parse::<Skew>().is_err());
    }
}
