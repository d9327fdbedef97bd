//! The in-process store's shares, bounded in bytes like its conversations.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{SessionId, ShareId};
use crate::storage::{Share, ShareOrigin};

/// Bytes counted per share besides its document and ids.
const SHARE_OVERHEAD_BYTES: usize = 256;

/// Every share by id, oldest first dropped past `max_bytes`: a flood of shares
/// cannot exhaust the process.
#[derive(Default)]
pub struct Shelf {
    shares: HashMap<ShareId, (u64, Share)>,
    /// Creation tick → share: the eviction order.
    by_age: BTreeMap<u64, ShareId>,
    tick: u64,
    bytes: usize,
}

fn share_bytes(share: &Share) -> usize {
    SHARE_OVERHEAD_BYTES
        + share.document.len()
        + share.id.as_str().len()
        + share.session.as_str().len()
        + share.owner.as_str().len()
}

impl Shelf {
    pub fn put(&mut self, share: &Share, max_bytes: usize) {
        self.tick += 1;
        self.bytes += share_bytes(share);
        self.by_age.insert(self.tick, share.id.clone());
        if let Some((tick, replaced)) = self
            .shares
            .insert(share.id.clone(), (self.tick, share.clone()))
        {
            self.by_age.remove(&tick);
            self.bytes -= share_bytes(&replaced);
        }
        while self.bytes > max_bytes {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                return;
            };
            self.remove(&oldest);
        }
    }

    pub fn get(&self, id: &ShareId) -> Option<&Share> {
        self.shares.get(id).map(|(_, share)| share)
    }

    /// Removes every share of `session`; how many.
    pub fn remove_session(&mut self, session: &SessionId) -> u64 {
        let doomed: Vec<ShareId> = self
            .shares
            .values()
            .filter(|(_, share)| share.session == *session)
            .map(|(_, share)| share.id.clone())
            .collect();
        for id in &doomed {
            self.remove(id);
        }
        doomed.len() as u64
    }

    pub fn origins(&self) -> Vec<ShareOrigin> {
        self.shares
            .values()
            .map(|(_, share)| share.origin())
            .collect()
    }

    /// Removes share `id` if it is one of `session`'s.
    pub fn remove_of(&mut self, session: &SessionId, id: &ShareId) -> bool {
        let ours = self.get(id).is_some_and(|share| share.session == *session);
        if ours {
            self.remove(id);
        }
        ours
    }

    fn remove(&mut self, id: &ShareId) {
        if let Some((tick, removed)) = self.shares.remove(id) {
            self.by_age.remove(&tick);
            self.bytes -= share_bytes(&removed);
        }
    }
}
