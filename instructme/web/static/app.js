// instructme studio page: upload or pick a clip, queue an edit, poll its progress, compare
// source and result, chain rounds. Talks only to this server's /api (see web/app.py).
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  rounds: [],   // [{audio: clip, instruction, task, args, seconds}]; rounds[0] is the upload
  current: -1,  // index of the round whose audio the next edit starts from
  stems: null,  // the last split: {instruction, seconds, base, stems: [clip + instrument]}
  busy: false,
};

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error("the studio server cannot be reached");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `request failed (HTTP ${response.status})`);
  }
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function describe(task, args) {
  if (!task) return "";
  if (task === "multiround") {
    const rounds = (args && args.rounds) || [];
    return `${rounds.length} rounds: ` + rounds.map((r) => describe(r.task, r.args)).join(" → ");
  }
  if (task === "replace") return `replace ${args.instrument} → ${args.new_instrument}`;
  if (task === "remix") return args.style ? `remix as ${args.style}` : "remix";
  if (task === "split") {
    if (args.instrument) return `stem: ${args.instrument}`;
    const named = (args.instruments || []).join(", ");
    return named ? `split into ${named} + other` : "split into stems";
  }
  return `${task} ${args.instrument || ""}`.trim();
}

function fmtSeconds(s) { return `${Number(s).toFixed(1)} s`; }

function showClip(prefix, clip) {
  const player = $(`${prefix}-audio`), img = $(`${prefix}-spec`);
  if (!clip) {
    player.removeAttribute("src");
    player.hidden = true;
    img.removeAttribute("src");
    img.hidden = true;
    $(`${prefix}-name`).textContent = prefix === "source" ? "(none yet)" : "";
    return;
  }
  player.src = clip.audio_url;
  player.hidden = false;
  img.src = clip.spectrogram_url;
  img.hidden = false;
  $(`${prefix}-name`).textContent = `${clip.name} · ${fmtSeconds(clip.seconds)}`;
}

function stemFigure(stem) {
  const fig = document.createElement("figure");
  fig.className = "panel stem";
  fig.dataset.instrument = stem.instrument;
  const caption = document.createElement("figcaption");
  caption.textContent = `${stem.instrument} · ${fmtSeconds(stem.seconds)}`;
  const player = document.createElement("audio");
  player.controls = true;
  player.preload = "metadata";
  player.src = stem.audio_url;
  const img = document.createElement("img");
  img.src = stem.spectrogram_url;
  img.alt = `${stem.instrument} spectrogram`;
  const row = document.createElement("div");
  row.className = "row";
  const link = document.createElement("a");
  link.className = "button";
  link.href = `${stem.audio_url}?download=1`;
  link.setAttribute("download", stem.name);
  link.textContent = "Download WAV";
  const use = document.createElement("button");
  use.type = "button";
  use.textContent = "Edit this stem →";
  use.addEventListener("click", () => useStem(stem));
  row.append(link, use);
  fig.append(caption, player, img, row);
  return fig;
}

function renderStems() {
  const split = state.stems;
  $("stems-section").hidden = !split;
  if (!split) return;
  $("stems-info").textContent = `“${split.instruction}”: ${split.stems.length} stems `
    + `(they sum to the source) in ${fmtSeconds(split.seconds)}`;
  $("stems").replaceChildren(...split.stems.map(stemFigure));
}

function useStem(stem) {
  if (state.busy || !state.stems) return;
  const base = state.stems.base;
  state.rounds = state.rounds.slice(0, base + 1);
  state.rounds.push({ audio: stem, part: null, instruction: state.stems.instruction,
    task: "split", args: { instrument: stem.instrument }, seconds: state.stems.seconds });
  state.current = base + 1;
  state.stems = null;
  render();
  $("instruction").focus();
}

function render() {
  const source = state.rounds[state.current];
  const next = state.rounds[state.current + 1];
  showClip("source", source && source.audio);
  showClip("result", next && next.audio);
  $("result-actions").hidden = !next;
  $("result-info").textContent = next
    ? `“${next.instruction}” → ${describe(next.task, next.args)} · ${fmtSeconds(next.seconds)} to edit`
    : "";
  if (next) {
    $("download").href = `${next.audio.audio_url}?download=1`;
    $("download").setAttribute("download", next.audio.name);
  }
  $("download-part").hidden = !(next && next.part);
  if (next && next.part) {
    $("download-part").href = `${next.part.audio_url}?download=1`;
    $("download-part").setAttribute("download", next.part.name);
  }
  renderStems();
  $("run").disabled = state.busy || !source;
  $("file").disabled = state.busy;  // a new source mid-edit would mix up the rounds
  $("load-example").disabled = state.busy || !(state.info && state.info.examples.length);
  const list = $("history");
  list.replaceChildren();
  state.rounds.forEach((round, k) => {
    const li = document.createElement("li");
    li.className = "round" + (k === state.current ? " current" : "");
    li.dataset.round = String(k);
    const label = k === 0 ? `source: ${round.audio.name}`
      : `“${round.instruction}” (${describe(round.task, round.args)})`;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.title = k === state.current ? "the next edit starts here" : "step back to this round";
    button.addEventListener("click", () => { if (!state.busy) { state.current = k; render(); } });
    li.appendChild(button);
    list.appendChild(li);
  });
}

function setSource(clip) {
  state.rounds = [{ audio: clip, instruction: null }];
  state.current = 0;
  state.stems = null;
  render();
}

async function uploadFile(file) {
  showError("");
  const limits = state.info.limits;
  if (file.size > limits.max_upload_mb * 1024 * 1024) {
    showError(`${file.name}: upload too large: this server takes files up to ${limits.max_upload_mb} MB`);
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  setStatus("Uploading…");
  try {
    setSource(await api("/api/upload", { method: "POST", body: form }));
    setStatus("");
  } catch (e) {
    setStatus("");
    showError(e.message);
  }
}

async function loadExample() {
  const name = $("examples").value;
  if (!name) return;
  showError("");
  try {
    setSource(await api(`/api/examples/${encodeURIComponent(name)}`, { method: "POST" }));
  } catch (e) {
    showError(e.message);
  }
}

function setStatus(text, step, total) {
  $("status").textContent = text;
  const bar = $("progress");
  if (total) {
    bar.hidden = false;
    bar.max = total;
    bar.value = step;
  } else if (step === undefined) {
    bar.hidden = true;
  } else {
    bar.hidden = false;
    bar.removeAttribute("value");  // indeterminate while waiting
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function runEdit(event) {
  event.preventDefault();
  const source = state.rounds[state.current];
  const instruction = $("instruction").value.trim();
  if (!source || state.busy) return;
  if (!instruction) { showError("type an instruction first (or pick a suggestion)"); return; }
  showError("");
  state.busy = true;
  render();
  const base = state.current;
  try {
    let job = await api("/api/edit", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        audio: source.audio.id, instruction,
        steps: Number($("steps").value), guidance: Number($("guidance").value),
        seed: Number($("seed").value), preserve: $("preserve").checked,
      }),
    });
    const id = job.job;
    while (job.state === "queued" || job.state === "running") {
      if (job.state === "queued") {
        const ahead = job.ahead === 1 ? "1 edit" : `${job.ahead} edits`;
        setStatus(`Waiting in queue: position ${job.position} (${ahead} ahead)`, 0, 0);
      } else {
        const doing = job.kind === "split" ? "Splitting into stems…" : "Editing…";
        setStatus(job.total ? `Editing: step ${job.step} / ${job.total}` : doing,
          job.step, job.total);
      }
      await sleep(300);
      job = await api(`/api/jobs/${id}`);
    }
    if (job.state === "error" || !(job.result || job.stems)) {
      throw new Error(job.error || "the edit failed");
    }
    if (job.stems) {
      state.stems = { instruction: job.instruction, seconds: job.seconds, base,
        stems: job.stems };
      setStatus(`Done: ${describe(job.task, job.args)} in ${fmtSeconds(job.seconds)}`);
      return;
    }
    state.stems = null;
    state.rounds = state.rounds.slice(0, base + 1);
    state.rounds.push({ audio: job.result, part: job.part, instruction: job.instruction,
      task: job.task, args: job.args, seconds: job.seconds });
    state.current = base;
    const notes = (job.notes || []).map((n) => ` · note: ${n}`).join("");
    setStatus(`Done: ${describe(job.task, job.args)} in ${fmtSeconds(job.seconds)}${notes}`);
  } catch (e) {
    setStatus("");
    showError(e.message);
  } finally {
    state.busy = false;
    render();
  }
}

function showSuggestions() {
  const chips = $("suggestions");
  chips.replaceChildren();
  for (const text of state.info.suggestions[$("task").value] || []) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "suggestion";
    chip.textContent = text;
    chip.addEventListener("click", () => { $("instruction").value = text; $("instruction").focus(); });
    chips.appendChild(chip);
  }
}

async function init() {
  try {
    state.info = await api("/api/info");
  } catch (e) {
    showError(e.message);
    return;
  }
  const info = state.info;
  $("model").textContent = info.model || "(unnamed)";
  $("demo-banner").hidden = !info.demo;
  $("limits").textContent = `Up to ${info.limits.max_upload_mb} MB and ${info.limits.max_seconds} s; `
    + `formats: ${info.formats.join(" ")}. Uploads stay on this server and are deleted after a while.`;
  $("file").accept = info.formats.join(",") + ",audio/*";
  $("steps").value = info.defaults.steps;
  $("steps").max = info.limits.max_steps;
  $("guidance").value = info.defaults.guidance;
  $("seed").value = info.defaults.seed;
  $("preserve").checked = info.defaults.preserve !== false;
  const select = $("examples");
  if (info.examples.length) {
    select.replaceChildren(...info.examples.map((e) => {
      const o = document.createElement("option");
      o.value = e.name;
      o.textContent = `${e.name} (${fmtSeconds(e.seconds)})`;
      return o;
    }));
    select.disabled = false;
    $("load-example").disabled = false;
  }
  $("task").replaceChildren(...Object.keys(info.suggestions).map((task) => {
    const o = document.createElement("option");
    o.value = task;
    o.textContent = task;
    return o;
  }));
  showSuggestions();
  $("task").addEventListener("change", showSuggestions);
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) uploadFile(file);
    $("file").value = "";
  });
  $("load-example").addEventListener("click", loadExample);
  $("edit-form").addEventListener("submit", runEdit);
  $("chain").addEventListener("click", () => {
    if (state.busy || state.current + 1 >= state.rounds.length) return;
    state.current += 1;
    $("instruction").value = "";
    render();
    $("instruction").focus();
  });
  document.body.dataset.ready = "1";
  render();
}

document.addEventListener("DOMContentLoaded", init);
