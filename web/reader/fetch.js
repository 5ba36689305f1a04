// fetch.js: getting bytes from untrusted sources. Every index is raced across all mirrors at
// once, per publisher (one publisher's fast mirror never closes another publisher's race);
// every other object is hedged: the fastest mirror starts, and a mirror that errs, lies or
// stalls is overtaken by the next. Every read is capped by the size the signed data gives.

const TIMING = {
  /** A mirror that has not answered the index by then is counted as blocked. */
  indexMs: 15000,
  /** After the first authentic index, how long fresher answers from slower mirrors may arrive. */
  raceWindowMs: 1500,
  /** No new bytes for this long: the transfer is stalled and another mirror is started. */
  stallMs: 4000,
  /** A mirror that has not sent headers for an object by then gets company. */
  hedgeMs: 2500,
  /** Hard bound on one object transfer from one mirror. */
  objectMs: 120000,
};

function publisherPath(publisher) {
  return `qasid/v1/publishers/${publisher.hex}/`;
}

/** An HTTP(S) mirror: GET with no credentials, no redirects to other places, no referrer. */
function httpSource(base) {
  return {
    label: base,
    ranges: true,
    /** `range` [first, last] asks for those bytes only: the answer must be 206 with exactly them. */
    async get(path, cap, { signal, onProgress, fresh, range }) {
      let response;
      try {
        response = await fetch(base + path, {
          signal,
          credentials: "omit",
          redirect: "error",
          referrerPolicy: "no-referrer",
          cache: fresh ? "no-cache" : "default",
          headers: range ? { Range: `bytes=${range[0]}-${range[1]}` } : {},
        });
      } catch (e) {
        if (signal && signal.aborted) throw signal.reason;
        throw new QasidError("unavailable", "no answer (blocked, offline or no CORS)");
      }
      if (response.status === 404) throw new QasidError("unavailable", "does not have it (404)");
      if (range && response.status === 200) throw new QasidError("no-ranges", "does not serve byte ranges");
      if (response.status !== (range ? 206 : 200)) throw new QasidError("unavailable", `answered HTTP ${response.status}`);
      const type = response.headers.get("Content-Type") || "";
      if (type.startsWith("text/html")) {
        throw new QasidError("not-mirror", "not a qasid mirror (an HTML page: wrong URL or a captive portal?)");
      }
      return readCapped(response, cap, onProgress);
    },
  };
}

/** A folder chosen with the file picker (a USB copy of a repo): paths map to picked files. */
function folderSource(label, filesByPath) {
  return {
    label,
    async get(path, cap) {
      const file = filesByPath.get(path);
      if (!file) throw new QasidError("unavailable", "the folder does not hold " + path);
      if (file.size > cap) throw new QasidError("lying", `${path} is larger than expected`);
      return new Uint8Array(await file.arrayBuffer());
    },
  };
}

function timeoutError(what) {
  return new QasidError("unavailable", what);
}

/**
 * Runs source.get with a total deadline and a stall watchdog; aborts the transfer on either.
 */
function getWithDeadline(source, path, cap, { totalMs, stallMs, fresh, outerSignal, range }) {
  const controller = new AbortController();
  let watchdog;
  let lastProgress = performance.now();
  const abort = (err) => controller.abort(err);
  const total = setTimeout(() => abort(timeoutError("timed out (blocked?)")), totalMs);
  watchdog = setInterval(() => {
    if (performance.now() - lastProgress > stallMs) abort(timeoutError("stalled"));
  }, Math.min(stallMs, 500));
  if (outerSignal) outerSignal.addEventListener("abort", () => abort(outerSignal.reason), { once: true });
  const started = performance.now();
  return source
    .get(path, cap, {
      signal: controller.signal,
      fresh,
      range,
      onProgress: () => {
        lastProgress = performance.now();
      },
    })
    .then((bytes) => ({ bytes, ms: performance.now() - started }))
    .finally(() => {
      clearTimeout(total);
      clearInterval(watchdog);
    });
}

/**
 * Races index.json of one publisher across every source. Resolves with
 * { best: {head, source, ms} | null, reports: Map(label -> text) } once every source answered, or
 * the race window after the first authentic index closed, or the index deadline passed.
 */
function raceIndex(publisher, sources, report) {
  return new Promise((resolve) => {
    const results = [];
    let pending = sources.length;
    let windowTimer = null;
    let settled = false;
    const controller = new AbortController();
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(windowTimer);
      for (const s of sources) {
        if (!results.some((r) => r.source === s) && !report.has(s.label)) {
          report.set(s.label, { ok: false, text: "index: no answer before the race closed (blocked or slow)" });
        }
      }
      controller.abort(timeoutError("the race closed"));
      resolve(results);
    };
    const deadline = setTimeout(finish, TIMING.indexMs);
    if (sources.length === 0) finish();
    for (const source of sources) {
      getWithDeadline(source, publisherPath(publisher) + "index.json", LIMITS.indexBytes, {
        totalMs: TIMING.indexMs,
        stallMs: TIMING.stallMs,
        fresh: true,
        outerSignal: controller.signal,
      })
        .then(async ({ bytes, ms }) => {
          await publisher.rootsReady;
          const head = await verifyIndex(bytes, publisher);
          if (settled) return;
          results.push({ head, source, ms });
          report.set(source.label, { ok: true, text: `index: sequence ${head.sequence} in ${Math.round(ms)} ms` });
          if (!windowTimer) windowTimer = setTimeout(finish, TIMING.raceWindowMs);
        })
        .catch((e) => {
          if (settled) return;
          report.set(source.label, { ok: false, kind: e.kind, text: "index: " + describe(e) });
        })
        .finally(() => {
          pending -= 1;
          if (pending === 0) finish();
        });
    }
  });
}

function describe(e) {
  if (e instanceof QasidError) {
    if (e.kind === "lying" || e.kind === "malformed") return "lying: " + e.message;
    return e.message;
  }
  return String(e && e.message ? e.message : e);
}

/**
 * Gets one immutable object by its signed size and sha256, hedging across `sources` (best
 * first). A source that sends wrong bytes is reported as lying and the next one is used; one
 * that stalls or is slow to answer gets a second source started beside it.
 */
async function fetchObject(path, size, sha, sources, report, what) {
  if (sources.length === 0) throw new QasidError("unavailable", `no mirror to ask for ${what}`);
  return new Promise((resolve, reject) => {
    let next = 0;
    let running = 0;
    let done = false;
    const controllers = [];
    const failures = [];
    let hedgeTimer = null;
    const startNext = () => {
      if (done || next >= sources.length) {
        if (!done && running === 0) {
          done = true;
          reject(new QasidError("unavailable", `no mirror delivered ${what}: ${failures.join("; ")}`));
        }
        return;
      }
      const source = sources[next++];
      const controller = new AbortController();
      controllers.push(controller);
      running += 1;
      clearTimeout(hedgeTimer);
      hedgeTimer = setTimeout(startNext, TIMING.hedgeMs);
      getWithDeadline(source, path, size, {
        totalMs: TIMING.objectMs,
        stallMs: TIMING.stallMs,
        fresh: false,
        outerSignal: controller.signal,
      })
        .then(async ({ bytes }) => {
          if (done) return;
          if (bytes.length !== size) throw new QasidError("lying", `sent ${bytes.length} bytes of ${what}, the index says ${size}`);
          const digest = await sha256Hex(bytes);
          if (digest !== sha) throw new QasidError("lying", `sent ${what} whose sha256 is not the signed one`);
          if (done) return;
          done = true;
          clearTimeout(hedgeTimer);
          for (const c of controllers) if (c !== controller) c.abort(timeoutError("another mirror was faster"));
          resolve({ bytes, source });
        })
        .catch((e) => {
          if (done) return;
          const text = `${what}: ${describe(e)}`;
          failures.push(`${source.label} ${text}`);
          report.set(source.label, { ok: false, kind: e.kind, text });
        })
        .finally(() => {
          running -= 1;
          if (!done) startNext();
        });
    };
    startNext();
  });
}

/** Segmented downloads: connections per mirror and in all, and one chunk's time bound. */
const SEGMENTS = { perSource: 2, connections: 8, chunkMs: 60000, doubleAfterMs: 500, doubledShare: 0.1 };

/**
 * Gets a large bundle in chunks from every source at once (PROTOCOL.md section 13): the chunk
 * list first (by its signed hash, hedged like any object), then each chunk from whichever
 * source is free, up to two at a time per source, so a fast mirror takes more of them. Each
 * chunk is hashed on arrival: a source that sends a wrong one is named with the chunk and its
 * offset and asked for nothing more, and the chunk goes to another source. A source that errs
 * or stalls drops out and its chunk goes back to the others; when no chunk is left to start, a
 * free source doubles the oldest chunk still on the way (at most once each), so one slow mirror
 * cannot hold the end back. The whole bundle's sha256 is checked at the end.
 * Resolves { bytes, sources: Map(label -> bytes delivered), wasted }.
 */
async function fetchChunked(publisher, entry, sources, report, onProgress) {
  const base = publisherPath(publisher);
  const list = await fetchObject(`${base}chunks/${entry.chunks.sha256}`, entry.chunks.size, entry.chunks.sha256, sources, report, "the chunk list");
  const hashes = parseChunkList(list.bytes, entry.bundle);
  const path = `${base}bundles/${entry.bundle.sha256}.zip`;
  const size = entry.bundle.size;
  const out = new Uint8Array(size);
  const chunks = hashes.map((_, i) => ({
    first: i * CHUNKS.size,
    length: Math.min(CHUNKS.size, size - i * CHUNKS.size),
    done: false,
    attempts: [],
    refused: new Set(),
    started: 0,
  }));
  const delivered = new Map();
  let wasted = 0;
  let left = chunks.length;
  let connections = 0;
  const failures = [];
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (f) => {
      if (settled) return;
      settled = true;
      for (const c of chunks) for (const a of c.attempts) a.controller.abort(timeoutError("the bundle is complete"));
      f();
    };
    const took = [];
    let doubled = 0;
    const pick = (source) => {
      const fresh = chunks.find((c) => !c.done && c.attempts.length === 0 && !c.refused.has(source.label));
      if (fresh) return fresh;
      // Nothing left to start: double the oldest chunk still on the way at another source, once
      // it has taken twice as long as chunks usually take (so doubling wastes little).
      const sorted = [...took].sort((a, b) => a - b);
      const usual = sorted.length ? sorted[Math.floor(sorted.length / 2)] : TIMING.hedgeMs / 2;
      const late = performance.now() - Math.max(2 * usual, SEGMENTS.doubleAfterMs);
      const open = chunks.filter((c) => !c.done && c.attempts.length === 1 && c.started < late && c.attempts[0].source !== source && !c.refused.has(source.label));
      open.sort((a, b) => a.started - b.started);
      // Doubled chunks are at most a tenth of the bundle: bytes on the wire stay bounded.
      if (!open[0] || doubled + open[0].length > size * SEGMENTS.doubledShare) return null;
      doubled += open[0].length;
      return open[0];
    };
    // Workers with nothing to start wait for a change (a chunk done, a source dropped).
    let waiting = [];
    const notify = () => {
      const w = waiting;
      waiting = [];
      for (const wake of w) wake();
    };
    // Also woken by time: a chunk on the way becomes late enough to double.
    const changed = () =>
      new Promise((wake) => {
        waiting.push(wake);
        setTimeout(wake, SEGMENTS.doubleAfterMs / 2);
      });
    const dropped = new Set();
    const drop = (source, e) => {
      if (dropped.has(source.label)) return;
      dropped.add(source.label);
      const text = `the bundle: ${describe(e)}`;
      failures.push(`${source.label} ${text}`);
      report.set(source.label, { ok: false, kind: e.kind, text });
      for (const c of chunks) for (const a of c.attempts) if (a.source === source) a.controller.abort(timeoutError("dropped"));
    };
    const worker = async (source) => {
      while (!settled && !dropped.has(source.label)) {
        const chunk = connections < SEGMENTS.connections ? pick(source) : null;
        if (!chunk) {
          if (left === 0) return;
          await changed();
          continue;
        }
        const index = chunks.indexOf(chunk);
        const controller = new AbortController();
        const attempt = { source, controller };
        chunk.attempts.push(attempt);
        if (chunk.attempts.length === 1) chunk.started = performance.now();
        connections += 1;
        let bytes = null;
        try {
          ({ bytes } = await getWithDeadline(source, path, chunk.length, {
            totalMs: SEGMENTS.chunkMs,
            stallMs: TIMING.stallMs,
            fresh: false,
            outerSignal: controller.signal,
            range: [chunk.first, chunk.first + chunk.length - 1],
          }));
          await verifyChunk(index, bytes, hashes, size);
          delivered.set(source.label, (delivered.get(source.label) || 0) + bytes.length);
          if (chunk.done) {
            wasted += bytes.length;
          } else {
            chunk.done = true;
            took.push(performance.now() - chunk.started);
            out.set(bytes, chunk.first);
            left -= 1;
            for (const a of chunk.attempts) if (a !== attempt) a.controller.abort(timeoutError("another mirror was faster"));
            if (onProgress) onProgress(chunks.length - left, chunks.length);
          }
        } catch (e) {
          if (bytes) wasted += bytes.length;
          if (!settled && !chunk.done) {
            chunk.refused.add(source.label);
            drop(source, e);
          }
        } finally {
          connections -= 1;
          chunk.attempts = chunk.attempts.filter((a) => a !== attempt);
          notify();
        }
        if (left === 0 && !settled) {
          const all = await sha256Hex(out);
          if (all !== entry.bundle.sha256) {
            settle(() => reject(new QasidError("malformed", "the chunks verify but the whole bundle does not: the publisher's chunk list is wrong")));
          } else {
            settle(() => resolve({ bytes: out, sources: delivered, wasted }));
          }
          notify();
          return;
        }
      }
    };
    const alive = new Set();
    const ranged = sources.filter((s) => s.ranges);
    if (ranged.length === 0) {
      settle(() => reject(new QasidError("unavailable", "no mirror serves byte ranges")));
      return;
    }
    for (const source of ranged) {
      for (let k = 0; k < SEGMENTS.perSource; k++) {
        const run = worker(source).finally(() => {
          alive.delete(run);
          if (alive.size === 0 && !settled) {
            settle(() => reject(new QasidError("unavailable", `no mirror delivered the bundle: ${failures.join("; ")}`)));
          }
        });
        alive.add(run);
      }
    }
  });
}

/**
 * Asks every source for one root version (PROTOCOL.md section 11.4). Resolves true once a valid
 * root of that version chained onto the held ones, false when every source answered without one
 * (404: none newer), the race window after the first answer closed, or the deadline passed. A
 * source whose root does not chain is asked for the version before it: a different valid root
 * there is equivocation.
 */
function askRoot(publisher, version, sources, onRefused) {
  return new Promise((resolve) => {
    let pending = sources.length;
    let done = false;
    let windowTimer = null;
    const controller = new AbortController();
    const finish = (found) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(windowTimer);
      controller.abort(timeoutError("the root race closed"));
      resolve(found);
    };
    const deadline = setTimeout(() => finish(false), TIMING.indexMs);
    if (pending === 0) finish(false);
    const get = (source, v) =>
      getWithDeadline(source, `${publisherPath(publisher)}roots/${v}.json`, ROOT_LIMITS.bytes, {
        totalMs: TIMING.indexMs,
        stallMs: TIMING.stallMs,
        fresh: true,
        outerSignal: controller.signal,
      });
    for (const source of sources) {
      get(source, version)
        .then(async ({ bytes }) => {
          if (done) return;
          try {
            if ((await publisher.chain.offer(bytes)) === "accepted") finish(true);
          } catch (e) {
            if (done) return;
            let refusal = e;
            if ((e.code === "below_threshold" || e.code === "stray_signature" || e.code === "wrong_previous") && version > 1) {
              try {
                await publisher.chain.offer((await get(source, version - 1)).bytes);
              } catch (older) {
                if (older.code === "equivocation") refusal = older;
              }
            }
            onRefused(source, version, refusal);
          }
        })
        .catch(() => {
          // 404 (nothing newer there), unreachable or stalled: the index race reports those.
        })
        .finally(() => {
          pending -= 1;
          if (pending === 0) finish(false);
          else if (!windowTimer) windowTimer = setTimeout(() => finish(false), TIMING.raceWindowMs);
        });
    }
  });
}

/**
 * Walks a publisher's chain from the root held to the newest one the sources serve. Beside the
 * walk, every source is asked again for the version held (as the Rust walkers do): a different
 * valid root there is a fork of what this browser trusts, which asking only for newer versions
 * would never see.
 */
async function walkRoots(publisher, sources, onRefused) {
  const held = publisher.chain.version();
  const recheck = held > 0 ? askRoot(publisher, held, sources, onRefused) : Promise.resolve(false);
  for (let step = 0; step < ROOT_LIMITS.steps; step++) {
    if (!(await askRoot(publisher, publisher.chain.version() + 1, sources, onRefused))) break;
  }
  await recheck;
}
