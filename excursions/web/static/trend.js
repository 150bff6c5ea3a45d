/*
 * envmon QA: the record page's interactive trend chart (uPlot, static/vendor/).
 *
 * Reads GET /api/v1/excursions/{id}/trend?window=record|6h|24h|3d (the session cookie
 * signs the request; a GET needs no CSRF header) and replaces the server-drawn SVG, which
 * stays the first paint and the chart without script. It draws what the SVG and the PDF
 * draw from the same model (excursions/trend/model.py, trend_json): the series broken at gaps
 * and bad quality (never joined), the alert and action limits with their labels stacked
 * at the right edge, the shaded excursion or data gap, the peak, the moments the limit
 * was crossed and each level reached, a legend; times in the site's zone, zone named.
 *
 * Zoom: drag across the plot, or the wheel; pan: Shift-drag, the arrow buttons or keys;
 * "Reset zoom" shows the whole window again. No inline script or style (CSP).
 */
(function () {
  "use strict";

  var figure = document.getElementById("trend-chart");
  if (!figure || typeof window.uPlot !== "function" || typeof window.fetch !== "function") {
    return;
  }
  var uPlot = window.uPlot;
  var baseUrl = figure.getAttribute("data-trend-url");
  var toolbar = document.getElementById("trend-toolbar");
  var staticChart = document.getElementById("trend-static");
  var plotBox = document.getElementById("trend-plot");
  var legendBox = document.getElementById("trend-legend");
  var captionBox = document.getElementById("trend-caption");
  var status = document.getElementById("trend-status");
  var help = document.getElementById("trend-help");
  if (!baseUrl || !toolbar || !staticChart || !plotBox || !legendBox || !captionBox) {
    return;
  }
  var FONT = "Helvetica, Arial, sans-serif";
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
    "Dec"];
  var WINDOW_NAMES = { record: "record window", "6h": "±6 h", "24h": "±24 h", "3d": "±3 days" };
  var chart = null;
  var data = null;
  var loading = 0;

  // --- writing values and times (as envmon.display does) --------------------------------

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function offsetAt(t) {
    var found = data.offsets[0];
    for (var i = 1; i < data.offsets.length; i++) {
      if (data.offsets[i][0] <= t) {
        found = data.offsets[i];
      }
    }
    return found;
  }

  function wall(t) {
    var o = offsetAt(t);
    var w = new Date((t + o[1]) * 1000);
    return {
      date: w.getUTCFullYear() + "-" + pad(w.getUTCMonth() + 1) + "-" + pad(w.getUTCDate()),
      day: pad(w.getUTCDate()) + " " + MONTHS[w.getUTCMonth()],
      hm: pad(w.getUTCHours()) + ":" + pad(w.getUTCMinutes()),
      s: pad(w.getUTCSeconds()),
      zone: o[2]
    };
  }

  /** A time as Display.time writes it: "2026-01-05 09:00:12 CET". */
  function fullTime(t) {
    var w = wall(t);
    return w.date + " " + w.hm + ":" + w.s + " " + w.zone;
  }

  /** A value as envmon.display.format_value writes it (minus sign, thousands commas). */
  function number(v, digits) {
    var dec = digits;
    if (dec === null || dec === undefined) {
      var size = Math.abs(v);
      dec = size >= 1000 || data.count ? 0 : size >= 10 ? 1 : 2;
    }
    var text = v.toLocaleString("en-US", {
      minimumFractionDigits: dec,
      maximumFractionDigits: dec
    });
    if (Number(text.replace(/,/g, "")) === 0) {
      text = text.replace("-", "");
    }
    return text.replace("-", "\u2212");
  }

  function quantity(v) {
    var text = number(v, data.digits);
    return data.unit ? text + " " + data.unit : text;
  }

  // --- layout shared with the SVG (excursions/trend/layout.py: spread, event_label_positions) ---

  /** Positions near `wanted`, at least `gap` apart, inside [low, high], order kept. */
  function spread(wanted, gap, low, high) {
    var order = wanted.map(function (_, i) { return i; });
    order.sort(function (a, b) { return wanted[a] - wanted[b]; });
    var placed = [];
    var previous = -Infinity;
    order.forEach(function (i) {
      placed[i] = Math.max(Math.min(Math.max(wanted[i], low), high), previous + gap);
      previous = placed[i];
    });
    if (order.length && placed[order[order.length - 1]] > high) {
      var shift = placed[order[order.length - 1]] - high;
      var floor = low;
      order.forEach(function (i) {
        placed[i] = Math.max(placed[i] - shift, floor);
        floor = placed[i] + gap;
      });
    }
    return placed;
  }

  // --- drawing ---------------------------------------------------------------------------

  function ratio() {
    return window.devicePixelRatio || 1;
  }

  function font(ctx, size, bold) {
    ctx.font = (bold ? "bold " : "") + Math.round(size * ratio()) + "px " + FONT;
  }

  function inView(u, t) {
    return t >= u.scales.x.min && t <= u.scales.x.max;
  }

  function drawSpan(u) {
    var span = data.span;
    if (!span) {
      return;
    }
    var box = u.bbox;
    var x1 = Math.max(u.valToPos(span.start, "x", true), box.left);
    var x2 = Math.min(u.valToPos(span.end, "x", true), box.left + box.width);
    if (x2 <= x1) {
      return;
    }
    var ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = span.kind === "data_gap" ? data.colours.data_gap : data.colours.excursion;
    ctx.fillRect(x1, box.top, x2 - x1, box.height);
    ctx.restore();
  }

  function drawMarks(u) {
    var ctx = u.ctx;
    var box = u.bbox;
    var r = ratio();
    var right = box.left + box.width;
    ctx.save();
    ctx.beginPath();
    ctx.rect(box.left, box.top, box.width, box.height);
    ctx.clip();

    // The moments: a dashed vertical line each, the short name at the top, stacked in rows.
    var rows = [];
    font(ctx, 10.5, false);
    data.marks.forEach(function (mark) {
      if (!inView(u, mark.t)) {
        return;
      }
      var colour = data.colours.marks[mark.kind];
      var x = Math.round(u.valToPos(mark.t, "x", true)) + 0.5;
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.25 * r;
      ctx.setLineDash(mark.kind === "crossed" || mark.kind === "stale"
        ? [2 * r, 2 * r] : [5 * r, 3 * r]);
      ctx.beginPath();
      ctx.moveTo(x, box.top);
      ctx.lineTo(x, box.top + box.height);
      ctx.stroke();
      ctx.setLineDash([]);
      var width = ctx.measureText(mark.short).width;
      var toRight = x + 4 * r + width <= right;
      var begin = toRight ? x + 4 * r : x - 4 * r - width;
      var row = 0;
      while (row < rows.length && begin < rows[row] + 6 * r) {
        row++;
      }
      rows[row] = begin + width;
      ctx.fillStyle = colour;
      ctx.textAlign = toRight ? "left" : "right";
      ctx.textBaseline = "top";
      ctx.fillText(mark.short, toRight ? x + 4 * r : x - 4 * r, box.top + (4 + 14 * row) * r);
    });

    // The limits: a line each (action solid red, alert dashed amber).
    data.limits.forEach(function (limit) {
      var y = Math.round(u.valToPos(limit.value, "y", true)) + 0.5;
      ctx.strokeStyle = limit.kind === "action" ? data.colours.action : data.colours.alert;
      ctx.lineWidth = 1.5 * r;
      ctx.setLineDash(limit.kind === "action" ? [] : [7 * r, 4 * r]);
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
    });
    ctx.setLineDash([]);

    // Bad-quality readings: a cross each (on the plot's edge when out of range or empty).
    ctx.strokeStyle = data.colours.bad_quality;
    ctx.lineWidth = 1.25 * r;
    var arm = 3.5 * r;
    data.bad_quality.forEach(function (bad) {
      if (!inView(u, bad.t)) {
        return;
      }
      var x = u.valToPos(bad.t, "x", true);
      var y = bad.v === null ? box.top + box.height
        : Math.min(Math.max(u.valToPos(bad.v, "y", true), box.top), box.top + box.height);
      ctx.beginPath();
      ctx.moveTo(x - arm, y - arm);
      ctx.lineTo(x + arm, y + arm);
      ctx.moveTo(x - arm, y + arm);
      ctx.lineTo(x + arm, y - arm);
      ctx.stroke();
    });

    // The peak: ringed and labelled, the label on whichever side keeps it inside.
    var peak = data.peak;
    if (peak && inView(u, peak.t)) {
      var px = u.valToPos(peak.t, "x", true);
      var py = u.valToPos(peak.value, "y", true);
      ctx.strokeStyle = data.colours.peak;
      ctx.lineWidth = 1.75 * r;
      ctx.beginPath();
      ctx.arc(px, py, 5 * r, 0, 2 * Math.PI);
      ctx.stroke();
      font(ctx, 11.5, true);
      var label = peak.label;
      var lw = ctx.measureText(label).width;
      var left = px + 9 * r + lw > right;
      ctx.textAlign = left ? "right" : "left";
      ctx.textBaseline = py - box.top < 22 * r ? "top" : "bottom";
      var ly = py - box.top < 22 * r ? py + 6 * r : py - 6 * r;
      var lx = left ? px - 9 * r : px + 9 * r;
      backing(ctx, lx, ly, lw, left ? "right" : "left", ctx.textBaseline, 11.5);
      ctx.fillStyle = data.colours.peak;
      ctx.fillText(label, lx, ly);
    }

    // The limits' labels: at the right edge, just above (a low limit: below) the line,
    // stacked when lines are close so that no two overlap.
    font(ctx, 11, false);
    var size = 11 * r;
    var wanted = data.limits.map(function (limit) {
      var y = u.valToPos(limit.value, "y", true);
      return limit.side === "high" ? y - 4 * r : y + 4 * r + size;
    });
    // Canvas y grows downward: spread the baselines in that direction.
    var placed = spread(wanted, size * 1.3, box.top + size + 2 * r, box.top + box.height - 3 * r);
    data.limits.forEach(function (limit, i) {
      var x = right - 6 * r;
      var w = ctx.measureText(limit.label).width;
      ctx.textAlign = "right";
      ctx.textBaseline = "alphabetic";
      backing(ctx, x, placed[i], w, "right", "alphabetic", 11);
      ctx.fillStyle = limit.kind === "action" ? data.colours.action : data.colours.alert;
      ctx.fillText(limit.label, x, placed[i]);
    });
    ctx.restore();
  }

  /** A light box behind a label, so that lines under it do not strike it through. */
  function backing(ctx, x, y, width, align, baseline, size) {
    var r = ratio();
    var h = size * r * 1.25;
    var left = align === "right" ? x - width : x;
    var top = baseline === "top" ? y - 2 * r : baseline === "bottom" ? y - h + 1 * r
      : y - size * r;
    ctx.save();
    ctx.fillStyle = "rgba(255, 255, 255, 0.88)";
    ctx.fillRect(left - 3 * r, top, width + 6 * r, h);
    ctx.restore();
  }

  // --- the chart -------------------------------------------------------------------------

  function columns() {
    var t = data.series.t.slice();
    var v = data.series.v.slice();
    // The window's ends as empty points, so that the x range is the window, not the data.
    if (!t.length || t[0] > data.x_range[0]) {
      t.unshift(data.x_range[0]);
      v.unshift(null);
    }
    if (t[t.length - 1] < data.x_range[1]) {
      t.push(data.x_range[1]);
      v.push(null);
    }
    return [t, v];
  }

  function valueDecimals(step) {
    if (!(step > 0)) {
      return 0;
    }
    var exponent = Math.floor(Math.log10(step) + 1e-9);
    var mantissa = step / Math.pow(10, exponent);
    var extra = Math.abs(mantissa - 2.5) < 1e-6 ? 1 : 0;
    return Math.max(0, extra - exponent);
  }

  // One look for both axes; ``own`` adds or overrides what differs (label, ticks, size).
  function axis(own) {
    return Object.assign({
      labelSize: 22,
      font: "12px " + FONT,
      labelFont: "12px " + FONT,
      stroke: data.colours.text,
      grid: { stroke: data.colours.grid, width: 1 },
      ticks: { stroke: data.colours.axis, width: 1, size: 5 }
    }, own);
  }

  function timeLabels(u, splits) {
    var span = u.scales.x.max - u.scales.x.min;
    var previous = null;
    return splits.map(function (t) {
      var w = wall(t);
      var label = span > 3 * 86400 && w.hm === "00:00" ? w.day
        : previous === null || previous !== w.date ? w.day + " " + w.hm : w.hm;
      previous = w.date;
      return label;
    });
  }

  function size() {
    var width = Math.max(plotBox.clientWidth, 300);
    return { width: width, height: Math.round(Math.min(Math.max(width * 0.42, 280), 520)) };
  }

  function build() {
    if (chart) {
      chart.destroy();
      chart = null;
    }
    var dims = size();
    var tip = document.createElement("div");
    tip.className = "trend-tip";
    tip.hidden = true;
    var zoneName = data.zone + (data.offsets.length > 1 ? "" : ", " + data.offsets[0][2]);
    var opts = {
      width: dims.width,
      height: dims.height,
      title: data.title,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), data.zone); },
      legend: { show: false },
      cursor: {
        drag: { x: true, y: false, setScale: true },
        points: { size: 7 },
        y: false
      },
      scales: {
        x: { time: true },
        y: { auto: false, range: function () { return data.y_range.slice(); } }
      },
      axes: [
        axis({
          label: "Time (" + zoneName + ")",
          values: timeLabels,
          space: 70,
          size: 34
        }),
        axis({
          label: data.unit ? "Value (" + data.unit + ")" : "Value",
          size: function (u, values) {
            var longest = (values || []).reduce(function (m, s) {
              return Math.max(m, String(s).length);
            }, 4);
            return Math.ceil(longest * 7.2) + 16;
          },
          values: function (u, splits, _axis, _space, step) {
            var dec = valueDecimals(step);
            return splits.map(function (v) { return number(v, dec); });
          }
        })
      ],
      series: [
        {},
        {
          label: data.unit ? "value (" + data.unit + ")" : "value",
          stroke: data.colours.series,
          width: 1.5,
          spanGaps: false,
          points: { show: false }
        }
      ],
      hooks: {
        drawClear: [drawSpan],
        draw: [drawMarks],
        setScale: [function (u, key) {
          if (key === "x") {
            figure.setAttribute("data-x-min", String(u.scales.x.min));
            figure.setAttribute("data-x-max", String(u.scales.x.max));
          }
        }],
        setCursor: [function (u) { showTip(u, tip); }],
        ready: [function (u) {
          u.over.appendChild(tip);
          u.over.tabIndex = 0;
          u.over.setAttribute("aria-label", "Trend chart: drag to zoom, arrow keys to pan");
        }]
      }
    };
    plotBox.textContent = "";
    chart = new uPlot(opts, columns(), plotBox);
    attachGestures(chart);
    figure.setAttribute("data-x-min", String(chart.scales.x.min));
    figure.setAttribute("data-x-max", String(chart.scales.x.max));
  }

  function showTip(u, tip) {
    var idx = u.cursor.idx;
    var left = u.cursor.left;
    if (idx === null || idx === undefined || left === undefined || left < 0) {
      tip.hidden = true;
      return;
    }
    var t = u.posToVal(left, "x");
    var value = u.data[1][idx];
    var lines = [fullTime(t)];
    if (value !== null && value !== undefined) {
      lines = [fullTime(u.data[0][idx]), quantity(value)];
    }
    var near = 6 / (u.bbox.width / ratio()) * (u.scales.x.max - u.scales.x.min);
    data.marks.forEach(function (mark) {
      if (Math.abs(mark.t - t) <= near) {
        lines.push(mark.label);
      }
    });
    if (data.peak && Math.abs(data.peak.t - t) <= near) {
      lines.push(data.peak.label + " at " + fullTime(data.peak.t));
    }
    tip.textContent = "";
    lines.forEach(function (line, i) {
      var row = document.createElement("div");
      row.textContent = line;
      if (i === 0) {
        row.className = "trend-tip-time";
      }
      tip.appendChild(row);
    });
    tip.hidden = false;
    var width = u.over.clientWidth;
    var x = left + 14;
    if (x + tip.offsetWidth > width) {
      x = left - 14 - tip.offsetWidth;
    }
    tip.style.left = Math.max(x, 0) + "px";
    tip.style.top = Math.max(Math.min(u.cursor.top - tip.offsetHeight - 10,
      u.over.clientHeight - tip.offsetHeight), 0) + "px";
  }

  // --- zoom and pan ----------------------------------------------------------------------

  function setRange(min, max) {
    var lo = data.x_range[0];
    var hi = data.x_range[1];
    var width = Math.min(max - min, hi - lo);
    width = Math.max(width, 60); // never narrower than a minute
    if (min < lo) {
      min = lo;
    }
    if (min + width > hi) {
      min = hi - width;
    }
    chart.setScale("x", { min: min, max: min + width });
  }

  function pan(fraction) {
    var min = chart.scales.x.min;
    var max = chart.scales.x.max;
    setRange(min + fraction * (max - min), max + fraction * (max - min));
  }

  function attachGestures(u) {
    u.over.addEventListener("wheel", function (e) {
      e.preventDefault();
      var min = u.scales.x.min;
      var max = u.scales.x.max;
      var at = u.posToVal(e.offsetX, "x");
      var factor = e.deltaY < 0 ? 0.8 : 1.25;
      setRange(at - (at - min) * factor, at + (max - at) * factor);
    }, { passive: false });
    var dragging = null;
    // Capture on the root: a Shift-drag pans and never reaches uPlot's zoom selection.
    u.root.addEventListener("mousedown", function (e) {
      if (!e.shiftKey || e.button !== 0) {
        return;
      }
      e.stopPropagation();
      e.preventDefault();
      dragging = { x: e.clientX, min: u.scales.x.min, max: u.scales.x.max };
    }, true);
    window.addEventListener("mousemove", function (e) {
      if (!dragging || chart !== u) {
        return;
      }
      var shift = (dragging.x - e.clientX) / u.over.clientWidth * (dragging.max - dragging.min);
      setRange(dragging.min + shift, dragging.max + shift);
    });
    window.addEventListener("mouseup", function () { dragging = null; });
    u.over.addEventListener("keydown", function (e) {
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        e.preventDefault();
        pan(e.key === "ArrowLeft" ? -0.25 : 0.25);
      }
    });
  }

  // --- legend, caption, status -----------------------------------------------------------

  function swatch(kind) {
    var span = document.createElement("span");
    span.className = "trend-swatch trend-swatch-" + kind.replace(/[^a-z_-]/g, "");
    var colours = data.colours;
    var colour = kind === "excursion" ? colours.excursion
      : kind === "data_gap" ? colours.data_gap
      : kind === "limit-alert" ? colours.alert
      : kind === "limit-action" ? colours.action
      : kind === "peak" ? colours.peak
      : kind === "bad-quality" ? colours.bad_quality
      : colours.marks[kind.replace("mark-", "")] || colours.text;
    if (kind === "excursion" || kind === "data_gap") {
      span.style.backgroundColor = colour;
    } else {
      span.style.borderColor = colour;
      span.style.color = colour;
    }
    span.setAttribute("aria-hidden", "true");
    return span;
  }

  function describe() {
    legendBox.textContent = "";
    data.legend.forEach(function (entry) {
      var item = document.createElement("li");
      item.appendChild(swatch(entry.kind));
      item.appendChild(document.createTextNode(entry.text));
      legendBox.appendChild(item);
    });
    captionBox.textContent = "";
    [data.caption, data.note, data.limits_note].forEach(function (text, i) {
      if (text) {
        var p = document.createElement("p");
        p.textContent = text;
        if (i > 0) {
          p.className = "trend-note";
        }
        captionBox.appendChild(p);
      }
    });
    figure.setAttribute("data-window", data.window);
    figure.setAttribute("data-points", String(data.points));
    figure.setAttribute("data-readings", String(data.readings));
    Array.prototype.forEach.call(toolbar.querySelectorAll("button[data-window]"), function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-window") === data.window));
    });
    if (status) {
      status.textContent = WINDOW_NAMES[data.window] + " · " + data.readings.toLocaleString("en-US")
        + " readings" + (data.decimated ? " (" + data.points.toLocaleString("en-US")
        + " drawn: each interval's minimum and maximum)" : "");
    }
  }

  function load(name) {
    var ticket = ++loading;
    if (status) {
      status.textContent = "loading " + (WINDOW_NAMES[name] || name) + "…";
    }
    figure.setAttribute("aria-busy", "true");
    fetch(baseUrl + "?window=" + encodeURIComponent(name), {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error(body && body.detail ? String(body.detail) : response.statusText);
        }
        return body;
      });
    }).then(function (body) {
      if (ticket !== loading) {
        return; // a newer request won
      }
      data = body.chart;
      staticChart.hidden = true;
      plotBox.hidden = false;
      legendBox.hidden = false;
      captionBox.hidden = false;
      if (help) {
        help.hidden = false;
      }
      describe();
      build();
      figure.setAttribute("data-state", "ready");
      figure.removeAttribute("aria-busy");
    }).catch(function (error) {
      if (ticket !== loading) {
        return;
      }
      figure.removeAttribute("aria-busy");
      figure.setAttribute("data-state", "error");
      if (status) {
        status.textContent = "The chart could not be loaded (" + error.message
          + "); the chart below is the record's window.";
      }
    });
  }

  toolbar.hidden = false;
  toolbar.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button") : null;
    if (!button) {
      return;
    }
    var name = button.getAttribute("data-window");
    if (name) {
      load(name);
    } else if (chart && button.id === "trend-reset") {
      setRange(data.x_range[0], data.x_range[1]);
    } else if (chart && button.id === "trend-pan-left") {
      pan(-0.25);
    } else if (chart && button.id === "trend-pan-right") {
      pan(0.25);
    }
  });
  if (typeof window.ResizeObserver === "function") {
    var pending = null;
    new window.ResizeObserver(function () {
      if (!chart || pending) {
        return;
      }
      pending = window.requestAnimationFrame(function () {
        pending = null;
        if (chart) {
          chart.setSize(size());
        }
      });
    }).observe(plotBox);
  }
  load("record");
})();
