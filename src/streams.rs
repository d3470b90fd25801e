//! Requests in flight on one worker, with the key each was authenticated with, so that a key
//! revoked (or expired, or a key set gone stale) after the headers were checked still stops them.
//!
//! A stream remembers the key-set mark ([`ServingState::mark`]) its key was last verified at.
//! Re-checking is free while the mark is unchanged, and one key lookup when it moved. What a cut
//! does depends on how far the stream got: before the response started, the client gets the
//! denial (401/503) in place of anything from the upstream; after, the stream is reset.
//! Pure logic: the key lookup comes in as a closure, and the filter layer performs the cut.

use std::collections::HashMap;

use crate::auth::DenyReason;
use crate::keyset::state::ServingState;
use crate::keyset::Lookup;

/// How to stop a stream whose key no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nothing of the response has reached the client: answer with this denial instead.
    Reply(DenyReason),
    /// The response has started: reset the stream.
    Reset(DenyReason),
}

/// A stream to cut, forgotten by the registry already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub context_id: u32,
    pub cut: Cut,
    /// For the log line (never the secret).
    pub key_id: String,
}

impl Cut {
    pub fn reason(self) -> DenyReason {
        match self {
            Cut::Reply(reason) | Cut::Reset(reason) => reason,
        }
    }
}

#[derive(Debug)]
struct LiveStream {
    key_id: String,
    sha256: [u8; 32],
    /// Unix milliseconds.
    expires_at_ms: Option<u64>,
    verified_at: (u32, u64),
    response_started: bool,
}

/// The live streams of one worker, keyed by proxy-wasm context id.
#[derive(Debug, Default)]
pub struct LiveStreams {
    streams: HashMap<u32, LiveStream>,
    /// The newest key-set mark this worker has read (by any request or its timer): re-checks of
    /// response body chunks compare against it instead of reading shared data again.
    latest: (u32, u64),
}

/// What the key set says now, for a re-check.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub state: ServingState,
    /// Unix milliseconds; 0 when no check needs the clock (see [`LiveStreams::needs_clock`]).
    pub now_ms: u64,
    /// `max_staleness_ms` is configured and exceeded.
    pub stale: bool,
}

impl LiveStreams {
    /// Starts tracking a stream that was just authenticated at `state`.
    pub fn track(
        &mut self,
        context_id: u32,
        key_id: &str,
        sha256: [u8; 32],
        expires_at_s: Option<u64>,
        state: &ServingState,
    ) {
        self.streams.insert(
            context_id,
            LiveStream {
                key_id: key_id.to_string(),
                sha256,
                expires_at_ms: expires_at_s.map(|s| s.saturating_mul(1_000)),
                verified_at: state.mark(),
                response_started: false,
            },
        );
    }

    /// Notes a serving state just read from shared data.
    pub fn observe(&mut self, state: &ServingState) {
        self.latest = state.mark();
    }

    /// Whether the key set may have changed since this stream's key was verified, as far as this
    /// worker has seen (its timer reads shared data every tick, so at most one tick behind).
    pub fn may_have_changed(&self, context_id: u32) -> bool {
        self.streams
            .get(&context_id)
            .is_some_and(|stream| stream.verified_at != self.latest)
    }

    pub fn response_started(&mut self, context_id: u32) {
        if let Some(stream) = self.streams.get_mut(&context_id) {
            stream.response_started = true;
        }
    }

    pub fn forget(&mut self, context_id: u32) {
        self.streams.remove(&context_id);
    }

    #[cfg(test)]
    fn track_for_test(&mut self, context_id: u32, expires_at_s: Option<u64>) {
        self.track(
            context_id,
            "aaaaaaaa",
            [7; 32],
            expires_at_s,
            &ServingState::default(),
        );
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Whether re-checking this stream needs the clock (its key expires): reading the host clock
    /// is a host call, skipped on the common path.
    pub fn needs_clock(&self, context_id: u32) -> bool {
        self.streams
            .get(&context_id)
            .is_some_and(|stream| stream.expires_at_ms.is_some())
    }

    /// Re-checks one stream (response headers, a response body chunk). A stream that is cut is
    /// forgotten, so it is cut once.
    pub fn recheck(
        &mut self,
        context_id: u32,
        now: &Now,
        lookup: impl FnOnce(&str) -> Lookup,
    ) -> Option<Stopped> {
        let stream = self.streams.get_mut(&context_id)?;
        let reason = judge(stream, now, lookup)?;
        let cut = cut_for(stream, reason);
        let stream = self.streams.remove(&context_id)?;
        Some(Stopped {
            context_id,
            cut,
            key_id: stream.key_id,
        })
    }

    /// Re-checks every stream (the worker's timer, for idle streams). Each distinct key is looked
    /// up at most once. Returns the streams to cut, already forgotten.
    pub fn sweep(&mut self, now: &Now, mut lookup: impl FnMut(&str) -> Lookup) -> Vec<Stopped> {
        let mut looked_up: HashMap<String, Lookup> = HashMap::new();
        let mut cuts = Vec::new();
        for (id, stream) in &mut self.streams {
            let reason = judge(stream, now, |key_id| {
                looked_up
                    .entry(key_id.to_string())
                    .or_insert_with(|| lookup(key_id))
                    .clone()
            });
            if let Some(reason) = reason {
                cuts.push((*id, cut_for(stream, reason)));
            }
        }
        cuts.into_iter()
            .filter_map(|(context_id, cut)| {
                let stream = self.streams.remove(&context_id)?;
                Some(Stopped {
                    context_id,
                    cut,
                    key_id: stream.key_id,
                })
            })
            .collect()
    }
}

fn cut_for(stream: &LiveStream, reason: DenyReason) -> Cut {
    if stream.response_started {
        Cut::Reset(reason)
    } else {
        Cut::Reply(reason)
    }
}

/// Why the stream must stop, or `None` while its key still holds. Updates what was verified.
fn judge(
    stream: &mut LiveStream,
    now: &Now,
    lookup: impl FnOnce(&str) -> Lookup,
) -> Option<DenyReason> {
    if now.stale {
        return Some(DenyReason::KeySetStale);
    }
    if stream.expires_at_ms.is_some_and(|at| now.now_ms >= at) {
        return Some(DenyReason::Expired);
    }
    if stream.verified_at == now.state.mark() {
        return None;
    }
    if !now.state.is_loaded() {
        return Some(DenyReason::KeySetNotLoaded);
    }
    match lookup(&stream.key_id) {
        // Same key-id, other hash: not the key this stream authenticated with.
        Lookup::Active(record) if record.sha256 != stream.sha256 => Some(DenyReason::BadSecret),
        Lookup::Active(record) => {
            stream.expires_at_ms = record.expires_at.map(|s| s.saturating_mul(1_000));
            stream.verified_at = now.state.mark();
            None
        }
        Lookup::Revoked => Some(DenyReason::Revoked),
        Lookup::Unknown => Some(DenyReason::UnknownKey),
        Lookup::NotLoaded => Some(DenyReason::KeySetNotLoaded),
        Lookup::Stale => Some(DenyReason::KeySetStale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::record::KeyRecord;
    use std::cell::Cell;

    const HASH: [u8; 32] = [7; 32];

    fn state(version: u64) -> ServingState {
        ServingState {
            generation: 1,
            version,
            synced_at_ms: 0,
        }
    }

    fn now(version: u64) -> Now {
        Now {
            state: state(version),
            now_ms: 1_000_000,
            stale: false,
        }
    }

    fn active(expires_at: Option<u64>) -> Lookup {
        Lookup::Active(KeyRecord {
            sha256: HASH,
            expires_at,
            org: "demo".into(),
            role: "member".into(),
            user: None,
        })
    }

    fn cuts(stopped: Vec<Stopped>) -> Vec<(u32, Cut)> {
        let mut cuts: Vec<_> = stopped.into_iter().map(|s| (s.context_id, s.cut)).collect();
        cuts.sort_by_key(|(id, _)| *id);
        cuts
    }

    fn cut(stopped: Option<Stopped>) -> Option<Cut> {
        stopped.map(|s| s.cut)
    }

    fn streams(ids: &[(u32, &str)]) -> LiveStreams {
        let mut live = LiveStreams::default();
        for (id, key) in ids {
            live.track(*id, key, HASH, None, &state(5));
        }
        live
    }

    #[test]
    fn an_unchanged_key_set_needs_no_lookup() {
        let mut live = streams(&[(1, "aaaaaaaa")]);
        assert_eq!(live.recheck(1, &now(5), |_| panic!("looked up")), None);
        assert!(live.sweep(&now(5), |_| panic!("looked up")).is_empty());
    }

    #[test]
    fn a_revoked_key_is_cut_once_with_the_kind_of_cut_its_progress_allows() {
        let mut live = streams(&[(1, "aaaaaaaa"), (2, "aaaaaaaa"), (3, "bbbbbbbb")]);
        live.response_started(2);
        let lookups = Cell::new(0);
        let stopped = live.sweep(&now(6), |key| {
            lookups.set(lookups.get() + 1);
            if key == "aaaaaaaa" {
                Lookup::Revoked
            } else {
                active(None)
            }
        });
        assert!(stopped.iter().all(|s| s.key_id == "aaaaaaaa"));
        assert_eq!(
            cuts(stopped),
            vec![
                (1, Cut::Reply(DenyReason::Revoked)),
                (2, Cut::Reset(DenyReason::Revoked))
            ]
        );
        assert_eq!(lookups.get(), 2, "one lookup per distinct key");
        assert_eq!(live.len(), 1);
        assert!(
            live.sweep(&now(7), |_| Lookup::Revoked).len() == 1,
            "the survivor is re-checked at the next change"
        );
        assert!(live.is_empty(), "cut streams are forgotten");
    }

    #[test]
    fn a_verified_key_is_not_looked_up_again_until_the_set_moves() {
        let mut live = streams(&[(1, "aaaaaaaa")]);
        assert_eq!(live.recheck(1, &now(6), |_| active(None)), None);
        assert_eq!(live.recheck(1, &now(6), |_| panic!("looked up")), None);
        assert_eq!(
            cut(live.recheck(1, &now(7), |_| Lookup::Revoked)),
            Some(Cut::Reply(DenyReason::Revoked))
        );
        assert_eq!(live.recheck(1, &now(8), |_| Lookup::Revoked), None, "gone");
    }

    #[test]
    fn every_way_a_key_stops_holding_cuts_the_stream() {
        let cases = [
            (Lookup::Unknown, DenyReason::UnknownKey),
            (Lookup::NotLoaded, DenyReason::KeySetNotLoaded),
            (Lookup::Stale, DenyReason::KeySetStale),
            (
                Lookup::Active(KeyRecord {
                    sha256: [8; 32],
                    expires_at: None,
                    org: "demo".into(),
                    role: "member".into(),
                    user: None,
                }),
                DenyReason::BadSecret,
            ),
        ];
        for (lookup, reason) in cases {
            let mut live = streams(&[(1, "aaaaaaaa")]);
            let found = lookup.clone();
            assert_eq!(
                cut(live.recheck(1, &now(6), move |_| found)),
                Some(Cut::Reply(reason)),
                "{lookup:?}"
            );
        }
    }

    #[test]
    fn expiry_and_staleness_cut_without_any_change_to_the_set() {
        let mut live = LiveStreams::default();
        live.track(1, "aaaaaaaa", HASH, Some(1_000), &state(5));
        live.track(2, "bbbbbbbb", HASH, None, &state(5));
        let mut at = now(5);
        at.now_ms = 999_999;
        assert!(live.sweep(&at, |_| panic!("looked up")).is_empty());
        at.now_ms = 1_000_000;
        assert_eq!(
            cuts(live.sweep(&at, |_| panic!("looked up"))),
            vec![(1, Cut::Reply(DenyReason::Expired))]
        );
        at.stale = true;
        assert_eq!(
            cuts(live.sweep(&at, |_| panic!("looked up"))),
            vec![(2, Cut::Reply(DenyReason::KeySetStale))]
        );
    }

    #[test]
    fn a_new_expiry_from_the_key_set_is_taken_over() {
        let mut live = streams(&[(1, "aaaaaaaa")]);
        assert_eq!(live.recheck(1, &now(6), |_| active(Some(2_000))), None);
        let mut later = now(6);
        later.now_ms = 2_000_000;
        assert_eq!(
            cut(live.recheck(1, &later, |_| panic!("looked up"))),
            Some(Cut::Reply(DenyReason::Expired))
        );
    }

    #[test]
    fn a_lost_key_set_cuts_rather_than_trusts() {
        let mut live = streams(&[(1, "aaaaaaaa")]);
        let lost = Now {
            state: ServingState::default(),
            now_ms: 0,
            stale: false,
        };
        assert_eq!(
            cut(live.recheck(1, &lost, |_| panic!("looked up"))),
            Some(Cut::Reply(DenyReason::KeySetNotLoaded))
        );
    }

    #[test]
    fn a_stream_may_have_changed_only_once_a_newer_mark_was_seen() {
        let mut live = streams(&[(1, "aaaaaaaa")]);
        live.observe(&state(5));
        assert!(!live.may_have_changed(1), "verified at the mark last seen");
        live.observe(&state(6));
        assert!(live.may_have_changed(1));
        assert_eq!(live.recheck(1, &now(6), |_| active(None)), None);
        assert!(!live.may_have_changed(1), "verified again at 6");
        assert!(
            !live.may_have_changed(2),
            "unknown streams have nothing to check"
        );
    }

    #[test]
    fn only_expiring_keys_need_the_clock() {
        let mut live = LiveStreams::default();
        live.track_for_test(1, None);
        live.track_for_test(2, Some(5));
        assert!(!live.needs_clock(1));
        assert!(live.needs_clock(2));
        assert!(!live.needs_clock(3));
    }

    #[test]
    fn forgotten_and_unknown_streams_are_left_alone() {
        let mut live = streams(&[(1, "aaaaaaaa")]);
        live.forget(1);
        assert!(live.is_empty());
        assert_eq!(live.recheck(9, &now(6), |_| Lookup::Revoked), None);
    }
}
