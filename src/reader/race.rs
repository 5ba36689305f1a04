//! The index race: every mirror is asked for every trusted publisher's `index.json` at once,
//! and each publisher settles on one verified index.
//!
//! Owns the window (each publisher has its own race: after its first valid answer, wait a
//! little for a fresher one, then cancel its requests still open), the choice among valid answers (a fresh index before
//! an expired one, then the highest sequence, then the fastest mirror), fetching the chosen
//! index's pieces from any mirror (each capped and hash-checked before it is parsed) and the
//! index-phase fate of every mirror. The decision to accept is the [`Tracker`]'s (rollback,
//! equivocation, freshness); this module never accepts a head the tracker refused, and never
//! lets a mirror's failure stop the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::mirrors::{Fate, Mirror};
use super::transport::{self, Source, TransportError};
use super::ReaderError;
use crate::content_id::ContentId;
use crate::index::layout::PublisherLayout;
use crate::index::{
    receive_bytes, Freshness, IndexError, Offer, Outcome, PendingIndex, PieceRef, SignedHead,
    Tracker,
};
use crate::keys::Trusted as _;
use crate::limits::IndexLimits;
use crate::roots::Authority;
use crate::ErrorClass;

/// One mirror's answer for one publisher.
pub(super) struct Answer {
    mirror: usize,
    latency: Duration,
    result: Result<SignedHead, Rejected>,
}

enum Rejected {
    Transport(TransportError),
    /// Read whole, but not an authentic index of the trusted key.
    Index(IndexError),
}

/// What the race gathered for one publisher.
pub(super) struct Race {
    answers: Vec<Answer>,
    /// Mirrors still silent when the race closed.
    unanswered: Vec<usize>,
}

#[derive(Default)]
struct Open {
    answers: Vec<Answer>,
    pending: BTreeMap<usize, AbortHandle>,
    /// Mirrors whose request was cut because they had answered nothing at all by the grace.
    cut: Vec<usize>,
    first_valid: Option<Instant>,
    closed: bool,
}

/// Asks every source for every publisher's head at once. Each publisher has its own race: it
/// closes when all its mirrors answered, or `window` after its own first valid answer; one
/// publisher's race closing never cuts another's requests early, so a slow mirror (Tor) that
/// alone carries a publisher is waited for. The one exception bounds tarpits: once some race
/// has closed and `grace` has passed since the start, a race still open stops waiting for the
/// mirrors that have not answered anything at all, for any publisher (a tarpit accepts and
/// never answers; a mirror that answered something is alive and is waited for). Otherwise a
/// race lasts until every request ended by itself (bounded by the client's timeouts).
pub(super) async fn race(
    sources: &[Source],
    publishers: &[Authority],
    limits: &IndexLimits,
    window: Duration,
    grace: Duration,
) -> Vec<Race> {
    let started = Instant::now();
    // Mirrors that answered anything (an index, an error status, a refusal of the bytes).
    let mut heard_from = vec![false; sources.len()];
    let mut some_closed = false;
    let mut set = JoinSet::new();
    let mut open: Vec<Open> = publishers.iter().map(|_| Open::default()).collect();
    let mut tasks = HashMap::new();
    for (j, key) in publishers.iter().enumerate() {
        let relative = PublisherLayout::new(key.publisher()).index();
        for (m, source) in sources.iter().enumerate() {
            let (source, key, limits, relative) = (
                source.clone(),
                key.clone(),
                limits.clone(),
                relative.clone(),
            );
            let handle = set.spawn(async move {
                let start = Instant::now();
                let result = match source.read(&relative, limits.max_head_bytes).await {
                    Ok(envelope) => {
                        SignedHead::verify(&envelope, &key, &limits).map_err(Rejected::Index)
                    }
                    Err(e) => Err(Rejected::Transport(e)),
                };
                Answer {
                    mirror: m,
                    latency: start.elapsed(),
                    result,
                }
            });
            tasks.insert(handle.id(), j);
            open[j].pending.insert(m, handle);
        }
    }
    let cut_at = started + grace;
    loop {
        let now = Instant::now();
        for o in open.iter_mut().filter(|o| !o.closed) {
            if o.pending.is_empty() || o.first_valid.is_some_and(|t| now >= t + window) {
                o.closed = true;
                o.pending.values().for_each(AbortHandle::abort);
                some_closed = true;
            }
        }
        let mut cut_any = false;
        if some_closed && now >= cut_at {
            for o in open.iter_mut().filter(|o| !o.closed) {
                let silent: Vec<usize> = o
                    .pending
                    .keys()
                    .copied()
                    .filter(|&m| !heard_from[m])
                    .collect();
                for m in silent {
                    if let Some(handle) = o.pending.remove(&m) {
                        handle.abort();
                        o.cut.push(m);
                        cut_any = true;
                    }
                }
            }
        }
        if cut_any {
            // Some races may have nothing left to wait for now.
            continue;
        }
        if open.iter().all(|o| o.closed) {
            break;
        }
        let waits_on_silent = some_closed
            && open
                .iter()
                .filter(|o| !o.closed)
                .any(|o| o.pending.keys().any(|&m| !heard_from[m]));
        let deadline = open
            .iter()
            .filter(|o| !o.closed)
            .filter_map(|o| o.first_valid)
            .map(|t| t + window)
            .chain(waits_on_silent.then_some(cut_at))
            .min();
        tokio::select! {
            joined = set.join_next_with_id() => match joined {
                Some(Ok((id, answer))) => {
                    let o = &mut open[tasks[&id]];
                    if o.closed {
                        continue;
                    }
                    o.pending.remove(&answer.mirror);
                    if !matches!(
                        answer.result,
                        Err(Rejected::Transport(
                            TransportError::TimedOut(_) | TransportError::Refused(_)
                        ))
                    ) {
                        heard_from[answer.mirror] = true;
                    }
                    if answer.result.is_ok() && o.first_valid.is_none() {
                        o.first_valid = Some(Instant::now());
                    }
                    o.answers.push(answer);
                }
                Some(Err(e)) => {
                    // Cancelled by the window, or a panic in the request (reported as a failure).
                    let o = &mut open[tasks[&e.id()]];
                    let mirror = o.pending.iter().find(|(_, h)| h.id() == e.id()).map(|(m, _)| *m);
                    if let (Some(mirror), false) = (mirror, o.closed) {
                        o.pending.remove(&mirror);
                        o.answers.push(Answer {
                            mirror,
                            latency: Duration::ZERO,
                            result: Err(Rejected::Transport(TransportError::Failed(
                                "the request failed unexpectedly".into(),
                            ))),
                        });
                    }
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => {}
        }
    }
    set.abort_all();
    open.into_iter()
        .map(|o| Race {
            answers: o.answers,
            unanswered: o.pending.into_keys().chain(o.cut).collect(),
        })
        .collect()
}

/// The publisher's accepted index after a race.
pub(super) struct Settled {
    pub(super) outcome: Outcome,
    /// The fastest mirror that served the accepted head (`None`: the held head was kept).
    pub(super) source: Option<usize>,
    /// Mirrors to ask for bundles, best first: those with the accepted head, those with other
    /// authentic heads, then those that had not answered yet (slow, not known to be dead).
    pub(super) ranked: Vec<usize>,
}

/// Mirrors that served the same head, fastest first.
struct Candidate {
    head: SignedHead,
    mirrors: Vec<(usize, Duration)>,
}

impl Candidate {
    fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.mirrors.iter().map(|(m, _)| *m)
    }
}

/// Index-phase notes for one publisher, and whether any answer was inauthentic.
struct Notes<'a> {
    mirrors: &'a mut [Mirror],
    lines: Vec<String>,
    inauthentic: bool,
}

impl Notes<'_> {
    fn note(&mut self, m: usize, fate: Fate, detail: Option<&str>) {
        if matches!(fate, Fate::Lying | Fate::Stale) {
            self.inauthentic = true;
        }
        if fate != Fate::Ok {
            self.lines.push(format!(
                "{}: {}{}",
                self.mirrors[m].label(),
                fate.as_str(),
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ));
        }
        self.mirrors[m].note_index(fate, detail);
    }

    /// A piece failure (a lie goes to the index note, so the mirror is not asked again).
    fn note_piece(&mut self, m: usize, fate: Fate, detail: &str) {
        if fate == Fate::Lying {
            return self.note(m, fate, Some(detail));
        }
        self.lines.push(format!(
            "{}: {} ({detail})",
            self.mirrors[m].label(),
            fate.as_str()
        ));
        self.mirrors[m].note_piece(fate, detail);
    }

    fn summary(&self) -> String {
        if self.lines.is_empty() {
            "no answer".to_owned()
        } else {
            self.lines.join("; ")
        }
    }
}

/// Why a candidate head was not accepted.
enum Skip {
    /// Authentic, but refused by the history (rollback).
    Stale(String),
    /// Its pieces could not be obtained or did not fit; the reasons are noted.
    Incomplete,
    /// Stops the publisher: equivocation (evidence saved) or a local state failure.
    Fatal(IndexError),
}

/// Chooses among the answers and hands the best authentic one to `tracker`.
pub(super) async fn settle(
    tracker: &mut Tracker,
    race: Race,
    mirrors: &mut [Mirror],
    hedge_delay: Duration,
    now: SystemTime,
) -> Result<Settled, ReaderError> {
    let publisher = tracker.publisher().id();
    let mut notes = Notes {
        mirrors,
        lines: Vec::new(),
        inauthentic: false,
    };
    let mut candidates: Vec<Candidate> = Vec::new();
    for answer in race.answers {
        match answer.result {
            Ok(head) => {
                notes.mirrors[answer.mirror].answered(answer.latency);
                let entry = (answer.mirror, answer.latency);
                match candidates.iter_mut().find(|c| c.head.id() == head.id()) {
                    Some(c) => c.mirrors.push(entry),
                    None => candidates.push(Candidate {
                        head,
                        mirrors: vec![entry],
                    }),
                }
            }
            Err(Rejected::Transport(e)) => {
                let (fate, detail) = e.fate();
                notes.note(answer.mirror, fate, Some(&format!("index: {detail}")));
            }
            Err(Rejected::Index(e @ IndexError::NotAMirror(_))) => {
                notes.note(answer.mirror, Fate::Failed, Some(&format!("index: {e}")));
            }
            Err(Rejected::Index(e)) => {
                notes.note(answer.mirror, Fate::Lying, Some(&format!("index: {e}")));
            }
        }
    }
    for &m in &race.unanswered {
        notes.note(
            m,
            Fate::TimedOut,
            Some("index: no answer before the race closed"),
        );
    }
    for c in &mut candidates {
        c.mirrors.sort_by_key(|(_, latency)| *latency);
    }
    candidates.sort_by_key(|c| {
        let fresh = c.head.head().freshness(now) == Freshness::Fresh;
        (
            !fresh,
            std::cmp::Reverse(c.head.head().sequence()),
            c.mirrors[0].1,
        )
    });

    let mut accepted = None;
    for i in 0..candidates.len() {
        match try_candidate(tracker, &candidates, i, hedge_delay, &mut notes, now).await {
            Ok(outcome) => {
                accepted = Some((i, outcome));
                break;
            }
            Err(Skip::Stale(detail)) => {
                for m in candidates[i].ids() {
                    notes.note(m, Fate::Stale, Some(&detail));
                }
            }
            Err(Skip::Incomplete) => {}
            Err(Skip::Fatal(e)) => return Err(fatal(e)),
        }
    }
    let Some((chosen, outcome)) = accepted else {
        return Err(if notes.inauthentic {
            ReaderError::NoAuthenticIndex {
                publisher,
                summary: notes.summary(),
            }
        } else {
            ReaderError::Unreachable {
                publisher,
                summary: notes.summary(),
            }
        });
    };
    // Sort the other answers against the accepted history: older ones are stale, and one that
    // contradicts it is equivocation (the tracker saves the evidence).
    for c in &candidates[chosen + 1..] {
        let detail = match tracker.offer(c.head.envelope(), now) {
            Ok(Offer::Unchanged) => None,
            Ok(Offer::KeptFresher { .. }) => Some(format!(
                "index: sequence {} has expired; a fresher one is in use",
                c.head.head().sequence()
            )),
            Ok(Offer::Update(_)) => Some(format!(
                "index: sequence {} was not used",
                c.head.head().sequence()
            )),
            Err(IndexError::Rollback { held, offered }) => Some(format!(
                "index: sequence {offered} is older than sequence {held}"
            )),
            Err(e) if e.class() == ErrorClass::Verification => return Err(fatal(e)),
            Err(e) => return Err(ReaderError::State(e)),
        };
        let fate = if detail.is_some() {
            Fate::Stale
        } else {
            Fate::Ok
        };
        for m in c.ids() {
            notes.note(m, fate, detail.as_deref());
        }
    }
    let kept = matches!(outcome, Outcome::KeptFresher { .. });
    let winners = &candidates[chosen];
    for m in winners.ids() {
        let detail = kept.then(|| {
            format!(
                "index: offered sequence {}, which has expired",
                winners.head.head().sequence()
            )
        });
        notes.note(m, Fate::Ok, detail.as_deref());
    }
    let mut ranked: Vec<usize> = winners.ids().collect();
    let mut others: Vec<(usize, Duration)> = candidates
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != chosen)
        .flat_map(|(_, c)| c.mirrors.iter().copied())
        .collect();
    others.sort_by_key(|(_, latency)| *latency);
    ranked.extend(others.into_iter().map(|(m, _)| m));
    ranked.extend(race.unanswered.iter().copied());
    ranked.dedup();
    // A mirror that stalled on a piece is asked for the bundle only after the others.
    let (slow, mut ranked): (Vec<usize>, Vec<usize>) = ranked
        .into_iter()
        .partition(|&m| notes.mirrors[m].failed_a_piece());
    ranked.extend(slow);
    Ok(Settled {
        outcome,
        source: (!kept).then(|| winners.mirrors[0].0),
        ranked,
    })
}

fn fatal(e: IndexError) -> ReaderError {
    match e {
        e @ IndexError::Equivocation { .. } => ReaderError::Index(e),
        e if e.class() == ErrorClass::Runtime => ReaderError::State(e),
        e => ReaderError::Index(e),
    }
}

/// Offers candidate `i` to the tracker and, if it is news, fetches its pieces and accepts it.
async fn try_candidate(
    tracker: &mut Tracker,
    candidates: &[Candidate],
    i: usize,
    hedge_delay: Duration,
    notes: &mut Notes<'_>,
    now: SystemTime,
) -> Result<Outcome, Skip> {
    let c = &candidates[i];
    let from = tracker.held().map(|h| h.head().sequence());
    let update = match tracker.offer(c.head.envelope(), now) {
        Ok(Offer::Unchanged) => return Ok(Outcome::Unchanged),
        Ok(Offer::KeptFresher { offered }) => {
            let expired_since = match offered.head().freshness(now) {
                Freshness::Expired { since } => since,
                Freshness::Fresh => Duration::ZERO,
            };
            return Ok(Outcome::KeptFresher {
                offered: offered.head().sequence(),
                expired_since,
            });
        }
        Ok(Offer::Update(mut pending)) => {
            // Pieces are immutable and named by hash: any mirror may serve them. The ones
            // that served this head come first.
            let mut order: Vec<usize> = c.ids().collect();
            for other in candidates.iter().filter(|o| o.head.id() != c.head.id()) {
                order.extend(other.ids());
            }
            match fetch_pieces(&mut pending, &order, hedge_delay, notes).await {
                Ok(()) => {}
                Err(None) => return Err(Skip::Incomplete),
                Err(Some(e)) => return Err(skip(e, c, notes)),
            }
            pending.finish().map_err(|e| skip(e, c, notes))?
        }
        Err(IndexError::Rollback { held, offered }) => {
            return Err(Skip::Stale(format!(
                "index: sequence {offered} is older than sequence {held} already seen \
                 (rollback refused)"
            )))
        }
        Err(e) => return Err(skip(e, c, notes)),
    };
    let to = tracker
        .accept(update)
        .map_err(Skip::Fatal)?
        .head()
        .sequence();
    Ok(Outcome::Updated { from, to })
}

/// Equivocation and local failures stop the publisher; any other refusal of a signed head
/// (its pieces contradict each other) only rules out this candidate.
fn skip(e: IndexError, c: &Candidate, notes: &mut Notes<'_>) -> Skip {
    match e {
        IndexError::Equivocation { .. } => Skip::Fatal(e),
        e if e.class() == ErrorClass::Runtime => Skip::Fatal(e),
        e => {
            let detail = format!("index: {e}");
            for m in c.ids() {
                notes.note(m, Fate::Failed, Some(&detail));
            }
            notes.inauthentic = true;
            Skip::Incomplete
        }
    }
}

/// Fetches what `pending` asks for, each piece hedged across `order` (see [`hedged_piece`]).
/// `Err(None)`: some piece was on no mirror (the reasons are noted); `Err(Some(e))`: the
/// tracker refused what the pieces say.
async fn fetch_pieces(
    pending: &mut PendingIndex<'_>,
    order: &[usize],
    hedge_delay: Duration,
    notes: &mut Notes<'_>,
) -> Result<(), Option<IndexError>> {
    let layout = PublisherLayout::new(pending.head().head().publisher());
    loop {
        let needed = pending.needed()?;
        if needed.is_empty() {
            return Ok(());
        }
        for piece in needed {
            let relative = layout.piece(&piece.sha256);
            let Some(bytes) = hedged_piece(&relative, &piece, order, hedge_delay, notes).await
            else {
                return Err(None);
            };
            pending.supply(&piece, bytes)?;
        }
    }
}

/// One piece, raced like a bundle: ask the first mirror of `order`; whenever bytes have not
/// come (at [`transport::MIN_RATE`]) for `hedge_delay`, ask the next one too; a failure
/// brings in the next at once; the first copy with the signed size and sha256 wins and the
/// other requests are cancelled. A mirror that was overtaken because its piece stopped coming
/// is noted as having stalled on it, so the report says what it did.
async fn hedged_piece(
    relative: &str,
    piece: &PieceRef,
    order: &[usize],
    hedge_delay: Duration,
    notes: &mut Notes<'_>,
) -> Option<Vec<u8>> {
    let what = format!("index piece {}", short(&piece.sha256));
    let mut queue: VecDeque<usize> = order.iter().copied().collect();
    let mut set: JoinSet<(usize, Result<Vec<u8>, TransportError>)> = JoinSet::new();
    let mut running: Vec<usize> = Vec::new();
    let mut stalled: Vec<usize> = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let min_progress = ((transport::MIN_RATE as f64 * hedge_delay.as_secs_f64()) as u64).max(1);
    let (mut moved, mut last_activity) = (0u64, Instant::now());
    let launch = |queue: &mut VecDeque<usize>,
                  set: &mut JoinSet<_>,
                  running: &mut Vec<usize>,
                  notes: &Notes<'_>| {
        while let Some(m) = queue.pop_front() {
            if notes.mirrors[m].is_lying() || running.contains(&m) {
                continue;
            }
            let (source, relative, tx, size) = (
                notes.mirrors[m].source.clone(),
                relative.to_owned(),
                tx.clone(),
                piece.size,
            );
            set.spawn(async move {
                let got = source.read_watched(&relative, size, Some(&tx)).await;
                (m, got)
            });
            running.push(m);
            return true;
        }
        false
    };
    let winner = loop {
        if set.is_empty() && !launch(&mut queue, &mut set, &mut running, notes) {
            break None;
        }
        let can_hedge = !queue.is_empty();
        tokio::select! {
            joined = set.join_next() => {
                let Some(joined) = joined else { continue };
                let Ok((m, got)) = joined else { continue };
                running.retain(|&r| r != m);
                let checked = got.and_then(|b| {
                    receive_bytes(&b[..], piece.object()).map_err(TransportError::from_fetch)
                });
                match checked {
                    Ok(bytes) => break Some((m, bytes)),
                    Err(e) => {
                        let (fate, detail) = e.fate();
                        notes.note_piece(m, fate, &format!("{what}: {detail}"));
                        stalled.retain(|&s| s != m);
                        // Another mirror at once, not after the hedge delay.
                        launch(&mut queue, &mut set, &mut running, notes);
                        last_activity = Instant::now();
                    }
                }
            }
            Some(n) = rx.recv() => {
                moved += n;
                if moved >= min_progress {
                    moved = 0;
                    last_activity = Instant::now();
                }
            }
            () = tokio::time::sleep_until(last_activity + hedge_delay), if can_hedge => {
                for &m in &running {
                    if !stalled.contains(&m) {
                        stalled.push(m);
                    }
                }
                launch(&mut queue, &mut set, &mut running, notes);
                last_activity = Instant::now();
            }
        }
    };
    set.abort_all();
    while set.join_next().await.is_some() {}
    let (served_by, bytes) = winner?;
    for m in stalled.into_iter().filter(|&m| m != served_by) {
        notes.note_piece(
            m,
            Fate::TimedOut,
            &format!("stalled on {what}; another mirror served it"),
        );
    }
    Some(bytes)
}

fn short(id: &ContentId) -> String {
    id.to_hex()[..12].to_owned()
}
