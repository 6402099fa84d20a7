(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("audit-data").textContent);
  var FOLD = __FOLD__;
  var LABELS = ["on_theme", "off_theme", "unsure"];
  var LABEL_TEXT = { on_theme: "On theme", off_theme: "Off theme", unsure: "Unsure" };
  var BUCKET_ORDER = ["top", "middle", "near threshold", "below threshold"];
  var docs = Array.isArray(DATA.documents) ? DATA.documents : [];
  var themes = uniq([].concat(DATA.themes || [], DATA.upsampled || [], DATA.stance || [],
    docs.map(function (d) { return d.stream; })));
  var stance = DATA.stance || [];
  var thresholds = DATA.thresholds || {};
  var storeKey = "__PREFIX__" + String(DATA.manifest) + "#" + String(DATA.seed);
  var reviewerKey = "__PREFIX__reviewer";

  function uniq(xs) {
    var out = [];
    xs.forEach(function (x) { if (typeof x === "string" && out.indexOf(x) < 0) out.push(x); });
    return out;
  }
  function $(id) { return document.getElementById(id); }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = String(v);
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    });
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(el, x); }); return; }
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  function num(x) { return typeof x === "number" && isFinite(x) ? x : null; }
  function fmt(x, d) { var v = num(x); return v === null ? "\u2014" : v.toFixed(d === undefined ? 3 : d); }
  function fmtInt(x) { var v = num(x); return v === null ? "\u2014" : Math.round(v).toLocaleString("en-US"); }

  // ---- storage -------------------------------------------------------------------------------
  var storageOk = true;
  function storeGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { storageOk = false; return null; }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); return true; } catch (e) { storageOk = false; return false; }
  }
  function loadState() {
    var s = null;
    try { s = JSON.parse(storeGet(storeKey) || "null"); } catch (e) { s = null; }
    if (!s || typeof s !== "object") s = {};
    if (!s.labels || typeof s.labels !== "object") s.labels = {};
    if (typeof s.reviewer !== "string") s.reviewer = storeGet(reviewerKey) || "";
    if (!s.filters || typeof s.filters !== "object") s.filters = {};
    return s;
  }
  var state = loadState();
  function save() {
    if (!storeSet(storeKey, JSON.stringify(state))) showStorageWarning();
  }
  function showStorageWarning() {
    var w = $("storage-warning");
    w.textContent = "This browser does not let the page save labels; they are lost on reload. Export often (e).";
    w.hidden = false;
  }

  // ---- header ------------------------------------------------------------------------------
  function renderHeader() {
    var parts = [];
    if (DATA.created_at) parts.push("manifest created " + DATA.created_at);
    if (DATA.manifest) parts.push(String(DATA.manifest));
    if (DATA.seed !== undefined && DATA.seed !== null) parts.push("seed " + DATA.seed);
    parts.push(docs.length + " documents");
    if (num(DATA.max_repeats) !== null) parts.push("repeat cap " + DATA.max_repeats);
    $("meta").textContent = parts.join(" \u00b7 ");
    var hint = [DATA.reviewer_hint, DATA.note].filter(Boolean).join(" ");
    $("hint").textContent = hint;
    $("hint").hidden = !hint;
    var prec = DATA.precision;
    if (prec && typeof prec === "object" && Object.keys(prec).length) {
      var box = $("precision");
      themes.concat(Object.keys(prec).filter(function (t) { return themes.indexOf(t) < 0; })).forEach(function (t) {
        var p = prec[t];
        if (!p) return;
        box.append(h("span", { class: "pill", title: p.on + " of " + p.labelled + " labelled on theme" },
          h("strong", { text: t }), " precision " + fmt(p.precision, 2) + " [" + fmt(p.low, 2) + ", " +
          fmt(p.high, 2) + "] \u00b7 n=" + p.labelled));
      });
      box.hidden = false;
    }
    var rev = $("reviewer");
    rev.value = state.reviewer;
    rev.addEventListener("input", function () {
      state.reviewer = rev.value;
      storeSet(reviewerKey, rev.value);
      save();
    });
  }

  // ---- text with highlighted passages ----------------------------------------------------------
  // Passage offsets count code points (Python); JavaScript strings index UTF-16 code units.
  function cpToUnit(text) {
    if (!/[\uD800-\uDBFF][\uDC00-\uDFFF]/.test(text)) return null;
    var map = [0], u = 0;
    for (var ch of text) { u += ch.length; map.push(u); }
    return map;
  }
  function segments(text, passages) {
    var n = text.length, map = cpToUnit(text);
    var conv = function (i) {
      i = Math.max(0, Math.floor(num(i) || 0));
      return map ? map[Math.min(i, map.length - 1)] : Math.min(i, n);
    };
    var ps = [];
    (passages || []).forEach(function (p) {
      if (!p) return;
      var s = conv(p.start), e = conv(p.end);
      if (e > s) ps.push({ s: s, e: e, score: num(p.score) === null ? 0 : p.score });
    });
    if (!ps.length) return { segs: [{ s: 0, e: n, score: null }], count: 0 };
    var lo = Math.min.apply(null, ps.map(function (p) { return p.score; }));
    var hi = Math.max.apply(null, ps.map(function (p) { return p.score; }));
    var cuts = [0, n];
    ps.forEach(function (p) { cuts.push(p.s, p.e); });
    cuts = uniqNum(cuts);
    var segs = [];
    for (var i = 0; i + 1 < cuts.length; i++) {
      var a = cuts[i], b = cuts[i + 1], best = null;
      ps.forEach(function (p) { if (p.s <= a && p.e >= b && (best === null || p.score > best)) best = p.score; });
      var last = segs[segs.length - 1];
      if (last && last.score === best && last.e === a) last.e = b;
      else segs.push({ s: a, e: b, score: best });
    }
    segs.forEach(function (sg) {
      if (sg.score !== null) sg.level = hi > lo ? (sg.score - lo) / (hi - lo) : 1;
    });
    return { segs: segs, count: ps.length, starts: ps.map(function (p) { return p.s; }) };
  }
  function uniqNum(xs) {
    return xs.sort(function (a, b) { return a - b; }).filter(function (x, i, a) { return i === 0 || x !== a[i - 1]; });
  }
  function foldCut(text) {
    if (text.length <= FOLD * 1.15) return text.length;
    var lo = FOLD - 250, window_ = text.slice(lo, FOLD), m = window_.search(/\s\S*$/);
    var cut = m >= 0 ? lo + m : FOLD;
    var c = text.charCodeAt(cut - 1);
    if (c >= 0xd800 && c <= 0xdbff) cut -= 1;
    return cut;
  }
  function renderText(el, text, seg, limit) {
    el.textContent = "";
    seg.segs.forEach(function (sg) {
      if (sg.s >= limit) return;
      var piece = text.slice(sg.s, Math.min(sg.e, limit));
      if (sg.score === null) { el.append(document.createTextNode(piece)); return; }
      var m = h("mark", { class: "p", title: "passage score " + fmt(sg.score) }, piece);
      m.style.setProperty("--a", (0.25 + 0.4 * sg.level).toFixed(2));
      el.append(m);
    });
    if (limit < text.length) el.append(h("span", { class: "ellipsis" }, " \u2026"));
  }

  // ---- cards -------------------------------------------------------------------------------
  var cards = [];
  var current = -1;
  var keyTheme = typeof state.keyTheme === "string" && themes.indexOf(state.keyTheme) >= 0 ? state.keyTheme : null;

  function labelTheme(card) { return keyTheme || card.doc.stream; }
  function labelsOf(id) { return state.labels[id] || {}; }
  function isLabelled(card) { return Object.keys(labelsOf(card.doc.doc_id)).length > 0; }

  function buildCard(doc, idx) {
    var reject = doc.kind !== "selected";
    var el = h("article", {
      class: "card" + (reject ? " reject" : ""), tabindex: "-1",
      "data-doc-id": doc.doc_id, "data-stream": doc.stream, "data-bucket": doc.bucket || "",
      "data-kind": doc.kind || "", "aria-label": "document " + doc.doc_id
    });
    var card = { doc: doc, el: el, idx: idx, expanded: false };
    var chips = h("span", { class: "label-chips" });
    el.append(h("header", { class: "card-head" },
      h("span", { class: "pos", text: "#" + (idx + 1) }),
      h("span", { class: "badge stream", title: "stream theme", text: doc.stream }),
      doc.bucket ? h("span", { class: "badge", title: "score bucket", text: doc.bucket }) : null,
      reject ? h("span", { class: "badge reject-flag", text: "Rejected \u00b7 near threshold" }) : null,
      h("code", { class: "doc-id", text: doc.doc_id }),
      chips));
    card.chips = chips;

    var src = h("div", { class: "source" });
    if (typeof doc.url === "string" && /^https?:\/\//i.test(doc.url)) {
      src.append(h("a", { href: doc.url, target: "_blank", rel: "noopener noreferrer", text: doc.url }));
    } else if (doc.url) {
      src.append(h("span", { text: String(doc.url) }));
    } else {
      src.append(h("span", { class: "muted", text: "no URL" }));
    }
    var bits = [];
    if (doc.domain) bits.push(doc.domain);
    if (doc.source !== undefined && doc.source !== null) bits.push(doc.source + ":" + doc.row);
    if (num(doc.n_tokens) !== null) bits.push(fmtInt(doc.n_tokens) + " tokens");
    if (bits.length) src.append(" \u00b7 " + bits.join(" \u00b7 "));
    el.append(src);

    var text = String(doc.text);
    var seg = segments(text, doc.passages);
    var cut = foldCut(text);
    var textEl = h("div", { class: "doc-text" });
    renderText(textEl, text, seg, cut);
    var left = h("div", { class: "text-col" }, textEl);
    var foldRow = h("div", { class: "fold-row" });
    var foldBtn = null;
    if (cut < text.length) {
      var more = text.length - cut;
      foldBtn = h("button", { type: "button", class: "fold", "aria-expanded": "false" });
      var setFold = function () {
        foldBtn.textContent = card.expanded ? "Show less" : "Show all (" + fmtInt(more) + " more characters)";
        foldBtn.setAttribute("aria-expanded", String(card.expanded));
      };
      card.toggleFold = function () {
        card.expanded = !card.expanded;
        renderText(textEl, text, seg, card.expanded ? text.length : cut);
        setFold();
        if (!card.expanded && el.getBoundingClientRect().top < 0) scrollToCard(card, true);
      };
      foldBtn.addEventListener("click", function () { select(card.idx, false); card.toggleFold(); });
      setFold();
      foldRow.append(foldBtn);
    }
    if (seg.count) {
      var hidden = seg.starts.filter(function (s) { return s >= cut; }).length;
      foldRow.append(h("span", { text: seg.count + " highlighted passage" + (seg.count > 1 ? "s" : "") +
        " drove the " + doc.stream + " score" + (hidden && cut < text.length ? " (" + hidden + " below the fold)" : "") }));
    }
    if (foldRow.childNodes.length) left.append(foldRow);

    el.append(h("div", { class: "card-body" }, left, buildEvidence(doc, card)));
    var bar = h("footer", { class: "label-bar" });
    card.barTheme = h("strong");
    bar.append(h("span", null, "Label ", card.barTheme, ":"));
    card.buttons = {};
    LABELS.forEach(function (lab, i) {
      var b = h("button", { type: "button", class: lab, "aria-pressed": "false", "data-label": lab,
        title: LABEL_TEXT[lab] + " (" + (i + 1) + ")" }, h("kbd", { text: String(i + 1) }), LABEL_TEXT[lab]);
      b.addEventListener("click", function () {
        select(card.idx, false);
        var cur = labelsOf(doc.doc_id)[labelTheme(card)];
        setLabel(card, labelTheme(card), cur && cur.label === lab ? null : lab);
      });
      card.buttons[lab] = b;
      bar.append(b);
    });
    bar.append(h("span", { class: "muted", text: "click a pressed button again to clear" }));
    el.append(bar);
    el.addEventListener("mousedown", function () { select(card.idx, false); });
    return card;
  }

  function buildEvidence(doc, card) {
    var reject = doc.kind !== "selected";
    var box = h("aside", { class: "evidence" });
    if (reject) {
      box.append(h("p", { class: "verdict reject", text: "Not selected: just below the " + doc.stream + " threshold" }));
    } else {
      box.append(h("p", { class: "verdict", text: "Selected for " + doc.stream + ": " + fmtInt(doc.repeats) +
        (doc.repeats === 1 ? " copy" : " copies") + " \u00b7 weight " + fmt(doc.weight, 2) }));
    }
    if (doc.reason) box.append(h("p", { class: "reason", text: doc.reason }));
    var scores = doc.scores || {}, ft = doc.ft || {}, emb = doc.emb || {};
    var rows = themes.filter(function (t) { return t in scores || t in ft || t in emb || t === doc.stream; });
    var table = h("table", { class: "scores" },
      h("thead", null, h("tr", null, h("th", { text: "theme" }), h("th", { text: "score" }),
        h("th", { text: "thr" }), h("th", { text: "fastText", title: "fastText probability" }),
        h("th", { text: "embed.", title: "embedding head probability (\u2014: not embedded)" }))));
    var tb = h("tbody");
    rows.forEach(function (t) {
      var s = num(scores[t]), thr = num(thresholds[t]);
      var above = s !== null && thr !== null && s >= thr;
      var meter = h("span", { class: "meter", title: "score " + fmt(s) + ", threshold " + fmt(thr) });
      var fill = h("span", { class: "fill" + (above ? " above" : "") });
      fill.style.width = (Math.max(0, Math.min(1, s || 0)) * 100).toFixed(1) + "%";
      meter.append(fill);
      if (thr !== null) {
        var tick = h("span", { class: "tick" });
        tick.style.left = "calc(" + (Math.max(0, Math.min(1, thr)) * 100).toFixed(1) + "% - 1px)";
        meter.append(tick);
      }
      tb.append(h("tr", { class: t === doc.stream ? "stream-row" : null },
        h("td", null, t, stance.indexOf(t) >= 0 ? h("span", { class: "stance-tag", text: "stance" }) : null),
        h("td", { class: above ? "above" : null }, fmt(s), meter),
        h("td", { text: fmt(thr) }),
        h("td", { text: fmt(ft[t]) }),
        h("td", { text: fmt(emb[t]), title: num(emb[t]) === null ? "not embedded (stopped at the fastText gate)" : null })));
    });
    table.append(tb);
    box.append(table);

    var seeds = doc.seeds || {};
    var order = [doc.stream].concat(Object.keys(seeds).filter(function (t) { return t !== doc.stream; }));
    var total = 0;
    order.forEach(function (t) { total += (seeds[t] || []).length; });
    var det = h("details", { class: "seeds" });
    det.append(h("summary", { text: "Nearest seed exemplars (" + total + ")" }));
    if (!total) det.append(h("p", { class: "muted", text: "No seed evidence for this document." }));
    var others = null;
    order.forEach(function (t) {
      var list = seeds[t] || [];
      if (!list.length) return;
      var parent = det;
      if (t !== doc.stream) {
        if (!others) {
          var n = total - (seeds[doc.stream] || []).length;
          others = h("details", { class: "seeds-other" }, h("summary", { text: "other themes (" + n + ")" }));
          det.append(others);
        }
        parent = others;
      }
      parent.append(h("div", { class: "seed-theme", text: t + (t === doc.stream ? " (stream theme)" : "") }));
      list.forEach(function (sd) {
        var txt = String(sd.text || ""), long = txt.length > 320;
        var box = h("div", { class: "seed" + (long ? " clamped" : "") },
          h("span", { class: "sim", text: "sim " + fmt(sd.sim, 2) }),
          h("span", { class: "seed-id", text: sd.seed_id || "" }));
        var body = h("div", { class: "seed-text", text: txt });
        box.append(body);
        if (long) {
          var more = h("button", { type: "button", class: "link more", text: "show all" });
          var flip = function () {
            var clamped = box.classList.toggle("clamped");
            more.textContent = clamped ? "show all" : "show less";
          };
          more.addEventListener("click", flip);
          body.addEventListener("click", function () { if (box.classList.contains("clamped")) flip(); });
          box.append(more);
        }
        parent.append(box);
      });
    });
    card.seeds = det;
    box.append(det);
    return box;
  }

  function refreshCard(card) {
    var per = labelsOf(card.doc.doc_id);
    card.chips.textContent = "";
    themes.concat(Object.keys(per).filter(function (t) { return themes.indexOf(t) < 0; })).forEach(function (t) {
      if (!per[t]) return;
      card.chips.append(h("span", { class: "chip " + per[t].label, title: "labelled " + per[t].time,
        text: t + ": " + LABEL_TEXT[per[t].label] }));
    });
    var t = labelTheme(card);
    card.barTheme.textContent = t;
    LABELS.forEach(function (lab) {
      card.buttons[lab].setAttribute("aria-pressed", String(!!per[t] && per[t].label === lab));
    });
    var own = per[card.doc.stream];
    if (own) card.el.setAttribute("data-label", own.label); else card.el.removeAttribute("data-label");
  }

  function setLabel(card, theme, label) {
    var id = card.doc.doc_id;
    var per = state.labels[id] || {};
    if (label) per[theme] = { label: label, time: new Date().toISOString() };
    else delete per[theme];
    if (Object.keys(per).length) state.labels[id] = per; else delete state.labels[id];
    save();
    cards.forEach(function (c) { if (c.doc.doc_id === id) refreshCard(c); });
    renderProgress();
    toast(label ? id + " \u00b7 " + theme + ": " + LABEL_TEXT[label] : id + " \u00b7 " + theme + ": label cleared");
  }

  // ---- filters, navigation, progress ---------------------------------------------------------------
  var filterIds = { stream: "f-stream", bucket: "f-bucket", kind: "f-kind", state: "f-state" };
  function countBy(key) {
    var c = {};
    docs.forEach(function (d) { var v = d[key] || ""; c[v] = (c[v] || 0) + 1; });
    return c;
  }
  function fillSelect(sel, allText, values, counts, labels) {
    sel.append(h("option", { value: "", text: allText }));
    values.forEach(function (v) {
      sel.append(h("option", { value: v, text: (labels && labels[v] || v) + (counts ? " (" + (counts[v] || 0) + ")" : "") }));
    });
  }
  function renderFilters() {
    var sc = countBy("stream"), bc = countBy("bucket"), kc = countBy("kind");
    var streams = themes.filter(function (t) { return sc[t]; });
    var buckets = Object.keys(bc).sort(function (a, b) {
      var ia = BUCKET_ORDER.indexOf(a), ib = BUCKET_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : a > b ? 1 : 0);
    });
    fillSelect($("f-stream"), "all streams", streams, sc);
    fillSelect($("f-bucket"), "all buckets", buckets, bc);
    fillSelect($("f-kind"), "all kinds", Object.keys(kc).sort().reverse(), kc,
      { selected: "selected", near_threshold_reject: "rejects" });
    fillSelect($("f-state"), "all cards", ["unlabelled", "labelled"], null);
    Object.keys(filterIds).forEach(function (k) {
      var sel = $(filterIds[k]);
      var v = state.filters[k];
      if (typeof v === "string" && Array.prototype.some.call(sel.options, function (o) { return o.value === v; })) sel.value = v;
      sel.addEventListener("change", function () { state.filters[k] = sel.value; save(); applyFilters(); });
    });
    $("clear-filters").addEventListener("click", function () {
      Object.keys(filterIds).forEach(function (k) { $(filterIds[k]).value = ""; state.filters[k] = ""; });
      save();
      applyFilters();
    });
    var kt = $("key-theme");
    kt.append(h("option", { value: "", text: "card's stream" }));
    themes.forEach(function (t) { kt.append(h("option", { value: t, text: t })); });
    kt.value = keyTheme || "";
    kt.addEventListener("change", function () { setKeyTheme(kt.value || null); });
  }
  function visible(card) { return !card.el.hidden; }
  function applyFilters() {
    var f = {};
    Object.keys(filterIds).forEach(function (k) {
      var sel = $(filterIds[k]);
      f[k] = sel.value;
      sel.classList.toggle("active", !!sel.value);
    });
    cards.forEach(function (c) {
      var d = c.doc, show = true;
      if (f.stream && d.stream !== f.stream) show = false;
      if (f.bucket && (d.bucket || "") !== f.bucket) show = false;
      if (f.kind && (d.kind || "") !== f.kind) show = false;
      if (f.state === "labelled" && !isLabelled(c)) show = false;
      if (f.state === "unlabelled" && isLabelled(c)) show = false;
      c.el.hidden = !show;
    });
    $("clear-filters").hidden = !(f.stream || f.bucket || f.kind || f.state);
    var empty = $("no-match");
    if (empty) empty.hidden = cards.some(visible) || !cards.length;
    renderProgress();
  }
  function renderProgress() {
    var done = cards.filter(isLabelled).length, shown = cards.filter(visible).length;
    var p = $("progress");
    p.textContent = done + " of " + cards.length + " labelled" + (shown < cards.length ? " \u00b7 " + shown + " shown" : "");
    var bar = h("span", { class: "bar" }), fill = h("span");
    fill.style.width = (cards.length ? done / cards.length * 100 : 0).toFixed(1) + "%";
    bar.append(fill);
    p.append(bar);
  }
  function select(idx, scroll) {
    if (current >= 0 && cards[current]) cards[current].el.classList.remove("current");
    current = idx;
    var card = cards[idx];
    if (!card) return;
    card.el.classList.add("current");
    state.current = card.doc.doc_id;
    save();
    if (scroll) scrollToCard(card, false);
  }
  function scrollToCard(card, force) {
    var r = card.el.getBoundingClientRect();
    var topLimit = $("toolbar").getBoundingClientRect().bottom + 8;
    if (force || r.top < topLimit || r.bottom > window.innerHeight) card.el.scrollIntoView({ block: "start" });
    card.el.focus({ preventScroll: true });
  }
  function move(step) {
    if (!cards.length) return;
    var i = current;
    if (i < 0) i = step > 0 ? -1 : cards.length;
    for (i += step; i >= 0 && i < cards.length; i += step) {
      if (visible(cards[i])) { select(i, true); return; }
    }
    toast(step > 0 ? "Last card" : "First card");
  }
  function nextUnlabelled() {
    for (var k = 1; k <= cards.length; k++) {
      var i = ((current < 0 ? -1 : current) + k) % cards.length;
      if (visible(cards[i]) && !isLabelled(cards[i])) { select(i, true); return; }
    }
    toast("Every shown card is labelled");
  }
  function currentCard() {
    var c = cards[current];
    if (c && visible(c)) return c;
    toast("Press j to choose a card first");
    return null;
  }
  function setKeyTheme(t) {
    keyTheme = t;
    state.keyTheme = t;
    save();
    $("key-theme").value = t || "";
    cards.forEach(refreshCard);
    toast("Keys label " + (t || "each card's stream theme"));
  }
  function cycleTheme(step) {
    var opts = [null].concat(themes);
    var i = opts.indexOf(keyTheme);
    setKeyTheme(opts[(i + step + opts.length) % opts.length]);
  }

  // ---- export ---------------------------------------------------------------------------------
  function csvField(v) {
    var s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csvText() {
    var reviewer = (state.reviewer || "").trim();
    var rows = [["doc_id", "theme", "label", "reviewer", "time"]];
    var ids = uniq(docs.map(function (d) { return String(d.doc_id); }));
    ids = ids.concat(Object.keys(state.labels).filter(function (id) { return ids.indexOf(id) < 0; }));
    ids.forEach(function (id) {
      var per = state.labels[id];
      if (!per) return;
      themes.concat(Object.keys(per).filter(function (t) { return themes.indexOf(t) < 0; })).forEach(function (t) {
        if (per[t]) rows.push([id, t, per[t].label, reviewer, per[t].time]);
      });
    });
    return { csv: rows.map(function (r) { return r.map(csvField).join(","); }).join("\r\n") + "\r\n", n: rows.length - 1 };
  }
  function exportCsv() {
    var out = csvText();
    var url = URL.createObjectURL(new Blob([out.csv], { type: "text/csv;charset=utf-8" }));
    var a = h("a", { href: url, download: "labels.csv", hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 30000);
    toast("Exported " + out.n + " label" + (out.n === 1 ? "" : "s") + " to labels.csv" +
      ((state.reviewer || "").trim() ? "" : " (no reviewer name: add yours at the top)"));
  }

  // ---- help, toast, keys -----------------------------------------------------------------------
  var toastTimer = null;
  function toast(msg) {
    var t = $("toast");
    t.textContent = msg;
    t.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.classList.remove("show"); }, 2200);
  }
  var lastFocus = null;
  function openHelp() { lastFocus = document.activeElement; $("help").hidden = false; $("help-close").focus(); }
  function closeHelp() {
    $("help").hidden = true;
    if (lastFocus && lastFocus.focus) lastFocus.focus({ preventScroll: true });
  }
  function helpOpen() { return !$("help").hidden; }

  var SELECT_KEYS = ["ArrowUp", "ArrowDown", "Home", "End", " ", "Enter", "PageUp", "PageDown"];
  function onKey(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    var tg = ev.target, tag = tg && tg.tagName;
    if (tg && (tg.isContentEditable || tag === "INPUT" || tag === "TEXTAREA")) {
      if (ev.key === "Escape") tg.blur();
      return;
    }
    if (tag === "SELECT" && (SELECT_KEYS.indexOf(ev.key) >= 0 || ev.key === "Escape")) {
      if (ev.key === "Escape") tg.blur();
      return;
    }
    if (helpOpen()) {
      if (ev.key === "Escape" || ev.key === "?") { closeHelp(); ev.preventDefault(); }
      return;
    }
    var c;
    switch (ev.key) {
      case "j": case "ArrowDown": move(1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "n": nextUnlabelled(); break;
      case "1": case "2": case "3":
        c = currentCard();
        if (c) setLabel(c, labelTheme(c), LABELS[Number(ev.key) - 1]);
        break;
      case "0":
        c = currentCard();
        if (c) setLabel(c, labelTheme(c), null);
        break;
      case "t": cycleTheme(1); break;
      case "T": cycleTheme(-1); break;
      case "o":
        c = currentCard();
        if (c && c.toggleFold) c.toggleFold();
        break;
      case "s":
        c = currentCard();
        if (c) c.seeds.open = !c.seeds.open;
        break;
      case "e": exportCsv(); break;
      case "?": openHelp(); break;
      default: return;
    }
    ev.preventDefault();
  }

  // ---- start -----------------------------------------------------------------------------------
  renderHeader();
  var main = $("cards");
  if (!docs.length) main.append(h("p", { class: "empty", text: "This audit sample has no documents." }));
  docs.forEach(function (d, i) { cards.push(buildCard(d, i)); });
  var frag = document.createDocumentFragment();
  cards.forEach(function (c) { refreshCard(c); frag.append(c.el); });
  main.append(frag);
  main.append(h("p", { class: "empty", id: "no-match", text: "No card matches these filters.", hidden: true }));
  renderFilters();
  applyFilters();
  if (typeof state.current === "string") {
    for (var i = 0; i < cards.length; i++) {
      if (cards[i].doc.doc_id === state.current && visible(cards[i])) {
        current = i;
        cards[i].el.classList.add("current");
        break;
      }
    }
  }
  document.addEventListener("keydown", onKey);
  $("export").addEventListener("click", exportCsv);
  $("help-button").addEventListener("click", openHelp);
  $("help-close").addEventListener("click", closeHelp);
  $("help").addEventListener("click", function (ev) { if (ev.target === $("help")) closeHelp(); });
  window.addEventListener("storage", function (ev) {
    if (ev.key !== storeKey) return;
    var fresh = loadState();
    state.labels = fresh.labels;
    cards.forEach(refreshCard);
    renderProgress();
  });
  if (!storageOk) showStorageWarning();
})();
