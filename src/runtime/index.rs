//! Secondary indexes over watch caches, kept current by the watch events.
//!
//! A reflector store answers "get by name". The controllers also need "which
//! delegations reference this offer / cover this namespace" and "which grant
//! objects belong to this delegation". Scanning a store for that costs
//! O(objects) per event or reconcile, which at thousands of delegations and
//! tens of thousands of RoleBindings dominates cold convergence. An [`Index`]
//! answers in O(result) and is updated from the same watch stream that feeds
//! the store, so it is never staler than the store itself.

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

// Each object and each key is allocated once and shared by both maps: the
// RoleBinding index holds an entry per managed binding (tens of thousands),
// and its first version (owned strings in both maps, references carrying the
// resourceVersion and uid) was a fifth of the operator's heap.
type Key = Arc<str>;
type Ref<K> = Arc<ObjectRef<K>>;
type Keys<K> = HashMap<Key, HashSet<Ref<K>>>;
type Reverse<K> = HashMap<Ref<K>, Vec<Key>>;

struct State<K: Resource<DynamicType = ()>> {
    by_key: Keys<K>,
    keys_of: Reverse<K>,
    /// A relist in progress: the index being rebuilt, swapped in when done.
    rebuilding: Option<(Keys<K>, Reverse<K>)>,
}

/// Objects of kind `K` by the keys a function derives from each object.
pub struct Index<K: Resource<DynamicType = ()>> {
    key_fn: fn(&K) -> Vec<String>,
    state: RwLock<State<K>>,
}

/// A reference by name and namespace only (no resourceVersion or uid, which
/// change with every write and are not part of the identity).
fn lean_ref<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let meta = object.meta();
    let reference = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(ns) => reference.within(ns),
        None => reference,
    }
}

fn insert<K: Resource<DynamicType = ()>>(
    by_key: &mut Keys<K>,
    keys_of: &mut Reverse<K>,
    object: ObjectRef<K>,
    keys: Vec<String>,
) {
    remove(by_key, keys_of, &object);
    let object = Arc::new(object);
    let mut shared = Vec::with_capacity(keys.len());
    for key in keys {
        let key: Key = match by_key.get_key_value(key.as_str()) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(key),
        };
        by_key
            .entry(key.clone())
            .or_default()
            .insert(object.clone());
        shared.push(key);
    }
    keys_of.insert(object, shared);
}

fn remove<K: Resource<DynamicType = ()>>(
    by_key: &mut Keys<K>,
    keys_of: &mut Reverse<K>,
    object: &ObjectRef<K>,
) {
    if let Some(old) = keys_of.remove(object) {
        for key in old {
            if let Some(set) = by_key.get_mut(&key) {
                set.remove(object);
                if set.is_empty() {
                    by_key.remove(&key);
                }
            }
        }
    }
}

impl<K: Resource<DynamicType = ()>> Index<K> {
    /// An empty index keyed by `key_fn`.
    pub fn new(key_fn: fn(&K) -> Vec<String>) -> Self {
        Self {
            key_fn,
            state: RwLock::new(State {
                by_key: HashMap::new(),
                keys_of: HashMap::new(),
                rebuilding: None,
            }),
        }
    }

    /// Applies one watch event.
    pub fn observe(&self, event: &Event<K>) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        let state = &mut *state;
        match event {
            Event::Apply(object) => {
                let keys = (self.key_fn)(object);
                insert(
                    &mut state.by_key,
                    &mut state.keys_of,
                    lean_ref(object),
                    keys,
                );
            }
            Event::Delete(object) => {
                remove(&mut state.by_key, &mut state.keys_of, &lean_ref(object));
            }
            Event::Init => state.rebuilding = Some((HashMap::new(), HashMap::new())),
            Event::InitApply(object) => {
                let keys = (self.key_fn)(object);
                let (by_key, keys_of) = state
                    .rebuilding
                    .get_or_insert_with(|| (HashMap::new(), HashMap::new()));
                insert(by_key, keys_of, lean_ref(object), keys);
            }
            Event::InitDone => {
                if let Some((by_key, keys_of)) = state.rebuilding.take() {
                    state.by_key = by_key;
                    state.keys_of = keys_of;
                }
            }
        }
    }

    /// The objects under `key`.
    pub fn get(&self, key: &str) -> Vec<ObjectRef<K>> {
        self.state
            .read()
            .map(|state| {
                state
                    .by_key
                    .get(key)
                    .map(|set| set.iter().map(|r| ObjectRef::clone(r)).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn cm(name: &str, keys: &[&str]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some(
                keys.iter()
                    .map(|k| (k.to_string(), String::new()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn keys(object: &ConfigMap) -> Vec<String> {
        object
            .data
            .as_ref()
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn names(refs: Vec<ObjectRef<ConfigMap>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_changes_and_deletes() {
        let index = Index::new(keys);
        index.observe(&Event::Apply(cm("a", &["x", "y"])));
        index.observe(&Event::Apply(cm("b", &["y"])));
        assert_eq!(names(index.get("x")), vec!["a"]);
        assert_eq!(names(index.get("y")), vec!["a", "b"]);
        // a moves from x,y to z.
        index.observe(&Event::Apply(cm("a", &["z"])));
        assert!(index.get("x").is_empty());
        assert_eq!(names(index.get("y")), vec!["b"]);
        assert_eq!(names(index.get("z")), vec!["a"]);
        index.observe(&Event::Delete(cm("b", &["y"])));
        assert!(index.get("y").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_complete() {
        let index = Index::new(keys);
        index.observe(&Event::Apply(cm("gone", &["x"])));
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(cm("new", &["x"])));
        // Until InitDone, the old view answers.
        assert_eq!(names(index.get("x")), vec!["gone"]);
        index.observe(&Event::InitDone);
        assert_eq!(names(index.get("x")), vec!["new"]);
    }
}
