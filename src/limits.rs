//! Every cap on untrusted or user-supplied input, with the reason for its default.
//!
//! Limits are plain data: modules take a `&BundleLimits` (and later index and network limits)
//! instead of hard-coding numbers, so the CLI can expose them and tests can shrink them.
//! This module never reads files or the network.

/// Caps applied when writing and when verifying a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleLimits {
    /// Largest bundle file accepted, in bytes. 2 GiB: articles with photos are a few MB; the cap
    /// leaves room for video while keeping every offset inside classic (non-zip64) zip fields.
    pub max_bundle_bytes: u64,
    /// Largest single article file (uncompressed), in bytes. 1 GiB + 1 MiB so the benchmark's
    /// 1 GiB stored file fits; anything larger is almost certainly not an article.
    pub max_file_bytes: u64,
    /// Largest sum of uncompressed file sizes, in bytes. Equal to the bundle cap: a bundle may
    /// not expand to more than it could hold stored.
    pub max_total_bytes: u64,
    /// Most files in one bundle. 4,096: an article with that many assets is an attack.
    pub max_entries: usize,
    /// Largest manifest, in bytes. 1 MiB holds the metadata of 4,096 files with long names.
    pub max_manifest_bytes: u64,
    /// Highest uncompressed/compressed ratio allowed for a deflated entry. 100: text deflates
    /// 3-10x, a sparse image maybe 50x; zip bombs reach 1000x and more.
    pub max_compression_ratio: u64,
    /// Longest entry path in bytes. 255 keeps every name valid on common file systems.
    pub max_path_bytes: usize,
    /// Deepest folder nesting inside a bundle. 16 is plenty for `images/2026/...`.
    pub max_path_depth: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_bundle_bytes: 2 << 30,
            max_file_bytes: (1 << 30) + (1 << 20),
            max_total_bytes: 2 << 30,
            max_entries: 4096,
            max_manifest_bytes: 1 << 20,
            max_compression_ratio: 100,
            max_path_bytes: 255,
            max_path_depth: 16,
        }
    }
}

/// Largest `article.md` the terminal renderer will hold in memory. 8 MiB of Markdown is a
/// book; rendering reads the file whole, so it needs its own cap.
pub const MAX_RENDERED_ARTICLE_BYTES: u64 = 8 << 20;

/// Caps applied when reading a publisher's index (head envelope, pieces) and when writing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLimits {
    /// Largest `index.json` envelope, in bytes, read before anything is parsed. 64 KiB: a head
    /// lists at most `max_pieces` piece references (~150 bytes each) and `max_mirrors` URLs, so
    /// a real one stays a few KB; the cap is what keeps a hostile mirror from streaming forever.
    pub max_head_bytes: u64,
    /// Largest single index piece, in bytes. 256 MiB: the biggest piece holds up to the whole
    /// log, ~250 bytes per entry, so 1,000,000 entries fit with room to spare. The signed head
    /// gives each piece's exact size; this cap only bounds what a signed head may ask for.
    pub max_piece_bytes: u64,
    /// Most entries in one publisher's log. 1,000,000: ten times the largest publisher the
    /// design targets (100,000 article versions).
    pub max_entries: u64,
    /// Most pieces one head may list. 64: the publisher's merge rule keeps at most
    /// log2(entries) + 1 pieces (21 at 1,000,000 entries).
    pub max_pieces: usize,
    /// Most mirror URLs in a head. 64 is more than any reader will race.
    pub max_mirrors: usize,
    /// Longest mirror URL, in bytes. 2,048 is the de-facto limit of browsers and proxies.
    pub max_mirror_url_bytes: usize,
    /// Longest text field in an entry (title, author), in bytes. 2,048 holds any headline in
    /// any script (Urdu or Persian take two bytes a letter) and keeps entries small.
    pub max_text_bytes: usize,
    /// Most equivocation cases kept in a state folder's `evidence/`. 64: one real case is
    /// already an emergency; the cap keeps a stolen key that signs conflict after conflict
    /// from filling the disk. Cases past it are reported but not saved.
    pub max_evidence_cases: usize,
    /// Most bytes kept in `evidence/`, all cases together. 64 MiB holds the cap's worth of
    /// heads (each under `max_head_bytes`) with room for the pieces that show a diverged
    /// entry; a piece that would pass the budget is left out (its sha256 is in the head).
    pub max_evidence_bytes: u64,
}

impl Default for IndexLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 << 10,
            max_piece_bytes: 256 << 20,
            max_entries: 1_000_000,
            max_pieces: 64,
            max_mirrors: 64,
            max_mirror_url_bytes: 2048,
            max_text_bytes: 2048,
            max_evidence_cases: 64,
            max_evidence_bytes: 64 << 20,
        }
    }
}

/// Largest AWS shared config or credentials file read (`~/.aws/config`, `~/.aws/credentials`).
/// 1 MiB: a file with hundreds of profiles is tens of KiB; anything bigger is not one.
pub const MAX_AWS_PROFILE_FILE_BYTES: u64 = 1 << 20;

/// Most bytes a mirror keeps in verified extractions for its reader pages (`.state/read`), the
/// least recently viewed removed first: 1 GiB. Thousands of text-and-photo articles fit, so
/// a mirror's own pages rarely extract twice, and a front end over a bucket, whose local disk
/// holds only its work folder, does not fill it with a copy of every article read.
pub const MAX_EXTRACTED_BYTES: u64 = 1 << 30;

/// How long `publish` waits for the repo's lock before saying another publish holds it: 1 s.
/// A publish holds the lock while it signs and writes, and a second one started meanwhile is
/// refused after this wait. The wait covers the instant a program that publishes in-process
/// (the demo, the tests) forks a child process, which shares the lock until it executes.
pub const PUBLISH_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Largest answer body `qasid push` reads from a mirror, error pages included. 256 KiB: a
/// receipt or a refusal is a few hundred bytes, and a 409 listing every object an index still
/// lacks stays well under it; a server sending more is not a qasid mirror, and holding more
/// (a 1 GiB error page once took 6.9 GB of memory) buys nothing.
pub const MAX_PUSH_ANSWER_BYTES: usize = 256 << 10;

/// Longest time `qasid push` spends reading one answer body. 10 s: a mirror writes its few
/// hundred bytes at once; a trickling answer is cut and reported with what arrived.
pub const PUSH_ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest root document (`roots/<N>.json`, `root.json`), in bytes. 64 KiB: a root with the
/// maximum 16 root keys, 16 signing keys and 32 signatures is under 8 KB.
pub const MAX_ROOT_BYTES: u64 = 64 << 10;

/// Most root keys in one root. 16: a newsroom's editors and trustees; a threshold scheme with
/// more holders is an organisation with its own tooling.
pub const MAX_ROOT_KEYS: usize = 16;

/// Most signing keys one root delegates. 16: a few desks or laptops, plus keys being phased in.
pub const MAX_SIGNING_KEYS: usize = 16;

/// Most root versions a verifier holds for one publisher. 1,000: a rotation a week for twenty
/// years. Every held root is re-verified when the chain is loaded, so this bounds that work.
pub const MAX_ROOT_VERSIONS: u64 = 1000;

/// Most new root versions a verifier fetches in one run (one request each). 32: a reader that
/// was offline through 32 rotations catches up over a few runs instead of being held up by a
/// mirror serving an endless chain.
pub const MAX_ROOT_STEPS: u64 = 32;

/// Most root equivocation evidence folders kept per publisher. 16: one proof convicts; more
/// only fill the disk of whoever an attacker keeps feeding forged roots.
pub const MAX_ROOT_EVIDENCE: usize = 16;

/// Largest mirror note (body and signature), in bytes, checked before anything is decoded.
/// 2 KiB: a note is meant for an SMS-sized message or one QR code (five ordinary mirrors take
/// about 350 bytes); 2 KiB still fits a version-40 QR code, and nothing larger is a note.
pub const MAX_NOTE_BYTES: usize = 2048;

/// Most mirrors in one note. 16: a note is one channel's share of the mirrors (see
/// `note create --subset`); the signed index carries the full list (64).
pub const MAX_NOTE_MIRRORS: usize = 16;

/// Largest text read from a file, an HTTP body or a mirror's `note` file that should hold one
/// note URI: 8 KiB, a 2 KiB note in base64 (2.7 KiB) with room for whitespace, bounded all the
/// same.
pub const MAX_NOTE_TEXT_BYTES: u64 = 8 << 10;

/// Most `qasid:` TXT records (or note sources) tried for one `dns:` name: 8. A zone may hold
/// a few notes (old and new, or per channel); more is someone filling the answer.
pub const MAX_NOTES_PER_SOURCE: usize = 8;

/// Largest DNS message read (UDP, TCP or DNS over HTTPS): 64 KiB, the most a TCP DNS message
/// can be.
pub const MAX_DNS_MESSAGE_BYTES: usize = 65_535;

/// Longest wait for a DNS answer (including a TCP retry after truncation): 5 s, the usual
/// resolver timeout; a blocked resolver should not hold up the mirrors the reader already has.
pub const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Refusals kept in a store's recent-refusals record (`qasid status`). 100: enough to see a
/// pattern (one publisher, one upstream, one reason) at a glance; the log has the rest.
pub const MAX_RECENT_REFUSALS: usize = 100;

/// Shortest time between two writes of the recent-refusals record. One second: a flood of
/// refused requests costs at most one small atomic file write a second.
pub const REFUSAL_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Bounds on index pieces a mirror holds in staging: pushed pieces that no verified
/// `index.json` lists yet. Pieces carry no signature, so anyone may push a well-formed one for
/// a trusted publisher; these bounds are what an anonymous client can make a mirror store.
/// Pieces that a signature-checked head lists are admitted past them (see docs/PROTOCOL.md,
/// "Pushing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagingLimits {
    /// Most bytes of unlisted staged pieces, all publishers together. 512 MiB: a whole large
    /// publisher's first push of pieces (a 100,000-entry log is about 25 MB) many times over,
    /// yet a small part of any disk a mirror runs on. Past it a push is answered 507.
    pub max_staged_bytes: u64,
    /// Most bytes of unlisted staged pieces for one publisher. 64 MiB: a publisher's pieces
    /// for one update are a few MB (a 250,000-entry first push still fits), so one publisher's
    /// share cannot take the whole staging area from the others. Past it a push is answered
    /// 429; `qasid push` then sends the signed index first, which lets its pieces in.
    pub max_staged_bytes_per_publisher: u64,
    /// Staged pieces that no index claimed within this time are removed, while the mirror
    /// runs and when the store is opened. One day: a publisher's push sends pieces, then
    /// bundles, then the index, and a multi-GB push over a slow link takes hours.
    pub max_staged_age: std::time::Duration,
}

impl Default for StagingLimits {
    fn default() -> Self {
        Self {
            max_staged_bytes: 512 << 20,
            max_staged_bytes_per_publisher: 64 << 20,
            max_staged_age: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// What one staged piece counts against the staging bounds, at least: 4 KiB, the block a file
/// system gives even a one-byte file, so that millions of tiny pieces cannot fill a disk's
/// inodes and blocks while counting as a few MB.
pub const STAGED_PIECE_MIN_BYTES: u64 = 4096;

/// Slowest average rate at which a mirror's answer body is read by `index show`, `root` and
/// the other one-shot index clients, in bytes per second: 4 KiB/s, as the reader's and the
/// sync's. A throttled mobile link moves more; a mirror that drips a byte at a time (each byte
/// well within the read timeout) is cut off instead of holding the command forever.
pub const MIN_ANSWER_RATE: u64 = 4 << 10;

/// How long an answer body may lag behind [`MIN_ANSWER_RATE`] from its first byte: 10 s, for
/// a slow start (TCP slow start over Tor, a cold disk on the mirror).
pub const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bounds on every request to an S3-compatible bucket (`src/bucket.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLimits {
    /// Time to open a connection. 5 s: an endpoint that does not answer a TCP+TLS handshake in
    /// five seconds is down or blocked, and retries follow.
    pub connect_timeout: std::time::Duration,
    /// Time for one whole request, body included. 120 s: a 16 MiB part at 1 Mbit/s.
    pub request_timeout: std::time::Duration,
    /// Retries of one request after a timeout, a dropped connection or a 5xx. 3: rides out a
    /// node restart of a replicated store without hiding an endpoint that is down.
    pub max_retries: usize,
    /// Longest time spent retrying one request. 30 s.
    pub retry_timeout: std::time::Duration,
    /// Parallel requests (uploads) and idle pooled connections. 32: fills a fast link with
    /// small objects (each PUT is a round trip) without hundreds of sockets.
    pub max_parallel: usize,
    /// Files up to this size are uploaded in one PUT, read into memory. 8 MiB: at
    /// `max_parallel` uploads that is at most 256 MiB in flight; most bundles are far smaller.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads. 8 MiB (S3's minimum is 5 MiB).
    pub part_size: usize,
    /// Parts of one multipart upload in flight at once. 2: memory per upload stays at about
    /// three parts whatever the file's size.
    pub parts_in_flight: usize,
    /// Most objects one listing may return. 10,000,000: an archive of millions of bundles, far
    /// under what the listing itself would cost to hold in memory (about 1 GiB).
    pub max_listed: usize,
}

impl Default for BucketLimits {
    fn default() -> Self {
        Self {
            connect_timeout: std::time::Duration::from_secs(5),
            request_timeout: std::time::Duration::from_secs(120),
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            max_parallel: 32,
            multipart_threshold: 8 << 20,
            part_size: 8 << 20,
            parts_in_flight: 2,
            max_listed: 10_000_000,
        }
    }
}

/// Bundles larger than this many bytes get a chunk list (docs/PROTOCOL.md §13); smaller ones
/// are fetched whole. 1 MiB: below it a bundle is at most four chunks, which one throttled
/// connection delivers about as fast as four mirrors would after their connection set-up, and
/// the chunk list would be a second request for little gain.
pub const CHUNKED_BUNDLE_THRESHOLD: u64 = 1 << 20;

/// Size of every chunk of a chunk list but the last (which holds the rest). 256 KiB: small
/// enough that a bad or cut chunk wastes little (a quarter second at 8 mbit) and that a 2 MiB
/// bundle spreads over four mirrors; large enough that per-request overhead stays a few
/// percent on a slow link, and a 2 GiB bundle needs only 8,192 hashes (256 KiB of list).
pub const CHUNK_SIZE: u64 = 256 << 10;

/// Largest chunk list accepted: the list of the largest bundle `BundleLimits` allows (2 GiB):
/// 32 bytes naming the bundle plus 32 per chunk.
pub const MAX_CHUNK_LIST_BYTES: u64 = 32 * (1 + (2 << 30) / CHUNK_SIZE);

/// Most connections one segmented download (a bundle with a chunk list) keeps open, all
/// mirrors together. 16: four mirrors with four connections each; enough to add up throttled
/// links, few enough not to look like a flood to a mirror or a censor's middlebox.
pub const SEGMENTED_MAX_CONNECTIONS: usize = 16;

/// Most connections one segmented bundle download of a syncing mirror keeps open, all
/// upstreams together. 8: a mirror syncs up to `max_downloads` bundles at once (16 by
/// default) and each connection holds one chunk (256 KiB) in memory until it verifies, so
/// this keeps chunk buffers under 32 MiB by default, while two upstreams can still use four
/// connections each. A sync is not waiting for a reader, so fewer connections cost little.
pub const SYNC_SEGMENTED_MAX_CONNECTIONS: usize = 8;

/// Most connections to one mirror in a segmented download. 4: more connections help only
/// against a per-connection throttle, and the reader adds one only while the last one added
/// raised that mirror's measured rate by a quarter or more.
pub const SEGMENTED_MAX_PER_MIRROR: usize = 4;

/// Most requests for one chunk in a segmented download (first try, re-fetch after a bad
/// chunk, end-game duplicate; a request lost to a cut or stalled connection is not counted,
/// since each mirror is dropped after three such failures in a row). 3: a bad chunk is
/// fetched again once from another mirror; a chunk that fails three times points at a wrong
/// list, not at three liars.
pub const MAX_CHUNK_FETCHES: u32 = 3;

/// How long one request of a segmented download aims to take at its mirror's measured rate:
/// 1 s. Longer runs mean fewer requests (less overhead on slow links), shorter ones that a
/// cut loses less and that the queue stays shared between mirrors near the end.
pub const SEGMENT_TARGET: std::time::Duration = std::time::Duration::from_secs(1);

/// How a front end over a bucket (`qasid mirror --store s3://…`) reads it (`[mirror]
/// cache_bytes`, `cache_entries`, `bucket_refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontEndLimits {
    /// Bytes of verified objects kept in memory (LRU); one object at most an eighth of it.
    /// 64 MiB: the few thousand small bundles and pieces of the articles being read now, so a
    /// warm front end rarely asks the bucket, inside a small mirror's memory.
    pub cache_bytes: u64,
    /// Objects kept, whatever their size. 50,000: the bookkeeping (about 200 bytes each) stays
    /// near 10 MB however small the objects.
    pub cache_entries: usize,
    /// Longest time `index.json` and `note` are served without asking the bucket whether they
    /// changed (a conditional GET). 1 s: a push through one front end is served by the others
    /// within about a second, at one small request per publisher per second.
    pub refresh: std::time::Duration,
    /// Most objects too large for the cache spooled to disk at once while hashed (each may take
    /// a bundle's size of disk). 8: large bundles are rare; more requests for them wait.
    pub max_spools: usize,
}

impl Default for FrontEndLimits {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            cache_entries: 50_000,
            refresh: std::time::Duration::from_secs(1),
            max_spools: 8,
        }
    }
}
