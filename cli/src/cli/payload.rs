//! Deterministic payloads: every payload is a pure function of (seed, index, term), so the
//! verification pass regenerates what was written instead of keeping it in memory.
//!
//! Self-contained on purpose: the `peers` benchmark includes this file too, so both measure the
//! same bytes.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// What the payloads look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// Realistic key-value commands (`PUT user:123 {json}`, `DEL`, `CAS`), compressible like real traffic.
    Kv,
    /// Uniformly random bytes: incompressible, the worst case for the cold tier.
    Random,
    /// Lines of a file, replayed in order (one payload per non-empty line).
    File(PathBuf),
}

impl PayloadKind {
    /// Parses `kv`, `random`, or a file path (clap value parser).
    pub fn parse(s: &str) -> Result<PayloadKind, String> {
        match s {
            "kv" => Ok(PayloadKind::Kv),
            "random" => Ok(PayloadKind::Random),
            "" => Err("empty payload kind: use kv, random or a file path".into()),
            path => Ok(PayloadKind::File(PathBuf::from(path))),
        }
    }

    /// Name used in reports.
    pub fn label(&self) -> String {
        match self {
            PayloadKind::Kv => "kv".into(),
            PayloadKind::Random => "random".into(),
            PayloadKind::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// A small, fast PRNG (splitmix64); statistical quality is plenty for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift keeps the bias negligible without a division.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

const FIRST: &[&str] = &[
    "Erin", "Walter", "Aiko", "Mateo", "Priya", "Lars", "Chen", "Fatima", "Olga", "Kwame", "Sofia", "Diego",
];
const LAST: &[&str] = &[
    "Martinez", "Nakamura", "Okafor", "Schmidt", "Rossi", "Kowalski", "Haddad", "Larsen", "Singh", "Moreau",
];
const CITIES: &[&str] = &[
    "Osaka", "Lisbon", "Nairobi", "Denver", "Oslo", "Pune", "Lyon", "Quito",
];
const TAGS: &[&str] = &[
    "newsletter",
    "vip",
    "beta",
    "mobile",
    "churn-risk",
    "trial",
    "eu",
    "b2b",
];
const ITEMS: &[&str] = &[
    "sku-1042", "sku-2210", "sku-0087", "sku-7731", "sku-5150", "sku-3009",
];

/// Generates the payload of any (index, term) on demand.
#[derive(Clone, Debug)]
pub struct PayloadGen {
    kind: PayloadKind,
    seed: u64,
    size: usize,
    exact: bool,
    lines: Vec<Bytes>,
}

impl PayloadGen {
    /// A generator for `kind` with average payload size `size` (ignored for files).
    pub fn new(kind: PayloadKind, seed: u64, size: usize) -> Result<PayloadGen, String> {
        let lines = match &kind {
            PayloadKind::File(path) => read_lines(path)?,
            _ => Vec::new(),
        };
        Ok(PayloadGen {
            kind,
            seed,
            size,
            exact: false,
            lines,
        })
    }

    /// Makes every kv payload exactly `size` bytes (padded or cut) instead of varying by ±20 %.
    #[allow(dead_code)] // used by the peers benchmark, which includes this file
    pub fn exact_size(mut self) -> PayloadGen {
        self.exact = true;
        self
    }

    /// The same generator with another seed: `tierlog bench --workload many-groups` gives each
    /// Raft group its own, so groups do not hold identical logs.
    #[allow(dead_code)] // not used by the peers benchmark, which includes this file
    pub fn reseeded(&self, seed: u64) -> PayloadGen {
        PayloadGen { seed, ..self.clone() }
    }

    /// The seed.
    #[allow(dead_code)] // not used by the peers benchmark, which includes this file
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Report label of the payload kind.
    pub fn label(&self) -> String {
        self.kind.label()
    }

    /// The payload of the entry at `index` written in `term`.
    pub fn payload(&self, index: u64, term: u64) -> Bytes {
        let mut rng = Rng::new(self.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407) ^ term.rotate_left(32));
        match &self.kind {
            PayloadKind::Kv => Bytes::from(kv_command(&mut rng, index, self.size, self.exact)),
            PayloadKind::Random => {
                let mut v = Vec::with_capacity(self.size + 8);
                while v.len() < self.size {
                    v.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
                v.truncate(self.size);
                Bytes::from(v)
            }
            PayloadKind::File(_) => {
                let n = self.lines.len() as u64;
                self.lines[((index - 1).wrapping_add(term) % n) as usize].clone()
            }
        }
    }
}

fn read_lines(path: &Path) -> Result<Vec<Bytes>, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("cannot read payload file {}: {e}", path.display()))?;
    let lines: Vec<Bytes> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(Bytes::copy_from_slice)
        .collect();
    if lines.is_empty() {
        return Err(format!("payload file {} has no non-empty line", path.display()));
    }
    Ok(lines)
}

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len() as u64) as usize]
}

/// One KV command of about `target` bytes (±20 %, or exactly), padded with a session token or cut to size.
fn kv_command(rng: &mut Rng, index: u64, target: usize, exact: bool) -> Vec<u8> {
    use std::fmt::Write;
    let mut s = String::with_capacity(target + 64);
    let key = rng.below(1_000_000);
    let ts = 1_700_000_000_000 + index * 3 + rng.below(3);
    match rng.below(20) {
        0..=13 => {
            let (first, last) = (pick(rng, FIRST), pick(rng, LAST));
            let _ = write!(
                s,
                "PUT user:{key} {{\"name\":\"{first} {last}\",\"email\":\"{}.{}{}@example.com\",\"age\":{},\
                 \"city\":\"{}\",\"tags\":[\"{}\",\"{}\"],\"ts\":{ts},\"session\":\"",
                first.to_lowercase(),
                last.to_lowercase(),
                rng.below(1000),
                rng.range(18, 90),
                pick(rng, CITIES),
                pick(rng, TAGS),
                pick(rng, TAGS),
            );
        }
        14..=16 => {
            let _ = write!(
                s,
                "PUT cart:{key} {{\"items\":[{{\"sku\":\"{}\",\"qty\":{}}},{{\"sku\":\"{}\",\"qty\":{}}}],\
                 \"total\":{}.{:02},\"currency\":\"EUR\",\"ts\":{ts},\"session\":\"",
                pick(rng, ITEMS),
                rng.range(1, 5),
                pick(rng, ITEMS),
                rng.range(1, 5),
                rng.below(900),
                rng.below(100),
            );
        }
        17 | 18 => {
            let _ = write!(
                s,
                "CAS counter:{key} {{\"expected\":{},\"new\":{},\"ts\":{ts},\"session\":\"",
                rng.below(10_000),
                rng.below(10_000),
            );
        }
        _ => {
            let _ = write!(
                s,
                "DEL session:{key} {{\"reason\":\"logout\",\"ts\":{ts},\"session\":\""
            );
        }
    }
    let spread = rng.range(80, 120);
    let goal = if exact {
        target
    } else {
        (target as u64 * spread / 100) as usize
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = 0u64;
    let mut left = 0;
    while s.len() + 2 < goal {
        if left == 0 {
            bits = rng.next_u64();
            left = 16;
        }
        s.push(HEX[(bits & 15) as usize] as char);
        bits >>= 4;
        left -= 1;
    }
    s.push_str("\"}");
    let mut v = s.into_bytes();
    v.truncate(goal.max(1));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_deterministic_and_depend_on_term() {
        let g = PayloadGen::new(PayloadKind::Kv, 7, 256).unwrap();
        assert_eq!(g.payload(5, 1), g.payload(5, 1));
        assert_ne!(g.payload(5, 1), g.payload(5, 2));
        let avg: usize = (1..=1000).map(|i| g.payload(i, 1).len()).sum::<usize>() / 1000;
        assert!((220..=290).contains(&avg), "kv average {avg}");
        let text = String::from_utf8(g.payload(9, 1).to_vec()).unwrap();
        assert!(text.starts_with("PUT ") || text.starts_with("CAS ") || text.starts_with("DEL "));
        let e = PayloadGen::new(PayloadKind::Kv, 7, 256).unwrap().exact_size();
        assert!((1..200).all(|i| e.payload(i, 1).len() == 256));
        let r = PayloadGen::new(PayloadKind::Random, 7, 100).unwrap();
        assert_eq!(r.payload(3, 1).len(), 100);
    }
}
