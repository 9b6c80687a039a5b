//! A compact model of what the log should hold: the retained index range and the term runs.
//! Payloads are not stored; they are regenerated from (index, term) by [`super::payload::PayloadGen`].

use std::collections::BTreeMap;

/// Expected content of the log.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Start index of each run of equal terms -> that term.
    runs: BTreeMap<u64, u64>,
    /// First retained index (purge boundary + 1).
    first: u64,
    /// Last index written (0 when nothing was written).
    last: u64,
    /// Highest purged index.
    purged: u64,
}

impl Model {
    /// An empty log.
    pub fn new() -> Model {
        Model {
            first: 1,
            ..Model::default()
        }
    }

    /// First retained index (meaningful when `len() > 0`).
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Last index written.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Highest purged index (0 if nothing was purged).
    pub fn purged(&self) -> u64 {
        self.purged
    }

    /// Entries retained.
    pub fn len(&self) -> u64 {
        (self.last + 1).saturating_sub(self.first)
    }

    /// The term of `index`, if it is retained.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index < self.first || index > self.last {
            return None;
        }
        self.runs.range(..=index).next_back().map(|(_, t)| *t)
    }

    /// Records `[from, from + n)` written in `term`, replacing everything from `from` on
    /// (an append at the end, or a `replace_range` of the tail).
    pub fn write_tail(&mut self, from: u64, n: u64, term: u64) {
        if n == 0 {
            self.last = self.last.min(from.saturating_sub(1));
            self.runs.split_off(&from);
            return;
        }
        self.runs.split_off(&from);
        if self.runs.values().next_back() != Some(&term) {
            self.runs.insert(from, term);
        }
        self.last = from + n - 1;
    }

    /// Records a purge of every index `<= cutoff`.
    pub fn purge(&mut self, cutoff: u64) {
        if cutoff < self.first {
            return;
        }
        let keep_term = self.term(cutoff + 1);
        self.runs = self.runs.split_off(&(cutoff + 1));
        if let Some(t) = keep_term {
            self.runs.entry(cutoff + 1).or_insert(t);
        }
        self.purged = self.purged.max(cutoff);
        self.first = cutoff + 1;
        self.last = self.last.max(cutoff);
    }

    /// Number of term runs kept (memory use of the model).
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_appends_replacements_and_purges() {
        let mut m = Model::new();
        m.write_tail(1, 100, 1);
        m.write_tail(101, 50, 1);
        assert_eq!(m.runs(), 1);
        m.write_tail(141, 20, 2); // a new leader overwrote 141..150 and appended
        assert_eq!((m.first(), m.last()), (1, 160));
        assert_eq!(m.term(140), Some(1));
        assert_eq!(m.term(141), Some(2));
        m.purge(145);
        assert_eq!(m.first(), 146);
        assert_eq!(m.term(145), None);
        assert_eq!(m.term(146), Some(2));
        assert_eq!(m.len(), 15);
        m.purge(200);
        assert_eq!(m.len(), 0);
        assert_eq!(m.last(), 200);
        m.write_tail(201, 1, 3);
        assert_eq!(m.term(201), Some(3));
    }
}
