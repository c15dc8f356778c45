//! Plan versions (`MAJOR.MINOR.PATCH`): the one parser behind every version
//! comparison and the revision numbers of consent snapshots.
//!
//! The CRD's pattern admits only three dot-separated numbers of at most six
//! digits each; anything else that reaches this parser (an object stored
//! before a schema change) reads its unparsable parts as 0, never panics.

/// A parsed plan version: its three numbers, compared in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version([u64; 3]);

impl Version {
    /// Parses `MAJOR.MINOR.PATCH`; missing or unparsable parts are 0.
    pub fn parse(version: &str) -> Self {
        let mut parts = [0u64; 3];
        for (slot, part) in parts.iter_mut().zip(version.split('.')) {
            *slot = part.parse().unwrap_or(0);
        }
        Self(parts)
    }

    /// One integer ordered like the versions themselves (for a
    /// ControllerRevision's `revision`): six decimal digits per part.
    pub fn revision_number(self) -> i64 {
        self.0.iter().fold(0i64, |acc, part| {
            acc.saturating_mul(1_000_000)
                .saturating_add(i64::try_from(*part).unwrap_or(i64::MAX))
        })
    }
}

/// True when version `a` is greater than `b`.
pub fn version_gt(a: &str, b: &str) -> bool {
    Version::parse(a) > Version::parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_gt("1.10.0", "1.9.9"));
        assert!(version_gt("2.0.0", "1.99.99"));
        assert!(!version_gt("1.0.0", "1.0.0"));
        assert!(!version_gt("0.9.0", "1.0.0"));
        assert!(!version_gt("x.y", "0.0.0"), "unparsable parts read as 0");
    }

    #[test]
    fn revision_numbers_follow_version_order() {
        let n = |v: &str| Version::parse(v).revision_number();
        assert!(n("1.2.3") < n("1.10.0"));
        assert!(n("1.999999.999999") < n("2.0.0"));
        assert_eq!(n("0.0.1"), 1);
    }
}
