// zip.js: reading a bundle (docs/FORMAT.md section 2) from verified-length bytes, strictly:
// manifest.json and manifest.sig first, the signature checked before the manifest is parsed,
// then every file in manifest order, inflated with a bound and checked against its size, CRC-32
// and sha256, then the central directory and end record matched field by field. Nothing is
// returned unless every check passed.

const DEFLATED = new Set(["md", "txt", "html", "htm", "css", "svg", "json", "xml", "csv"]);
const MAX_RATIO = 100;
const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const END = 0x06054b50;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Gives the main thread back for a moment (a message, not a timer: no 4 ms clamp). */
function yieldToPage() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** CRC-32 of large data in 2 MiB steps, giving the page's main thread back between steps. */
async function crc32Yielding(bytes) {
  const STEP = 2 * 1024 * 1024;
  let c = 0xffffffff;
  for (let at = 0; at < bytes.length; at += STEP) {
    if (at > 0) await yieldToPage();
    const end = Math.min(at + STEP, bytes.length);
    for (let i = at; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

function zipError(reason) {
  return new QasidError("malformed", `bundle: ${reason}`);
}

class ZipCursor {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }
  need(n, what) {
    if (this.at + n > this.bytes.length) throw zipError(`truncated in ${what}`);
  }
  u16() {
    const v = this.view.getUint16(this.at, true);
    this.at += 2;
    return v;
  }
  u32() {
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }
  take(n, what) {
    this.need(n, what);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

function isAscii(bytes) {
  return bytes.every((b) => b < 0x80);
}

/** One local header exactly as FORMAT.md 2.1 allows, and its (still compressed) data. */
function localEntry(cur) {
  const offset = cur.at;
  cur.need(30, "a local header");
  if (cur.u32() !== LOCAL) throw zipError(`expected a local header at offset ${offset}`);
  const version = cur.u16();
  const flags = cur.u16();
  const method = cur.u16();
  const time = cur.u16();
  const date = cur.u16();
  const crc = cur.u32();
  const csize = cur.u32();
  const usize = cur.u32();
  const nameLen = cur.u16();
  const extraLen = cur.u16();
  const nameBytes = cur.take(nameLen, "an entry name");
  let name;
  try {
    name = utf8(nameBytes);
  } catch {
    throw zipError("an entry name is not UTF-8");
  }
  const wantFlags = isAscii(nameBytes) ? 0 : 0x0800;
  if (flags !== wantFlags) throw zipError(`unexpected flags on ${JSON.stringify(name)}`);
  if (method !== 0 && method !== 8) throw zipError(`unsupported compression on ${JSON.stringify(name)}`);
  if (version !== (method === 8 ? 20 : 10)) throw zipError(`unexpected version on ${JSON.stringify(name)}`);
  if (time !== 0 || date !== 0x21) throw zipError(`unexpected timestamp on ${JSON.stringify(name)}`);
  if (extraLen !== 0) throw zipError(`extra fields on ${JSON.stringify(name)}`);
  if (csize === 0xffffffff || usize === 0xffffffff) throw zipError("zip64 is not allowed");
  const data = cur.take(csize, `the data of ${JSON.stringify(name)}`);
  return { offset, name, nameBytes, method, crc, csize, usize, data, flags, version };
}

/** Inflates raw deflate data, refusing output beyond `expected` bytes as it streams. */
async function inflateRaw(data, expected) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  const reader = stream.getReader();
  const out = new Uint8Array(expected);
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total + value.length > expected) {
        reader.cancel().catch(() => {});
        throw zipError("a file inflates to more than its declared size");
      }
      out.set(value, total);
      total += value.length;
    }
  } catch (e) {
    if (e instanceof QasidError) throw e;
    throw zipError("broken deflate data");
  }
  if (total !== expected) throw zipError("a file inflates to fewer bytes than declared");
  return out;
}

function extension(path) {
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : "";
}

/**
 * Verifies a whole bundle against a trusted publisher. Returns { manifest, manifestSha256,
 * files: Map(path -> bytes) } only when every check of FORMAT.md section 3 passed.
 */
async function readBundle(bytes, publisher) {
  if (bytes.length > LIMITS.bundleBytes) throw zipError("larger than 2 GiB");
  const cur = new ZipCursor(bytes);
  const entries = [];
  const manifestEntry = localEntry(cur);
  if (manifestEntry.name !== "manifest.json" || manifestEntry.method !== 0) throw zipError("the first entry is not a stored manifest.json");
  if (manifestEntry.csize !== manifestEntry.usize || manifestEntry.usize > LIMITS.manifestBytes) throw zipError("bad manifest.json size");
  const sigEntry = localEntry(cur);
  if (sigEntry.name !== "manifest.sig" || sigEntry.method !== 0 || sigEntry.usize !== 64 || sigEntry.csize !== 64) {
    throw zipError("the second entry is not a stored 64-byte manifest.sig");
  }
  for (const e of [manifestEntry, sigEntry]) {
    if (crc32(e.data) !== e.crc) throw zipError(`CRC-32 mismatch on ${e.name}`);
  }
  entries.push(manifestEntry, sigEntry);
  let signer = null;
  for (const key of signersFor(publisher, "bundle")) {
    if (await verifySignature(key, MANIFEST_DOMAIN, manifestEntry.data, sigEntry.data)) {
      signer = key;
      break;
    }
  }
  if (!signer) throw new QasidError("lying", "the bundle's manifest signature does not verify with a key the publisher delegates for bundles");
  const manifest = parseManifest(manifestEntry.data, signer);
  const files = new Map();
  for (const f of manifest.files) {
    const e = localEntry(cur);
    if (e.name !== "files/" + f.path) throw zipError(`expected files/${f.path}, found ${JSON.stringify(e.name)}`);
    const wantMethod = DEFLATED.has(extension(f.path)) ? 8 : 0;
    if (e.method !== wantMethod || e.usize !== f.size) throw zipError(`files/${f.path} is not stored as FORMAT.md says`);
    let data;
    if (e.method === 0) {
      if (e.csize !== e.usize) throw zipError(`files/${f.path}: stored sizes differ`);
      data = e.data;
    } else {
      if (e.csize === 0 || e.usize / e.csize > MAX_RATIO) throw zipError(`files/${f.path}: compression ratio above ${MAX_RATIO}`);
      data = await inflateRaw(e.data, e.usize);
    }
    if ((await crc32Yielding(data)) !== e.crc) throw zipError(`CRC-32 mismatch on files/${f.path}`);
    const digest = await sha256Hex(data);
    if (digest !== f.sha256) throw new QasidError("lying", `files/${f.path} does not match its signed sha256`);
    files.set(f.path, data);
    entries.push(e);
  }
  const directoryStart = cur.at;
  for (const e of entries) {
    cur.need(46, "the central directory");
    if (cur.u32() !== CENTRAL) throw zipError("the central directory does not follow the last entry");
    const made = cur.u16();
    const fields = [cur.u16(), cur.u16(), cur.u16(), cur.u16(), cur.u16(), cur.u32(), cur.u32(), cur.u32()];
    const nameLen = cur.u16();
    const extraLen = cur.u16();
    const commentLen = cur.u16();
    const disk = cur.u16();
    const internal = cur.u16();
    const external = cur.u32();
    const offset = cur.u32();
    const name = cur.take(nameLen, "a central record name");
    const expected = [e.version, e.flags, e.method, 0, 0x21, e.crc, e.csize, e.usize];
    if (
      made >> 8 !== 3 ||
      fields.some((v, i) => v !== expected[i]) ||
      !equalBytes(name, e.nameBytes) ||
      extraLen !== 0 ||
      commentLen !== 0 ||
      disk !== 0 ||
      internal !== 0 ||
      external !== 0x81a40000 ||
      offset !== e.offset
    ) {
      throw zipError(`the central record of ${JSON.stringify(e.name)} does not match its local header`);
    }
  }
  const directorySize = cur.at - directoryStart;
  cur.need(22, "the end record");
  if (cur.u32() !== END) throw zipError("no end record after the central directory");
  const end = [cur.u16(), cur.u16(), cur.u16(), cur.u16(), cur.u32(), cur.u32(), cur.u16()];
  const wantEnd = [0, 0, entries.length, entries.length, directorySize, directoryStart, 0];
  if (end.some((v, i) => v !== wantEnd[i])) throw zipError("the end record does not match the central directory");
  if (cur.at !== bytes.length) throw zipError("data after the end record");
  return { manifest, manifestSha256: await sha256Hex(manifestEntry.data), files };
}
