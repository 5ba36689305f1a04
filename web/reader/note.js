// note.js: signed mirror notes (docs/PROTOCOL.md section 12), the `qasid:1:…` text that carries
// fresh mirror addresses through chat apps, SMS, QR codes and the fragment of a link to this
// page. The checks run in the documented order: envelope, key id, signature, and only then the
// body, which must re-encode to exactly the signed bytes (one spelling per note).

const NOTE_DOMAIN = utf8Bytes("qasid-note-v1\n");
const NOTE_PREFIX = "qasid:";
const NOTE_MAX_BYTES = 2048;
const NOTE_MAX_MIRRORS = 16;
const NOTE_MIN_BYTES = 8 + 3 + 64;
const NOTE_HINTS = ["direct", "tor", "proxy"];

function noteError(code, reason) {
  return new QasidError("note", `mirror note: ${reason} (${code})`, code);
}

/** base64url without padding, whose unused low bits are zero: one spelling per payload. */
function base64UrlDecode(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const standard = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  let binary;
  try {
    binary = atob(standard);
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  const again = base64Encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return again === text ? bytes : null;
}

/** The note's bytes from its URI text; only the envelope is checked here. */
function noteBytesFromUri(text) {
  const uri = String(text).trim();
  if (uri.length > NOTE_PREFIX.length + Math.ceil(NOTE_MAX_BYTES / 3) * 4) {
    throw noteError("too_large", `more than ${NOTE_MAX_BYTES} bytes`);
  }
  if (!uri.startsWith(NOTE_PREFIX)) throw noteError("not_a_note", "it does not start with qasid:");
  const rest = uri.slice(NOTE_PREFIX.length);
  const colon = rest.indexOf(":");
  if (colon < 0) throw noteError("not_a_note", "no version");
  const version = rest.slice(0, colon);
  if (version !== "1") throw noteError("unknown_version", `format version ${JSON.stringify(version.slice(0, 16))} is not 1: this page is too old for it`);
  const bytes = base64UrlDecode(rest.slice(colon + 1));
  if (!bytes) throw noteError("not_a_note", "the payload is not base64url without padding");
  if (bytes.length > NOTE_MAX_BYTES) throw noteError("too_large", `more than ${NOTE_MAX_BYTES} bytes`);
  return bytes;
}

/** Unsigned LEB128, minimal, at most 10 bytes and 64 bits; a BigInt. */
function readVarint(bytes, at, what) {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (at.i >= bytes.length) throw noteError("malformed", `${what}: the note ends early`);
    const b = bytes[at.i++];
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) {
      if (i > 0 && b === 0) throw noteError("malformed", `${what}: not the shortest varint`);
      if (value >= 1n << 64n) throw noteError("malformed", `${what}: more than 64 bits`);
      return value;
    }
  }
  throw noteError("malformed", `${what}: a varint longer than 10 bytes`);
}

function putVarint(out, value) {
  let v = value;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
}

function encodeNoteBody(keyIdBytes, note) {
  const out = [...keyIdBytes];
  putVarint(out, note.sequence);
  putVarint(out, note.expires);
  putVarint(out, BigInt(note.mirrors.length));
  for (const m of note.mirrors) {
    const https = m.url.startsWith("https://");
    const rest = utf8Bytes(m.url.slice(https ? 8 : 7));
    out.push((https ? 0 : 1) | (NOTE_HINTS.indexOf(m.hint) << 1));
    putVarint(out, BigInt(rest.length));
    out.push(...rest);
  }
  return Uint8Array.from(out);
}

function decodeNoteBody(body) {
  const at = { i: 8 };
  const sequence = readVarint(body, at, "sequence");
  const expires = readVarint(body, at, "expires");
  const count = readVarint(body, at, "mirror count");
  if (sequence === 0n) throw noteError("malformed", "sequence must be at least 1");
  if (count === 0n) throw noteError("malformed", "a note lists at least one mirror");
  if (count > BigInt(NOTE_MAX_MIRRORS)) throw noteError("malformed", `more than ${NOTE_MAX_MIRRORS} mirrors`);
  const mirrors = [];
  for (let n = 0n; n < count; n++) {
    if (at.i >= body.length) throw noteError("malformed", "the note ends early");
    const flags = body[at.i++];
    const hint = NOTE_HINTS[flags >> 1];
    if (!hint) throw noteError("malformed", `unknown mirror flags 0x${flags.toString(16).padStart(2, "0")}`);
    const len = readVarint(body, at, "URL length");
    if (len > BigInt(body.length - at.i)) throw noteError("malformed", "the note ends early");
    const restBytes = body.subarray(at.i, at.i + Number(len));
    at.i += Number(len);
    let rest;
    try {
      rest = new TextDecoder("utf-8", { fatal: true }).decode(restBytes);
    } catch {
      throw noteError("malformed", "a mirror URL is not UTF-8");
    }
    const url = ((flags & 1) === 0 ? "https://" : "http://") + rest;
    if (normalMirrorUrl(url) !== url) throw noteError("malformed", `mirror URL ${JSON.stringify(url)} is not in normal form`);
    if (mirrors.some((m) => m.url === url)) throw noteError("malformed", `mirror ${url} is listed twice`);
    mirrors.push({ url, hint });
  }
  if (at.i !== body.length) throw noteError("malformed", `${body.length - at.i} bytes after the last mirror`);
  return { sequence, expires, mirrors };
}

/**
 * Verifies a note URI against the trusted publishers (the keys their current roots delegate
 * for notes, or their own keys). Returns
 * `{ publisher, sequence, expires, mirrors }` (sequence and expires as BigInt seconds) or throws
 * a QasidError whose `code` is the vector outcome name. `nowMs` decides expiry.
 */
async function verifyNote(text, publishers, nowMs) {
  const bytes = noteBytesFromUri(text);
  if (bytes.length < NOTE_MIN_BYTES) throw noteError("malformed", "too short to be a note");
  const keyIdHex = hex(bytes.slice(0, 8).reverse()).toUpperCase();
  let signer = null;
  let owner = null;
  for (const p of publishers) {
    for (const k of signersFor(p, "note")) {
      if (k.keyId === keyIdHex) {
        signer = k;
        owner = p;
      }
    }
  }
  if (!signer) throw noteError("unknown_publisher", `signed by key ${keyIdHex}, which this page does not trust`);
  const body = bytes.subarray(0, bytes.length - 64);
  const signature = bytes.subarray(bytes.length - 64);
  if (!(await verifySignature(signer, NOTE_DOMAIN, body, signature))) {
    throw noteError("bad_signature", `the signature does not verify with publisher ${keyIdHex}'s key`);
  }
  const note = decodeNoteBody(body);
  if (!equalBytes(encodeNoteBody(body.subarray(0, 8), note), body)) {
    throw noteError("malformed", "not the canonical encoding of its content");
  }
  if (BigInt(Math.floor(nowMs)) > note.expires * 1000n) {
    throw noteError("expired", `expired at ${new Date(Number(note.expires) * 1000).toISOString()}`);
  }
  return { publisher: owner, keyId: keyIdHex, ...note };
}
