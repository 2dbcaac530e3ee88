// Charts drawn as SVG: bars by day, bars by group, and a sparkline. Labels are text nodes.

import { s } from "./dom.js";

const W = 640;

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

export function columns(points, format, label) {
  // points: [{label, value}] in order (days); a vertical bar for each.
  const H = 220;
  const left = 56;
  const bottom = 28;
  const top = 12;
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const plotW = W - left - 8;
  const plotH = H - top - bottom;
  const slot = plotW / Math.max(points.length, 1);
  const barW = Math.max(2, Math.min(42, slot * 0.7));
  const chart = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": label,
  });
  for (const frac of [0, 0.5, 1]) {
    const y = top + plotH * (1 - frac);
    chart.append(
      s("line", { class: "grid", x1: left, x2: W - 8, y1: y, y2: y }),
      s("text", { class: "axis", x: left - 6, y: y + 4, "text-anchor": "end" }, format(max * frac)),
    );
  }
  const every = Math.ceil(points.length / 10);
  points.forEach((p, i) => {
    const x = left + slot * i + (slot - barW) / 2;
    const h = (p.value / max) * plotH;
    chart.append(
      s(
        "rect",
        { class: "bar", x, y: top + plotH - h, width: barW, height: Math.max(h, p.value > 0 ? 1 : 0) },
        s("title", {}, `${p.label}: ${format(p.value)}`),
      ),
    );
    if (i % every === 0) {
      chart.append(
        s("text", { class: "axis", x: x + barW / 2, y: H - 8, "text-anchor": "middle" }, p.label.slice(5)),
      );
    }
  });
  return chart;
}

export function bars(points, format, label) {
  // points: [{label, value}]; a horizontal bar each, largest first.
  const sorted = [...points].sort((a, b) => b.value - a.value).slice(0, 12);
  const row = 28;
  const labelW = 180;
  const valueW = 96;
  const H = Math.max(row * sorted.length + 8, 40);
  const max = Math.max(0, ...sorted.map((p) => p.value)) || 1;
  const chart = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": label,
  });
  if (!sorted.length) {
    chart.append(s("text", { class: "axis", x: W / 2, y: 24, "text-anchor": "middle" }, "No usage in this range."));
  }
  sorted.forEach((p, i) => {
    const y = 4 + i * row;
    const w = ((W - labelW - valueW - 16) * p.value) / max;
    const name = p.label.length > 26 ? `${p.label.slice(0, 25)}…` : p.label;
    chart.append(
      s("text", { class: "label", x: labelW - 8, y: y + 17, "text-anchor": "end" }, name, s("title", {}, p.label)),
      s("rect", { class: "bar", x: labelW, y: y + 4, width: Math.max(w, p.value > 0 ? 1 : 0), height: row - 10, rx: 3 }),
      s("text", { class: "value", x: labelW + w + 8, y: y + 17 }, format(p.value)),
    );
  });
  return chart;
}

export function sparkline(values, format, label) {
  const H = 56;
  const max = niceMax(Math.max(0, ...values));
  const step = W / Math.max(values.length - 1, 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(H - 4 - (v / max) * (H - 8)).toFixed(1)}`);
  return s(
    "svg",
    { class: "spark", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": label },
    s("polyline", { class: "line", points: points.join(" ") }),
    s("title", {}, `${label}: peak ${format(Math.max(0, ...values))}`),
  );
}
