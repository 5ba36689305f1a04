// bytes.js: byte helpers shared by every other file: strict UTF-8, hex, strict base64, sha256,
// and bounded reads of a fetch body. Nothing here decides trust.

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8_ENCODE = new TextEncoder();

/** Decodes UTF-8, refusing invalid sequences (a lossy decode would give two spellings one text). */
function utf8(bytes) {
  return UTF8.decode(bytes);
}

function utf8Bytes(text) {
  return UTF8_ENCODE.encode(text);
}

function hex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Standard base64 with padding, refusing anything that does not re-encode to the same text. */
function base64Decode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new QasidError("malformed", "not standard base64");
  }
  let binary;
  try {
    binary = atob(text);
  } catch {
    throw new QasidError("malformed", "not standard base64");
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  if (base64Encode(out) !== text) throw new QasidError("malformed", "base64 is not in its one canonical spelling");
  return out;
}

function base64Encode(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

async function sha256Hex(bytes) {
  return hex(await sha256(bytes));
}

/**
 * Every failure the page can report. `kind` decides the wording and whether a mirror is blamed:
 * "lying" (wrong signed data), "not-mirror" (HTML or junk), "malformed" (non-canonical or broken
 * structure), "rollback", "equivocation", "unavailable" (network), "unsupported" (browser).
 */
class QasidError extends Error {
  constructor(kind, message, code) {
    super(message);
    this.kind = kind;
    /** The outcome name the shared test vectors use (expect.json in tests/vectors). */
    this.code = code ?? kind;
  }
}

/**
 * Reads a response body, refusing more than `cap` bytes as soon as they arrive (a Content-Length
 * above the cap is refused before reading). `onProgress(bytes)` is called on every chunk, so the
 * caller can tell a stalled transfer from a slow one.
 */
async function readCapped(response, cap, onProgress) {
  const declared = response.headers.get("Content-Length");
  if (declared !== null && Number(declared) > cap) {
    throw new QasidError("lying", `announced ${declared} bytes, more than the ${cap} expected`);
  }
  const reader = response.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > cap) {
      reader.cancel().catch(() => {});
      throw new QasidError("lying", `sent more than the ${cap} bytes expected`);
    }
    chunks.push(value);
    if (onProgress) onProgress(total);
  }
  return concatBytes(...chunks);
}
