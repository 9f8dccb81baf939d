// Small SVG charts drawn here (no chart library): grouped bars per category,
// and an optional line of points on a 0–100 % scale at the right.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A step that gives about five round grid lines up to `max`.
function niceStep(max) {
  const raw = Math.max(max, 1) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  return Math.max(1, step);
}

// labels: one per category; bars: [{name, cls, values}]; line: {name, cls, values (0..1 or null)}.
function barChart(svg, labels, bars, line, legend) {
  const width = 900, height = 240, left = 40, right = line ? 44 : 10, top = 10, bottom = 46;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = Math.max(0, ...bars.flatMap((b) => b.values));
  const step = niceStep(max);
  const top_ = Math.max(step, Math.ceil(max / step) * step);
  const y = (v) => top + plotH - (v / top_) * plotH;
  for (let v = 0; v <= top_; v += step) {
    svg.append(svgEl("line", { class: "grid", x1: left, x2: left + plotW, y1: y(v), y2: y(v) }));
    svg.append(svgEl("text", { class: "axis", x: left - 4, y: y(v) + 4, "text-anchor": "end" }, v));
  }
  const n = Math.max(labels.length, 1);
  const slot = plotW / n;
  const barW = Math.min(40, Math.max(1, (slot * 0.8) / Math.max(bars.length, 1)));
  const pad = (slot - barW * bars.length) / 2;
  const every = Math.ceil(n / 16);  // at most 16 labels under the axis
  labels.forEach((label, i) => {
    const x0 = left + i * slot + pad;
    bars.forEach((b, j) => {
      const v = b.values[i] || 0;
      const rect = svgEl("rect", {
        class: `bar ${b.cls}`, x: x0 + j * barW, y: y(v), width: barW, height: Math.max(0, top + plotH - y(v)),
        "data-value": v, "data-series": b.name,
      });
      rect.append(svgEl("title", {}, `${label} · ${b.name}: ${v}`));
      svg.append(rect);
    });
    if (i % every === 0) {
      svg.append(svgEl("text", { class: "axis", x: left + i * slot + slot / 2, y: top + plotH + 14, "text-anchor": "middle" }, label));
    }
  });
  if (line) {
    const py = (v) => top + plotH - v * plotH;
    svg.append(svgEl("text", { class: "axis", x: width - right + 4, y: py(1) + 4 }, "100%"));
    svg.append(svgEl("text", { class: "axis", x: width - right + 4, y: py(0) + 4 }, "0%"));
    const points = [];
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const cx = left + i * slot + slot / 2;
      points.push(`${cx},${py(v)}`);
      const dot = svgEl("circle", { class: `point ${line.cls}`, cx, cy: py(v), r: 3.5, "data-value": v });
      dot.append(svgEl("title", {}, `${labels[i]} · ${line.name}: ${Math.round(v * 100)}%`));
      svg.append(dot);
    });
    if (points.length > 1) svg.append(svgEl("polyline", { class: `line ${line.cls}`, points: points.join(" ") }));
  }
  svg.append(svgEl("line", { class: "axis-line", x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH }));
  if (legend) {
    legend.replaceChildren(...[...bars, ...(line ? [line] : [])].map((s) =>
      el("span", { class: `key ${s.cls}` }, s.name)));
  }
}
