// state.js: what this browser remembers per publisher in localStorage: the highest index it
// accepted (sequence, id, expiry, entry count, piece refs) and mirrors learned from signed
// indexes. Applies the rollback and equivocation rules of PROTOCOL.md section 6.

const STATE_PREFIX = "qasid:v1:";

function loadHeld(publisher) {
  try {
    const raw = localStorage.getItem(STATE_PREFIX + "held:" + publisher.hex);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function saveHeld(publisher, head) {
  const record = {
    signer: head.signer,
    sequence: head.sequence,
    id: head.id,
    expires: head.expires,
    entries: head.log.entries,
    pieces: head.log.pieces,
  };
  try {
    localStorage.setItem(STATE_PREFIX + "held:" + publisher.hex, JSON.stringify(record));
  } catch {
    // Private mode or a full quota: rollback protection then lasts only for this page.
  }
}

/**
 * Compares a verified head with the held one. Returns "accept" or "same", or throws a
 * "rollback" or "equivocation" QasidError. The page keeps piece refs, not whole logs, so a
 * diverging log is caught when a piece covering the same entries changes its hash.
 */
function checkAgainstHeld(held, head) {
  if (!held) return "accept";
  if (head.sequence < held.sequence) {
    throw new QasidError("rollback", `sequence ${head.sequence} is older than sequence ${held.sequence} this browser already verified`);
  }
  if (head.sequence === held.sequence) {
    if (head.id === held.id) return "same";
    throw new QasidError("equivocation", `EQUIVOCATION: two different signed indexes with sequence ${head.sequence}`);
  }
  if (head.sequence === held.sequence + 1 && head.previous !== held.id) {
    throw new QasidError("equivocation", `EQUIVOCATION: sequence ${head.sequence} does not chain to the sequence ${held.sequence} this browser holds`);
  }
  if (head.log.entries < held.entries) {
    throw new QasidError("equivocation", "EQUIVOCATION: the signed log shrank");
  }
  for (const p of held.pieces || []) {
    const same = head.log.pieces.find((q) => q.first === p.first && q.count === p.count);
    if (same && same.sha256 !== p.sha256) throw new QasidError("equivocation", "EQUIVOCATION: the signed logs diverge");
  }
  return "accept";
}

function loadLearned() {
  try {
    const list = JSON.parse(localStorage.getItem(STATE_PREFIX + "learned") || "[]");
    return Array.isArray(list) ? list.filter((u) => normalMirrorUrl(u) === u).slice(0, 64) : [];
  } catch {
    return [];
  }
}

function saveLearned(urls) {
  try {
    localStorage.setItem(STATE_PREFIX + "learned", JSON.stringify([...new Set(urls)].slice(0, 64)));
  } catch {
    // As above: learning is a convenience.
  }
}

/** The newest mirror note sequence this browser accepted for a publisher (a BigInt, or 0n). */
function loadNoteSequence(publisher) {
  try {
    const raw = localStorage.getItem(STATE_PREFIX + "note:" + publisher.hex);
    return raw && /^\d{1,20}$/.test(raw) ? BigInt(raw) : 0n;
  } catch {
    return 0n;
  }
}

function saveNoteSequence(publisher, sequence) {
  try {
    localStorage.setItem(STATE_PREFIX + "note:" + publisher.hex, sequence.toString());
  } catch {
    // As above.
  }
}

/** The root files this browser accepted for a publisher (base64), oldest first. */
function loadRoots(publisher) {
  try {
    const list = JSON.parse(localStorage.getItem(STATE_PREFIX + "roots:" + publisher.hex) || "[]");
    return Array.isArray(list) ? list.filter((r) => typeof r === "string").slice(0, ROOT_LIMITS.versions) : [];
  } catch {
    return [];
  }
}

function saveRoots(publisher) {
  try {
    const list = publisher.chain.roots.map((r) => base64Encode(r.bytes));
    localStorage.setItem(STATE_PREFIX + "roots:" + publisher.hex, JSON.stringify(list));
  } catch {
    // As above: the roots are asked again next time.
  }
}
