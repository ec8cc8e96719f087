// vsearch's page script: play a hit's moment, show its frames on hover, the moments strip under a
// video, and the keys (/ search, j/k or arrows move, Enter plays, Escape stops).
// Served as a file (the Content-Security-Policy forbids inline script and style attributes: the
// strip is positioned through element.style, which the policy allows); no framework, no build.
"use strict";

const player = document.getElementById("player");
const box = document.getElementById("player-box");
let moment = null; // {start, end, offset, stop}: the moment playing, in source seconds

function clock(seconds) {
  const m = Math.floor(seconds / 60), s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

// Seek once the browser knows the file; the server's answer says where the file starts in the
// source (a transcoded moment starts at its own zero).
function seekTo(seconds) {
  const go = () => { player.currentTime = Math.max(0, seconds - (moment ? moment.offset : 0)); };
  if (player.readyState >= 1) go(); else player.addEventListener("loadedmetadata", go, {once: true});
}

async function playHit(hit) {
  const id = hit.dataset.videoId, start = +hit.dataset.start, end = +hit.dataset.end;
  const answer = await fetch(`/api/play/${id}?start=${start}&end=${end}`);
  if (!answer.ok) { document.getElementById("now-playing").textContent = "This video cannot be played."; return; }
  const where = await answer.json();
  moment = {start, end, offset: where.offset, stop: true};
  box.hidden = false;
  if (player.getAttribute("src") !== where.video) player.src = where.video;
  const said = `${hit.dataset.path.split(/[\\/]/).pop()}: ${clock(start)} – ${clock(end)}`;
  document.getElementById("now-playing").textContent = said;
  player.setAttribute("aria-label", `Playing ${said}`);
  for (const h of document.querySelectorAll(".hit.playing")) h.classList.remove("playing");
  hit.classList.add("playing");
  seekTo(start);
  showMoment(); // same file as before: loadedmetadata will not fire again
  player.play().catch(() => {}); // autoplay may be refused; the controls remain
  box.scrollIntoView({block: "nearest"});
}

// Mark the moment on a bar under the video, and stop at its end the first time through.
function showMoment() {
  const bar = box && box.querySelector(".moment");
  if (!bar || !moment || !player.duration) return;
  const a = moment.start - moment.offset, b = moment.end - moment.offset;
  bar.style.left = `${100 * a / player.duration}%`;
  bar.style.width = `${100 * Math.max(b - a, 0) / player.duration}%`;
}

if (player) {
  player.addEventListener("loadedmetadata", showMoment);
  player.addEventListener("timeupdate", () => {
    if (moment && moment.stop && player.currentTime + moment.offset >= moment.end) {
      moment.stop = false; // pause once at the end; playing on from there is the user's choice
      player.pause();
    }
  });
}

for (const hit of document.querySelectorAll(".hit")) {
  hit.addEventListener("click", (event) => {
    if (event.target.closest("a")) return; // links keep their own meaning
    playHit(hit);
  });
  // Enter on the card itself: a link inside the card keeps its own Enter
  hit.addEventListener("keydown", (event) => { if (event.key === "Enter" && event.target === hit) playHit(hit); });
  // Hover: step through thumbnails of the moment's windows (cached images, never a transcode).
  const img = hit.querySelector("img"), frames = (hit.dataset.frames || "").split(" ").filter(Boolean);
  if (!img || frames.length < 2) continue;
  let timer = null;
  hit.addEventListener("mouseenter", () => {
    let i = 0;
    timer = setInterval(() => { i = (i + 1) % frames.length; img.src = frames[i]; }, 500);
  });
  hit.addEventListener("mouseleave", () => { clearInterval(timer); img.src = frames[0]; });
}

// -- a video's page: the moments strip --------------------------------------------------------

const strip = document.querySelector("[data-strip]");
const segments = strip ? [...strip.querySelectorAll("[data-start]")] : [];
const items = [...document.querySelectorAll(".moment-item")];

// Play the video from a moment's start and on past its end (the whole video is the user's).
function playFrom(start, end) {
  moment = {start, end, offset: 0, stop: false};
  seekTo(start);
  player.play().catch(() => {});
}

// Each segment covers its share of the timeline; one segment is in the Tab order at a time
// (the keys below move between them), so a long video's strip is one stop, not dozens.
function layOut() {
  const total = +strip.dataset.duration || Math.max(...segments.map((s) => +s.dataset.end));
  segments.forEach((seg, i) => {
    const start = +seg.dataset.start, end = +seg.dataset.end;
    seg.style.left = `${100 * start / total}%`;
    seg.style.width = `${100 * (end - start) / total}%`;
    seg.tabIndex = i === 0 ? 0 : -1;
    seg.addEventListener("click", () => playFrom(start, end));
  });
  strip.classList.add("ready");
}

// Highlight the moment under the playhead: on the strip and in the list below it.
function markCurrent() {
  const t = player.currentTime;
  segments.forEach((seg, i) => {
    const now = +seg.dataset.start <= t && t < +seg.dataset.end;
    seg.classList.toggle("current", now);
    if (now) seg.setAttribute("aria-current", "true"); else seg.removeAttribute("aria-current");
    if (items[i]) items[i].classList.toggle("current", now);
  });
}

if (strip && player) {
  layOut();
  player.addEventListener("timeupdate", markCurrent);
  player.addEventListener("seeked", markCurrent);
}

// The list under the strip: a moment's picture plays it too.
for (const item of items) {
  item.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    playFrom(+item.dataset.start, +item.dataset.end);
  });
}

// What is said, beside the player: the line being said is highlighted; a line's time seeks there.
const lines = [...document.querySelectorAll(".transcript [data-start]")];

function markLine() {
  const t = player.currentTime;
  for (const line of lines) {
    const now = +line.dataset.start <= t && t < +line.dataset.end;
    line.classList.toggle("current", now);
    if (now) line.setAttribute("aria-current", "true"); else line.removeAttribute("aria-current");
  }
}

if (lines.length && player) {
  player.addEventListener("timeupdate", markLine);
  player.addEventListener("seeked", markLine);
  for (const line of lines) {
    line.querySelector("[data-seek]").addEventListener("click", (event) => {
      event.preventDefault();
      playFrom(+line.dataset.start, +line.dataset.end);
    });
  }
}

// -- keys -------------------------------------------------------------------------------------

const STEPS = {j: 1, ArrowDown: 1, ArrowRight: 1, k: -1, ArrowUp: -1, ArrowLeft: -1};

// What j/k and the arrows move between: the hits of a results page, else a video's segments.
function stops() {
  const hits = [...document.querySelectorAll(".hit")];
  return hits.length ? hits : segments;
}

function move(step, from) {
  const list = stops();
  const at = list.indexOf(from);
  const next = list[at < 0 ? 0 : Math.min(list.length - 1, Math.max(0, at + step))];
  if (!next) return;
  for (const seg of segments) seg.tabIndex = seg === next ? 0 : -1;
  next.focus();
  next.scrollIntoView({block: "nearest"});
}

function stopPlaying() {
  if (!player) return;
  player.pause();
  if (moment) moment.stop = false;
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target instanceof Element ? event.target : document.body;
  if (target.closest("input, textarea, select, [contenteditable]")) return; // typing
  if (event.key === "/") {
    const search = document.querySelector("header input[name=q]");
    event.preventDefault(); // the slash is a key here, not a character to type
    search.focus();
    search.select();
  } else if (event.key === "Escape") {
    stopPlaying();
  } else if (event.key in STEPS && target !== player) { // the player's own arrows seek
    const on = stops().includes(target);
    // Arrows scroll the page as usual until a hit or segment has the focus; j and k start there.
    if (!on && event.key.startsWith("Arrow")) return;
    event.preventDefault();
    move(STEPS[event.key], on ? target : null);
  }
});
