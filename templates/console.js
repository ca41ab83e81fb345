// The console's live parts, without a library. An element with data-live="URL" is rendered
// again by the server (GET URL, the same template as the page) whenever the page's live feed
// (<body data-events="URL">, server-sent events) reports a change, and every 10 s for its
// timers. A part the keyboard is in waits until focus leaves it, so a refresh never takes
// a button from under the user. data-trigger on the part says what refreshed it last.
(function () {
  "use strict";
  // A <select data-hint-target="ID"> shows the chosen option's data-hint in #ID at once
  // (the ATM categories' script hints).
  Array.prototype.forEach.call(document.querySelectorAll("select[data-hint-target]"), function (sel) {
    var target = document.getElementById(sel.getAttribute("data-hint-target"));
    function show() {
      var opt = sel.options[sel.selectedIndex];
      target.textContent = (opt && opt.getAttribute("data-hint")) || "";
    }
    sel.addEventListener("change", show);
    show();
  });
  // The hold timer of the call in hand (the rule of 003_…: at most 2 minutes on hold). The
  // start is kept in session storage by call, so the live refreshes of the part, which
  // replace its markup, do not reset it.
  function holdTick() {
    var box = document.querySelector("[data-hold-key]");
    if (!box) return;
    var key = "hold:" + box.getAttribute("data-hold-key");
    var since = sessionStorage.getItem(key);
    var button = box.querySelector("[data-hold-toggle]");
    var timer = document.getElementById("hold-timer");
    var warning = document.getElementById("hold-warning");
    if (!since) {
      button.textContent = "Удержание";
      timer.textContent = "";
      warning.hidden = true;
      return;
    }
    var s = Math.floor((Date.now() - Number(since)) / 1000);
    button.textContent = "Вернуться к клиенту";
    timer.textContent = "на удержании " + Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
    warning.hidden = s < Number(box.getAttribute("data-hold-warn-s"));
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-hold-toggle]");
    if (!button) return;
    var key = "hold:" + button.closest("[data-hold-key]").getAttribute("data-hold-key");
    if (sessionStorage.getItem(key)) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, String(Date.now()));
    holdTick();
  });
  setInterval(holdTick, 500);
  holdTick();

  var parts = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
  if (parts.length === 0) return;
  var pending = null;
  var trigger = "timer";

  function focusedIn(el) {
    return el.contains(document.activeElement) && document.activeElement !== document.body;
  }

  function refresh() {
    pending = null;
    var why = trigger;
    trigger = "timer";
    parts.forEach(function (el) {
      if (focusedIn(el)) {
        soon(why, 1000);
        return;
      }
      fetch(el.getAttribute("data-live"), { credentials: "same-origin", redirect: "manual" })
        .then(function (r) {
          if (r.status !== 200) {
            // The session ended: the page itself goes to the login.
            if (r.type === "opaqueredirect" || r.status === 401 || r.status === 403) location.reload();
            return null;
          }
          return r.text();
        })
        .then(function (html) {
          if (html === null) return;
          // The keyboard may have come in while the answer was on its way.
          if (focusedIn(el)) {
            soon(why, 1000);
            return;
          }
          el.innerHTML = html;
          el.setAttribute("data-trigger", why);
          el.setAttribute("data-updated", String(Date.now()));
        })
        .catch(function () {});
    });
  }

  function soon(why, delay) {
    if (why === "event") trigger = "event";
    if (pending !== null) return;
    pending = setTimeout(refresh, delay);
  }

  var feed = document.body.getAttribute("data-events");
  if (feed) {
    var source = new EventSource(feed);
    source.onopen = function () { document.body.setAttribute("data-feed", "open"); };
    var kinds = ["call_started", "call_stage", "call_ended", "operator", "queue",
                 "transcription", "ticket", "ticket_alert", "alert", "lagged", "message"];
    kinds.forEach(function (k) {
      source.addEventListener(k, function () { soon("event", 50); });
    });
  }
  setInterval(function () { soon("timer", 0); }, 10000);
})();
