// pgsched dashboard: the queue charts and the live runs list. No library, no other origin.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// Draw one bar per minute into <svg class="chart" data-finished="[..]" data-failed="[..]">:
// the finished count as a light bar, the failed part of it as a red bar over it.
function drawChart(svg) {
  const finished = JSON.parse(svg.dataset.finished || "[]");
  const failed = JSON.parse(svg.dataset.failed || "[]");
  const [width, height] = [240, 48];
  const top = Math.max(1, ...finished);
  const step = width / Math.max(1, finished.length);
  svg.replaceChildren();
  const axis = document.createElementNS(SVG, "line");
  axis.setAttribute("class", "axis");
  axis.setAttribute("x1", 0); axis.setAttribute("x2", width);
  axis.setAttribute("y1", height - 0.5); axis.setAttribute("y2", height - 0.5);
  svg.appendChild(axis);
  finished.forEach((count, i) => {
    for (const [value, cls] of [[count, "finished"], [failed[i] || 0, "failed"]]) {
      if (!value) continue;
      const h = Math.max(1, (value / top) * (height - 4));
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("class", cls);
      bar.setAttribute("x", (i * step + 0.5).toFixed(1));
      bar.setAttribute("width", Math.max(1, step - 1).toFixed(1));
      bar.setAttribute("y", (height - h).toFixed(1));
      bar.setAttribute("height", h.toFixed(1));
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${60 - i} min ago: ${value} ${cls}`;
      bar.appendChild(title);
      svg.appendChild(bar);
    }
  });
  svg.dataset.drawn = String(svg.querySelectorAll("rect").length);
}

// With "live" ticked, re-read this same page every 3 s and swap in the new runs table.
function liveRuns(box) {
  let timer = null;
  const refresh = async () => {
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("runs-table");
    if (fresh) document.getElementById("runs-table").replaceWith(fresh);
  };
  box.addEventListener("change", () => {
    if (timer) clearInterval(timer);
    timer = box.checked ? setInterval(refresh, 3000) : null;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("svg.chart").forEach(drawChart);
  const live = document.getElementById("live");
  if (live) liveRuns(live);
});
