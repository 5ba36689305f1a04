// roots.js: publisher roots of trust (docs/PROTOCOL.md section 11): threshold root keys, the
// signing keys they delegate per role, and TUF's rule for walking from the root a browser holds
// to the newest one a mirror serves. A publisher without roots is the implicit one-key root of
// its key, which then signs everything.

const ROOT_DOMAIN = utf8Bytes("qasid-root-v1\n");
const ROOT_ID_DOMAIN = utf8Bytes("qasid-root-id-v1\n");
const ROOT_FORMAT = "qasid-root/1";
const ROOT_ROLES = ["bundle", "index", "note"];
const ROOT_LIMITS = { bytes: 64 * 1024, rootKeys: 16, signingKeys: 16, versions: 1000, steps: 32 };

function rootError(code, reason) {
  return new QasidError(code === "rollback" || code === "equivocation" ? code : "lying", `root: ${reason}`, code);
}

/**
 * Parses a root file: exactly its one canonical encoding, every signature valid for the key it
 * names. Thresholds need the chain (verifyFirstRoot, verifySuccessorRoot).
 */
async function parseRoot(bytes) {
  if (bytes.length > ROOT_LIMITS.bytes) throw rootError("too_large", "larger than 64 KiB");
  let text;
  try {
    text = utf8(bytes);
  } catch {
    throw rootError("malformed", "not UTF-8");
  }
  let file;
  try {
    file = JSON.parse(text);
  } catch {
    throw rootError("malformed", "not JSON");
  }
  const shape = (obj, keys, what) => {
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw rootError("malformed", `${what} is not an object`);
    for (const k of Object.keys(obj)) if (!keys.includes(k)) throw rootError("malformed", `${what}: unknown member ${JSON.stringify(k)}`);
    for (const k of keys) if (!(k in obj)) throw rootError("malformed", `${what}: no ${k}`);
  };
  shape(file, ["signed", "signatures"], "root");
  const s = file.signed;
  // `previous` (the sha256 of the previous root's payload) is absent in root 1 and required after.
  shape(s, ["format", "version", ...("previous" in s ? ["previous"] : []), "threshold", "root_keys", "signing_keys"], "root signed");
  if (s.format !== ROOT_FORMAT) throw rootError("unknown_format", `format ${JSON.stringify(String(s.format).slice(0, 40))} is not ${ROOT_FORMAT}`);
  if (!Number.isSafeInteger(s.version) || s.version < 1) throw rootError("malformed", "version must be at least 1");
  if ((s.version === 1) === ("previous" in s) || ("previous" in s && !/^[0-9a-f]{64}$/.test(String(s.previous)))) {
    throw rootError("malformed", "previous (the sha256 of the previous root's payload) is required from version 2 on, and absent in root 1");
  }
  if (!Array.isArray(s.root_keys) || s.root_keys.length < 1 || s.root_keys.length > ROOT_LIMITS.rootKeys) {
    throw rootError("malformed", `between 1 and ${ROOT_LIMITS.rootKeys} root keys are allowed`);
  }
  const importKey = async (line, what) => {
    try {
      return await importPublisher(line);
    } catch (e) {
      throw rootError("malformed", `${what}: ${e.message}`);
    }
  };
  const rootKeys = [];
  for (const k of s.root_keys) rootKeys.push(await importKey(k, "root key"));
  const sorted = (keys) => keys.every((k, i) => i === 0 || keys[i - 1].hex < k.hex);
  if (!sorted(rootKeys)) throw rootError("malformed", "root keys must be sorted by key and listed once");
  if (!Number.isSafeInteger(s.threshold) || s.threshold < 1 || s.threshold > rootKeys.length) {
    throw rootError("malformed", `threshold ${s.threshold} is not between 1 and the ${rootKeys.length} root keys`);
  }
  if (!Array.isArray(s.signing_keys) || s.signing_keys.length < 1 || s.signing_keys.length > ROOT_LIMITS.signingKeys) {
    throw rootError("malformed", `between 1 and ${ROOT_LIMITS.signingKeys} signing keys are allowed`);
  }
  const signingKeys = [];
  for (const d of s.signing_keys) {
    shape(d, ["key", "roles", "expires"], "signing key");
    const key = await importKey(d.key, "signing key");
    const roles = Array.isArray(d.roles) ? d.roles : [];
    const canonical = ROOT_ROLES.filter((r) => roles.includes(r));
    if (roles.length === 0 || roles.length !== canonical.length || roles.some((r, i) => r !== canonical[i])) {
      throw rootError("malformed", `signing key ${key.keyId}: roles must be a non-empty list of bundle, index, note in that order, each once`);
    }
    let expires;
    try {
      expires = parseTime(d.expires, "expires");
    } catch (e) {
      throw rootError("malformed", e.message);
    }
    signingKeys.push({ key, roles, expires });
  }
  if (!sorted(signingKeys.map((d) => d.key))) throw rootError("malformed", "signing keys must be sorted by key and listed once");
  if (!Array.isArray(file.signatures) || file.signatures.length > 2 * ROOT_LIMITS.rootKeys) throw rootError("malformed", "too many signatures");
  const signatures = [];
  for (const g of file.signatures) {
    shape(g, ["key", "sig"], "signature");
    const key = await importKey(g.key, "signature key");
    let sig;
    try {
      sig = base64Decode(g.sig);
    } catch {
      sig = null;
    }
    if (!sig || sig.length !== 64) throw rootError("malformed", "a signature is not 64 bytes of base64");
    signatures.push({ key, sig });
  }
  if (!sorted(signatures.map((g) => g.key))) throw rootError("malformed", "signatures must be sorted by key, one per key");
  const payloadText = JSON.stringify({
    format: s.format,
    version: s.version,
    ...("previous" in s ? { previous: s.previous } : {}),
    threshold: s.threshold,
    root_keys: s.root_keys,
    signing_keys: s.signing_keys.map((d) => ({ key: d.key, roles: d.roles, expires: d.expires })),
  });
  const fileText = `{"signed":${payloadText},"signatures":${JSON.stringify(file.signatures.map((g) => ({ key: g.key, sig: g.sig })))}}\n`;
  if (fileText !== text) throw rootError("non_canonical", "not in its one canonical encoding");
  const payload = utf8Bytes(payloadText);
  for (const g of signatures) {
    if (!(await verifySignature(g.key, ROOT_DOMAIN, payload, g.sig))) {
      throw rootError("bad_signature", `version ${s.version}: the signature by ${g.key.keyId} does not verify`);
    }
  }
  return { version: s.version, previous: s.previous, threshold: s.threshold, rootKeys, signingKeys, signatures, payload, bytes, id: await sha256Hex(payload) };
}

function countSigners(root, keys) {
  return root.signatures.filter((g) => keys.some((k) => k.hex === g.key.hex)).length;
}

function checkRootSigners(root, previous) {
  for (const g of root.signatures) {
    const known = root.rootKeys.some((k) => k.hex === g.key.hex) || (previous && previous.rootKeys.some((k) => k.hex === g.key.hex));
    if (!known) throw rootError("stray_signature", `version ${root.version}: signed by ${g.key.keyId}, which is not a root key`);
  }
  if (previous && countSigners(root, previous.rootKeys) < previous.threshold) {
    throw rootError("below_threshold", `version ${root.version}: fewer than ${previous.threshold} signatures by the previous root's keys`);
  }
  if (countSigners(root, root.rootKeys) < root.threshold) {
    throw rootError("below_threshold", `version ${root.version}: fewer than ${root.threshold} signatures by its own keys`);
  }
}

// ---- the publisher id of a root 1 with several keys (section 11.3): 8·Q for a hash point Q ----
const ED_P = (1n << 255n) - 19n;
const modp = (a) => ((a % ED_P) + ED_P) % ED_P;
function powp(base, exp) {
  let result = 1n;
  let b = modp(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % ED_P;
    b = (b * b) % ED_P;
    e >>= 1n;
  }
  return result;
}
const invp = (a) => powp(a, ED_P - 2n);
const ED_D = modp(-121665n * invp(121666n));
const SQRT_M1 = powp(2n, (ED_P - 1n) / 4n);

function bytesToBigLE(bytes) {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/** Decompresses an Edwards25519 point as curve25519-dalek does (y reduced mod p). */
function decompressPoint(bytes) {
  const sign = bytes[31] >> 7;
  const y = modp(bytesToBigLE(bytes) & ((1n << 255n) - 1n));
  const u = modp(y * y - 1n);
  const v = modp(ED_D * y * y + 1n);
  // x = sqrt(u / v) (RFC 8032 5.1.3): x = u v^3 (u v^7)^((p-5)/8), fixed up by sqrt(-1).
  let x = modp(u * powp(v, 3n) * powp(u * powp(v, 7n), (ED_P - 5n) / 8n));
  const vx2 = modp(v * x * x);
  if (vx2 === u) {
    // x is a root
  } else if (vx2 === modp(-u)) {
    x = modp(x * SQRT_M1);
  } else {
    return null;
  }
  if (x & 1n) x = modp(-x); // the non-negative root, then the sign bit chooses
  if (sign) x = modp(-x);
  return { x, y };
}

function addPoints(a, b) {
  const t = modp(ED_D * a.x * b.x * a.y * b.y);
  return {
    x: modp((a.x * b.y + a.y * b.x) * invp(1n + t)),
    y: modp((a.y * b.y + a.x * b.x) * invp(1n - t)),
  };
}

function compressPoint(p) {
  const out = new Uint8Array(32);
  let y = p.y;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(y & 0xffn);
    y >>= 8n;
  }
  out[31] |= Number(p.x & 1n) << 7;
  return out;
}

/** The key nobody holds that a multi-key root 1 names as the publisher id. */
async function deriveRootId(payload) {
  for (let c = 0; c < 256; c++) {
    const h = await sha256(concatBytes(ROOT_ID_DOMAIN, payload, Uint8Array.of(c)));
    const q = decompressPoint(h);
    if (!q) continue;
    let p = q;
    for (let i = 0; i < 3; i++) p = addPoints(p, p);
    if (p.x === 0n && p.y === 1n) continue;
    return compressPoint(p);
  }
  throw rootError("malformed", "no publisher id could be derived");
}

/** The raw key (hex) of a one-line key. */
function importedHex(line) {
  return hex(base64Decode(line).slice(10));
}

/** The minisign one-line form of a raw 32-byte key: base64("Ed" ‖ key id ‖ key). */
async function keyLine(raw) {
  const id = (await sha256(raw)).slice(0, 8);
  return base64Encode(concatBytes(Uint8Array.of(0x45, 0x64), id, raw));
}

/** The publisher id (a key line) root 1 fixes. */
async function rootPublisherId(root) {
  if (root.rootKeys.length === 1 && root.threshold === 1) return root.rootKeys[0].line;
  return keyLine(await deriveRootId(root.payload));
}

async function verifyFirstRoot(root, idLine) {
  if (root.version !== 1) throw rootError("wrong_version", `version ${root.version} where version 1 was expected`);
  if ((await rootPublisherId(root)) !== idLine) throw rootError("wrong_publisher", "root 1 is another publisher's");
  checkRootSigners(root, null);
}

function verifySuccessorRoot(root, previous) {
  if (root.version !== previous.version + 1) throw rootError("wrong_version", `version ${root.version} does not follow version ${previous.version}`);
  if (root.previous !== previous.id) throw rootError("wrong_previous", `version ${root.version} follows another root ${root.version - 1} (a fork)`);
  checkRootSigners(root, previous);
}

/**
 * A publisher's chain in this browser: the roots it accepted, in order. `offer` applies TUF's
 * rule to the next version; a different valid root for a version already held is equivocation.
 */
function rootChain(idLine, roots = []) {
  return {
    id: idLine,
    roots,
    version() {
      return this.roots.length;
    },
    queue: Promise.resolve(),
    /** Offers a root file; offers run one at a time, in the order they were made. */
    offer(bytes) {
      const result = this.queue.then(() => this.offerNow(bytes));
      this.queue = result.catch(() => {});
      return result;
    },
    async offerNow(bytes) {
      const root = await parseRoot(bytes);
      const held = this.roots.length;
      if (root.version === held + 1) {
        if (held >= ROOT_LIMITS.versions) throw rootError("too_many", "too many root versions");
        if (held === 0) await verifyFirstRoot(root, this.id);
        else verifySuccessorRoot(root, this.roots[held - 1]);
        this.roots.push(root);
        return "accepted";
      }
      if (root.version > held + 1) throw rootError("wrong_version", `version ${root.version} does not follow version ${held}`);
      const existing = this.roots[root.version - 1];
      if (existing.id === root.id) return "unchanged";
      try {
        if (root.version === 1) await verifyFirstRoot(root, this.id);
        else verifySuccessorRoot(root, this.roots[root.version - 2]);
      } catch {
        throw rootError("rollback", `version ${root.version} is not the root this browser holds, and does not chain`);
      }
      throw rootError("equivocation", `EQUIVOCATION: two different validly signed roots with version ${root.version} (root keys stolen or their holders coerced)`);
    },
    /** Throws unless the current root lets `keyHex` sign for `role` at `nowMs` (section 11.5). */
    checkSigner(keyHex, role, nowMs) {
      const current = this.roots[this.roots.length - 1];
      const d = current ? current.signingKeys.find((x) => x.key.hex === keyHex && x.roles.includes(role)) : null;
      if (!current && keyHex === importedHex(this.id)) return;
      if (!d) throw rootError("not_delegated", `the current root does not delegate that key for ${role}`);
      if (d.expires <= nowMs) throw rootError("expired", `the delegation of that key for ${role} has expired`);
    },
    /** Keys allowed per role right now: the current root's unexpired delegations, or the id. */
    signers(nowMs) {
      const current = this.roots[this.roots.length - 1];
      const out = {};
      for (const role of ROOT_ROLES) {
        out[role] = current ? current.signingKeys.filter((d) => d.roles.includes(role) && d.expires > nowMs).map((d) => d.key) : null;
      }
      return out;
    },
  };
}
