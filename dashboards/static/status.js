// The live status page (dashboards/status.py): asks /api/v1/status every second and
// updates values, states, times and the open alarms in place. The page is complete without
// it. Text goes in as text (textContent), never as markup; links only to the app's own
// pages and the site's configured Grafana.
"use strict";

(function () {
  const root = document.getElementById("status");
  if (!root) {
    return;
  }
  const api = root.dataset.api;
  const every = Math.max(1, Number(root.dataset.pollS) || 1) * 1000;
  const live = document.getElementById("live");
  const rows = new Map();
  for (const row of root.querySelectorAll("tr[data-sensor]")) {
    rows.set(row.dataset.sensor, row);
  }
  const areas = new Map();
  for (const area of root.querySelectorAll("[data-area]")) {
    areas.set(area.dataset.area, area);
  }
  let shown = document.getElementById("now").textContent;

  function field(element, name) {
    return element.querySelector('[data-field="' + name + '"]');
  }

  function setAll(element, name, text) {
    for (const each of element.querySelectorAll('[data-field="' + name + '"]')) {
      setText(each, text);
    }
  }

  function setText(element, text) {
    if (element && element.textContent !== text) {
      element.textContent = text;
    }
  }

  function setState(element, state) {
    for (const name of Array.from(element.classList)) {
      if (name.startsWith("state-")) {
        element.classList.remove(name);
      }
    }
    element.classList.add("state-" + state);
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function muted(text) {
    const span = document.createElement("span");
    span.className = "muted";
    span.textContent = text;
    return span;
  }

  function channel(c) {
    const row = rows.get(c.sensor_id);
    if (!row) {
      return;
    }
    setState(row, c.state);
    setText(field(row, "value"), c.value_text);
    setAll(row, "limits", c.limits_text);
    const badge = field(row, "state");
    setState(badge, c.state);
    setText(badge, c.state_label);
    setText(field(row, "reason"), c.reason);
    setText(field(row, "last"), c.last_text);
    setText(field(row, "ago"), c.ago);
    const list = field(row, "alarms");
    const items = c.alarms.map(function (a) {
      const li = document.createElement("li");
      li.append(link(a.url, a.title), " ", muted("since " + a.since_text));
      return li;
    });
    list.replaceChildren(...items);
  }

  function alarms(list) {
    setText(document.getElementById("alarm-count"), String(list.length));
    document.getElementById("alarm-table").hidden = list.length === 0;
    document.getElementById("no-alarms").hidden = list.length !== 0;
    const trs = list.map(function (a) {
      const tr = document.createElement("tr");
      const what = document.createElement("td");
      const badge = document.createElement("span");
      badge.className = "badge state-" + (a.level || "stale");
      badge.textContent = a.level_text;
      what.append(badge, " ", link(a.url, a.title));
      const where = document.createElement("td");
      const all = link(a.excursions_url, "excursions");
      all.className = "muted";
      where.append(a.channel + " · " + a.area + " ", all);
      const since = document.createElement("td");
      since.append(a.since_text + " ", muted("(" + a.ago + ")"));
      const qa = document.createElement("td");
      qa.textContent = a.qa_state_text;
      tr.append(what, where, since, qa);
      return tr;
    });
    document.getElementById("alarm-rows").replaceChildren(...trs);
  }

  function apply(s) {
    for (const area of s.areas) {
      const section = areas.get(area.id);
      if (section) {
        const summary = field(section, "summary");
        setText(summary, area.summary);
        summary.classList.toggle("attention", area.attention);
      }
      for (const instrument of area.instruments) {
        instrument.channels.forEach(channel);
      }
    }
    for (const [state, n] of Object.entries(s.counts)) {
      const count = root.querySelector('[data-count="' + state + '"] .n');
      setText(count, String(n));
    }
    const error = document.getElementById("store-error");
    setText(error, s.store_error);
    error.hidden = !s.store_error;
    alarms(s.alarms);
    shown = s.now_text;
    setText(
      live,
      "Live: updated " + s.now_text + "; times in " + s.timezone + "."
    );
    live.classList.remove("paused");
  }

  async function poll() {
    const started = Date.now();
    let again = true;
    try {
      const answer = await fetch(api, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (answer.status === 401) {
        again = false; // the session ended (idle, signed out): polling cannot bring it back
        setText(live, "Not updating: the session has ended. Reload the page to sign in again. Values as of " + shown + ".");
        live.classList.add("paused");
      } else if (!answer.ok) {
        throw new Error("HTTP " + answer.status);
      } else {
        apply(await answer.json());
      }
    } catch (error) {
      setText(live, "Live updates paused (" + error.message + "): retrying. Values as of " + shown + ".");
      live.classList.add("paused");
    }
    if (again) {
      // A steady cadence from one request's start to the next, whatever each one took.
      window.setTimeout(poll, Math.max(100, every - (Date.now() - started)));
    }
  }

  poll();
})();
