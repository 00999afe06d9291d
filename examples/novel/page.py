"""The reading page (``GET /``): the seed's front end in plain HTML and JavaScript.

It reads the ``POST …/generate`` response with ``fetch`` streaming (``EventSource``
cannot POST), starts the text afresh on every ``summary``, reconnects with
``Last-Event-ID`` when the connection drops, shows the seed's failed view with its
"重新生成" button, and sends the reader's choice before asking for the next chapter.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>互动小说</title>
<style>
body{font:16px/1.7 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
#text{white-space:pre-wrap} button{margin:.25rem .5rem .25rem 0;font:inherit;padding:.3rem .8rem}
input,textarea{width:100%;margin:.25rem 0}
.generation-failed{text-align:center;padding:1.5rem;border:1px solid #f1c0c0;border-radius:8px}
.error-icon{display:inline-flex;width:3rem;height:3rem;border-radius:50%;background:#d4380d;
color:#fff;font-size:2rem;font-weight:700;align-items:center;justify-content:center}
.error-message h3{color:#d4380d;margin:.6rem 0 .2rem}
button.primary{background:#1677ff;color:#fff;border:1px solid #1677ff;border-radius:6px}
button[aria-busy=true]::before{content:"⟳ ";}
</style></head><body>
<section id="create"><h1>新建小说</h1>
<input id="title" placeholder="标题" value="雾港">
<textarea id="premise" rows="3">灯塔看守人在雾夜收到一封没有署名的信</textarea>
<button id="start">开始阅读</button></section>
<section id="read" hidden><h2 id="heading"></h2><div id="text"></div>
<div id="options"></div><div id="status"></div></section>
<script>
const api = "/api/v1/novels";
let novelId = Number(new URLSearchParams(location.search).get("novel")) || null;
let chapter = 0;
const $ = (id) => document.getElementById(id);

async function json(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.status);
  return body;
}

function show(title, text, options) {
  $("heading").textContent = title || ""; $("text").textContent = text || "";
  $("options").replaceChildren(...(options || []).map((o) => {
    const b = document.createElement("button"); b.textContent = o.text;
    b.onclick = () => choose(o.id); return b;
  }));
}

function failedView() {
  // The seed's failed view: a red exclamation icon, its two lines, 重新生成 (primary, with
  // a loading state; the same generate call cleans the failed chapter up) and 返回上一章.
  $("status").innerHTML = '<div class="generation-failed" role="alert">'
    + '<div class="error-icon" aria-hidden="true">!</div>'
    + '<div class="error-message"><h3>章节生成失败</h3><p>生成过程中遇到了问题,请重试</p></div>'
    + '<div class="actions"></div></div>';
  const retry = document.createElement("button");
  retry.className = "primary"; retry.id = "retry"; retry.textContent = "重新生成";
  retry.onclick = async () => {
    retry.disabled = true; retry.setAttribute("aria-busy", "true");
    try { await generate(0); }
    finally { retry.disabled = false; retry.removeAttribute("aria-busy"); }
  };
  const back = document.createElement("button");
  back.id = "back"; back.textContent = "返回上一章"; back.disabled = chapter <= 1;
  back.onclick = () => showChapter(chapter - 1);
  $("status").querySelector(".actions").append(retry, back);
}

async function showChapter(number) {
  const previous = await json(`${api}/${novelId}/chapters/${number}`);
  chapter = number; $("status").textContent = "";
  show(previous.title, previous.content, previous.options);
}

async function generate(number) {
  let lastId = null, title = "", text = "", done = false;
  $("status").textContent = "生成中…"; show("", "", []);
  while (!done) {
    const headers = {"Content-Type": "application/json"};
    if (lastId) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(`${api}/${novelId}/chapters/generate`,
        {method: "POST", headers, body: JSON.stringify({chapter_number: number})});
    } catch (e) { await new Promise((r) => setTimeout(r, 1000)); continue; }
    if (!response.ok) { $("status").textContent = (await response.json()).detail; return; }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const {value, done: end} = await reader.read();
        if (end) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
          const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          const fields = {};
          for (const line of frame.split("\\n")) {
            if (line.startsWith(":")) continue;
            const at = line.indexOf(":");
            fields[line.slice(0, at)] = line.slice(at + 1).replace(/^ /, "");
          }
          if (!fields.event) continue;
          lastId = fields.id; const data = JSON.parse(fields.data);
          if (fields.event === "summary") { title = data.title; text = ""; }  // afresh
          if (fields.event === "content") text += data.text;
          show(title, text, []);
          if (fields.event === "complete") {
            show(title, text, data.options); $("status").textContent = ""; done = true;
          }
          if (fields.event === "failed") { show("", "", []); failedView(); return; }
        }
      }
    } catch (e) { /* dropped: reconnect with Last-Event-ID */ }
  }
}

async function choose(optionId) {
  const response = await fetch(`${api}/${novelId}/chapters/${chapter}/choice`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({option_id: optionId})});
  if (!response.ok) {
    // The next chapter is being written or was written (from another tab): the choice
    // made stands; read the next chapter, or follow its writing.
    const next = await fetch(`${api}/${novelId}/chapters/${chapter + 1}`);
    if (!next.ok) { $("status").textContent = (await response.json()).detail; return; }
    const found = await next.json();
    chapter += 1;
    if (found.status === "completed") return showChapter(chapter);
    return generate(chapter);
  }
  chapter += 1; await generate(chapter);
}

async function open() {
  $("create").hidden = true; $("read").hidden = false;
  history.replaceState(null, "", `?novel=${novelId}`);
  const latest = await json(`${api}/${novelId}/chapters/latest`);
  if (!latest) { chapter = 1; return generate(0); }
  chapter = latest.chapter_number;
  if (latest.status === "failed") return failedView();
  if (latest.status === "generating") return generate(0);
  show(latest.title, latest.content, latest.options);
}

$("start").onclick = async () => {
  const novel = await json(api, {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({title: $("title").value, premise: $("premise").value})});
  novelId = novel.id; open();
};
if (novelId) open();
</script></body></html>
"""
