// Keel dashboard: draws charts (vendored Chart.js) and moves model aliases through the JSON API.
//
// Charts: <canvas data-spec='{"type": "bar"|"hbar"|"histogram"|"line", "labels": [...],
//   "datasets": [{"label": ..., "data": [...]} or {"label": ..., "points": [[x, y], ...]}]}'>
// Run metrics: <canvas data-metric="loss"> inside #metric-charts[data-run]; series come from
//   /api/v1/runs/{id}/metrics.
// Alert buttons: <button data-alert data-action="ack"|"resolve">, through /api/v1/alerts/{id}/{action}.
// What-if panel: <form data-whatif="STUDY" data-version="N"> (select node, input expr, select kind) ->
//   POST /api/v1/causal/studies/{study}/whatif?version=N; the answer goes into #whatif-answer, no reload.
// Alias buttons: <button data-model data-alias data-version data-reason>; the first click arms
//   the button, the second (within 5 s) sends PUT /api/v1/models/{model}/aliases/{alias}.
(function () {
  "use strict";

  const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  const MAX_POINTS = 2000;

  function baseOptions(extra) {
    return Object.assign({
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { display: false } },
    }, extra);
  }

  function config(spec) {
    const color = (i) => COLORS[i % COLORS.length];
    if (spec.type === "line") {
      const many = spec.datasets.length > 1;
      return {
        type: "line",
        data: {
          datasets: spec.datasets.map((d, i) => ({
            label: d.label,
            data: d.points.map(([x, y]) => ({ x: x, y: y })),
            borderColor: color(i), backgroundColor: color(i), borderWidth: 2,
            pointRadius: d.points.length > 60 ? 0 : 3, tension: 0.1,
          })),
        },
        options: baseOptions({
          parsing: true,
          plugins: { legend: { display: many } },
          scales: { x: { type: "linear", bounds: "data", title: { display: true, text: spec.xTitle || "step" }, ticks: { precision: 0 } } },
        }),
      };
    }
    const horizontal = spec.type === "hbar";
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map((d, i) => ({
          label: d.label, data: d.data, backgroundColor: d.colors || color(i),
          barPercentage: spec.type === "histogram" ? 1.0 : 0.8,
          categoryPercentage: spec.type === "histogram" ? 1.0 : 0.8,
        })),
      },
      options: baseOptions({
        plugins: { legend: { display: spec.datasets.length > 1 } },
        indexAxis: horizontal ? "y" : "x",
        scales: horizontal ? { y: { ticks: { autoSkip: false } } } : { x: { ticks: xTicks(spec) } },
      }),
    };
  }

  function xTicks(spec) {
    if (spec.type !== "histogram") return { maxRotation: 45, autoSkip: true };
    // Bin labels read 'lo–hi'; the axis shows each bin's left edge, the tooltip the whole range.
    return {
      maxRotation: 0, autoSkip: true, autoSkipPadding: 8,
      callback: function (value) { return String(this.getLabelForValue(value)).split("–")[0]; },
    };
  }

  function draw(canvas, spec) {
    if (Chart.getChart(canvas)) return;
    if (spec.type === "hbar" && spec.labels) {
      canvas.parentElement.style.height = Math.max(180, spec.labels.length * 20 + 50) + "px";
    }
    new Chart(canvas, config(spec));
  }

  function drawSpecCharts(root) {
    root.querySelectorAll("canvas[data-spec]").forEach((canvas) => {
      try {
        draw(canvas, JSON.parse(canvas.dataset.spec));
      } catch (err) {
        canvas.replaceWith(Object.assign(document.createElement("p"), { className: "muted", textContent: "Chart unavailable: " + err.message }));
      }
    });
  }

  function thin(steps, values) {
    const stride = Math.max(1, Math.ceil(steps.length / MAX_POINTS));
    const points = [];
    for (let i = 0; i < steps.length; i += stride) points.push([steps[i], values[i]]);
    const last = steps.length - 1;
    if (last >= 0 && (last % stride) !== 0) points.push([steps[last], values[last]]);
    return points;
  }

  async function drawRunMetrics(root) {
    const box = root.querySelector("#metric-charts[data-run]");
    if (!box || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    const resp = await fetch("/api/v1/runs/" + encodeURIComponent(box.dataset.run) + "/metrics",
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) {
      box.insertAdjacentHTML("beforebegin", '<p class="notice error">Could not load the metric series.</p>');
      return;
    }
    const series = await resp.json();
    box.querySelectorAll("canvas[data-metric]").forEach((canvas) => {
      const s = series[canvas.dataset.metric];
      if (s) draw(canvas, { type: "line", datasets: [{ label: canvas.dataset.metric, points: thin(s.steps, s.values) }] });
    });
  }

  function showStatus(text, isError) {
    const status = document.getElementById("alias-status");
    if (!status) return;
    status.hidden = false;
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  async function moveAlias(button) {
    const { model, alias, version } = button.dataset;
    const input = document.getElementById("alias-reason");
    const reason = (input && input.value.trim()) || button.dataset.reason || "";
    button.disabled = true;
    try {
      const resp = await fetch("/api/v1/models/" + encodeURIComponent(model) + "/aliases/" + encodeURIComponent(alias), {
        method: "PUT",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ version: Number(version), reason: reason }),
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error((body.error && body.error.detail) || resp.status + " " + resp.statusText);
      showStatus("@" + alias + " now points at v" + version + ". Reloading…", false);
      window.location.reload();
    } catch (err) {
      showStatus("Could not move @" + alias + ": " + err.message, true);
      button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-alias][data-version]");
    if (!button || button.disabled) return;
    if (button.dataset.armed !== "1") {  // a second click confirms: no surprise promotions
      button.dataset.armed = "1";
      button.dataset.label = button.textContent;
      button.textContent = "Confirm: " + button.dataset.alias + " → v" + button.dataset.version;
      button.classList.add("armed");
      setTimeout(() => {
        if (button.dataset.armed === "1" && !button.disabled) {
          button.dataset.armed = "";
          button.textContent = button.dataset.label;
          button.classList.remove("armed");
        }
      }, 5000);
      return;
    }
    button.dataset.armed = "";
    moveAlias(button);
  });

  // Alert buttons: <button data-alert="ID" data-action="ack"|"resolve"> -> POST /api/v1/alerts/ID/ACTION.
  async function alertAction(button) {
    const status = document.getElementById("alert-status");
    button.disabled = true;
    try {
      const resp = await fetch("/api/v1/alerts/" + encodeURIComponent(button.dataset.alert) + "/" + button.dataset.action, {
        method: "POST", credentials: "same-origin", headers: { Accept: "application/json" },
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error((body.error && body.error.detail) || resp.status + " " + resp.statusText);
      window.location.reload();
    } catch (err) {
      if (status) {
        status.hidden = false;
        status.textContent = "Could not update alert #" + button.dataset.alert + ": " + err.message;
        status.classList.add("error");
      }
      button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-alert][data-action]");
    if (button && !button.disabled) alertAction(button);
  });

  function fmt(x) {
    return Number(x).toLocaleString("en-US", { maximumFractionDigits: 4 });
  }

  function signed(x) {
    return (Number(x) > 0 ? "+" : "") + fmt(x);
  }

  async function whatIf(form) {
    const out = document.getElementById("whatif-answer");
    const button = form.querySelector("button[type=submit]");
    const data = new FormData(form);
    const node = String(data.get("node") || "");
    const expr = String(data.get("expr") || "").trim();
    button.disabled = true;
    out.hidden = false;
    out.classList.remove("error");
    out.textContent = "Asking the structural causal model…";
    try {
      const url = "/api/v1/causal/studies/" + encodeURIComponent(form.dataset.whatif) + "/whatif?version=" + encodeURIComponent(form.dataset.version);
      const resp = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ intervene: { [node]: expr }, kind: String(data.get("kind") || "interventional") }),
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error((body.error && body.error.detail) || resp.status + " " + resp.statusText);
      const [low, high] = body.interval;
      out.replaceChildren();
      const head = document.createElement("p");
      head.append("Mean effect on " + body.outcome + " of " + node + " " + expr + ": ");
      const strong = Object.assign(document.createElement("strong"), { id: "whatif-effect", textContent: signed(body.mean_effect) });
      head.append(strong, " (" + Math.round(100 * body.level) + "% [" + fmt(low) + ", " + fmt(high) + "])");
      const detail = Object.assign(document.createElement("p"), {
        className: "muted",
        textContent: body.kind + ": mean " + body.outcome + " " + fmt(body.baseline_mean) + " → " + fmt(body.intervened_mean) +
          ", interval from " + body.n_resamples + " resamples",
      });
      out.append(head, detail);
    } catch (err) {
      out.textContent = "Could not answer: " + err.message;
      out.classList.add("error");
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-whatif]");
    if (!form) return;
    event.preventDefault();
    whatIf(form);
  });

  function init(root) {
    drawSpecCharts(root);
    drawRunMetrics(root).catch((err) => console.warn("metric charts:", err));
  }

  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:afterSettle", () => init(document));
})();
