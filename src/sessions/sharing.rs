//! Shares: read-only snapshots of a conversation under an unguessable id. A share
//! lives no longer than the conversation it was taken of: reading one checks that
//! the conversation is still there, unexpired, with the same owner and the same
//! turn 0 (a conversation deleted, or expired and started again, is another one),
//! so it dies with its conversation whatever removed it. Deleting the
//! conversation and revoking delete its shares' rows at once; the purge deletes
//! the rows of shares whose conversation went otherwise (deleted with all of its
//! owner's, expired, or started again).

use std::collections::BTreeMap;

use crate::domain::{owner_of, CustomerId, SessionId, ShareId, Turn};
use crate::storage::{Share, ShareOrigin, StorageBudget, StorageError};
use crate::transcript;

use super::Sessions;

/// A conversation's first and last turn.
struct Ends {
    first: Option<Turn>,
    last: Option<Turn>,
}

impl Sessions {
    /// Shares the turns `session` has so far; `None` (nothing stored) unless
    /// `requester` owns it and it is live. A conversation without an owner is
    /// nobody's to share.
    pub async fn share(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<Option<Share>, StorageError> {
        let Some(turns) = self.read(session, requester).await? else {
            return Ok(None);
        };
        let (Some(owner), Some(first)) = (owner_of(&turns), turns.first()) else {
            return Ok(None);
        };
        let id = ShareId::generate().ok_or_else(|| {
            StorageError::Unavailable("the operating system gave no randomness".into())
        })?;
        let title = self.title(session, &turns).await?;
        let share = Share {
            id,
            session: session.clone(),
            owner: owner.clone(),
            started_at: first.timestamp,
            created_at: self.clock.now(),
            turns: turns.len() as u64,
            document: transcript::snapshot(&title, &turns).to_string(),
        };
        self.store.create_share(self.store.budget(), &share).await?;
        Ok(Some(share))
    }

    /// The share `id`, while the conversation it was taken of lives.
    pub async fn shared(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
        let budget = self.store.budget();
        let Some(share) = self.store.shared(budget, id).await? else {
            return Ok(None);
        };
        let ends = self.ends(budget, &share.session).await?;
        Ok(self.still_shows(&share.origin(), &ends).then_some(share))
    }

    /// The first and the last turn of `session`, if it has them. The last is read
    /// first: a conversation deleted and started again between the two reads
    /// shows another turn 0, never the old turn 0 with the new last turn.
    async fn ends(&self, budget: StorageBudget, session: &SessionId) -> Result<Ends, StorageError> {
        let last = self.store.recent(budget, session, 1).await?.turns.pop();
        let first = self.store.first_turn(budget, session).await?;
        Ok(Ends { first, last })
    }

    /// Whether the conversation a share was taken of is still the one with these
    /// `ends`, live: its turn 0 is the one the share saw, and it has not expired.
    fn still_shows(&self, origin: &ShareOrigin, ends: &Ends) -> bool {
        let same_conversation = ends.first.as_ref().is_some_and(|first| {
            first.index == 0
                && first.timestamp == origin.started_at
                && first.owner.as_ref() == Some(&origin.owner)
        });
        same_conversation
            && self.visible(ends.last.as_ref(), Some(&origin.owner), Some(&origin.owner))
    }

    /// Deletes every share whose conversation is gone; how many.
    pub(super) async fn sweep_shares(&self, budget: StorageBudget) -> Result<u64, StorageError> {
        let mut by_session: BTreeMap<SessionId, Vec<ShareOrigin>> = BTreeMap::new();
        for origin in self.store.share_origins(budget).await? {
            by_session
                .entry(origin.session.clone())
                .or_default()
                .push(origin);
        }
        let mut swept = 0;
        for (session, origins) in by_session {
            let ends = self.ends(budget, &session).await?;
            for origin in origins {
                if !self.still_shows(&origin, &ends)
                    && self
                        .store
                        .revoke_share(budget, &session, &origin.id)
                        .await?
                {
                    swept += 1;
                }
            }
        }
        Ok(swept)
    }

    /// Revokes every share of `session`; `false` (nothing changed) unless
    /// `requester` owns it and it is live.
    pub async fn unshare(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<bool, StorageError> {
        let budget = self.store.budget();
        let last = self.last_if_visible(budget, session, requester).await?;
        // A conversation without an owner has no shares to revoke.
        if last.is_none_or(|last| last.owner.is_none()) {
            return Ok(false);
        }
        self.store.revoke_shares(budget, session).await?;
        Ok(true)
    }
}
