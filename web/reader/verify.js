// verify.js: the protocol's checks (docs/PROTOCOL.md, docs/FORMAT.md) for keys, signatures, the
// signed index (envelope, head, pieces) and bundle manifests. Every signed or hashed object has
// exactly one accepted spelling: parse, re-encode in the documented order and compare, so a
// re-spaced copy is refused as malformed and never counts as "another" index.

const INDEX_DOMAIN = utf8Bytes("qasid-index-head-v1\n");
const MANIFEST_DOMAIN = utf8Bytes("qasid-bundle-manifest-v1\n");
const ENVELOPE_FORMAT = "qasid-index-envelope/1";
const HEAD_FORMAT = "qasid-index/1";
const PIECE_FORMAT = "qasid-index-piece/1";
const BUNDLE_FORMAT = "qasid-bundle/1";

/** Caps from docs/PROTOCOL.md section 8 (IndexLimits) and docs/FORMAT.md. */
/** Chunk lists (PROTOCOL.md section 13): bundles above 1 MiB, 256 KiB chunks. */
const CHUNKS = { threshold: 1 << 20, size: 256 << 10, hashBytes: 32 };

const LIMITS = {
  indexBytes: 64 * 1024,
  pieceBytes: 256 * 1024 * 1024,
  entries: 1000000,
  pieces: 64,
  mirrors: 64,
  mirrorUrlBytes: 2048,
  textBytes: 2048,
  manifestBytes: 1024 * 1024,
  bundleBytes: 2 * 1024 * 1024 * 1024,
  files: 4096,
};

// The group order L of ed25519: a signature's S must be below it (no malleated copies).
const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n;
// Encodings of points of small order (libsodium's blocklist): refused as R, as dalek's
// verify_strict does, so the page accepts exactly the signatures the Rust verifier accepts.
const SMALL_ORDER = new Set([
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "0100000000000000000000000000000000000000000000000000000000000080",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
]);

/** True when this browser can verify ed25519 signatures (WebCrypto). */
async function ed25519Supported() {
  try {
    const key = await crypto.subtle.importKey("raw", new Uint8Array(32).fill(0x11), { name: "Ed25519" }, false, ["verify"]);
    await crypto.subtle.verify({ name: "Ed25519" }, key, new Uint8Array(64), new Uint8Array(1));
    return true;
  } catch {
    return false;
  }
}

/**
 * A trusted publisher from its one-line minisign form: base64 of "Ed" ‖ key id ‖ key, where the
 * key id must be the first 8 bytes of sha256(key) (FORMAT.md section 1).
 */
async function importPublisher(line) {
  const raw = base64Decode(line.trim());
  if (raw.length !== 42 || raw[0] !== 0x45 || raw[1] !== 0x64) {
    throw new QasidError("malformed", "not a qasid publisher key");
  }
  const key = raw.slice(10);
  const digest = await sha256(key);
  if (!equalBytes(digest.slice(0, 8), raw.slice(2, 10))) {
    throw new QasidError("malformed", "the key id is not derived from the key");
  }
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
  return {
    line: line.trim(),
    hex: hex(key),
    keyId: hex(raw.slice(2, 10).reverse()).toUpperCase(),
    cryptoKey,
  };
}

/** Verifies an ed25519 signature over domain ‖ message, strictly (canonical S, R not small order). */
async function verifySignature(publisher, domain, message, signature) {
  if (signature.length !== 64) return false;
  const s = BigInt("0x" + hex(signature.slice(32).reverse()));
  if (s >= ED25519_L) return false;
  if (SMALL_ORDER.has(hex(signature.slice(0, 32)))) return false;
  return crypto.subtle.verify({ name: "Ed25519" }, publisher.cryptoKey, signature, concatBytes(domain, message));
}

/**
 * The keys that may sign `role` ("index", "bundle", "note") for a publisher right now: those its
 * current root delegates (roots.js), or the publisher's own key when it has no root.
 */
function signersFor(publisher, role) {
  const delegated = publisher.signers ? publisher.signers[role] : null;
  return delegated || [publisher];
}

function malformed(what, reason) {
  return new QasidError("malformed", `${what}: ${reason}`);
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw malformed(what, "not JSON");
  }
}

function requireKeys(obj, keys, what) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw malformed(what, "not an object");
  const got = Object.keys(obj);
  if (got.length !== keys.length || !keys.every((k) => Object.prototype.hasOwnProperty.call(obj, k))) {
    throw malformed(what, `members must be exactly ${keys.join(", ")}`);
  }
}

function requireCount(value, what, min) {
  if (!Number.isSafeInteger(value) || value < min) throw malformed(what, `must be an integer >= ${min}`);
  return value;
}

function requireHash(value, what) {
  if (typeof value !== "string" || !HEX64.test(value)) throw malformed(what, "not 64 lowercase hex digits");
  return value;
}

const TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;

/** RFC 3339 UTC with whole seconds and Z, the one spelling (PROTOCOL.md section 2). */
function parseTime(text, what) {
  const m = typeof text === "string" ? TIME.exec(text) : null;
  if (!m) throw malformed(what, "not a time like 2026-01-31T12:00:00Z");
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  if (new Date(ms).toISOString().replace(".000Z", "Z") !== text) throw malformed(what, "not a real time");
  return ms;
}

function realDate(text) {
  const m = typeof text === "string" ? /^(\d{4})-(\d{2})-(\d{2})$/.exec(text) : null;
  if (!m) return false;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
  return d.toISOString().slice(0, 10) === text;
}

const NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
const LANGUAGE = /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;
// Cc (control) characters; and the whitespace String.prototype.trim removes, as Rust's trim does.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function requireText(value, what) {
  if (typeof value !== "string" || value.length === 0) throw malformed(what, "empty");
  if (value.trim() !== value) throw malformed(what, "leading or trailing whitespace");
  if (CONTROL.test(value)) throw malformed(what, "contains a control character");
  if (utf8Bytes(value).length > LIMITS.textBytes) throw malformed(what, "too long");
  return value;
}

/** A mirror URL exactly in the normal form publishers write (PROTOCOL.md section 1). */
function normalMirrorUrl(text) {
  if (typeof text !== "string" || utf8Bytes(text).length > LIMITS.mirrorUrlBytes) return null;
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (!url.hostname || url.username || url.password || url.search || url.hash) return null;
  if (text.includes("?") || text.includes("#")) return null;
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url.href;
}

function checkPieceRef(ref, what) {
  requireKeys(ref, ["sha256", "size", "first", "count"], what);
  requireHash(ref.sha256, what + " sha256");
  requireCount(ref.size, what + " size", 1);
  if (ref.size > LIMITS.pieceBytes) throw malformed(what, "piece too large");
  requireCount(ref.first, what + " first", 0);
  requireCount(ref.count, what + " count", 1);
  return { sha256: ref.sha256, size: ref.size, first: ref.first, count: ref.count };
}

function encodePieceRef(r) {
  return { sha256: r.sha256, size: r.size, first: r.first, count: r.count };
}

/**
 * Verifies index.json against a trusted publisher: size, canonical envelope, signature, then the
 * canonical head and every rule of PROTOCOL.md section 3. Returns the head, its id (sha256 of the
 * file) and the exact bytes.
 */
async function verifyIndex(bytes, publisher) {
  if (bytes.length > LIMITS.indexBytes) throw new QasidError("lying", "index.json is larger than 64 KiB");
  let text;
  try {
    text = utf8(bytes);
  } catch {
    throw malformed("index.json", "not UTF-8");
  }
  if (/^\s*</.test(text)) throw new QasidError("not-mirror", "not a qasid mirror (an HTML page: wrong URL or a captive portal?)");
  const env = parseJson(text, "index.json");
  requireKeys(env, ["format", "head", "signature"], "index.json");
  if (env.format !== ENVELOPE_FORMAT) throw malformed("index.json", `unknown format ${JSON.stringify(env.format)}`);
  if (typeof env.head !== "string" || typeof env.signature !== "string") throw malformed("index.json", "head and signature must be strings");
  const canonical = JSON.stringify({ format: env.format, head: env.head, signature: env.signature }) + "\n";
  if (canonical !== text) throw malformed("index.json", "not in its one canonical encoding (re-spaced or reordered)");
  const headBytes = base64Decode(env.head);
  const signature = base64Decode(env.signature);
  let signer = null;
  for (const key of signersFor(publisher, "index")) {
    if (await verifySignature(key, INDEX_DOMAIN, headBytes, signature)) {
      signer = key;
      break;
    }
  }
  if (!signer) throw new QasidError("lying", "the index signature does not verify with a key the publisher delegates for indexes", "bad_signature");
  let headText;
  try {
    headText = utf8(headBytes);
  } catch {
    throw malformed("index head", "not UTF-8");
  }
  const h = parseJson(headText, "index head");
  requireKeys(h, ["format", "publisher", "sequence", "issued", "expires", "previous", "mirrors", "log"], "index head");
  if (h.format !== HEAD_FORMAT) throw malformed("index head", `unknown format ${JSON.stringify(h.format)}`);
  if (h.publisher !== publisher.line) throw new QasidError("lying", "the index names another publisher");
  requireCount(h.sequence, "sequence", 1);
  const issued = parseTime(h.issued, "issued");
  const expires = parseTime(h.expires, "expires");
  if (expires <= issued) throw malformed("index head", "expires is not after issued");
  if ((h.previous === null) !== (h.sequence === 1)) throw malformed("index head", "previous must be null exactly when the sequence is 1");
  if (h.previous !== null) requireHash(h.previous, "previous");
  if (!Array.isArray(h.mirrors) || h.mirrors.length > LIMITS.mirrors) throw malformed("index head", "bad mirror list");
  for (const m of h.mirrors) {
    if (normalMirrorUrl(m) !== m) throw malformed("index head", `mirror URL ${JSON.stringify(m)} is not in normal form`);
  }
  requireKeys(h.log, ["entries", "pieces", "batch"], "index log");
  const entries = requireCount(h.log.entries, "log entries", 1);
  if (entries > LIMITS.entries) throw malformed("index log", "too many entries");
  if (!Array.isArray(h.log.pieces) || h.log.pieces.length === 0 || h.log.pieces.length > LIMITS.pieces) {
    throw malformed("index log", "bad piece list");
  }
  const pieces = h.log.pieces.map((p) => checkPieceRef(p, "piece"));
  const batch = checkPieceRef(h.log.batch, "batch");
  let next = 0;
  for (const p of pieces) {
    if (p.first !== next) throw malformed("index log", "pieces are not contiguous");
    next = p.first + p.count;
  }
  if (next !== entries) throw malformed("index log", "pieces do not cover the log");
  if (batch.first + batch.count !== entries) throw malformed("index log", "the batch piece is not the end of the log");
  const reencoded = JSON.stringify({
    format: h.format,
    publisher: h.publisher,
    sequence: h.sequence,
    issued: h.issued,
    expires: h.expires,
    previous: h.previous,
    mirrors: h.mirrors,
    log: { entries, pieces: pieces.map(encodePieceRef), batch: encodePieceRef(batch) },
  });
  if (reencoded !== headText) throw malformed("index head", "not in its one canonical encoding");
  return {
    id: await sha256Hex(bytes),
    signer: signer.hex,
    bytes,
    sequence: h.sequence,
    issued,
    expires,
    previous: h.previous,
    mirrors: h.mirrors,
    log: { entries, pieces, batch },
  };
}

function checkEntry(e) {
  if (e === null || typeof e !== "object") throw malformed("log entry", "not an object");
  if (e.op === "retract") {
    requireKeys(e, ["op", "name"], "retract entry");
    if (!NAME.test(e.name)) throw malformed("retract entry", "bad name");
    return { op: "retract", name: e.name };
  }
  if (e.op !== "add") throw malformed("log entry", "unknown op");
  const members = ["op", "name", "version", "title", "date", "language", "author", "bundle"];
  requireKeys(e, Object.prototype.hasOwnProperty.call(e, "chunks") ? [...members, "chunks"] : members, "add entry");
  if (typeof e.name !== "string" || !NAME.test(e.name)) throw malformed("add entry", "bad name");
  requireCount(e.version, "version", 1);
  requireText(e.title, "title");
  requireText(e.author, "author");
  if (!realDate(e.date)) throw malformed("add entry", "bad date");
  if (typeof e.language !== "string" || !LANGUAGE.test(e.language)) throw malformed("add entry", "bad language");
  requireKeys(e.bundle, ["sha256", "size"], "entry bundle");
  requireHash(e.bundle.sha256, "bundle sha256");
  requireCount(e.bundle.size, "bundle size", 1);
  const entry = {
    op: "add",
    name: e.name,
    version: e.version,
    title: e.title,
    date: e.date,
    language: e.language,
    author: e.author,
    bundle: { sha256: e.bundle.sha256, size: e.bundle.size },
  };
  if (e.chunks !== undefined) {
    try {
      entry.chunks = checkChunksRef(e.chunks, entry.bundle);
    } catch (err) {
      throw malformed("add entry", err.message);
    }
  }
  return entry;
}

/** An entry's `chunks` reference (PROTOCOL.md section 13): only above the threshold, exact size. */
function checkChunksRef(ref, bundle) {
  requireKeys(ref, ["sha256", "size"], "entry chunks");
  requireHash(ref.sha256, "chunk list sha256");
  requireCount(ref.size, "chunk list size", 1);
  if (bundle.size <= CHUNKS.threshold) throw chunkError("malformed", "not_chunked", `a bundle of ${bundle.size} bytes has no chunk list`);
  const expected = CHUNKS.hashBytes * (1 + chunkCount(bundle.size));
  if (ref.size !== expected) throw chunkError("malformed", "wrong_size", `chunk list is ${ref.size} bytes, a bundle of ${bundle.size} bytes needs ${expected}`);
  return { sha256: ref.sha256, size: ref.size };
}

/** Checks chunk `index` (its bytes as received) against the list: names the chunk and offset. */
async function verifyChunk(index, bytes, hashes, bundleSize) {
  const first = index * CHUNKS.size;
  const length = Math.min(CHUNKS.size, bundleSize - first);
  const where = `chunk ${index} (bytes ${first}..${first + length})`;
  if (bytes.length !== length || (await sha256Hex(bytes)) !== hashes[index]) {
    const e = new QasidError("lying", `sent a wrong ${where} of the bundle`, "chunk_mismatch");
    e.chunk = { index, offset: first };
    throw e;
  }
}

function chunkError(kind, code, reason) {
  return new QasidError(kind, `chunk list: ${reason}`, code);
}

function chunkCount(bundleSize) {
  return Math.ceil(bundleSize / CHUNKS.size);
}

/**
 * Parses a chunk list whose bytes already matched the entry's signed `chunks` sha256 and size:
 * the bundle's sha256, then one sha256 per chunk. Returns the chunks' hashes as hex.
 */
function parseChunkList(bytes, bundle) {
  const n = chunkCount(bundle.size);
  if (bundle.size <= CHUNKS.threshold) throw chunkError("malformed", "not_chunked", `a bundle of ${bundle.size} bytes has no chunk list`);
  if (bytes.length !== CHUNKS.hashBytes * (1 + n)) throw chunkError("malformed", "wrong_size", `${bytes.length} bytes is not the size for ${n} chunks`);
  const named = hex(bytes.subarray(0, CHUNKS.hashBytes));
  if (named !== bundle.sha256) throw chunkError("malformed", "wrong_bundle", "it is the list of another bundle");
  const hashes = [];
  for (let i = 1; i <= n; i++) hashes.push(hex(bytes.subarray(i * CHUNKS.hashBytes, (i + 1) * CHUNKS.hashBytes)));
  return hashes;
}

/** Verifies a piece against the signed PieceRef: size and sha256 first, then canonical JSON. */
async function verifyPiece(bytes, ref, publisher) {
  if (bytes.length !== ref.size) throw new QasidError("lying", `piece is ${bytes.length} bytes, the index says ${ref.size}`);
  const digest = await sha256Hex(bytes);
  if (digest !== ref.sha256) throw new QasidError("lying", `piece sha256 is ${digest}, the index says ${ref.sha256}`);
  const piece = parsePiece(bytes, publisher);
  if (piece.first !== ref.first || piece.entries.length !== ref.count) {
    throw malformed("piece", "does not hold the entries the index says");
  }
  return piece.entries;
}

/** A piece's own rules (format, publisher, entries, one canonical encoding): { first, entries }. */
function parsePiece(bytes, publisher) {
  let text;
  try {
    text = utf8(bytes);
  } catch {
    throw malformed("piece", "not UTF-8");
  }
  const p = parseJson(text, "piece");
  requireKeys(p, ["format", "publisher", "first", "entries"], "piece");
  if (p.format !== PIECE_FORMAT) throw malformed("piece", "unknown format");
  if (p.publisher !== publisher.line) throw malformed("piece", "names another publisher");
  requireCount(p.first, "piece first", 0);
  if (!Array.isArray(p.entries) || p.entries.length === 0) throw malformed("piece", "no entries");
  const entries = p.entries.map(checkEntry);
  const reencoded = JSON.stringify({ format: p.format, publisher: p.publisher, first: p.first, entries });
  if (reencoded !== text) throw malformed("piece", "not in its one canonical encoding");
  return { first: p.first, entries };
}

/** Folds the log into the current listing (PROTOCOL.md section 4): name -> latest add. */
function listing(entries) {
  const current = new Map();
  for (const e of entries) {
    if (e.op === "add") current.set(e.name, e);
    else current.delete(e.name);
  }
  return [...current.values()].sort((a, b) => (a.date < b.date ? 1 : a.date > b.date ? -1 : a.name < b.name ? -1 : 1));
}

function validPath(path) {
  if (typeof path !== "string" || path.length === 0 || utf8Bytes(path).length > 255) return false;
  if (path.includes("\\") || CONTROL.test(path) || /[:<>"|?*\u202a-\u202e\u2066-\u2069]/.test(path)) return false;
  const parts = path.split("/");
  if (parts.length > 16) return false;
  return parts.every((p) => p !== "" && p !== "." && p !== ".." && !/[. ]$/.test(p));
}

function compareBytes(a, b) {
  const x = utf8Bytes(a);
  const y = utf8Bytes(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Parses and checks manifest.json bytes: canonical pretty JSON (FORMAT.md 2.2). */
function parseManifest(bytes, publisher) {
  let text;
  try {
    text = utf8(bytes);
  } catch {
    throw malformed("manifest", "not UTF-8");
  }
  const m = parseJson(text, "manifest");
  requireKeys(m, ["format", "publisher", "name", "version", "created", "title", "author", "language", "files"], "manifest");
  if (m.format !== BUNDLE_FORMAT) throw malformed("manifest", "unknown format");
  if (m.publisher !== publisher.line) throw new QasidError("lying", "the bundle is signed for another publisher");
  if (!NAME.test(m.name)) throw malformed("manifest", "bad name");
  requireCount(m.version, "version", 1);
  if (!realDate(m.created)) throw malformed("manifest", "bad date");
  requireText(m.title, "title");
  requireText(m.author, "author");
  if (typeof m.language !== "string" || !LANGUAGE.test(m.language)) throw malformed("manifest", "bad language");
  if (!Array.isArray(m.files) || m.files.length === 0 || m.files.length > LIMITS.files) throw malformed("manifest", "bad file list");
  const files = m.files.map((f) => {
    requireKeys(f, ["path", "size", "sha256"], "manifest file");
    if (!validPath(f.path)) throw malformed("manifest", `unsafe path ${JSON.stringify(f.path)}`);
    requireCount(f.size, "file size", 0);
    requireHash(f.sha256, "file sha256");
    return { path: f.path, size: f.size, sha256: f.sha256 };
  });
  for (let i = 1; i < files.length; i++) {
    if (compareBytes(files[i - 1].path, files[i].path) >= 0) throw malformed("manifest", "files are not sorted and unique");
  }
  if (!files.some((f) => f.path === "article.md")) throw malformed("manifest", "no article.md");
  const manifest = {
    format: m.format,
    publisher: m.publisher,
    name: m.name,
    version: m.version,
    created: m.created,
    title: m.title,
    author: m.author,
    language: m.language,
    files,
  };
  if (JSON.stringify(manifest, null, 2) + "\n" !== text) throw malformed("manifest", "not in its one canonical encoding");
  return manifest;
}
