// Keel dashboard, GenAI pages: the language model's prompt box and the index's ask box.
//
// Prompt box: <form data-generate="MODEL" data-version="N"> -> POST /api/v1/models/MODEL/generate?version=N
//   with {"prompt", "max_tokens", "temperature", "seed", "stream": true}; the text/event-stream answer is
//   read as it arrives (fetch + ReadableStream): each `data: {"text": ...}` piece is appended to
//   #generate-output, the `done` event (or a data object with a finish_reason) fills #generate-status.
// Ask box: <form data-ask="INDEX" data-version="N"> -> POST /api/v1/genai/INDEX/ask?version=N; each passage
//   is listed with its citation (document, position, score) and the question's words marked. Passages are
//   user data: every piece of text goes in through textContent / text nodes, never innerHTML.
// Both send the session cookie (credentials: same-origin) and JSON, as dashboard.js does for its writes.
(function () {
  "use strict";

  const STOP = new Set(["a", "an", "and", "are", "do", "does", "how", "in", "is", "of", "or", "the", "to", "what", "which", "who", "why"]);

  function el(tag, props, ...children) {
    const node = Object.assign(document.createElement(tag), props || {});
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function fmt(x, digits) {
    return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 4 : digits });
  }

  async function problem(resp) {
    const body = await resp.json().catch(() => ({}));
    return new Error((body.error && body.error.detail) || body.detail || resp.status + " " + resp.statusText);
  }

  function post(url, payload, accept) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: accept },
      body: JSON.stringify(payload),
    });
  }

  // -- prompt box -----------------------------------------------------------------------------------
  function setStatus(node, text, isError) {
    node.hidden = false;
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  // One server-sent event: {event, data} from its lines ('event: x', 'data: ...'; data lines joined).
  function parseEvent(block) {
    let event = "message";
    const data = [];
    block.split(/\r?\n/).forEach((line) => {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return null;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch (err) {
      parsed = { text: data.join("\n") };
    }
    return { event: event, data: parsed };
  }

  // The done event's summary in words; tokens/s from its token count and latency (else the clock here).
  function finished(data, pieces, started) {
    const tokens = data.completion_tokens !== undefined ? data.completion_tokens : pieces;
    const seconds = data.latency_ms ? data.latency_ms / 1000 : (performance.now() - started) / 1000;
    const rate = seconds > 0 ? tokens / seconds : 0;
    return "Done: " + (data.finish_reason || "finished") + " · " + fmt(tokens, 0) + " tokens · " + fmt(rate, 1) + " tokens/s";
  }

  async function generate(form) {
    const out = document.getElementById("generate-output");
    const status = document.getElementById("generate-status");
    const button = form.querySelector("button[type=submit]");
    const data = new FormData(form);
    const payload = {
      prompt: String(data.get("prompt") || ""),
      max_tokens: Number(data.get("max_tokens") || 64),
      temperature: Number(data.get("temperature") || 0),
      seed: Number(data.get("seed") || 0),
      stream: true,
    };
    button.disabled = true;
    out.hidden = false;
    out.replaceChildren(el("span", { className: "prompt-echo", textContent: payload.prompt }));
    setStatus(status, "Generating…", false);
    const started = performance.now();
    let pieces = 0;
    try {
      const url = "/api/v1/models/" + encodeURIComponent(form.dataset.generate) + "/generate?version=" + encodeURIComponent(form.dataset.version);
      const resp = await post(url, payload, "text/event-stream");
      if (!resp.ok) throw await problem(resp);
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        const blocks = buffer.split(/\r?\n\r?\n/);
        buffer = blocks.pop();
        for (const block of blocks) {
          const ev = parseEvent(block);
          if (!ev) continue;
          if (ev.event === "error" || ev.data.error) {
            const e = ev.data.error;
            throw new Error((e && e.detail) || ev.data.detail || String(e || "the stream failed"));
          }
          if (ev.event === "done" || ev.data.finish_reason !== undefined) {
            setStatus(status, finished(ev.data, pieces, started), false);
            done = true;
            break;
          }
          if (typeof ev.data.text === "string") {
            out.append(document.createTextNode(ev.data.text));
            pieces += 1;
          }
        }
      }
      if (!done) setStatus(status, finished({}, pieces, started), false);
    } catch (err) {
      setStatus(status, "Could not generate: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  // -- ask box --------------------------------------------------------------------------------------
  function questionPattern(question) {
    const words = (question.toLowerCase().match(/[\p{L}\p{N}_]+/gu) || []).filter((w) => w.length > 1 && !STOP.has(w));
    if (!words.length) return null;
    const unique = Array.from(new Set(words)).sort((a, b) => b.length - a.length);
    const alternatives = unique.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
    return new RegExp("(?<![\\p{L}\\p{N}_])(" + alternatives + ")(?![\\p{L}\\p{N}_])", "giu");
  }

  // The passage's text as text nodes, each match of the question's words inside a <mark>.
  function highlighted(text, pattern) {
    const p = el("p", { className: "passage-text" });
    if (!pattern) {
      p.textContent = text;
      return p;
    }
    text.split(pattern).forEach((part, i) => {
      if (!part) return;
      p.append(i % 2 === 1 ? el("mark", { textContent: part }) : document.createTextNode(part));
    });
    return p;
  }

  function citation(passage) {
    const ranks = [];
    if (passage.dense_rank !== null && passage.dense_rank !== undefined) ranks.push("embeddings #" + passage.dense_rank);
    if (passage.bm25_rank !== null && passage.bm25_rank !== undefined) ranks.push("BM25 #" + passage.bm25_rank);
    return el("p", { className: "citation muted" },
      "[" + passage.rank + "] ",
      el("strong", { className: "cite-document", textContent: String(passage.document) }),
      " · position " + passage.position + " · score " + fmt(passage.score) + (ranks.length ? " (" + ranks.join(", ") + ")" : ""));
  }

  function showAnswer(box, body) {
    box.replaceChildren();
    box.hidden = false;
    const head = el("p", null, el("strong", { textContent: "Answer" }));
    if (body.model) head.append(el("span", { className: "muted", textContent: " from " + body.model }));
    if (body.supported === false) head.append(" ", el("span", { className: "badge unsupported", id: "ask-unsupported", textContent: "unsupported" }));
    const cited = (body.citations || []).map((r) => "[" + r + "]").join(" ");
    box.append(head, el("p", { className: "answer-text", textContent: String(body.answer) }),
      el("p", { className: "muted", textContent: cited ? "Cites " + cited : "Cites no retrieved passage" }));
  }

  async function ask(form) {
    const status = document.getElementById("ask-status");
    const list = document.getElementById("ask-passages");
    const answer = document.getElementById("ask-answer");
    const button = form.querySelector("button[type=submit]");
    const data = new FormData(form);
    const question = String(data.get("question") || "").trim();
    const payload = { question: question, k: Number(data.get("k") || 5), mode: String(data.get("mode") || "hybrid") };
    if (data.get("model")) payload.model = String(data.get("model"));
    button.disabled = true;
    setStatus(status, "Searching…", false);
    try {
      const url = "/api/v1/genai/" + encodeURIComponent(form.dataset.ask) + "/ask?version=" + encodeURIComponent(form.dataset.version);
      const resp = await post(url, payload, "application/json");
      if (!resp.ok) throw await problem(resp);
      const body = await resp.json();
      const pattern = questionPattern(question);
      const cited = new Set(body.citations || []);
      list.replaceChildren(...body.passages.map((passage) => {
        const item = el("li", { className: "passage" + (cited.has(passage.rank) ? " cited" : "") }, citation(passage), highlighted(String(passage.text), pattern));
        item.dataset.rank = String(passage.rank);
        if (cited.has(passage.rank)) item.firstChild.append(" ", el("span", { className: "badge champion", textContent: "cited" }));
        return item;
      }));
      if (body.answer !== undefined && body.answer !== null) showAnswer(answer, body);
      else answer.hidden = true;
      setStatus(status, body.passages.length + " passages from " + body.index + " (" + body.mode + ")", false);
    } catch (err) {
      setStatus(status, "Could not ask: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("submit", (event) => {
    const gen = event.target.closest("form[data-generate]");
    const asked = event.target.closest("form[data-ask]");
    if (!gen && !asked) return;
    event.preventDefault();
    if (gen) generate(gen);
    else ask(asked);
  });
})();
