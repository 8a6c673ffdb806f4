// Anime recommender page: plain JS, no framework, no build step.
// Everything talks to the API on the same origin with relative URLs, so the page also works
// under an API Gateway stage prefix (e.g. /prod/).
"use strict";

(() => {
  const PAGE_SIZE = 12;
  const SUGGEST_LIMIT = 8;
  const SUGGEST_DELAY_MS = 150;
  const PROFILE_KEY = "anime-recommender:profile:v1";
  const FILTERS_KEY = "anime-recommender:filters:v1";
  // The imported MyAnimeList list: {entries: [[id, status code, score], ...], file, imported} (compact:
  // a 10,000-entry list is ~150 KB of the browser's ~5 MB per-site storage).
  const LIST_KEY = "anime-recommender:imported-list:v1";
  const MAX_LIST_FILE_BYTES = 4 * 1024 * 1024;
  const PROFILE_KINDS = ["liked", "disliked", "seen"];
  const ACTION_TO_KIND = { like: "liked", dislike: "disliked", seen: "seen" };
  const TYPE_LABELS = {
    TV: "TV", MOVIE: "Movie", OVA: "OVA", ONA: "ONA", SPECIAL: "Special", MUSIC: "Music", UNKNOWN: "Unknown",
  };

  const $ = (id) => document.getElementById(id);

  /** Create an element; attrs may hold `class`, `text`, `dataset`, booleans and plain attributes. */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function announce(message) {
    const node = $("announcer");
    // Clearing first makes screen readers repeat an identical message.
    node.textContent = "";
    window.setTimeout(() => { node.textContent = message; }, 30);
  }

  // ---------------------------------------------------------------- API client

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.name = "ApiError";
      this.status = status;
      this.problem = problem || {};
    }
  }

  /** Call the API; `body` goes as JSON, `raw` ({bytes, type}) as it is (an uploaded file). */
  async function api(path, { method = "GET", body, raw, signal } = {}) {
    const headers = { Accept: "application/json, application/problem+json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (raw !== undefined) headers["Content-Type"] = raw.type;
    let response;
    try {
      response = await fetch(path, {
        method, headers, signal, credentials: "same-origin",
        body: raw !== undefined ? raw.bytes : body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, {
        title: "The service cannot be reached",
        detail: "Check your connection, then try again.",
      });
    }
    const contentType = response.headers.get("content-type") || "";
    let data = null;
    if (contentType.includes("json")) {
      try { data = await response.json(); } catch { data = null; }
    }
    if (!response.ok) {
      throw new ApiError(response.status, data || { title: response.statusText || `HTTP ${response.status}` });
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === null || value === undefined || value === "") continue;
      if (Array.isArray(value)) value.forEach((item) => search.append(key, String(item)));
      else search.set(key, String(value));
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  }

  // Response shapes: tolerate a bare list or a list under a named key.
  function listFrom(data, ...keys) {
    if (Array.isArray(data)) return data;
    if (!data || typeof data !== "object") return [];
    for (const key of [...keys, "results", "items"]) {
      if (Array.isArray(data[key])) return data[key];
    }
    return [];
  }

  /** A result item is either an anime or {anime, score, explanation}. */
  function splitResult(item) {
    if (item && typeof item.anime === "object" && item.anime) {
      return { anime: item.anime, similarity: numberOr(item.similarity ?? item.score), explanation: item.explanation };
    }
    return { anime: item, similarity: numberOr(item.similarity), explanation: item.explanation };
  }

  function numberOr(value, fallback = null) {
    return typeof value === "number" && Number.isFinite(value) ? value : fallback;
  }

  // ---------------------------------------------------------------- profile (local storage)

  function readJson(key, fallback) {
    try {
      const raw = window.localStorage.getItem(key);
      return raw ? JSON.parse(raw) : fallback;
    } catch {
      return fallback; // storage disabled or corrupted: start fresh rather than break the page
    }
  }

  function writeJson(key, value) {
    try { window.localStorage.setItem(key, JSON.stringify(value)); } catch { /* private mode: keep in memory */ }
  }

  function loadProfile() {
    const raw = readJson(PROFILE_KEY, {});
    const profile = {};
    for (const kind of PROFILE_KINDS) {
      profile[kind] = {};
      const entries = raw && typeof raw[kind] === "object" && raw[kind] ? raw[kind] : {};
      for (const [id, title] of Object.entries(entries)) {
        if (/^\d+$/.test(id)) profile[kind][id] = String(title || `#${id}`);
      }
    }
    return profile;
  }

  const profile = loadProfile();

  function profileIds(kind) {
    return Object.keys(profile[kind]).map(Number);
  }

  function hasMark(kind, id) {
    return Object.prototype.hasOwnProperty.call(profile[kind], String(id));
  }

  function toggleMark(kind, anime) {
    const id = String(anime.id);
    const on = !hasMark(kind, id);
    if (on) {
      profile[kind][id] = anime.title;
      // Liking and disliking the same anime makes no sense: the newer choice wins.
      if (kind === "liked") delete profile.disliked[id];
      if (kind === "disliked") delete profile.liked[id];
    } else {
      delete profile[kind][id];
    }
    writeJson(PROFILE_KEY, profile);
    refreshProfileUi();
    const verb = { liked: "liked", disliked: "disliked", seen: "marked as seen" }[kind];
    announce(on ? `${anime.title} ${verb}.` : `${anime.title} no longer ${verb}.`);
    document.dispatchEvent(new CustomEvent("profilechange"));
  }

  function removeMark(kind, id) {
    delete profile[kind][String(id)];
    writeJson(PROFILE_KEY, profile);
    refreshProfileUi();
    document.dispatchEvent(new CustomEvent("profilechange"));
  }

  function refreshProfileUi() {
    for (const button of document.querySelectorAll("button[data-action][data-anime-id]")) {
      const kind = ACTION_TO_KIND[button.dataset.action];
      button.setAttribute("aria-pressed", String(hasMark(kind, button.dataset.animeId)));
    }
    const count = profileIds("liked").length;
    const badge = $("profile-count");
    badge.hidden = count === 0;
    badge.textContent = String(count);
    badge.setAttribute("aria-label", `${count} liked`);
  }

  // ---------------------------------------------------------------- imported list (local storage)

  // MyAnimeList's status codes, as the compact list and the XML posted back use them.
  const STATUS_CODES = {
    watching: 1, completed: 2, "on-hold": 3, "on hold": 3, onhold: 3, dropped: 4, "plan to watch": 6, plantowatch: 6,
    1: 1, 2: 2, 3: 3, 4: 4, 6: 6,
  };

  function loadImportedList() {
    const raw = readJson(LIST_KEY, null);
    if (!raw || !Array.isArray(raw.entries)) return null;
    const entries = raw.entries.filter((e) => Array.isArray(e) && e.length === 3 && e.every(Number.isInteger));
    return { entries, file: String(raw.file || "your list"), imported: String(raw.imported || "") };
  }

  let importedList = loadImportedList();

  /** Keep the list; false when the browser's storage refused it (it is then used for this visit only). */
  function storeImportedList(list) {
    importedList = list;
    try {
      if (list) window.localStorage.setItem(LIST_KEY, JSON.stringify(list));
      else window.localStorage.removeItem(LIST_KEY);
      return true;
    } catch {
      return false;
    }
  }

  function isGzip(bytes) {
    return bytes.length > 1 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  }

  async function throughStream(bytes, transform) {
    const stream = new Blob([bytes]).stream().pipeThrough(transform);
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  /** The entries of a MyAnimeList export ([id, status code, score]); the API checked the file first. */
  async function entriesFromExport(bytes) {
    const plain = isGzip(bytes) ? await throughStream(bytes, new DecompressionStream("gzip")) : bytes;
    const doc = new DOMParser().parseFromString(new TextDecoder().decode(plain), "application/xml");
    const byId = new Map();
    for (const node of doc.querySelectorAll("myanimelist > anime")) {
      const id = (node.querySelector("series_animedb_id")?.textContent || "").trim();
      const status = STATUS_CODES[(node.querySelector("my_status")?.textContent || "").trim().toLowerCase()];
      const score = Number((node.querySelector("my_score")?.textContent || "0").trim());
      if (!/^\d{1,10}$/.test(id) || Number(id) < 1 || !status) continue;
      byId.set(Number(id), [Number(id), status, Number.isInteger(score) && score >= 0 && score <= 10 ? score : 0]);
    }
    return [...byId.values()];
  }

  /**
   * The imported list plus this page's likes (completed, 10), dislikes (dropped) and seen anime (plan
   * to watch: never recommended, not taste) as a compact MyAnimeList export, gzip-compressed.
   */
  async function listExport() {
    const marked = new Set(PROFILE_KINDS.flatMap((kind) => profileIds(kind)));
    const rows = (importedList ? importedList.entries : []).filter(([id]) => !marked.has(id));
    rows.push(...profileIds("liked").map((id) => [id, 2, 10]));
    rows.push(...profileIds("disliked").map((id) => [id, 4, 0]));
    rows.push(...profileIds("seen").filter((id) => !hasMark("liked", id) && !hasMark("disliked", id)).map((id) => [id, 6, 0]));
    const xml = "<myanimelist>" + rows.map(([id, status, score]) =>
      `<anime><series_animedb_id>${id}</series_animedb_id><my_status>${status}</my_status><my_score>${score}</my_score></anime>`).join("") +
      "</myanimelist>";
    const text = new TextEncoder().encode(xml);
    if (typeof CompressionStream !== "function") return { bytes: text, type: "application/xml" };
    return { bytes: await throughStream(text, new CompressionStream("gzip")), type: "application/gzip" };
  }

  // ---------------------------------------------------------------- filters

  const filtersForm = $("filters-form");
  // `adult`: show adult titles (off by default: every request then leaves them out).
  let filters = Object.assign({ type: "", year_min: "", year_max: "", min_score: "", adult: false }, readJson(FILTERS_KEY, {}));
  filters.adult = filters.adult === true;

  function writeFiltersToForm() {
    for (const [name, value] of Object.entries(filters)) {
      const field = filtersForm.elements[name];
      if (!field) continue;
      if (field.type === "checkbox") field.checked = value === true;
      else field.value = value ?? "";
    }
    $("filter-summary").textContent = filterSummary();
  }

  function readFiltersFromForm() {
    const next = {
      type: filtersForm.elements.type.value,
      year_min: filtersForm.elements.year_min.value.trim(),
      year_max: filtersForm.elements.year_max.value.trim(),
      min_score: filtersForm.elements.min_score.value.trim(),
      adult: filtersForm.elements.adult.checked,
    };
    const errors = [];
    const yMin = next.year_min === "" ? null : Number(next.year_min);
    const yMax = next.year_max === "" ? null : Number(next.year_max);
    const sMin = next.min_score === "" ? null : Number(next.min_score);
    if (yMin !== null && !Number.isInteger(yMin)) errors.push("“From year” must be a whole year.");
    if (yMax !== null && !Number.isInteger(yMax)) errors.push("“To year” must be a whole year.");
    if (yMin !== null && yMax !== null && yMin > yMax) errors.push("“From year” must not be after “To year”.");
    if (sMin !== null && !(sMin >= 0 && sMin <= 10)) errors.push("Minimum score must be between 0 and 10.");
    return { next, errors };
  }

  function filterSummary() {
    const parts = [];
    if (filters.type) parts.push(TYPE_LABELS[filters.type] || filters.type);
    if (filters.year_min || filters.year_max) parts.push(`${filters.year_min || "…"}–${filters.year_max || "…"}`);
    if (filters.min_score) parts.push(`score ≥ ${filters.min_score}`);
    if (filters.adult) parts.push("adult titles shown");
    return parts.length ? `(${parts.join(", ")})` : "(none)";
  }

  function filterParams() {
    return {
      type: filters.type || null,
      year_min: filters.year_min || null,
      year_max: filters.year_max || null,
      min_score: filters.min_score || null,
      ...safetyParams(),
    };
  }

  /** `sfw=false` when adult titles are to be shown; nothing (the API's safe default) otherwise. */
  function safetyParams() {
    return filters.adult ? { sfw: "false" } : {};
  }

  /** The same filters as top-level fields of a JSON body (POST /recommendations). */
  function filterBody() {
    const body = {};
    if (filters.type) body.type = [filters.type];
    if (filters.year_min) body.year_min = Number(filters.year_min);
    if (filters.year_max) body.year_max = Number(filters.year_max);
    if (filters.min_score) body.min_score = Number(filters.min_score);
    if (filters.adult) body.sfw = false;
    return body;
  }

  function applyFilters() {
    const { next, errors } = readFiltersFromForm();
    const errorBox = $("filters-error");
    errorBox.hidden = errors.length === 0;
    errorBox.textContent = errors.join(" ");
    for (const name of ["year_min", "year_max", "min_score"]) {
      filtersForm.elements[name].setAttribute("aria-invalid", String(errors.length > 0 && next[name] !== ""));
    }
    if (errors.length) return;
    if (JSON.stringify(next) === JSON.stringify(filters)) return;
    filters = next;
    writeJson(FILTERS_KEY, filters);
    $("filter-summary").textContent = filterSummary();
    currentList?.reload();
  }

  filtersForm.addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
  filtersForm.addEventListener("change", applyFilters);
  // The reset event fires before the fields are cleared.
  filtersForm.addEventListener("reset", () => window.setTimeout(applyFilters, 0));

  // ---------------------------------------------------------------- rendering helpers

  const view = $("view");
  let viewToken = 0;
  let currentList = null;

  function beginView(title) {
    viewToken += 1;
    currentList = null;
    view.replaceChildren();
    // Which location the view shows: lets tests (and screen-reader tooling) tell a stale view from the new one.
    view.dataset.location = location.hash || "#/";
    document.title = title ? `${title} · Anime recommender` : "Anime recommender";
    for (const link of document.querySelectorAll("[data-view-link]")) {
      const active = link.dataset.viewLink === (currentRoute().name === "for-you" ? "for-you" : "home");
      if (active) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    return viewToken;
  }

  function formatMeta(anime) {
    const parts = [];
    if (anime.type) parts.push(TYPE_LABELS[anime.type] || anime.type);
    if (anime.year) parts.push(String(anime.year));
    if (anime.episodes) parts.push(`${anime.episodes} ep${anime.episodes === 1 ? "" : "s"}`);
    const score = numberOr(anime.score);
    parts.push(score === null ? "no score yet" : `score ${score.toFixed(2)}`);
    return parts.join(" · ");
  }

  function posterFor(anime, imgNode, placeholder) {
    const url = typeof anime.picture === "string" ? anime.picture : "";
    // The CSP only allows images from our own origin and MyAnimeList's CDN.
    if (url.startsWith("https://cdn.myanimelist.net/")) {
      imgNode.src = url;
      imgNode.hidden = false;
      placeholder.hidden = true;
      imgNode.addEventListener("error", () => { imgNode.hidden = true; placeholder.hidden = false; }, { once: true });
    } else {
      placeholder.textContent = (anime.title || "?").trim().charAt(0).toUpperCase();
    }
  }

  function profileButtons(anime, small = true) {
    const group = h("div", { class: "profile-actions", role: "group", "aria-label": `Your opinion of ${anime.title}` });
    for (const [action, label] of [["like", "Like"], ["dislike", "Dislike"], ["seen", "Seen"]]) {
      group.append(h("button", {
        type: "button",
        class: `btn ${small ? "small" : ""} toggle ${action}`,
        dataset: { action, animeId: String(anime.id) },
        "aria-pressed": String(hasMark(ACTION_TO_KIND[action], anime.id)),
        "aria-label": `${label} ${anime.title}`,
        onclick: () => toggleMark(ACTION_TO_KIND[action], anime),
      }, label));
    }
    return group;
  }

  function explanationNode(explanation) {
    if (!explanation) return null;
    if (typeof explanation === "string") return h("p", { class: "why" }, explanation);
    if (typeof explanation !== "object") return null;
    const box = h("div", { class: "why" });
    const text = explanation.text || explanation.summary || explanation.because;
    if (text) box.append(h("p", {}, text));
    if (typeof explanation.snippet === "string" && explanation.snippet) {
      box.append(h("blockquote", { class: "snippet" }, explanation.snippet));
    }
    const reasons = Array.isArray(explanation.reasons) ? explanation.reasons.filter((r) => typeof r === "string") : [];
    if (reasons.length) box.append(h("ul", { class: "reasons" }, reasons.map((r) => h("li", {}, r))));
    const liked = explanation.because_you_liked;
    if (liked && typeof liked === "object" && liked.id && !(text || "").includes(liked.title)) {
      box.append(h("p", { class: "because" }, "Because you liked ",
        h("a", { href: `#/anime/${Number(liked.id)}` }, String(liked.title)), "."));
    }
    const tags = Array.isArray(explanation.shared_tags) ? explanation.shared_tags : [];
    // The API's summary already names the shared tags; chips only when there is no sentence.
    if (tags.length && !text) {
      box.append(h("p", { class: "tags-line" }, h("span", { class: "tags-label" }, "Shared tags: "),
        h("span", { class: "tags" }, tags.map((tag) => h("span", { class: "tag" }, String(tag))))));
    }
    return box.childElementCount ? box : null;
  }

  /** `scale`: the list's best similarity, so bars compare results (V4 ranking scores exceed 1). */
  function cardFor(result, scale = 1) {
    const { anime, similarity, explanation } = splitResult(result);
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.animeId = String(anime.id);
    posterFor(anime, node.querySelector("img.poster"), node.querySelector(".poster.placeholder"));
    const link = node.querySelector(".card-link");
    link.href = `#/anime/${anime.id}`;
    link.textContent = anime.title;
    if (anime.title_english) {
      link.after(h("span", { class: "english-title", lang: "en" }, String(anime.title_english)));
    }
    node.querySelector(".meta").textContent = formatMeta(anime);
    if (similarity !== null) {
      const sim = node.querySelector(".similarity");
      sim.hidden = false;
      sim.querySelector(".sim-label").textContent = `similarity ${similarity.toFixed(2)}`;
      const fill = scale > 0 ? Math.max(0, Math.min(1, similarity / scale)) : 0;
      sim.querySelector(".sim-fill").style.width = `${Math.round(fill * 100)}%`;
    }
    const why = explanationNode(explanation);
    const parts = explanation && typeof explanation.components === "object" && explanation.components;
    if (why && parts && Object.keys(parts).length) {
      why.append(h("details", { class: "components" },
        h("summary", {}, "Score breakdown"),
        h("ul", {}, Object.entries(parts).sort((a, b) => b[1] - a[1])
          .map(([name, value]) => h("li", {}, `${name.replace(/_/g, " ")}: ${Number(value).toFixed(3)}`)))));
    }
    if (why) node.querySelector(".explanation").append(why);
    node.querySelector(".profile-actions").replaceWith(profileButtons(anime));
    return node;
  }

  function problemNode(err, retry) {
    const problem = (err && err.problem) || {};
    const title = problem.title || (err && err.message) || "Something went wrong";
    const box = h("div", { class: "notice error", role: "alert" },
      h("h3", {}, title),
      problem.detail && problem.detail !== title ? h("p", {}, String(problem.detail)) : null);
    const errors = Array.isArray(problem.errors) ? problem.errors : [];
    if (errors.length) {
      box.append(h("ul", {}, errors.slice(0, 5).map((e) => {
        const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "query" && p !== "body").join(".") : "";
        return h("li", {}, where ? `${where}: ${e.msg || ""}` : String(e.msg || JSON.stringify(e)));
      })));
    }
    if (retry) box.append(h("button", { type: "button", class: "btn", onclick: retry }, "Try again"));
    return box;
  }

  function emptyNode(title, text, ...extra) {
    return h("div", { class: "notice empty", role: "status" }, h("h3", {}, title), text ? h("p", {}, text) : null, ...extra);
  }

  /**
   * A paginated card list. `load(offset, limit)` returns {items, hasMore}.
   * Filters changing calls `reload()`, "More" appends the next page at offset = cards shown.
   */
  function resultList(parent, { label, load, empty }) {
    const token = viewToken;
    const section = h("section", { class: "results", "aria-label": label });
    const status = h("p", { class: "list-status", role: "status" });
    const list = h("ul", { class: "cards", "aria-label": label });
    const more = h("button", { type: "button", class: "btn more", hidden: true }, "More");
    const problemSlot = h("div");
    section.append(status, list, problemSlot, more);
    parent.append(section);
    let shown = 0;
    let loading = false;
    let scale = 1;

    async function page(reset) {
      if (loading && !reset) return;
      loading = true;
      const offset = reset ? 0 : shown;
      if (reset) { list.replaceChildren(); shown = 0; }
      problemSlot.replaceChildren();
      more.hidden = true;
      section.setAttribute("aria-busy", "true");
      status.textContent = offset === 0 ? "Loading…" : "Loading more…";
      try {
        const { items, hasMore } = await load(offset, PAGE_SIZE);
        if (token !== viewToken) return;
        if (offset === 0) scale = Math.max(0, ...items.map((item) => splitResult(item).similarity ?? 0));
        const cardsNew = items.map((item) => cardFor(item, scale));
        const firstNew = cardsNew[0] || null;
        list.append(...cardsNew);
        shown += items.length;
        more.hidden = !hasMore;
        if (shown === 0) {
          status.textContent = "";
          problemSlot.append(empty());
        } else {
          status.textContent = `Showing ${shown} result${shown === 1 ? "" : "s"}.`;
        }
        // Keep keyboard users where the new content starts instead of at the vanished button.
        if (!reset && firstNew) firstNew.querySelector(".card-link").focus();
      } catch (err) {
        if (token !== viewToken) return;
        status.textContent = "";
        problemSlot.append(problemNode(err, () => page(shown === 0)));
        more.hidden = shown === 0;
      } finally {
        loading = false;
        section.setAttribute("aria-busy", "false");
      }
    }

    more.addEventListener("click", () => page(false));
    const controller = { reload: () => page(true) };
    currentList = controller;
    page(true);
    return controller;
  }

  // ---------------------------------------------------------------- views

  function homeView() {
    beginView("");
    const example = "space bounty hunters with a jazz soundtrack";
    view.append(
      h("section", { class: "intro" },
        h("h2", {}, "Find your next anime"),
        h("ol", { class: "steps" },
          h("li", {}, "Search for a title you know. You will see anime similar to it, with the reasons why."),
          h("li", {}, "Or describe a mood or a story in your own words."),
          h("li", {}, "Press ", h("strong", {}, "Like"), ", ", h("strong", {}, "Dislike"), " or ", h("strong", {}, "Seen"),
            " on any card; ", h("a", { href: "#/for-you" }, "For you"), " then recommends from your taste.")),
        h("p", {}, "Try: ", h("a", { href: `#/search${query({ q: example })}`, class: "example" }, `“${example}”`))));
  }

  async function animeView(id) {
    const token = beginView(`Anime #${id}`);
    const details = h("section", { class: "details", "aria-label": "Selected anime" }, h("p", { role: "status" }, "Loading…"));
    view.append(details);
    let anime;
    try {
      anime = await api(`anime/${encodeURIComponent(id)}`);
    } catch (err) {
      if (token !== viewToken) return;
      details.replaceChildren(err.status === 404
        ? emptyNode("No such anime", (err.problem && err.problem.detail) || `There is no anime with id ${id}.`,
          h("p", {}, h("a", { href: "#/" }, "Back to the start")))
        : problemNode(err, () => animeView(id)));
      return;
    }
    if (token !== viewToken) return;
    document.title = `${anime.title} · Anime recommender`;
    const titleInput = $("title-input");
    if (document.activeElement !== titleInput) titleInput.value = anime.title;
    details.replaceChildren(detailsNode(anime));
    // The API lists the franchise apart from the recommendations; it comes with their first page.
    const franchise = h("section", { class: "franchise", "aria-labelledby": "franchise-heading", hidden: true });
    view.append(franchise);
    view.append(h("h2", { class: "section-title", id: "similar-heading" }, "If you liked this"));
    resultList(view, {
      label: `Anime from other franchises for fans of ${anime.title}`,
      load: async (offset, k) => {
        const data = await api(`anime/${encodeURIComponent(id)}/similar${query({ k, offset, ...filterParams() })}`);
        if (offset === 0 && token === viewToken) renderFranchise(franchise, data, anime);
        const items = listFrom(data, "similar", "neighbours");
        return { items, hasMore: hasMoreFrom(data, offset, items, k) };
      },
      empty: () => emptyNode("Nothing similar matches these filters",
        "Widen the year range, lower the minimum score or pick another type."),
    });
  }

  const RELATION_LABELS = {
    prequel: "Prequel", sequel: "Sequel", "parent story": "Parent story", movie: "Movie",
    "side story": "Side story", "same franchise": "Same franchise",
  };

  /** "More from this franchise": the siblings the API lists apart, in release order (not filtered). */
  function renderFranchise(section, data, anime) {
    const entries = Array.isArray(data && data.franchise) ? data.franchise.filter((e) => e && e.anime) : [];
    section.hidden = entries.length === 0;
    if (!entries.length) { section.replaceChildren(); return; }
    const total = numberOr(data.franchise_total, entries.length);
    section.replaceChildren(
      h("h2", { class: "section-title", id: "franchise-heading" }, "More from this franchise"),
      h("p", { class: "hint" }, total > entries.length
        ? `The ${entries.length} best-known of ${total} related entries of ${anime.title}, in release order.`
        : `Sequels, prequels, movies and side stories of ${anime.title}, in release order.`),
      h("ol", { class: "franchise-list", "aria-label": `The ${anime.title} franchise` }, entries.map((entry) =>
        h("li", { class: "franchise-item", dataset: { animeId: String(entry.anime.id) } },
          h("span", { class: "relation" }, RELATION_LABELS[entry.relation] || String(entry.relation || "Related")),
          h("a", { class: "franchise-link", href: `#/anime/${Number(entry.anime.id)}` }, String(entry.anime.title)),
          h("span", { class: "meta" }, formatMeta(entry.anime))))));
  }

  function hasMoreFrom(data, offset, items, k) {
    // The API says where the next page starts (null when this page was the last).
    if (data && "next_offset" in data) return typeof data.next_offset === "number" && items.length > 0;
    if (data && typeof data.has_more === "boolean") return data.has_more;
    if (data && typeof data.total === "number") return offset + items.length < data.total;
    return items.length >= k;
  }

  function detailsNode(anime) {
    const poster = h("img", { class: "poster large", alt: "", width: 126, height: 180, hidden: true });
    const placeholder = h("div", { class: "poster large placeholder", "aria-hidden": "true" });
    posterFor(anime, poster, placeholder);
    const synonyms = Array.isArray(anime.synonyms) ? anime.synonyms.slice(0, 4) : [];
    const tags = Array.isArray(anime.tags) ? anime.tags : [];
    const sources = Array.isArray(anime.sources) ? anime.sources.filter((s) => /^https:\/\//.test(s)).slice(0, 3) : [];
    return h("article", { class: "detail-card" },
      h("div", { class: "card-media" }, poster, placeholder),
      h("div", { class: "detail-body" },
        h("h2", { class: "detail-title", id: "detail-title" }, anime.title),
        synonyms.length ? h("p", { class: "synonyms" }, `Also known as ${synonyms.join(" · ")}`) : null,
        h("p", { class: "meta" }, formatMeta(anime)),
        anime.members ? h("p", { class: "meta" }, `${Number(anime.members).toLocaleString("en")} members`) : null,
        tags.length ? h("p", { class: "tags" }, tags.map((t) => h("span", { class: "tag" }, t))) : null,
        sources.length ? h("p", { class: "sources" }, "More at ", sources.map((s, i) => [
          i ? ", " : "", h("a", { href: s, rel: "noopener noreferrer", target: "_blank" }, new URL(s).hostname.replace(/^www\./, "")),
        ])) : null,
        profileButtons(anime, false)));
  }

  function searchView(q) {
    beginView(q ? `“${q}”` : "Search");
    $("text-input").value = q;
    if (!q) {
      view.append(emptyNode("Describe what you want to watch", "Type a few words above, then press Search."));
      return;
    }
    view.append(h("h2", { class: "section-title" }, `Anime matching “${q}”`));
    const understoodSlot = h("div", { class: "understood-slot" });
    view.append(understoodSlot);
    resultList(view, {
      label: `Results for ${q}`,
      load: async (offset, k) => {
        const data = await api(`search${query({ q, k, offset, ...filterParams() })}`);
        if (offset === 0) understoodSlot.replaceChildren(...understoodNodes(data));
        const items = listFrom(data, "results");
        return { items, hasMore: hasMoreFrom(data, offset, items, k) };
      },
      empty: () => emptyNode("No anime match this description", "Try other words, or loosen the filters."),
    });
  }

  /** One chip's words for a part of the query the API understood ("Music", "1990s", "no romance"). */
  function understoodLabel(part) {
    const value = String(part.value ?? part.text ?? "");
    const nice = value.length > 1 && value === value.toUpperCase() ? value.charAt(0) + value.slice(1).toLowerCase() : value;
    switch (part.kind) {
      case "exclude_genre": return `no ${value}`;
      case "exclude_type": return `not ${nice}`;
      case "like_title": return `like ${value}`;
      case "title": return value;
      default: return nice.charAt(0).toUpperCase() + nice.slice(1);
    }
  }

  /** "Understood: Music · 1990s · no romance" (from `query.understood`), and the mode when not hybrid. */
  function understoodNodes(data) {
    const parts = data && data.query && Array.isArray(data.query.understood) ? data.query.understood : [];
    const nodes = [];
    if (parts.length) {
      const chips = [];
      parts.forEach((part, i) => {
        if (i) chips.push(h("span", { class: "sep", "aria-hidden": "true" }, " · "));
        chips.push(h("span", { class: part.hard ? "chip hard" : "chip", title: part.hard ? "filter" : "boost" },
          understoodLabel(part)));
      });
      nodes.push(h("p", { class: "understood" }, h("span", { class: "understood-label" }, "Understood: "), ...chips));
    }
    if (data && data.mode === "lexical") {
      nodes.push(h("p", { class: "mode-note" }, "Matched on words, genres and popularity only: the language model is not loaded right now."));
    }
    return nodes;
  }

  function forYouView() {
    beginView("For you");
    const summary = h("section", { class: "profile", "aria-labelledby": "profile-heading" });
    view.append(h("h2", { class: "section-title", id: "for-you-heading" }, "For you"), summary, importNode());
    const renderSummary = () => {
      summary.replaceChildren(h("h3", { id: "profile-heading", class: "visually-hidden" }, "Your profile"));
      for (const [kind, label] of [["liked", "Liked"], ["disliked", "Disliked"], ["seen", "Seen"]]) {
        const ids = Object.entries(profile[kind]);
        summary.append(h("div", { class: "profile-row" },
          h("span", { class: "profile-label" }, `${label} (${ids.length})`),
          ids.length
            ? h("ul", { class: "chips", "aria-label": label }, ids.map(([id, title]) => h("li", { class: "chip" },
              h("a", { href: `#/anime/${id}` }, title),
              h("button", {
                type: "button", class: "chip-remove", "aria-label": `Remove ${title} from ${label.toLowerCase()}`,
                onclick: () => removeMark(kind, id),
              }, "×"))))
            : h("span", { class: "muted" }, "none")));
      }
      if (importedList) {
        summary.append(h("div", { class: "profile-row", id: "imported-row" },
          h("span", { class: "profile-label" }, "Imported"),
          h("span", {}, `${importedList.entries.length.toLocaleString("en")} entries from ${importedList.file}: all count as seen.`),
          h("button", {
            type: "button", class: "btn small", onclick: () => { storeImportedList(null); forYouView(); },
          }, "Forget imported list")));
      }
      if (PROFILE_KINDS.some((k) => profileIds(k).length)) {
        summary.append(h("button", {
          type: "button", class: "btn subtle", onclick: () => {
            if (!window.confirm("Forget all your likes, dislikes and seen anime?")) return;
            for (const k of PROFILE_KINDS) profile[k] = {};
            writeJson(PROFILE_KEY, profile);
            refreshProfileUi();
            forYouView();
          },
        }, "Clear profile"));
      }
    };
    renderSummary();

    const liked = profileIds("liked");
    if (!liked.length && !importedList) {
      view.append(emptyNode("Nothing to go on yet",
        "Like a few anime (search for a title above, then press Like), or import your MyAnimeList list, and recommendations appear here.",
        h("p", {}, h("a", { href: "#/" }, "Start searching"))));
      return;
    }
    const stale = h("p", { class: "notice info", hidden: true },
      "Your profile changed. ",
      h("button", { type: "button", class: "btn small", onclick: () => forYouView() }, "Refresh recommendations"));
    view.append(stale);
    const token = viewToken;
    const onChange = () => {
      if (token !== viewToken) { document.removeEventListener("profilechange", onChange); return; }
      renderSummary();
      stale.hidden = false;
    };
    document.addEventListener("profilechange", onChange);
    // With an imported list, the whole list goes through the import route (POST /recommendations
    // takes at most 50 liked and 500 excluded ids); it also says what to continue watching.
    const continueSection = h("section", { class: "franchise continue", "aria-labelledby": "continue-heading", hidden: true });
    if (importedList) view.append(continueSection);
    view.append(h("h2", { class: "section-title", id: "recommended-heading" }, "Recommended for you"));
    resultList(view, {
      label: "Recommended for you",
      load: async (offset, k) => {
        let data;
        if (importedList) {
          const raw = await listExport();
          data = await api(`recommendations/import${query({ k, offset, ...safetyParams() })}`, { method: "POST", raw });
          if (offset === 0 && token === viewToken) renderContinue(continueSection, data);
        } else {
          const seen = profileIds("seen");
          const body = {
            liked,
            disliked: profileIds("disliked"),
            // Never recommend what the person already knows.
            exclude: [...new Set([...seen, ...liked])],
            ...filterBody(),
            k,
            offset,
          };
          data = await api("recommendations", { method: "POST", body });
        }
        const items = listFrom(data, "recommendations");
        return { items, hasMore: hasMoreFrom(data, offset, items, k) };
      },
      empty: () => emptyNode("No recommendations match these filters", "Loosen the filters or like a few more anime."),
    });
  }

  /** "Import your MyAnimeList list": the export file goes to the import route, then into local storage. */
  function importNode() {
    const input = h("input", {
      id: "list-file", type: "file", accept: ".xml,.gz,application/xml,text/xml,application/gzip",
      "aria-describedby": "list-file-hint",
    });
    const status = h("p", { class: "list-status", role: "status", id: "list-import-status" });
    input.addEventListener("change", async () => {
      const file = input.files && input.files[0];
      if (!file) return;
      status.className = "list-status";
      if (file.size > MAX_LIST_FILE_BYTES) {
        status.className = "list-status error";
        status.textContent = `${file.name} is larger than 4 MB: compress it with gzip (.xml.gz) and try again.`;
        return;
      }
      status.textContent = `Reading ${file.name}…`;
      const bytes = new Uint8Array(await file.arrayBuffer());
      try {
        // The API checks the file (and answers for it) before anything is kept.
        const data = await api(`recommendations/import${query({ k: 1, ...safetyParams() })}`, {
          method: "POST", raw: { bytes, type: isGzip(bytes) ? "application/gzip" : "application/xml" },
        });
        const entries = await entriesFromExport(bytes);
        const kept = storeImportedList({ entries, file: file.name, imported: new Date().toISOString() });
        const counts = data.counts || {};
        const message = `Imported ${Number(counts.entries || entries.length).toLocaleString("en")} entries from ${file.name}` +
          (counts.unknown ? ` (${counts.unknown} not in this catalogue)` : "") + ".";
        forYouView();
        const note = $("list-import-status");
        note.textContent = kept ? message : `${message} Your browser's storage is full, so it is used for this visit only.`;
        announce(note.textContent);
      } catch (err) {
        status.className = "list-status error";
        status.textContent = `${file.name} could not be imported: ${err.message}`;
        announce(status.textContent);
      }
    });
    return h("section", { class: "import", "aria-labelledby": "import-heading" },
      h("h3", { id: "import-heading" }, h("label", { for: "list-file" }, "Import your MyAnimeList list")),
      h("p", { class: "hint", id: "list-file-hint" },
        "The XML export from MyAnimeList (Profile → Export), AniList, Kitsu or Anime-Planet, plain or .gz. ",
        "It stays in this browser; everything on it counts as seen."),
      input, status);
  }

  /** "Continue watching": the unwatched next entries of franchises on the imported list. */
  function renderContinue(section, data) {
    const entries = Array.isArray(data && data.continue) ? data.continue.filter((e) => e && e.anime && e.after) : [];
    section.hidden = entries.length === 0;
    section.replaceChildren(
      h("h2", { class: "section-title", id: "continue-heading" }, "Continue watching"),
      h("p", { class: "hint" }, "The next entries of series you finished or are watching, in release order."),
      h("ol", { class: "franchise-list", "aria-label": "Continue watching" }, entries.map((entry) =>
        h("li", { class: "franchise-item", dataset: { animeId: String(entry.anime.id) } },
          h("span", { class: "relation" }, RELATION_LABELS[entry.relation] || "Next"),
          h("a", { class: "franchise-link", href: `#/anime/${Number(entry.anime.id)}` }, String(entry.anime.title)),
          h("span", { class: "meta" }, `after ${entry.after.title} · ${formatMeta(entry.anime)}`)))));
  }

  function notFoundView() {
    beginView("Not found");
    view.append(emptyNode("Page not found", "This address does not lead anywhere.", h("p", {}, h("a", { href: "#/" }, "Back to the start"))));
  }

  // ---------------------------------------------------------------- routing (hash based: no server routes needed)

  function currentRoute() {
    const hash = window.location.hash.replace(/^#/, "") || "/";
    const [path, search = ""] = hash.split("?");
    let match;
    if (path === "/" || path === "") return { name: "home" };
    if ((match = /^\/anime\/(\d{1,9})$/.exec(path))) return { name: "anime", id: Number(match[1]) };
    if (path === "/search") return { name: "search", q: (new URLSearchParams(search).get("q") || "").trim() };
    if (path === "/for-you") return { name: "for-you" };
    return { name: "not-found" };
  }

  function route() {
    const r = currentRoute();
    if (r.name === "home") homeView();
    else if (r.name === "anime") animeView(r.id);
    else if (r.name === "search") searchView(r.q);
    else if (r.name === "for-you") forYouView();
    else notFoundView();
  }

  function navigate(hash) {
    if (window.location.hash === hash) route(); else window.location.hash = hash;
  }

  // ---------------------------------------------------------------- title combobox (ARIA 1.2 pattern)

  const input = $("title-input");
  const listbox = $("title-listbox");
  let suggestions = [];
  let active = -1;
  let suggestTimer = 0;
  let suggestController = null;
  let lastQuery = "";

  function openList() {
    listbox.hidden = suggestions.length === 0;
    input.setAttribute("aria-expanded", String(!listbox.hidden));
  }

  function closeList() {
    listbox.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function setActive(index) {
    const options = listbox.querySelectorAll("[role=option]");
    active = options.length ? (index + options.length) % options.length : -1;
    options.forEach((option, i) => option.setAttribute("aria-selected", String(i === active)));
    if (active >= 0) {
      input.setAttribute("aria-activedescendant", options[active].id);
      options[active].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function renderSuggestions(items, q) {
    suggestions = items;
    listbox.replaceChildren(...items.map((item, i) => {
      const anime = splitResult(item).anime;
      const meta = [TYPE_LABELS[anime.type] || anime.type, anime.year].filter(Boolean).join(" · ");
      const matched = typeof item.matched === "string" && item.matched !== anime.title ? item.matched : "";
      return h("li", {
        role: "option", id: `title-option-${i}`, class: "option", "aria-selected": "false",
        dataset: { index: String(i) },
      },
      h("span", { class: "option-title" }, anime.title),
      matched ? h("span", { class: "option-aka" }, ` (${matched})`) : null,
      meta ? h("span", { class: "option-meta" }, meta) : null);
    }));
    active = -1;
    openList();
    announce(items.length
      ? `${items.length} title${items.length === 1 ? "" : "s"} found. Use the up and down arrows to choose.`
      : `No titles match “${q}”.`);
  }

  async function suggest(q) {
    suggestController?.abort();
    const controller = new AbortController();
    suggestController = controller;
    lastQuery = q;
    try {
      const data = await api(`anime${query({ q, limit: SUGGEST_LIMIT, ...safetyParams() })}`, { signal: controller.signal });
      if (controller.signal.aborted || input.value.trim() !== q) return suggestions;
      renderSuggestions(listFrom(data, "matches", "anime"), q);
    } catch (err) {
      if (err && err.name === "AbortError") return suggestions;
      suggestions = [];
      closeList();
      announce(`Title suggestions are unavailable: ${err.message}`);
    }
    return suggestions;
  }

  function pick(index) {
    const item = suggestions[index];
    if (!item) return;
    const anime = splitResult(item).anime;
    input.value = anime.title;
    closeList();
    navigate(`#/anime/${anime.id}`);
  }

  input.addEventListener("input", () => {
    window.clearTimeout(suggestTimer);
    const q = input.value.trim();
    if (!q) { suggestController?.abort(); suggestions = []; closeList(); return; }
    suggestTimer = window.setTimeout(() => suggest(q), SUGGEST_DELAY_MS);
  });

  input.addEventListener("keydown", (event) => {
    const open = !listbox.hidden;
    switch (event.key) {
      case "ArrowDown":
        event.preventDefault();
        if (!open) { openList(); if (!listbox.hidden && !event.altKey) setActive(0); } else setActive(active + 1);
        break;
      case "ArrowUp":
        event.preventDefault();
        if (!open) { openList(); if (!listbox.hidden) setActive(suggestions.length - 1); } else setActive(active - 1);
        break;
      case "Enter":
        if (open && active >= 0) { event.preventDefault(); pick(active); }
        break; // otherwise the form's submit handler decides
      case "Escape":
        if (open) { event.preventDefault(); closeList(); } else if (input.value) { event.preventDefault(); input.value = ""; }
        break;
      case "Tab":
        closeList();
        break;
      default:
        break;
    }
  });

  // mousedown would move focus away from the input before click fires.
  listbox.addEventListener("mousedown", (event) => event.preventDefault());
  listbox.addEventListener("click", (event) => {
    const option = event.target.closest("[role=option]");
    if (option) pick(Number(option.dataset.index));
  });
  input.addEventListener("blur", () => window.setTimeout(closeList, 100));

  $("title-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    window.clearTimeout(suggestTimer);
    const q = input.value.trim();
    if (!q) return;
    // Enter without choosing: take the best match (fetching it first if the debounce had not fired yet).
    const items = q === lastQuery && suggestions.length ? suggestions : await suggest(q);
    if (items.length) pick(0);
  });

  // ---------------------------------------------------------------- free-text search

  $("text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("text-input").value.trim();
    closeList();
    navigate(`#/search${query({ q })}`);
  });

  // ---------------------------------------------------------------- health / degraded tier

  async function checkHealth() {
    let health;
    try {
      health = await api("health");
    } catch (err) {
      showTierNote(`The recommendation service is not answering (${err.message}). Results may fail to load.`);
      return;
    }
    const tier = String(health.tier || health.active_tier || "").toLowerCase();
    const size = numberOr(health.catalogue_size ?? health.catalogue?.size);
    $("health-summary").textContent = [
      size !== null ? `${size.toLocaleString("en")} anime in the catalogue.` : "",
      tier ? `Model tier ${tier.toUpperCase()}.` : "",
    ].join(" ");
    const degraded = health.status === "degraded";
    if (health.text_search === false) {
      $("text-submit").disabled = true;
      $("text-input").disabled = true;
    }
    if (tier === "v3") {
      showTierNote("Running in fallback mode: results come from the base language model, so they may be a little less precise.");
    } else if (tier === "v2") {
      showTierNote(health.text_search === false
        ? "Running in fallback mode: similar anime come from precomputed lists, and free-text search is unavailable for now."
        : "Running in fallback mode: similar anime come from precomputed lists, and search matches words and genres only.");
    } else if ((tier && tier !== "v4") || degraded) {
      showTierNote("The service runs in a reduced mode; some results may be less precise.");
    }
  }

  function showTierNote(text) {
    const note = $("tier-note");
    note.textContent = text;
    note.hidden = false;
  }

  // ---------------------------------------------------------------- start

  window.addEventListener("hashchange", () => {
    route();
    // Move focus to the new content only when the change came from an in-page link, not on load.
    $("main").focus({ preventScroll: false });
  });
  window.addEventListener("storage", (event) => {
    if (event.key === LIST_KEY) importedList = loadImportedList();
    if (event.key !== PROFILE_KEY) return;
    Object.assign(profile, loadProfile());
    refreshProfileUi();
  });

  writeFiltersToForm();
  // On a phone the open filter form would push the results below the fold; its summary line
  // still shows which filters are active.
  if (window.matchMedia("(max-width: 40rem)").matches) $("filters-details").open = false;
  refreshProfileUi();
  route();
  checkHealth();
})();
