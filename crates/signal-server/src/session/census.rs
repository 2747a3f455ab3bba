//! What a session holds, counted for the fuzzing doorway (feature `fuzzing`).

use super::{MAX_PENDING_CHALLENGES, Session};
use crate::fuzzing::SessionSizes;

impl Session {
    /// How much this session holds now, with the caps it must stay within.
    pub(crate) fn sizes(&self) -> SessionSizes {
        SessionSizes {
            joins: self.joins.len(),
            inboxes: self.inboxes.len(),
            proven: self.proven.len(),
            challenges: self.challenges.len(),
            max_challenges: MAX_PENDING_CHALLENGES,
        }
    }
}
