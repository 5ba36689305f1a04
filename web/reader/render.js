// render.js: turning verified article Markdown into DOM nodes. Text only ever becomes text
// nodes (never innerHTML); links are http(s)/mailto only; images come only from the verified
// bundle, as blob: URLs. The supported Markdown is the common subset articles use: ATX headings,
// paragraphs, emphasis, code, links, images, lists, block quotes, rules and fenced code.

const RTL_LANGUAGES = new Set(["ar", "fa", "ur", "he", "ps", "sd", "ug", "yi", "dv", "ckb", "ku"]);
const IMAGE_TYPES = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp", svg: "image/svg+xml", avif: "image/avif" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function isRtl(language) {
  return RTL_LANGUAGES.has(language.split("-")[0]);
}

/** Removes the front matter block (`---` ... `---`) that opens article.md. */
function stripFrontMatter(text) {
  if (!text.startsWith("---\n")) return text;
  const end = text.indexOf("\n---\n", 3);
  return end < 0 ? text : text.slice(end + 5);
}

/** Resolves an image path relative to article.md inside the bundle; null if it leaves it. */
function bundlePath(src) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(src) || src.startsWith("/")) return null;
  const parts = [];
  for (const p of src.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") return null;
    parts.push(p);
  }
  return parts.join("/");
}

function safeLink(href) {
  try {
    const url = new URL(href);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

/** Inline Markdown into nodes appended to `parent`. */
function renderInline(text, parent, ctx) {
  const pattern = /(`+)([\s\S]*?)\1|!\[([^\]]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)|\[([^\]]+)\]\(([^)\s]+)(?:\s+"[^"]*")?\)|\*\*([\s\S]+?)\*\*|__([\s\S]+?)__|\*([^*\s][\s\S]*?)\*|(?<![\w])_([^_\s][\s\S]*?)_(?![\w])|<(https?:\/\/[^>\s]+)>/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[1]) parent.append(el("code", {}, m[2]));
    else if (m[4] !== undefined) parent.append(ctx.image(m[4], m[3]));
    else if (m[6] !== undefined) {
      const href = safeLink(m[6]);
      if (href) {
        const a = el("a", { href, rel: "noopener noreferrer nofollow", target: "_blank" });
        renderInline(m[5], a, ctx);
        parent.append(a);
      } else renderInline(m[5], parent, ctx);
    } else if (m[7] !== undefined || m[8] !== undefined) {
      const s = el("strong");
      renderInline(m[7] ?? m[8], s, ctx);
      parent.append(s);
    } else if (m[9] !== undefined || m[10] !== undefined) {
      const i = el("em");
      renderInline(m[9] ?? m[10], i, ctx);
      parent.append(i);
    } else if (m[11]) {
      parent.append(el("a", { href: m[11], rel: "noopener noreferrer nofollow", target: "_blank" }, m[11]));
    }
  }
  if (last < text.length) parent.append(text.slice(last));
}

/**
 * Renders article.md of a verified bundle. `files` maps bundle paths to verified bytes; object
 * URLs made here are recorded in `urls` so the caller can revoke them.
 */
function renderArticle(markdown, manifest, files, urls) {
  const ctx = {
    image(src, alt) {
      const path = bundlePath(src);
      const bytes = path !== null ? files.get(path) : undefined;
      const type = path !== null ? IMAGE_TYPES[extension(path)] : undefined;
      if (!bytes || !type) return el("span", { class: "missing-image" }, `[image not in the bundle: ${alt || src}]`);
      const url = URL.createObjectURL(new Blob([bytes], { type }));
      urls.push(url);
      return el("img", { src: url, alt });
    },
  };
  const article = el("article", { lang: manifest.language, dir: isRtl(manifest.language) ? "rtl" : "ltr" });
  const lines = stripFrontMatter(markdown).split("\n");
  let para = [];
  let skippedTitle = false;
  const flush = () => {
    if (para.length) {
      const p = el("p");
      renderInline(para.join("\n"), p, ctx);
      article.append(p);
      para = [];
    }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    let m;
    if (/^\s*$/.test(line)) {
      flush();
    } else if ((m = /^(`{3,}|~{3,})/.exec(line))) {
      flush();
      const fence = m[1];
      const body = [];
      for (i++; i < lines.length && !lines[i].startsWith(fence); i++) body.push(lines[i]);
      article.append(el("pre", { dir: "ltr" }, el("code", {}, body.join("\n"))));
    } else if ((m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line))) {
      flush();
      // The title is shown in the header; a first heading that repeats it is not shown twice.
      if (!skippedTitle && article.childElementCount === 0 && m[2].toLowerCase() === manifest.title.toLowerCase()) {
        skippedTitle = true;
        continue;
      }
      const h = el("h" + Math.min(6, m[1].length + 1));
      renderInline(m[2], h, ctx);
      article.append(h);
    } else if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      article.append(el("hr"));
    } else if (/^>\s?/.test(line)) {
      flush();
      const quoted = [];
      for (; i < lines.length && /^>\s?/.test(lines[i]); i++) quoted.push(lines[i].replace(/^>\s?/, ""));
      i--;
      const q = el("blockquote");
      renderInline(quoted.join("\n"), q, ctx);
      article.append(q);
    } else if ((m = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+/.exec(line))) {
      flush();
      const ordered = /\d/.test(m[1]);
      const list = el(ordered ? "ol" : "ul");
      for (; i < lines.length; i++) {
        const item = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(lines[i]);
        if (item) {
          const li = el("li");
          renderInline(item[2], li, ctx);
          list.append(li);
        } else if (/^\s{2,}\S/.test(lines[i]) && list.lastChild) {
          renderInline("\n" + lines[i].trim(), list.lastChild, ctx);
        } else break;
      }
      i--;
      article.append(list);
    } else {
      para.push(line);
    }
  }
  flush();
  return article;
}
