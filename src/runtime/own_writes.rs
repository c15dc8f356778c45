//! The operator's own recent writes, so that a reconcile can tell when its
//! watch cache has not caught up with them yet.
//!
//! A write (the status of a delegation, say) triggers a watch event, and the
//! event triggers a reconcile. Reconciles that were queued meanwhile (by the
//! events of the RoleBindings just written) may run first and still see the
//! object as it was before the write: they would compute the same status
//! again, write it a second time and publish its Event twice. Remembering the
//! resourceVersions that a write superseded lets such a reconcile stand aside
//! until the watch delivers the newer object.

use std::collections::HashMap;
use std::sync::Mutex;

/// Object keys and the resourceVersions their last write here superseded.
#[derive(Debug, Default)]
pub struct OwnWrites {
    superseded: Mutex<HashMap<String, Vec<String>>>,
}

impl OwnWrites {
    /// Records a write of `key` made while the object was at any of
    /// `superseded` (the version the reconcile started from, and those
    /// returned by earlier writes in the same reconcile).
    pub fn record(&self, key: &str, superseded: &[String]) {
        if let Ok(mut map) = self.superseded.lock() {
            map.insert(key.to_string(), superseded.to_vec());
        }
    }

    /// Whether a cached copy of `key` at `version` predates the last write
    /// recorded for it. Once the cache shows any other version the record is
    /// dropped, so the map only holds objects with a write in flight.
    pub fn cache_is_behind(&self, key: &str, version: Option<&str>) -> bool {
        let Ok(mut map) = self.superseded.lock() else {
            return false;
        };
        let Some(superseded) = map.get(key) else {
            return false;
        };
        if version.is_some_and(|v| superseded.iter().any(|s| s == v)) {
            return true;
        }
        map.remove(key);
        false
    }

    /// Whether a watch event of `key` at `version` is the result of the
    /// last write recorded for it (a version that write did not supersede):
    /// true once, and the record is forgotten. A controller need not
    /// reconcile on the echo of its own write.
    pub fn is_own_write(&self, key: &str, version: Option<&str>) -> bool {
        let (Ok(mut map), Some(version)) = (self.superseded.lock(), version) else {
            return false;
        };
        match map.get(key) {
            Some(superseded) if !superseded.iter().any(|s| s == version) => {
                map.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Objects with a recorded write the cache has not shown yet.
    pub fn len(&self) -> usize {
        self.superseded.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no write is waiting for the cache.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_objects_are_never_behind() {
        let writes = OwnWrites::default();
        assert!(!writes.cache_is_behind("a/b", Some("1")));
        assert!(!writes.cache_is_behind("a/b", None));
    }

    #[test]
    fn a_superseded_version_is_behind_until_the_cache_moves_on() {
        let writes = OwnWrites::default();
        writes.record("a/b", &versions(&["10", "11"]));
        assert!(writes.cache_is_behind("a/b", Some("10")));
        assert!(writes.cache_is_behind("a/b", Some("11")));
        assert!(writes.cache_is_behind("a/b", Some("10")), "asking twice");
        assert_eq!(writes.len(), 1);
        // The watch delivered our write (or a later one): act, and forget.
        assert!(!writes.cache_is_behind("a/b", Some("12")));
        assert!(writes.is_empty());
        assert!(!writes.cache_is_behind("a/b", Some("10")));
    }

    #[test]
    fn a_new_write_replaces_the_record() {
        let writes = OwnWrites::default();
        writes.record("a/b", &versions(&["10"]));
        writes.record("a/b", &versions(&["12"]));
        assert!(!writes.cache_is_behind("a/b", Some("13")));
        writes.record("a/b", &versions(&["14"]));
        assert!(writes.cache_is_behind("a/b", Some("14")));
        assert!(!writes.cache_is_behind("x/y", Some("14")), "other keys");
    }

    #[test]
    fn the_echo_of_an_own_write_is_recognised_once() {
        let writes = OwnWrites::default();
        writes.record("a/b", &versions(&["10"]));
        assert!(!writes.is_own_write("a/b", Some("10")), "the old version");
        assert!(writes.is_own_write("a/b", Some("11")), "the write's result");
        assert!(
            !writes.is_own_write("a/b", Some("12")),
            "what follows is not"
        );
        assert!(!writes.is_own_write("x/y", Some("1")), "unknown keys");
        assert!(writes.is_empty());
    }

    #[test]
    fn an_object_without_version_is_not_behind() {
        let writes = OwnWrites::default();
        writes.record("a/b", &versions(&["10"]));
        assert!(!writes.cache_is_behind("a/b", None));
    }
}
