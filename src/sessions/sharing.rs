//! Shares: read-only snapshots of a conversation under an unguessable id. A share
//! lives no longer than the conversation it was taken of: reading one checks that
//! the conversation is still there, unexpired, with the same owner and the same
//! turn 0 (a conversation deleted, or expired and started again, is another one),
//! so it dies with its conversation whatever removed it; deleting the
//! conversation, and revoking, also delete its shares' rows.

use crate::domain::{owner_of, CustomerId, SessionId, ShareId};
use crate::storage::{Share, StorageError};
use crate::transcript;

use super::Sessions;

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
        let turns = self.store.all(budget, &share.session).await?;
        let same_conversation = turns.first().is_some_and(|first| {
            first.index == 0
                && first.timestamp == share.started_at
                && first.owner.as_ref() == Some(&share.owner)
        });
        let live = self.visible(turns.last(), Some(&share.owner), Some(&share.owner));
        Ok((same_conversation && live).then_some(share))
    }

    /// Revokes every share of `session`; `false` (nothing changed) unless
    /// `requester` owns it and it is live.
    pub async fn unshare(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<bool, StorageError> {
        let budget = self.store.budget();
        let last = self.store.recent(budget, session, 1).await?;
        if last.owner.is_none() || !self.visible(last.turns.last(), last.owner.as_ref(), requester)
        {
            return Ok(false);
        }
        self.store.revoke_shares(budget, session).await?;
        Ok(true)
    }
}
