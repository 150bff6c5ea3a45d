// The excursion list refreshes itself: every 10 s it asks for the same page (same
// filters, same page number) and replaces the table body, the count and the pager.
// The request carries X-Envmon-Poll so that it does not keep the session alive; it
// pauses while the tab is hidden. When the session has ended it stops and says so.
(function () {
  "use strict";
  var updated = document.getElementById("list-updated");
  var body = document.getElementById("records-body");
  if (!updated || !body) {
    return;
  }
  var periodMs = (Number(updated.getAttribute("data-poll-s")) || 10) * 1000;
  var timer = null;
  var busy = false;
  var ended = false;

  function replace(id, fresh) {
    var old = document.getElementById(id);
    var next = fresh.getElementById(id);
    if (old && next) {
      old.replaceWith(document.importNode(next, true));
    }
  }

  function stop(message) {
    ended = true;
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
    var note = document.getElementById("list-updated");
    if (note && message) {
      note.textContent = message;
      note.classList.add("stale");
    }
  }

  function refresh() {
    if (busy || ended || document.hidden) {
      return;
    }
    busy = true;
    fetch(window.location.pathname + window.location.search, {
      credentials: "same-origin",
      headers: { "X-Envmon-Poll": "1" },
      cache: "no-store",
    })
      .then(function (response) {
        var path = new URL(response.url).pathname;
        if (response.redirected && path === "/login") {
          stop("Your session has ended: reload the page to sign in again.");
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ["records-body", "record-count", "list-updated", "pager"].forEach(function (id) {
          replace(id, fresh);
        });
      })
      .catch(function () {
        var note = document.getElementById("list-updated");
        if (note) {
          note.textContent = "Could not refresh the list; trying again in 10 s.";
          note.classList.add("stale");
        }
      })
      .finally(function () {
        busy = false;
      });
  }

  function start() {
    if (timer === null && !ended) {
      timer = window.setInterval(refresh, periodMs);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (timer !== null) {
        window.clearInterval(timer);
        timer = null;
      }
    } else {
      refresh();
      start();
    }
  });
  start();
})();
