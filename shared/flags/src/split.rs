//! How a flag's subjects are shared among its variants, and which share a
//! subject falls in.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Flag;

/// Buckets a subject can fall in: shares are exact to 0.01%.
pub const BUCKETS: u32 = 10_000;

/// The bucket of `subject` for the flag `key`: the first 8 bytes of
/// SHA-256 over the key and the subject. The same on every replica, after
/// every restart and in every release (unlike std's hasher, whose output
/// is not promised to stay put), and independent between flags (a subject
/// in the first 10% of one flag is not in the first 10% of every flag).
pub fn bucket(key: &str, subject: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0])
        .chain_update(subject.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The remainder is < BUCKETS, so it fits.
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// The weight of each of a flag's variants, in its declared order (at
/// least one positive). Weights are relative: `v1:1,v2:3` is 25% and 75%.
///
/// Subjects are laid out over the buckets in the declared order of the
/// variants, so moving weight from the first variant to the second moves
/// subjects one way only: growing `v2` from 10% to 20% keeps the first 10%
/// where they were. Declare variants in the order a migration goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    weights: Vec<u32>,
}

impl Split {
    /// Parses `v2` (every subject) or `v1:80,v2:20` (weights) against the
    /// variants `flag` declares.
    pub fn parse(flag: &Flag, raw: &str) -> Result<Split, String> {
        let raw = raw.trim();
        let mut weights = vec![0u32; flag.variants.len()];
        let known = || flag.variants.join(", ");
        let index = |name: &str| {
            flag.variants
                .iter()
                .position(|v| *v == name)
                .ok_or_else(|| {
                    format!(
                        "{name:?} is not a variant of {} (one of: {})",
                        flag.key,
                        known()
                    )
                })
        };
        if !raw.contains([':', ',']) {
            weights[index(raw)?] = 1;
            return Ok(Split { weights });
        }
        let mut named = vec![false; flag.variants.len()];
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: expected variant:weight, such as v2:20"))?;
            let i = index(name.trim())?;
            if std::mem::replace(&mut named[i], true) {
                return Err(format!("{:?} is named twice", name.trim()));
            }
            weights[i] = weight
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= BUCKETS)
                .ok_or_else(|| {
                    format!("{part:?}: the weight must be a whole number from 0 to {BUCKETS}")
                })?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(format!(
                "{raw:?}: at least one variant needs a positive weight"
            ));
        }
        Ok(Split { weights })
    }

    /// Every subject in the first declared variant.
    pub fn first(flag: &Flag) -> Split {
        let mut weights = vec![0; flag.variants.len().max(1)];
        weights[0] = 1;
        Split { weights }
    }

    /// The variant of `flag` for a subject in `bucket`.
    pub fn variant(&self, flag: &Flag, bucket: u32) -> &'static str {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        let mut below = 0u64;
        let mut last = flag.variants.first().copied().unwrap_or_default();
        for (variant, weight) in flag.variants.iter().zip(&self.weights) {
            if *weight == 0 {
                continue;
            }
            below += u64::from(*weight);
            last = variant;
            if u64::from(bucket) * total < below * u64::from(BUCKETS) {
                return variant;
            }
        }
        last
    }

    /// Each variant's share in percent, in declared order.
    pub fn shares(&self, flag: &Flag) -> Vec<(&'static str, f64)> {
        let total: f64 = self.weights.iter().map(|w| f64::from(*w)).sum();
        flag.variants
            .iter()
            .zip(&self.weights)
            .map(|(v, w)| (*v, f64::from(*w) * 100.0 / total))
            .collect()
    }

    /// The split as the variants' weights, for display.
    pub fn display<'a>(&'a self, flag: &'a Flag) -> impl fmt::Display + 'a {
        DisplaySplit(self, flag)
    }
}

struct DisplaySplit<'a>(&'a Split, &'a Flag);

impl fmt::Display for DisplaySplit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (variant, weight) in self.1.variants.iter().zip(&self.0.weights) {
            if *weight == 0 {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{variant}:{weight}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAG: Flag = Flag {
        key: "checkout",
        description: "",
        variants: &["old", "new", "beta"],
        default: "old",
    };

    #[test]
    fn splits_parse_or_say_why_not() {
        assert_eq!(
            Split::parse(&FLAG, " new ").map(|s| s.weights),
            Ok(vec![0, 1, 0])
        );
        assert_eq!(
            Split::parse(&FLAG, "old:80, new:20").map(|s| s.weights),
            Ok(vec![80, 20, 0])
        );
        for (bad, says) in [
            ("gold", "not a variant"),
            ("old:80,gold:20", "not a variant"),
            ("old:80,old:20", "twice"),
            ("old:x", "whole number"),
            ("old:10001", "whole number"),
            ("old:0,new:0", "positive"),
            ("old,new", "variant:weight"),
        ] {
            let error = Split::parse(&FLAG, bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
        let split = Split::parse(&FLAG, "old:1,new:3").expect("valid");
        assert_eq!(
            split.shares(&FLAG),
            [("old", 25.0), ("new", 75.0), ("beta", 0.0)]
        );
        assert_eq!(split.display(&FLAG).to_string(), "old:1,new:3");
    }

    #[test]
    fn buckets_map_to_variants_in_declared_order() {
        let split = Split::parse(&FLAG, "old:30,new:70").expect("valid");
        assert_eq!(split.variant(&FLAG, 0), "old");
        assert_eq!(split.variant(&FLAG, 2_999), "old");
        assert_eq!(split.variant(&FLAG, 3_000), "new");
        assert_eq!(split.variant(&FLAG, BUCKETS - 1), "new");
        let all = Split::parse(&FLAG, "beta").expect("valid");
        assert!(
            (0..BUCKETS)
                .step_by(97)
                .all(|b| all.variant(&FLAG, b) == "beta")
        );
    }

    #[test]
    fn growing_a_share_moves_subjects_one_way_only() {
        let ten = Split::parse(&FLAG, "old:90,new:10").expect("valid");
        let twenty = Split::parse(&FLAG, "old:80,new:20").expect("valid");
        for subject in 0..2_000 {
            let b = bucket(FLAG.key, &format!("user-{subject}"));
            if ten.variant(&FLAG, b) == "new" {
                assert_eq!(twenty.variant(&FLAG, b), "new", "user-{subject} moved back");
            }
        }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Fixed values (SHA-256 computed elsewhere): a subject's bucket must
        // never change between releases, or subjects would change variant
        // on an upgrade.
        assert_eq!(bucket("checkout", "user-1"), 593);
        assert_eq!(bucket("checkout", "user-2"), 3_267);
        assert_ne!(bucket("checkout", "user-1"), bucket("payment", "user-1"));
        let mut counts = [0u32; 10];
        for subject in 0..10_000 {
            counts[(bucket("checkout", &subject.to_string()) / 1_000) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (900..1_100).contains(c)),
            "{counts:?}"
        );
    }
}
