//! Publishes Kubernetes Events (events.k8s.io/v1), folding repeats into an
//! event series, with a bounded memory of what it published.
//!
//! Written here rather than using kube's `Recorder`, which does the same
//! series folding but keeps every Event it published for six minutes: at
//! 1,000 delegations a plan update publishes 2,000 Events, and that cache
//! held about 6 MB of a 64 MiB budget (`make bench`). Repeats worth folding
//! come close together (a drift corrected again and again), so remembering
//! the most recent few hundred distinct Events is enough.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct Events remembered for folding repeats.
pub const REMEMBERED: usize = 512;
/// A repeat older than this starts a new Event (as kube's recorder does).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something went as intended.
    Normal,
    /// Something needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What happened, about one object.
#[derive(Clone, Debug)]
pub struct Occurrence {
    /// Normal or Warning.
    pub type_: EventType,
    /// Why (a CamelCase reason).
    pub reason: String,
    /// What the operator did (a CamelCase action).
    pub action: String,
    /// For people.
    pub note: String,
}

/// An Event already published: enough to extend its series.
#[derive(Clone, Debug, PartialEq)]
struct Published {
    name: String,
    namespace: String,
    count: i32,
    at: Instant,
}

/// The most recent distinct Events, oldest first out (pure bookkeeping).
#[derive(Debug, Default)]
pub struct Recent {
    entries: HashMap<String, Published>,
    order: VecDeque<String>,
}

impl Recent {
    /// The series count the next publication of `key` gets, and the Event
    /// it extends (name, namespace) if it is a repeat within the window.
    fn next(&self, key: &str, now: Instant) -> Option<(String, String, i32)> {
        self.entries
            .get(key)
            .filter(|p| now.duration_since(p.at) < SERIES_WINDOW)
            .map(|p| (p.name.clone(), p.namespace.clone(), p.count + 1))
    }

    fn remember(&mut self, key: String, published: Published) {
        if self.entries.insert(key.clone(), published).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Distinct Events remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Publishes Events as one reporting controller (and instance).
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

impl Publisher {
    /// A publisher reporting as `controller`, from `instance` (the pod name;
    /// the controller name when not set).
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.clone());
        Self {
            client,
            controller,
            instance,
            recent: Mutex::new(Recent::default()),
        }
    }

    /// Publishes `what` about `regarding`: a new Event, or the next count of
    /// the series of the same Event published recently.
    pub async fn publish(
        &self,
        what: &Occurrence,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        // Only the same Event again extends a series: the note is part of
        // it (two approvals of one Activation by different people are two
        // Events, not one approval counted twice).
        let key = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            what.type_.as_str(),
            what.action,
            what.reason,
            regarding.kind.as_deref().unwrap_or_default(),
            namespace,
            regarding.name.as_deref().unwrap_or_default(),
            regarding.uid.as_deref().unwrap_or_default(),
            what.note,
        );
        let now = Instant::now();
        let repeat = self.recent.lock().ok().and_then(|r| r.next(&key, now));
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let stamp = MicroTime(Timestamp::now());
        let published = match repeat {
            Some((name, namespace, count)) => {
                let series = EventSeries {
                    count,
                    last_observed_time: stamp,
                };
                // Only the series changes; the rest of an Event is immutable.
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "series": series })),
                )
                .await?;
                Published {
                    name,
                    namespace,
                    count,
                    at: now,
                }
            }
            None => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    stamp.0.as_nanosecond()
                );
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    event_time: Some(stamp),
                    type_: Some(what.type_.as_str().into()),
                    reason: Some(what.reason.clone()),
                    action: Some(what.action.clone()),
                    note: Some(what.note.clone()),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Event::default()
                };
                api.create(&PostParams::default(), &event).await?;
                Published {
                    name,
                    namespace,
                    count: 1,
                    at: now,
                }
            }
        };
        if let Ok(mut recent) = self.recent.lock() {
            recent.remember(key, published);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(name: &str, count: i32, at: Instant) -> Published {
        Published {
            name: name.into(),
            namespace: "ns".into(),
            count,
            at,
        }
    }

    #[test]
    fn a_repeat_extends_the_series() {
        let mut recent = Recent::default();
        let now = Instant::now();
        assert_eq!(recent.next("k", now), None, "first time: a new Event");
        recent.remember("k".into(), published("e1", 1, now));
        assert_eq!(
            recent.next("k", now + Duration::from_secs(10)),
            Some(("e1".into(), "ns".into(), 2))
        );
        recent.remember("k".into(), published("e1", 2, now));
        assert_eq!(recent.next("k", now).map(|n| n.2), Some(3));
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn an_old_repeat_starts_a_new_event() {
        let mut recent = Recent::default();
        let then = Instant::now();
        recent.remember("k".into(), published("e1", 4, then));
        assert_eq!(recent.next("k", then + SERIES_WINDOW), None);
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut recent = Recent::default();
        let now = Instant::now();
        for i in 0..REMEMBERED + 10 {
            recent.remember(format!("k{i}"), published("e", 1, now));
        }
        assert_eq!(recent.len(), REMEMBERED);
        assert_eq!(recent.next("k0", now), None, "the oldest were forgotten");
        assert_eq!(recent.next("k9", now), None);
        assert!(recent.next("k10", now).is_some());
        assert!(recent.next(&format!("k{}", REMEMBERED + 9), now).is_some());
    }
}
