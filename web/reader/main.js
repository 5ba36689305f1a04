// main.js: the page itself. Reads the pinned configuration, races the mirrors per publisher,
// lists the verified articles, opens `#read=NAME`, reads USB copies offline, and shows every
// refusal with the mirror it blames. Nothing reaches the screen before it verified.

const config = JSON.parse(document.getElementById("qasid-config").textContent);
const $ = (id) => document.getElementById(id);
/** Work in flight; <body data-state> says "busy" or "idle" (tests and scripts wait on it). */
let inFlight = 0;
async function busy(promise) {
  inFlight += 1;
  document.body.dataset.state = "busy";
  try {
    return await promise;
  } finally {
    inFlight -= 1;
    if (inFlight === 0) document.body.dataset.state = "idle";
  }
}

const app = {
  publishers: [],
  catalog: new Map(),
  objectUrls: [],
  ready: null,
  opened: null,
  note: null,
};

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
}

function problem(text) {
  const list = $("problems");
  list.hidden = false;
  list.append(el("li", {}, text));
}

function showReport(report) {
  const list = $("mirror-report");
  list.replaceChildren();
  for (const [label, r] of report) {
    list.append(el("li", { class: r.ok ? "ok" : r.kind === "lying" || r.kind === "malformed" ? "liar" : "down" }, `${label}: ${r.text}`));
  }
}

function dateText(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(".000Z", " UTC");
}

function mirrorSources(extra = []) {
  const urls = [...config.mirrors, ...extra];
  if (location.protocol === "http:" || location.protocol === "https:") urls.push(new URL("/", location.href).href);
  urls.push(...loadLearned());
  const unique = [...new Set(urls.map(normalMirrorUrl).filter(Boolean))];
  return unique.map(httpSource);
}

/** Orders sources for object downloads: those that served the chosen index, fastest first. */
function rankSources(results, chosen, all) {
  const same = results.filter((r) => r.head.id === chosen.head.id).sort((a, b) => a.ms - b.ms).map((r) => r.source);
  const other = results.filter((r) => r.head.id !== chosen.head.id).map((r) => r.source);
  const rest = all.filter((s) => !same.includes(s) && !other.includes(s));
  return [...same, ...other, ...rest];
}

/** Picks the head to use among authentic answers (PROTOCOL.md section 6): fresh beats stale. */
function preference(a, b, now) {
  const fa = a.head.expires > now;
  const fb = b.head.expires > now;
  if (fa !== fb) return fa ? -1 : 1;
  return b.head.sequence - a.head.sequence || a.ms - b.ms;
}

/** A pinned publisher: its id key, the roots pinned with it and those this browser accepted. */
async function trustPublisher(pinned) {
  const entry = typeof pinned === "string" ? { id: pinned, roots: [] } : pinned;
  const publisher = await importPublisher(entry.id);
  publisher.chain = rootChain(publisher.line);
  for (const b64 of [...(entry.roots || []), ...loadRoots(publisher)]) {
    try {
      await publisher.chain.offer(base64Decode(b64));
    } catch (e) {
      if (e.code === "equivocation") problem(`Publisher ${publisher.keyId}: ${e.message}`);
    }
  }
  refreshSigners(publisher);
  publisher.rootsReady = Promise.resolve(new Map());
  return publisher;
}

function refreshSigners(publisher) {
  publisher.signers = publisher.chain.version() > 0 ? publisher.chain.signers(Date.now()) : null;
}

/** Follows the publisher's root chain on these sources; heads are verified after it. */
/** Resolves to the labels of sources that served a root which is a fork or does not chain. */
async function followRoots(publisher, sources) {
  const before = publisher.chain.version();
  const liars = new Map();
  await walkRoots(publisher, sources, (source, version, e) => {
    liars.set(source.label, `root ${version}: ${e.message}`);
    if (e.code === "equivocation") problem(`${source.label}: ${e.message}`);
    else problem(`${source.label} lied: root ${version}: ${e.message}`);
  });
  refreshSigners(publisher);
  if (publisher.chain.version() > before) saveRoots(publisher);
  return liars;
}

async function loadPublisher(publisher, sources, report, origin) {
  publisher.rootsReady = followRoots(publisher, sources);
  const raced = await raceIndex(publisher, sources, report);
  // A mirror that served a forged or forked root is not believed about anything else.
  const rootLiars = await publisher.rootsReady;
  for (const [label, text] of rootLiars) report.set(label, { ok: false, kind: "lying", text });
  const results = raced.filter((r) => !rootLiars.has(r.source.label));
  const now = Date.now();
  results.sort((a, b) => preference(a, b, now));
  let held = loadHeld(publisher);
  // A head signed by a key the current root no longer delegates counts for nothing
  // (PROTOCOL.md 11.5): a thief's higher sequence numbers cannot hold the publisher back.
  if (held && held.signer && !signersFor(publisher, "index").some((k) => k.hex === held.signer)) held = null;
  let chosen = null;
  for (const r of results) {
    try {
      checkAgainstHeld(held, r.head);
      if (!chosen) chosen = r;
    } catch (e) {
      if (e.kind === "rollback") {
        report.set(r.source.label, { ok: false, kind: "stale", text: "stale, not used (index: " + e.message + ")" });
      } else {
        report.set(r.source.label, { ok: false, kind: "lying", text: e.message });
        problem(`${r.source.label}: ${e.message}. Both signed indexes are authentic: the publisher's key signed two histories (stolen key or coercion).`);
      }
    }
  }
  if (!chosen) {
    problem(`No mirror delivered an acceptable index for publisher ${publisher.keyId}.`);
    return;
  }
  for (const r of results) {
    if (r === chosen) continue;
    if (r.head.sequence < chosen.head.sequence) {
      report.set(r.source.label, { ok: false, kind: "stale", text: `stale, not used (index: sequence ${r.head.sequence} is older than sequence ${chosen.head.sequence})` });
    } else if (r.head.sequence === chosen.head.sequence && r.head.id !== chosen.head.id) {
      report.set(r.source.label, { ok: false, kind: "lying", text: `EQUIVOCATION: another signed index with sequence ${r.head.sequence}` });
      problem(`${r.source.label}: EQUIVOCATION: two different signed indexes with sequence ${r.head.sequence}. Both are authentic: the publisher's key signed two histories (stolen key or coercion).`);
    }
  }
  const head = chosen.head;
  const ranked = rankSources(results, chosen, sources.filter((s) => !rootLiars.has(s.label)));
  const entries = [];
  for (const ref of head.log.pieces) {
    const path = `${publisherPath(publisher)}pieces/${ref.sha256}.json`;
    const { bytes } = await fetchObject(path, ref.size, ref.sha256, ranked, report, `piece ${ref.sha256.slice(0, 12)}`);
    entries.push(...(await verifyPiece(bytes, ref, publisher)));
  }
  saveHeld(publisher, head);
  if (origin === "network") saveLearned([...loadLearned(), ...head.mirrors]);
  for (const entry of listing(entries)) {
    if (!app.catalog.has(entry.name)) app.catalog.set(entry.name, { entry, publisher, head, sources: ranked, served: chosen.source.label });
  }
}

function showCatalog() {
  const list = $("articles");
  list.replaceChildren();
  for (const [name, item] of app.catalog) {
    const e = item.entry;
    const a = el("a", { href: "#read=" + encodeURIComponent(name), dir: "auto" }, e.title);
    list.append(el("li", { lang: e.language, dir: isRtl(e.language) ? "rtl" : "ltr" }, a, el("span", { class: "meta", dir: "ltr" }, ` ${e.date} · ${e.author} · v${e.version}`)));
  }
  $("list").hidden = app.catalog.size === 0;
}

async function load(sources, origin) {
  const report = new Map();
  setStatus(`Asking ${sources.length} mirror(s)…`);
  app.catalog.clear();
  await Promise.all(
    app.publishers.map((p) =>
      loadPublisher(p, sources, report, origin).catch((e) => problem(`Publisher ${p.keyId}: ${describe(e)}`)),
    ),
  );
  showReport(report);
  showCatalog();
  const stale = [...app.catalog.values()].some((i) => i.head.expires <= Date.now());
  if (app.catalog.size === 0) setStatus("Nothing verified could be loaded. See the mirror report below.", "bad");
  else if (stale) setStatus("STALE: the newest index this browser could verify has expired; newer articles may exist and a mirror may be freezing you on old news.", "stale");
  else setStatus(`${app.catalog.size} verified article(s).`, "good");
}

function badge(parts) {
  return el("p", { id: "badge", dir: "ltr" }, "✔ verified in this browser · " + parts.join(" · "));
}

function saveLink(bytes, name, version) {
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/zip" }));
  app.objectUrls.push(url);
  return el("a", { id: "save", href: url, download: `${name}-v${version}.zip` }, "Save the verified bundle");
}

function clearView() {
  for (const u of app.objectUrls) URL.revokeObjectURL(u);
  app.objectUrls = [];
  $("view").replaceChildren();
}

function showArticle(verified, bytes, badgeParts) {
  clearView();
  const { manifest, files } = verified;
  const markdown = utf8(files.get("article.md"));
  const header = el(
    "header",
    { lang: manifest.language, dir: isRtl(manifest.language) ? "rtl" : "ltr" },
    el("h2", {}, manifest.title),
    el("p", { class: "meta" }, manifest.author, " · ", el("span", { dir: "ltr" }, manifest.created)),
  );
  const body = renderArticle(markdown, manifest, files, app.objectUrls);
  const attachments = manifest.files.filter((f) => f.path !== "article.md" && !IMAGE_TYPES[extension(f.path)]);
  const view = $("view");
  view.append(badge(badgeParts), header, body);
  if (attachments.length) {
    const list = el("ul", { id: "attachments" });
    for (const f of attachments) {
      const url = URL.createObjectURL(new Blob([files.get(f.path)], { type: "application/octet-stream" }));
      app.objectUrls.push(url);
      list.append(el("li", {}, el("a", { href: url, download: f.path.split("/").pop() }, f.path), ` (${f.size} bytes)`));
    }
    view.append(el("h3", {}, "Attachments"), list);
  }
  view.append(el("p", {}, saveLink(bytes, manifest.name, manifest.version), " (check it with qasid verify)"));
  view.scrollIntoView();
}

/**
 * A bundle's bytes, sha256 checked: in verified chunks from every mirror at once when the entry
 * has a chunk list and a mirror serves byte ranges, else whole from the fastest mirror (also
 * when no mirror has the chunk list: repos synced by an older qasid). Says who served it.
 */
async function downloadBundle(item, report) {
  const { entry, publisher } = item;
  if (entry.chunks && item.sources.some((s) => s.ranges)) {
    try {
      const got = await fetchChunked(publisher, entry, item.sources, report, (done, all) => {
        setStatus(`Downloading "${entry.title}": ${done} of ${all} chunks verified…`);
      });
      const shares = [...got.sources].sort((a, b) => b[1] - a[1]);
      const servedBy = shares.map(([label, n]) => `${label} (${Math.round((100 * n) / entry.bundle.size)}%)`).join(", ");
      return { bytes: got.bytes, servedBy };
    } catch (e) {
      if (e.kind === "malformed") throw e;
      setStatus(`Downloading "${entry.title}" whole (${describe(e)})…`);
    }
  }
  const path = `${publisherPath(publisher)}bundles/${entry.bundle.sha256}.zip`;
  const { bytes, source } = await fetchObject(path, entry.bundle.size, entry.bundle.sha256, item.sources, report, "the bundle");
  return { bytes, servedBy: source.label };
}

async function openArticle(name) {
  await app.ready;
  const item = app.catalog.get(name);
  if (!item) {
    problem(`No verified index lists an article named "${name}".`);
    return;
  }
  const { entry, publisher, head } = item;
  setStatus(`Downloading "${entry.title}" (${entry.bundle.size} bytes)…`);
  const report = new Map();
  try {
    const { bytes, servedBy } = await downloadBundle(item, report);
    const verified = await readBundle(bytes, publisher);
    if (verified.manifest.name !== entry.name || verified.manifest.version !== entry.version) {
      throw new QasidError("lying", "the bundle is another article than the index entry names");
    }
    const stale = head.expires <= Date.now() ? " (STALE)" : "";
    showArticle(verified, bytes, [
      `publisher ${publisher.keyId}`,
      `index sequence ${head.sequence}, expires ${dateText(head.expires)}${stale}`,
      `served by ${servedBy}`,
      `bundle sha256 ${entry.bundle.sha256}`,
    ]);
    setStatus(`Verified "${entry.title}".`, stale ? "stale" : "good");
  } catch (e) {
    setStatus(`Could not verify "${entry.title}": ${describe(e)}`, "bad");
  } finally {
    for (const [label, r] of report) {
      if (r.kind === "lying" || r.kind === "malformed") problem(`${label} lied: ${r.text}`);
    }
  }
}

/** The parts of the fragment: `read=NAME` and a mirror note `qasid:1:…`, joined by `&`. */
function fragment() {
  const parts = { read: null, note: null };
  for (const part of location.hash.replace(/^#/, "").split("&")) {
    if (part.startsWith("read=")) parts.read = decodeURIComponent(part.slice(5));
    else if (part.startsWith("qasid:")) parts.note = part;
  }
  return parts;
}

function openFromHash() {
  const { read } = fragment();
  if (read) busy(openArticle(read));
}

/** A new link in the same tab: a new note is checked and its mirrors asked, then the article. */
async function onHashChange() {
  const { note } = fragment();
  if (note && note !== app.note) {
    app.note = note;
    $("problems").replaceChildren();
    $("problems").hidden = true;
    const urls = await mirrorsFromNote(note);
    if (urls.length) app.ready = load(mirrorSources(urls), "network");
  }
  openFromHash();
}

/**
 * A mirror note in the link (PROTOCOL.md section 12): verified with the pinned publishers'
 * keys before any of its mirrors is asked. Returns the mirror URLs to add (none on refusal).
 */
async function mirrorsFromNote(text) {
  try {
    const note = await verifyNote(text, app.publishers, Date.now());
    const held = loadNoteSequence(note.publisher);
    if (note.sequence < held) {
      throw new QasidError("note", `mirror note: sequence ${note.sequence} is older than the note (sequence ${held}) this browser already accepted (rollback)`, "rollback");
    }
    if (note.sequence > held) saveNoteSequence(note.publisher, note.sequence);
    const urls = note.mirrors.map((m) => m.url);
    saveLearned([...loadLearned(), ...urls]);
    $("note").textContent = `Mirror note from publisher ${note.keyId} (sequence ${note.sequence}, verified): ${urls.join(", ")}`;
    $("note").hidden = false;
    return urls;
  } catch (e) {
    problem(`The mirror note in this link was refused: ${describe(e)}`);
    return [];
  }
}

async function openFolder(fileList) {
  const byPath = new Map();
  let label = "folder";
  for (const f of fileList) {
    const rel = f.webkitRelativePath || f.name;
    const at = rel.indexOf("qasid/v1/");
    if (at < 0) continue;
    label = "folder " + rel.slice(0, at);
    byPath.set(rel.slice(at), f);
  }
  if (byPath.size === 0) {
    problem("That folder holds no qasid repository (no qasid/v1/ inside).");
    return;
  }
  clearView();
  app.ready = load([folderSource(label, byPath)], "folder");
  await app.ready;
}

async function openBundleFile(file) {
  if (file.size > LIMITS.bundleBytes) {
    problem("That file is larger than any bundle can be.");
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  let last = null;
  for (const publisher of app.publishers) {
    try {
      const verified = await readBundle(bytes, publisher);
      showArticle(verified, bytes, [
        `publisher ${publisher.keyId}`,
        `offline copy ${file.name}: signature and every file checked; no index, so not checked for being the newest version`,
        `bundle sha256 ${await sha256Hex(bytes)}`,
      ]);
      setStatus(`Verified ${file.name}.`, "good");
      return;
    } catch (e) {
      last = e;
    }
  }
  clearView();
  setStatus(`${file.name} was refused: ${last ? describe(last) : "no trusted publisher"}`, "bad");
}

async function start() {
  if (!window.crypto || !crypto.subtle || typeof DecompressionStream === "undefined" || !(await ed25519Supported())) {
    setStatus("This browser cannot check Ed25519 signatures (it needs Chrome 137+, Firefox 129+ or Safari 17+). Nothing is shown, because nothing could be verified.", "bad");
    document.body.classList.add("unsupported");
    return;
  }
  app.publishers = await Promise.all(config.publishers.map(trustPublisher));
  $("pinned").textContent = app.publishers.map((p) => p.keyId).join(", ");
  $("open-folder").addEventListener("change", (e) => busy(openFolder(e.target.files)));
  $("open-bundle").addEventListener("change", (e) => e.target.files[0] && busy(openBundleFile(e.target.files[0])));
  window.addEventListener("hashchange", () => busy(onHashChange()));
  const { note } = fragment();
  app.note = note;
  const fromNote = note ? await mirrorsFromNote(note) : [];
  app.ready = load(mirrorSources(fromNote), "network");
  openFromHash();
  await app.ready;
}

busy(start().catch((e) => setStatus("The reader failed: " + describe(e), "bad")));
