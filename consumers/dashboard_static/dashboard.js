// The store manager's dashboard: draws one `journey report --json` object with Chart.js.
// Two ways in, one renderer:
//  - served by the stack (GET /dashboard#token=...): fetches /dashboard/api/report with the token
//    (the on-call token, or the read-only manager token), refetches on a date range or store change;
//  - a file from `journey report --html`: the reports (all stores, and each store) are embedded in
//    <script type="application/json" id="report-data">; the store picker switches between them.
"use strict";

(function () {
  const GREEN = "#2e7d32", RED = "#c62828", GREY = "#9e9e9e", BLUE = "#1565c0", ORANGE = "#ef6c00", PURPLE = "#6a1b9a";
  const GROUP_LABELS = {recovered: "failure recovered", not_recovered: "failure not recovered", no_failure: "no failure"};
  const GROUP_COLOURS = {recovered: GREEN, not_recovered: RED, no_failure: GREY};
  const charts = [];
  let embedded = null, token = "";

  // ---- human units (the same rules as consumers/human.py) ----
  function duration(s) {
    if (s === null || s === undefined || Number.isNaN(s)) return "-";
    s = Math.round(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    if (s < 86400) { const m = Math.floor((s % 3600) / 60); return Math.floor(s / 3600) + " h" + (m ? " " + m + " min" : ""); }
    const h = Math.floor((s % 86400) / 3600);
    return Math.floor(s / 86400) + " d" + (h ? " " + h + " h" : "");
  }
  function percent(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "-";
    const v = 100 * x;
    return v >= 10 || v === 0 ? v.toFixed(0) + "%" : v.toPrecision(2) + "%";
  }
  const pct = (x) => (x === null || x === undefined ? null : Math.round(1000 * x) / 10);
  const el = (id) => document.getElementById(id);
  function text(node, value) { node.textContent = value; return node; }
  function cell(row, value, cls) { const td = row.insertCell(); text(td, value); if (cls) td.className = cls; return td; }

  // ---- charts ----
  function chart(id, config) {
    const canvas = el(id);
    const options = config.options || (config.options = {});
    options.animation = false;  // screenshots and tests see the final picture
    options.maintainAspectRatio = false;
    options.plugins = Object.assign({legend: {position: "bottom"}}, options.plugins || {});
    charts.push(new Chart(canvas, config));
  }
  const percentAxis = {min: 0, max: 100, ticks: {callback: (v) => v + "%"}};
  const minutesAxis = {beginAtZero: true, title: {display: true, text: "minutes"}};

  function returnChart(id, rows, labelOf, colourOf) {
    chart(id, {
      type: "bar",
      data: {
        labels: rows.map(labelOf),
        datasets: [
          {label: "came back within 30 days", data: rows.map((r) => pct(r.return_rate_30d)),
           backgroundColor: rows.map(colourOf)},
          {label: "within 90 days", data: rows.map((r) => pct(r.return_rate_90d)),
           backgroundColor: rows.map((r) => colourOf(r) + "66")},
        ],
      },
      options: {
        scales: {y: percentAxis},
        plugins: {tooltip: {callbacks: {afterLabel: (c) => {
          const r = rows[c.dataIndex];
          return c.datasetIndex === 0 ? r.returned_30d + " of " + r.eligible_30d + " customers"
                                      : r.returned_90d + " of " + r.eligible_90d + " customers";
        }}}},
      },
    });
  }

  function metGoal(value, goal) { return value === null || value === undefined ? GREY : value >= goal ? GREEN : RED; }

  function draw(report) {
    charts.splice(0).forEach((c) => c.destroy());
    const goal = report.sla_goal;
    const paradox = report.recovery_paradox.overall;
    const rates = report.rates;
    text(el("range"), report.title || "");
    // headline figures
    const allSla = report.trend.length ? report.trend.reduce((a, w) => a + (w.sla_all ?? 0) * w.incidents, 0) /
      Math.max(1, report.trend.reduce((a, w) => a + w.incidents, 0)) : null;
    text(el("kpi-incidents"), report.total_incidents);
    text(el("kpi-journeys"), rates.journeys);
    text(el("kpi-rate"), rates.journeys ? (100 * report.total_incidents / rates.journeys).toFixed(1) : "-");
    const sla = el("kpi-sla");
    text(sla, percent(allSla));
    sla.className = "value " + (allSla === null ? "" : allSla >= goal ? "met" : "missed");
    text(el("kpi-goal"), "goal " + percent(goal));
    const groups = paradox.groups;
    text(el("kpi-paradox"), percent(groups.recovered.return_rate_30d) + " / " +
      percent(groups.not_recovered.return_rate_30d) + " / " + percent(groups.no_failure.return_rate_30d));

    const groupRows = Object.keys(GROUP_LABELS).map((g) => Object.assign({group: g}, groups[g]));
    returnChart("chart-paradox", groupRows, (r) => GROUP_LABELS[r.group], (r) => GROUP_COLOURS[r.group]);
    const speedColour = (r) => (r.bucket === "no response" || r.bucket === "not resolved" ? RED : BLUE);
    returnChart("chart-first-response", paradox.by_first_response, (r) => r.bucket, speedColour);
    returnChart("chart-resolve", paradox.by_resolve, (r) => r.bucket, speedColour);
    returnChart("chart-compensation", paradox.by_compensation, (r) => r.bucket,
      (r) => (r.bucket === "none" ? GREY : PURPLE));

    // weekly trend: SLA met against the goal, and the median times
    const weeks = report.trend.map((w) => w.week);
    chart("chart-trend-sla", {
      data: {labels: weeks, datasets: [
        {type: "bar", label: "all targets met", data: report.trend.map((w) => pct(w.sla_all)),
         backgroundColor: report.trend.map((w) => metGoal(w.sla_all, goal))},
        {type: "line", label: "goal " + percent(goal), data: weeks.map(() => 100 * goal), borderColor: "#000",
         borderDash: [6, 4], pointRadius: 0},
        {type: "line", label: "acknowledged in time", data: report.trend.map((w) => pct(w.sla_acknowledge)),
         borderColor: ORANGE},
        {type: "line", label: "resolved in time", data: report.trend.map((w) => pct(w.sla_resolve)),
         borderColor: BLUE},
      ]},
      options: {scales: {y: percentAxis}},
    });
    chart("chart-trend-times", {
      type: "line",
      data: {labels: weeks, datasets: [
        {label: "median to acknowledge", data: report.trend.map((w) => w.median_acknowledge_s / 60), borderColor: ORANGE},
        {label: "median to first response", data: report.trend.map((w) => w.median_first_response_s / 60),
         borderColor: PURPLE},
        {label: "median to resolve", data: report.trend.map((w) => w.median_resolve_s / 60), borderColor: BLUE},
      ]},
      options: {scales: {y: minutesAxis},
        plugins: {tooltip: {callbacks: {label: (c) => c.dataset.label + ": " + duration(c.parsed.y * 60)}}}},
    });
    chart("chart-trend-rate", {
      type: "bar",
      data: {labels: rates.by_week.map((w) => w.week),
        datasets: [{label: "incidents per 100 journeys", data: rates.by_week.map((w) => w.per_100_journeys),
          backgroundColor: ORANGE}]},
      options: {scales: {y: {beginAtZero: true}}},
    });

    // by rule: median time to resolve against each rule's own target, coloured met / missed
    const rules = report.by_rule;
    const target = (r, k) => (report.targets[r.rule] || {})[k];
    chart("chart-rules-resolve", {
      data: {labels: rules.map((r) => r.rule), datasets: [
        {type: "bar", label: "median time to resolve", data: rules.map((r) => r.ttr_p50_s === null ? null : r.ttr_p50_s / 60),
         backgroundColor: rules.map((r) => r.ttr_p50_s === null ? GREY : r.ttr_p50_s <= target(r, "resolve_s") ? GREEN : RED)},
        {type: "line", label: "target", data: rules.map((r) => target(r, "resolve_s") / 60), borderColor: "#000",
         showLine: false, pointStyle: "line", pointRadius: 18, pointBorderWidth: 3},
      ]},
      options: {scales: {y: Object.assign({type: "logarithmic"}, {title: {display: true, text: "minutes (log scale)"}})},
        plugins: {tooltip: {callbacks: {label: (c) => c.dataset.label + ": " + duration(c.parsed.y * 60)}}}},
    });
    chart("chart-rules-sla", {
      data: {labels: rules.map((r) => r.rule), datasets: [
        {type: "bar", label: "incidents with every target met", data: rules.map((r) => pct(r.sla_compliance)),
         backgroundColor: rules.map((r) => metGoal(r.sla_compliance, goal))},
        {type: "line", label: "goal " + percent(goal), data: rules.map(() => 100 * goal), borderColor: "#000",
         borderDash: [6, 4], pointRadius: 0},
      ]},
      options: {scales: {y: percentAxis}},
    });
    chart("chart-stores", {
      type: "bar",
      data: {labels: rates.by_store.map((s) => s.store || "(none)"),
        datasets: [{label: "incidents per 100 journeys", data: rates.by_store.map((s) => s.per_100_journeys),
          backgroundColor: ORANGE}]},
      options: {indexAxis: "y", scales: {x: {beginAtZero: true}}},
    });
    const hours = Array.from({length: 24}, (_, h) => report.by_local_hour[h] ?? report.by_local_hour[String(h)] ?? 0);
    chart("chart-hours", {
      type: "bar",
      data: {labels: hours.map((_, h) => String(h).padStart(2, "0") + ":00"),
        datasets: [{label: "incidents (store's local time)", data: hours, backgroundColor: BLUE}]},
      options: {scales: {y: {beginAtZero: true, ticks: {precision: 0}}}},
    });

    // tables
    const ruleBody = el("rules").tBodies[0];
    ruleBody.replaceChildren();
    const per100 = Object.fromEntries(rates.by_rule.map((r) => [r.rule, r.per_100_journeys]));
    for (const r of rules) {
      const row = ruleBody.insertRow();
      cell(row, r.rule); cell(row, r.servqual); cell(row, r.incidents); cell(row, per100[r.rule] ?? "-");
      for (const [value, key] of [[r.tta_p50_s, "acknowledge_s"], [r.ttfr_p50_s, "first_response_s"], [r.ttr_p50_s, "resolve_s"]]) {
        const goalS = target(r, key);
        cell(row, duration(value) + " / " + duration(goalS), value === null ? "" : value <= goalS ? "met" : "missed");
      }
      cell(row, percent(r.sla_compliance), r.sla_compliance === null ? "" : r.sla_compliance >= goal ? "met" : "missed");
      cell(row, percent(r.share_compensated));
    }
    const causeBody = el("causes").tBodies[0];
    causeBody.replaceChildren();
    for (const c of report.causes) {
      const row = causeBody.insertRow();
      cell(row, c.rule); cell(row, c.cause); cell(row, c.store || "(none)"); cell(row, c.incidents);
      cell(row, String(c.peak_local_hour).padStart(2, "0") + ":00 (" + c.peak_incidents + ")");
    }
    el("empty").hidden = report.total_incidents > 0 || rates.journeys > 0;
    document.body.dataset.ready = "yes";  // tests wait for this
  }

  // ---- the two ways in ----
  function fillStores(stores, chosen) {
    const select = el("store");
    const keep = chosen ?? select.value;
    select.replaceChildren(new Option("all stores", ""));
    for (const s of stores) select.add(new Option(s, s));
    select.value = stores.includes(keep) ? keep : "";
  }

  async function load() {
    const params = new URLSearchParams();
    if (el("from").value) params.set("from", el("from").value);
    if (el("to").value) params.set("to", el("to").value);
    if (el("store").value) params.set("store", el("store").value);
    text(el("status"), "loading…");
    let response;
    try {
      response = await fetch("/dashboard/api/report?" + params, {headers: {"X-Journey-Token": token}});
    } catch (e) {
      text(el("status"), "the stack's web server is not answering (is the stack up?)");
      return;
    }
    if (response.status === 401) { el("login").hidden = false; text(el("status"), "token needed"); return; }
    const body = await response.json();
    if (!response.ok) { text(el("status"), body.error || response.statusText); return; }
    el("login").hidden = true;
    fillStores(body.stores, body.report.store || "");
    if (!el("from").value) el("from").value = body.from;
    if (!el("to").value) el("to").value = body.to;
    body.report.title = body.title;
    draw(body.report);
    text(el("status"), "");
  }

  function start() {
    const data = el("report-data");
    if (data) {  // a file from `journey report --html`
      embedded = JSON.parse(data.textContent);
      fillStores(Object.keys(embedded.stores), embedded.store || "");
      el("from").value = embedded.from; el("to").value = embedded.to;
      el("from").disabled = el("to").disabled = true;
      el("range-note").hidden = false;
      el("store").addEventListener("change", () => {
        const chosen = el("store").value;
        draw(chosen ? embedded.stores[chosen] : embedded.report);
      });
      draw(embedded.report);
      return;
    }
    const match = location.hash.match(/token=([^&]+)/);
    if (match) {
      token = decodeURIComponent(match[1]);
      history.replaceState(null, "", location.pathname);  // the token leaves the address bar
    }
    el("login").addEventListener("submit", (e) => { e.preventDefault(); token = el("token").value; load(); });
    for (const id of ["from", "to", "store"]) el(id).addEventListener("change", () => load());
    load();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
