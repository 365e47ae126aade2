// QR-Link v1 login page: animates the QR frames, follows the transaction by
// server-sent events (long-poll fallback) and completes when the phone approves.
(function () {
  "use strict";
  var root = document.getElementById("login");
  if (!root) return;
  document.body.classList.add("js");
  var base = root.dataset.base;
  var state = root.dataset.state;
  var img = document.getElementById("qr-img");
  var link = document.getElementById("app-link");
  var remaining = parseInt(root.dataset.remaining, 10) || 0;
  var done = false;

  function show(id, on) { var el = document.getElementById(id); if (el) el.hidden = !on; }
  function message(t) { document.getElementById("message").textContent = t; }

  function apply(s) {
    if (done) return;
    state = s.state;
    show("qr", state === "pending");
    show("scanned", state === "scanned");
    show("cancel", state === "pending" || state === "scanned");
    show("restart", state === "expired" || state === "denied" || state === "cancelled");
    if (state === "scanned" && s.number) {
      document.getElementById("number").textContent = String(s.number);
      message("已扫码，请在手机上选择与下方相同的数字并确认。");
    } else if (state === "approved") {
      done = true;
      message("手机已确认，正在登录……");
      document.getElementById("complete").submit();
    } else if (state === "denied") {
      done = true;
      if (s.reason === "card_invalid") {
        message("扫码所用的社保卡或电子社保卡状态异常（如已挂失、注销），无法登录。请到社保服务网点或在 App 中办理后再试。");
      } else if (s.reason === "wrong_number") {
        message("手机上选择的数字与本页面不一致，本次登录已取消。如果不是您本人扫码，请注意账户安全。");
      } else {
        message("登录已被拒绝。如果不是您本人操作，无需处理。");
      }
    } else if (state === "cancelled") {
      done = true; message("登录已取消。");
    } else if (state === "expired") {
      done = true; message("二维码已过期，请刷新二维码后重新扫码。");
    }
  }

  // draw renders a frame payload as an SVG data URI: one path of horizontal
  // runs of dark modules with a 4-module quiet zone, error correction M, the
  // same symbol the server's frame.png and ?image=svg give (static/qrcode.js).
  function draw(payload) {
    if (!img || !payload || typeof qrcode !== "function") return;
    var q = qrcode(0, "M");
    q.addData(payload, "Byte");
    q.make();
    var n = q.getModuleCount(), quiet = 4, size = n + 2 * quiet, d = "";
    for (var y = 0; y < n; y++) {
      for (var x = 0; x < n;) {
        if (!q.isDark(y, x)) { x++; continue; }
        var start = x;
        while (x < n && q.isDark(y, x)) x++;
        d += "M" + (start + quiet) + " " + (y + quiet) + "h" + (x - start) + "v1h-" + (x - start) + "z";
      }
    }
    var svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + size + " " + size +
      '" shape-rendering="crispEdges"><rect width="' + size + '" height="' + size +
      '" fill="#fff"/><path fill="#000" d="' + d + '"/></svg>';
    img.src = "data:image/svg+xml;base64," + btoa(svg);
    img.hidden = false;
  }

  function showFrame(payload) {
    draw(payload);
    if (link) link.href = payload;
  }

  // schedule shows the frames after the current one when each is due and
  // asks for more after the last.
  function schedule(upcoming, refreshMs) {
    (upcoming || []).forEach(function (u) {
      setTimeout(function () { if (!done && state === "pending") showFrame(u.payload); }, u.at_ms);
    });
    setTimeout(nextFrame, refreshMs);
  }

  function nextFrame() {
    if (done || state !== "pending") return;
    fetch(base + "/frame", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (f) {
        if (!f) { setTimeout(nextFrame, 2000); return; }
        showFrame(f.payload);
        schedule(f.upcoming, f.refresh_ms || f.next_ms);
      })
      .catch(function () { setTimeout(nextFrame, 2000); });
  }

  function poll() {
    if (done) return;
    fetch(base + "?wait=20", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) { apply(s); setTimeout(poll, (s.interval || 2) * 1000); })
      .catch(function () { setTimeout(poll, 3000); });
  }

  if (window.EventSource) {
    var es = new EventSource(base + "/events");
    es.addEventListener("state", function (e) { apply(JSON.parse(e.data)); if (done) es.close(); });
    es.onerror = function () { if (!done) { es.close(); poll(); } };
  } else {
    poll();
  }
  // The page came with the current frame and the ones after it: draw it,
  // show the others on schedule, fetch more after the last.
  if (img) {
    draw(img.dataset.payload);
    var upcoming = [];
    try { upcoming = JSON.parse(root.dataset.upcoming || "[]") || []; } catch (e) { upcoming = []; }
    schedule(upcoming, parseInt(root.dataset.refreshMs, 10) || parseInt(root.dataset.nextMs, 10) || 0);
  }
  setInterval(function () {
    if (remaining > 0) { remaining--; var el = document.getElementById("remaining"); if (el) el.textContent = remaining; }
    if (remaining === 0 && state === "pending" && !done) apply({ state: "expired" });
  }, 1000);
})();
