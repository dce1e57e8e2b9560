//! The single owner of what podgraft knows of each dynamic container: its pod, name, last known
//! state and attempt, plus the names being added right now. The relay's hiding interceptors, the
//! control API and the background loops read it; only lifecycle code writes it, and always
//! incrementally: a listing that took time to arrive is merged against what changed meanwhile,
//! never written over it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::model::ContainerState;

/// What podgraft knows of one dynamic container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sandbox_id: String,
    pub name: String,
    pub state: ContainerState,
    /// The CRI attempt of this container (restarts create attempt + 1).
    pub attempt: u32,
}

/// A container's state before and after a listing was merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: String,
    pub entry: Entry,
    pub before: Option<ContainerState>,
}

/// A container as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub entry: Entry,
}

/// Taken before a listing is requested; merging the listing uses it to tell what changed while
/// the listing was on its way.
#[derive(Debug, Clone, Copy)]
pub struct ListingToken(u64);

#[derive(Default)]
struct Inner {
    /// Bumped by every insert and removal.
    generation: u64,
    containers: HashMap<String, (Entry, u64)>,
    /// Removed containers and when, until no listing older than the removal can still arrive.
    removed: HashMap<String, u64>,
    /// Names being added, per sandbox: reserved so concurrent adds cannot both take one, and so
    /// the node counts as having dynamic containers from before the first one exists.
    in_flight: HashMap<String, HashSet<String>>,
    /// Containers podgraft is stopping to remove: their exit is part of the removal, not news.
    removing: HashSet<String>,
    /// Restart state per (sandbox, name).
    restarts: HashMap<(String, String), Restarts>,
    next_token: u64,
}

/// The kubelet's CrashLoopBackOff state of one container name in one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Restarts {
    /// The wait before the next restart; `None` until the first restart (which is immediate).
    pub delay: Option<Duration>,
    /// When the current attempt started (monotonic).
    pub started_at: Duration,
    /// A restart waiting to happen.
    pub pending: Option<PendingRestart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRestart {
    pub due: Duration,
    /// The wait before the restart after this one.
    pub next_delay: Duration,
    /// The attempt that exited.
    pub exited: String,
    /// Identifies this restart: a cancel or a newer schedule makes it stale.
    pub token: u64,
}

/// A restart that is due, as handed to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRestart {
    pub sandbox_id: String,
    pub name: String,
    pub exited: String,
    pub token: u64,
    pub next_delay: Duration,
}

pub struct Registry {
    inner: Mutex<Inner>,
    loaded: watch::Sender<bool>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            loaded: watch::channel(false).0,
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// State has been loaded from containerd: what the registry says is now complete.
    pub fn mark_loaded(&self) {
        self.loaded.send_replace(true);
    }

    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Waits up to `limit` for the load; false if it has not finished by then.
    pub async fn wait_loaded(&self, limit: Duration) -> bool {
        let mut rx = self.loaded.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// False only when podgraft knows for sure that the node has no dynamic container and none is
    /// being added: state loaded, none found or left since, no add in flight.
    pub fn may_have_dynamic(&self) -> bool {
        if !self.is_loaded() {
            return true;
        }
        let inner = self.lock();
        !inner.containers.is_empty() || inner.in_flight.values().any(|n| !n.is_empty())
    }

    /// The restart state of `name` in `sandbox`.
    pub fn restarts(&self, sandbox: &str, name: &str) -> Restarts {
        self.lock()
            .restarts
            .get(&(sandbox.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Schedules a restart of `name` (whose attempt `exited` exited) at `due`.
    pub fn schedule_restart(
        &self,
        sandbox: &str,
        name: &str,
        exited: &str,
        due: Duration,
        next_delay: Duration,
    ) {
        let mut inner = self.lock();
        inner.next_token += 1;
        let token = inner.next_token;
        let entry = inner
            .restarts
            .entry((sandbox.to_string(), name.to_string()))
            .or_default();
        entry.pending = Some(PendingRestart {
            due,
            next_delay,
            exited: exited.to_string(),
            token,
        });
    }

    /// The restarts due at `now`; each is handed out once.
    pub fn take_due_restarts(&self, now: Duration) -> Vec<DueRestart> {
        let mut inner = self.lock();
        let mut due = Vec::new();
        for ((sandbox_id, name), r) in inner.restarts.iter_mut() {
            if let Some(p) = r.pending.as_ref().filter(|p| p.due <= now) {
                due.push(DueRestart {
                    sandbox_id: sandbox_id.clone(),
                    name: name.clone(),
                    exited: p.exited.clone(),
                    token: p.token,
                    next_delay: p.next_delay,
                });
                // Kept (without a due time) so that a cancel can still tell the restart is stale.
                r.pending = Some(PendingRestart {
                    due: Duration::MAX,
                    ..p.clone()
                });
            }
        }
        due
    }

    /// Whether restart `token` of `name` is still wanted (not cancelled, not superseded).
    pub fn restart_wanted(&self, sandbox: &str, name: &str, token: u64) -> bool {
        self.lock()
            .restarts
            .get(&(sandbox.to_string(), name.to_string()))
            .and_then(|r| r.pending.as_ref())
            .is_some_and(|p| p.token == token)
    }

    /// A new attempt of `name` runs since `now`; the next restart waits `delay`.
    pub fn restarted(&self, sandbox: &str, name: &str, now: Duration, delay: Duration) {
        let mut inner = self.lock();
        let entry = inner
            .restarts
            .entry((sandbox.to_string(), name.to_string()))
            .or_default();
        entry.pending = None;
        entry.delay = Some(delay);
        entry.started_at = now;
    }

    /// The first attempt of `name` runs since `now`.
    pub fn started(&self, sandbox: &str, name: &str, now: Duration) {
        self.lock()
            .restarts
            .entry((sandbox.to_string(), name.to_string()))
            .or_default()
            .started_at = now;
    }

    /// No more restarts of these names (they are being removed).
    pub fn forget_restarts(&self, sandbox: &str, names: &[String]) {
        let mut inner = self.lock();
        for name in names {
            inner.restarts.remove(&(sandbox.to_string(), name.clone()));
        }
    }

    /// Dynamic containers known on the node, plus names being added.
    pub fn count(&self) -> usize {
        let inner = self.lock();
        inner.containers.len() + inner.in_flight.values().map(HashSet::len).sum::<usize>()
    }

    /// Operability (metrics, status): known dynamic containers per state.
    pub fn counts_by_state(&self) -> Vec<(ContainerState, usize)> {
        let mut counts: Vec<(ContainerState, usize)> = Vec::new();
        for (entry, _) in self.lock().containers.values() {
            match counts.iter_mut().find(|(s, _)| *s == entry.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((entry.state, 1)),
            }
        }
        counts
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().containers.contains_key(id)
    }

    /// Names of `sandbox` being added right now.
    pub fn in_flight(&self, sandbox: &str) -> HashSet<String> {
        self.lock()
            .in_flight
            .get(sandbox)
            .cloned()
            .unwrap_or_default()
    }

    /// Reserves `names` of `sandbox` for an add; fails with the first name already in flight.
    pub fn reserve_names(&self, sandbox: &str, names: &[String]) -> Result<(), String> {
        let mut inner = self.lock();
        let set = inner.in_flight.entry(sandbox.to_string()).or_default();
        if let Some(taken) = names.iter().find(|n| set.contains(*n)) {
            return Err(taken.clone());
        }
        set.extend(names.iter().cloned());
        Ok(())
    }

    pub fn release_names(&self, sandbox: &str, names: &[String]) {
        let mut inner = self.lock();
        if let Some(set) = inner.in_flight.get_mut(sandbox) {
            for name in names {
                set.remove(name);
            }
            if set.is_empty() {
                inner.in_flight.remove(sandbox);
            }
        }
    }

    /// Records a container podgraft created or found, or its new state.
    pub fn upsert(&self, id: &str, entry: Entry) {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        inner.removed.remove(id);
        inner.containers.insert(id.to_string(), (entry, generation));
    }

    /// A known container's last seen state.
    pub fn state(&self, id: &str) -> Option<ContainerState> {
        self.lock().containers.get(id).map(|(e, _)| e.state)
    }

    /// Updates a known container's state; returns the state it had.
    pub fn set_state(&self, id: &str, state: ContainerState) -> Option<ContainerState> {
        let mut inner = self.lock();
        let (entry, _) = inner.containers.get_mut(id)?;
        Some(std::mem::replace(&mut entry.state, state))
    }

    /// podgraft is about to stop `id` to remove it (`false`: the removal failed, it stays).
    pub fn set_removing(&self, id: &str, removing: bool) {
        let mut inner = self.lock();
        if removing {
            inner.removing.insert(id.to_string());
        } else {
            inner.removing.remove(id);
        }
    }

    /// The container is gone from containerd.
    pub fn remove(&self, id: &str) -> Option<Entry> {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        inner.removing.remove(id);
        let (entry, _) = inner.containers.remove(id)?;
        inner.removed.insert(id.to_string(), generation);
        Some(entry)
    }

    /// The pod is gone: its containers and reservations too.
    pub fn forget_pod(&self, sandbox: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        let ids: Vec<String> = inner
            .containers
            .iter()
            .filter(|(_, (e, _))| e.sandbox_id == sandbox)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            inner.containers.remove(&id);
            inner.removed.insert(id, generation);
        }
        inner.in_flight.remove(sandbox);
        inner.restarts.retain(|(s, _), _| s != sandbox);
    }

    /// Take before requesting a listing of every dynamic container.
    pub fn listing_token(&self) -> ListingToken {
        ListingToken(self.lock().generation)
    }

    /// Merges a complete listing of dynamic containers requested after `token` was taken: states
    /// are updated, containers podgraft had not seen are adopted, and containers missing from it
    /// are dropped, but only if they were known before the listing was requested. A container
    /// added or removed while the listing was on its way keeps what its add or removal said.
    /// Returns every listed container's change, and the ids that vanished.
    pub fn merge_listing(
        &self,
        token: ListingToken,
        listed: Vec<Listed>,
    ) -> (Vec<Change>, Vec<(String, Entry)>) {
        let mut inner = self.lock();
        let listed_ids: HashSet<String> = listed.iter().map(|l| l.id.clone()).collect();
        let mut changes = Vec::with_capacity(listed.len());
        for Listed { id, entry } in listed {
            if inner.removed.get(&id).is_some_and(|g| *g > token.0) {
                // Removed after the listing was requested: the listing is older than the removal.
                continue;
            }
            if inner.removing.contains(&id) {
                // Being removed: its exit is the removal's, reported as REMOVED.
                continue;
            }
            let before = match inner.containers.get_mut(&id) {
                Some((known, _)) => {
                    let before = known.state;
                    known.state = entry.state;
                    Some(before)
                }
                None => {
                    inner.generation += 1;
                    let generation = inner.generation;
                    inner
                        .containers
                        .insert(id.clone(), (entry.clone(), generation));
                    None
                }
            };
            changes.push(Change { id, entry, before });
        }
        let vanished: Vec<String> = inner
            .containers
            .iter()
            .filter(|(id, (_, g))| *g <= token.0 && !listed_ids.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        let mut gone = Vec::with_capacity(vanished.len());
        for id in vanished {
            if let Some((entry, _)) = inner.containers.remove(&id) {
                gone.push((id, entry));
            }
        }
        // No listing requested before this one is still to be merged (the supervisor lists one
        // at a time), so older removals need no remembering.
        inner.removed.retain(|_, g| *g > token.0);
        (changes, gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, state: ContainerState) -> Entry {
        Entry {
            sandbox_id: "sb".into(),
            name: name.into(),
            state,
            attempt: 0,
        }
    }

    fn listed(id: &str, state: ContainerState) -> Listed {
        Listed {
            id: id.into(),
            entry: entry(id, state),
        }
    }

    #[test]
    fn an_add_during_a_listing_survives_the_merge() {
        let reg = Registry::default();
        reg.mark_loaded();
        assert!(!reg.may_have_dynamic());
        let token = reg.listing_token();
        // The listing is on its way (empty) when an add creates the node's only dynamic container.
        reg.upsert("new", entry("tool", ContainerState::Running));
        let (changes, gone) = reg.merge_listing(token, vec![]);
        assert!(changes.is_empty() && gone.is_empty());
        assert!(reg.contains("new"));
        assert!(reg.may_have_dynamic(), "hiding must stay on");
        // The next listing shows it; one that misses it later means it vanished.
        let token = reg.listing_token();
        let (changes, _) = reg.merge_listing(token, vec![listed("new", ContainerState::Exited)]);
        assert_eq!(changes[0].before, Some(ContainerState::Running));
        let token = reg.listing_token();
        let (_, gone) = reg.merge_listing(token, vec![]);
        assert_eq!(gone.len(), 1);
        assert!(!reg.may_have_dynamic());
    }

    #[test]
    fn a_removal_during_a_listing_is_not_undone_by_it() {
        let reg = Registry::default();
        reg.upsert("old", entry("tool", ContainerState::Running));
        let token = reg.listing_token();
        reg.remove("old");
        let (changes, _) = reg.merge_listing(token, vec![listed("old", ContainerState::Running)]);
        assert!(changes.is_empty());
        assert!(!reg.contains("old"));
        // A container podgraft never saw is adopted.
        let token = reg.listing_token();
        let (changes, _) = reg.merge_listing(token, vec![listed("found", ContainerState::Exited)]);
        assert_eq!(changes[0].before, None);
        assert!(reg.contains("found"));
    }

    #[test]
    fn a_container_being_removed_reports_no_exit() {
        let reg = Registry::default();
        reg.upsert("c", entry("tool", ContainerState::Running));
        reg.set_removing("c", true);
        let token = reg.listing_token();
        let (changes, gone) = reg.merge_listing(token, vec![listed("c", ContainerState::Exited)]);
        assert!(changes.is_empty() && gone.is_empty());
        assert!(reg.contains("c"), "still hidden until removed");
        reg.remove("c");
        assert!(!reg.contains("c"));
    }

    #[test]
    fn names_in_flight_are_exclusive_and_count_as_dynamic() {
        let reg = Registry::default();
        reg.mark_loaded();
        reg.reserve_names("sb", &["a".into(), "b".into()]).unwrap();
        assert!(reg.may_have_dynamic());
        assert_eq!(
            reg.reserve_names("sb", &["c".into(), "b".into()]),
            Err("b".into())
        );
        assert!(reg.reserve_names("other", &["a".into()]).is_ok());
        reg.release_names("sb", &["a".into(), "b".into()]);
        reg.forget_pod("other");
        assert!(!reg.may_have_dynamic());
        assert!(reg.in_flight("sb").is_empty());
    }

    #[tokio::test]
    async fn waits_for_the_load() {
        let reg = std::sync::Arc::new(Registry::default());
        assert!(!reg.wait_loaded(Duration::from_millis(10)).await);
        let r = reg.clone();
        let waiter = tokio::spawn(async move { r.wait_loaded(Duration::from_secs(5)).await });
        reg.mark_loaded();
        assert!(waiter.await.unwrap());
    }
}
