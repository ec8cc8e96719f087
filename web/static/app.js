// vsearch's page script: play a hit's moment, show its frames on hover, seek on the timeline.
// Served as a file (the Content-Security-Policy forbids inline script); no framework, no build.
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
  document.getElementById("now-playing").textContent =
    `${hit.dataset.path.split(/[\\/]/).pop()}: ${clock(start)} – ${clock(end)}`;
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
  hit.addEventListener("keydown", (event) => { if (event.key === "Enter") playHit(hit); });
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

// A video's page: each window seeks the player to its start and plays on.
for (const w of document.querySelectorAll(".window")) {
  w.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    moment = {start: +w.dataset.start, end: +w.dataset.end, offset: 0, stop: false};
    seekTo(moment.start);
    player.play().catch(() => {});
  });
}
