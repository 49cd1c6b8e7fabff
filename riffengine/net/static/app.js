// The web surface: controls generated from the OSCQuery namespace (itself generated from the
// engine's parameter table), values both ways as binary OSC over the WebSocket, and the timeline
// of loop spectrograms passing a playhead placed by the engine's frame clock.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const SECONDS_SHOWN = 12;          // seconds across the timeline
const PLAYHEAD_AT = 0.25;          // the playhead's place, as a part of the width
const MAX_EXTRAPOLATE = 0.25;      // seconds the playhead runs on past the last engine report
const FRAME_MS = 1000 / 30;        // the timeline is drawn at most 30 times a second

const controls = new Map();        // OSC path -> {node, input, show}
let ws = null;
let retry = 500;
let built = false;
const clock = {frame: 0, rate: 44100, bpm: 120, beatsPerBar: 4, at: 0, known: false};
let placed = [];                   // [{clip, start, frames, img, next}] by start frame

// --- the connection ---------------------------------------------------------------------------

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/` +
              (TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "");
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = async () => {
    retry = 500;
    setLink(true);
    const tree = await (await fetch("/", {headers: {Accept: "application/json"}})).json();
    if (!built) { build(tree); built = true; }
    for (const path of controls.keys()) {
      if (controls.get(path).node.ACCESS & 1) send(JSON.stringify({COMMAND: "LISTEN", DATA: path}));
    }
    send(JSON.stringify({COMMAND: "RIFF_ENGINE", DATA: true}));
    refresh(tree);   // after LISTEN: any later change comes as a push
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") onJSON(JSON.parse(event.data));
    else onOSC(OSC.decode(event.data));
  };
  ws.onclose = () => {
    setLink(false);
    setTimeout(connect, retry);     // the engine restarts: keep knocking, gently
    retry = Math.min(retry * 2, 5000);
  };
}

function send(data) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
}

function setLink(up) {
  const el = document.getElementById("link");
  el.textContent = up ? (TOKEN ? "live" : "live") : "offline — reconnecting";
  el.className = "link " + (up ? "up" : "down");
  document.body.dataset.connected = up ? "1" : "0";
}

function say(text) {
  document.getElementById("message").textContent = text;
}

// --- controls from the namespace ----------------------------------------------------------------

function walk(node, out) {
  if (node.TYPE !== undefined && node.CONTENTS === undefined) out.push(node);
  for (const child of Object.values(node.CONTENTS || {})) walk(child, out);
  return out;
}

function build(tree) {
  const main = document.getElementById("controls");
  const riff = tree.CONTENTS.riff;
  for (const [name, node] of Object.entries(riff.CONTENTS)) {
    const group = document.createElement("fieldset");
    group.className = "param";
    group.dataset.name = name;
    const legend = document.createElement("legend");
    legend.textContent = name.replace(/_/g, " ");
    legend.title = node.DESCRIPTION || "";
    group.appendChild(legend);
    const leaves = node.CONTENTS ? walk(node, []) : [node];
    for (const leaf of leaves) group.appendChild(control(leaf));
    main.appendChild(group);
  }
}

function control(node) {
  const path = node.FULL_PATH;
  const tag = node.TYPE;
  const range = (node.RANGE || [])[0] || {};
  const row = document.createElement("div");
  row.className = "row";
  const label = document.createElement("label");
  label.textContent = path.split("/").pop().match(/^\d+$/) ? "slot " + path.split("/").pop() : "";
  row.appendChild(label);
  let input;
  let show = null;
  const tags = node.TAGS || [];
  if (tags.includes("action") && (tag === "i" || tag === "h")) {   // an action: pick, then go
    input = document.createElement("input");
    input.type = "number";
    input.min = range.MIN;
    input.max = range.MAX;
    const go = document.createElement("button");
    go.textContent = "recall";
    go.dataset.action = path;
    go.onclick = () => send(OSC.encode(path, [[tag, Math.round(Number(input.value))]]));
    input.dataset.path = path;
    row.appendChild(input);
    row.appendChild(go);
    controls.set(path, {node, input, show});
    return row;
  }
  if (!(node.ACCESS & 1) && tag === "s") {          // write-only with a text: scene_save
    const name = document.createElement("input");
    name.type = "text";
    name.placeholder = "name (empty: next number)";
    name.maxLength = 40;
    name.dataset.path = path;
    const go = document.createElement("button");
    go.textContent = "save";
    go.className = "command";
    go.dataset.action = path;
    go.onclick = () => send(OSC.encode(path, name.value.trim() ? [["s", name.value.trim()]] : []));
    row.appendChild(name);
    row.appendChild(go);
    return row;
  }
  if (!(node.ACCESS & 1)) {                          // write-only: a command button (panic)
    input = document.createElement("button");
    input.textContent = path.split("/").pop();
    input.className = "command";
    input.onclick = () => send(OSC.encode(path, [[tag, 1]]));
  } else if (range.VALS) {                           // choices
    input = document.createElement("select");
    for (const v of range.VALS) input.add(new Option(String(v), String(v)));
    input.onchange = () => send(OSC.encode(path, [[tag, input.value]]));
  } else if ((tag === "f" || tag === "i") && range.MIN !== undefined) {  // a fader
    input = document.createElement("input");
    input.type = "range";
    input.min = range.MIN;
    input.max = range.MAX;
    input.step = tag === "i" ? 1 : (range.MAX - range.MIN) / 1000;
    show = document.createElement("output");
    input.oninput = () => {
      show.textContent = fmt(Number(input.value), tag, node);
      send(OSC.encode(path, [[tag, Number(input.value)]]));
    };
  } else if (tag === "h" || tag === "i") {           // a big integer (seed): a box and a dice
    input = document.createElement("input");
    input.type = "number";
    input.min = range.MIN;
    input.max = range.MAX;
    input.onchange = () => send(OSC.encode(path, [[tag, Math.round(Number(input.value))]]));
    const dice = document.createElement("button");
    dice.textContent = "random";
    dice.title = "a random seed";
    dice.className = "dice";
    dice.onclick = () => {
      input.value = Math.floor(Math.random() * (Number(range.MAX) + 1));
      input.onchange();
    };
    row.appendChild(input);
    row.appendChild(dice);
    controls.set(path, {node, input, show});
    return row;
  } else {                                           // text: sent on Enter or when leaving
    input = document.createElement("input");
    input.type = "text";
    input.onchange = () => send(OSC.encode(path, [[tag, input.value]]));
    if (tags.includes("file")) {                     // a seed image: thumbnails to pick from
      const wrap = document.createElement("div");
      wrap.className = "picker-wrap";
      input.dataset.path = path;
      input.title = node.DESCRIPTION || "";
      wrap.appendChild(input);
      wrap.appendChild(picker(path, tag, input));
      row.appendChild(wrap);
      controls.set(path, {node, input, show, picker: true});
      return row;
    }
  }
  input.dataset.path = path;
  input.title = node.DESCRIPTION || "";
  row.appendChild(input);
  if (show) row.appendChild(show);
  if (node.UNIT) {
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = node.UNIT[0];
    row.appendChild(unit);
  }
  controls.set(path, {node, input, show});
  return row;
}

function picker(path, tag, input) {
  const box = document.createElement("div");
  box.className = "picker";
  box.dataset.picker = path;
  fetch("/seeds/").then(r => r.json()).then(seeds => {
    for (const seed of [...seeds.builtin, ...seeds.folder]) {
      const img = document.createElement("img");
      img.src = seed.url;
      img.alt = img.title = seed.value;
      img.dataset.value = seed.value;
      img.onclick = () => { input.value = seed.value; send(OSC.encode(path, [[tag, seed.value]])); };
      box.appendChild(img);
    }
    mark(path);
  });
  return box;
}

function mark(path) {  // outline the thumbnail of the seed in use (a folder file comes back as a path)
  const c = controls.get(path);
  const box = document.querySelector(`[data-picker="${path}"]`);
  if (!c || !box) return;
  const base = c.input.value.split("/").pop();
  for (const img of box.querySelectorAll("img")) {
    img.classList.toggle("chosen", img.dataset.value === c.input.value || img.dataset.value === base);
  }
}

function fmt(value, tag, node) {
  if (tag !== "f") return String(value);
  const span = (node.RANGE[0].MAX - node.RANGE[0].MIN) || 1;
  return value.toFixed(span <= 1 ? 3 : span <= 100 ? 2 : 1);
}

function setValue(path, value) {
  const c = controls.get(path);
  if (!c || c.input.tagName === "BUTTON") return;
  if (document.activeElement === c.input && c.input.type !== "range") return;  // being typed in
  if (c.input.type === "range" && c.input.dataset.dragging === "1") return;
  c.input.value = value;
  if (c.show) c.show.textContent = fmt(Number(value), c.node.TYPE, c.node);
  if (c.picker) mark(path);
}

function refresh(tree) {
  for (const node of walk(tree, [])) {
    if (node.VALUE && node.VALUE.length === 1) setValue(node.FULL_PATH, node.VALUE[0]);
  }
}

function onOSC(msg) {
  if (msg.address === "/riff/fail") { say(`refused ${msg.args[0]}: ${msg.args[1]}`); return; }
  if (msg.args.length === 1) setValue(msg.address, msg.args[0]);
}

document.addEventListener("pointerdown", (e) => {
  if (e.target.type === "range") e.target.dataset.dragging = "1";
});
document.addEventListener("pointerup", () => {
  for (const c of controls.values()) delete c.input.dataset.dragging;
});

// --- engine feed: status strip and timeline ---------------------------------------------------

function onJSON(message) {
  const data = message.DATA || {};
  if (message.COMMAND === "RIFF_STATUS") {
    clock.frame = data.frame; clock.rate = data.sample_rate || clock.rate;
    clock.bpm = data.bpm || clock.bpm; clock.beatsPerBar = data.beats_per_bar || clock.beatsPerBar;
    clock.at = performance.now(); clock.known = true;
    showStatus(data);
  } else if (message.COMMAND === "RIFF_LOOP" || message.COMMAND === "RIFF_NEXT") {
    place(data, message.COMMAND === "RIFF_NEXT");
  }
}

function showStatus(d) {
  const items = [
    `${Number(d.bpm).toFixed(1)} bpm`,
    `bar ${d.bar}.${d.beat}`,
    `render ${Math.round(d.render_ms)} ms`,
    `loops ahead ${d.loops_ahead}`,
    d.next_change_bar >= 0 ? `next change: bar ${d.next_change_bar} in ${Number(d.next_change_in_s).toFixed(1)} s`
                           : "no change pending",
    `underruns ${d.underruns}`,
  ];
  if (d.xruns !== undefined) items.push(`xruns ${d.xruns}`);
  if (d.render_failures) items.push(`render failures ${d.render_failures}`);
  if (d.output_lost) items.push("OUTPUT LOST");
  document.getElementById("status").textContent = items.join(" · ");
}

function place(d, next) {
  if (!d.url || !d.frames) return;
  const last = placed[placed.length - 1];
  if (!next && last && last.clip === d.clip_id && !last.next && d.repeat) return;  // a repeat
  const img = new Image();
  img.src = d.url;
  placed = placed.filter(p => p.start < d.frame);
  placed.push({clip: d.clip_id, start: d.frame, frames: d.frames, bpm: d.bpm, img, next, bar: d.bar});
  if (placed.length > 8) placed = placed.slice(-8);
  const el = document.getElementById("next");
  el.textContent = next ? `next loop ready: bar ${d.bar}` : "";
}

function heardFrame() {
  const ahead = Math.min((performance.now() - clock.at) / 1000, MAX_EXTRAPOLATE);
  return clock.frame + ahead * clock.rate;
}

let lastDraw = 0;

function tick(now) {
  requestAnimationFrame(tick);
  if (now - lastDraw < FRAME_MS - 2) return;     // spare the device's CPU (and the engine's, nearby)
  lastDraw = now;
  draw();
}

function draw() {
  const canvas = document.getElementById("timeline");
  const width = canvas.clientWidth;
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext("2d");
  const h = canvas.height;
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, width, h);
  const pxPerSecond = width / SECONDS_SHOWN;
  const playheadX = Math.round(width * PLAYHEAD_AT);
  canvas.dataset.playheadX = playheadX;
  canvas.dataset.pxPerSecond = pxPerSecond;
  let drawn = 0;
  if (clock.known) {
    const now = heardFrame();
    const x = (frame) => playheadX + (frame - now) / clock.rate * pxPerSecond;
    const viewEnd = now + (1 - PLAYHEAD_AT) * SECONDS_SHOWN * clock.rate;
    for (let i = 0; i < placed.length; i++) {
      const p = placed[i];
      const end = i + 1 < placed.length ? placed[i + 1].start : viewEnd;
      const barFrames = 60 / p.bpm * clock.beatsPerBar * clock.rate;
      for (let start = p.start; start < end; start += p.frames) {
        const x0 = x(start);
        const x1 = x(Math.min(start + p.frames, end));
        if (x1 < 0 || x0 > width) continue;
        if (p.img.complete && p.img.naturalWidth) {
          const part = (Math.min(start + p.frames, end) - start) / p.frames;  // a cut-off repeat
          ctx.globalAlpha = start === p.start ? 1 : 0.8;
          ctx.drawImage(p.img, 0, 0, p.img.naturalWidth * part, p.img.naturalHeight, x0, 0, x1 - x0, h);
          ctx.globalAlpha = 1;
          drawn++;
        }
        ctx.fillStyle = start === p.start ? "#fc3" : "rgba(255,255,255,0.6)";
        ctx.fillRect(Math.round(x0), 0, 2, h);                 // the loop's first bar
        for (let b = start + barFrames; b < Math.min(start + p.frames, end) - 1; b += barFrames) {
          ctx.fillStyle = "rgba(255,255,255,0.35)";
          ctx.fillRect(Math.round(x(b)), 0, 1, h);             // bar lines
        }
      }
    }
  }
  canvas.dataset.drawn = drawn;
  ctx.fillStyle = "#f33";
  ctx.fillRect(playheadX - 1, 0, 2, h);                        // the playhead: heard now
}

connect();
requestAnimationFrame(tick);
