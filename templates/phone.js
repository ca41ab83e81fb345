// The browser phone (issue 21): the operator's page as a phone, over WebRTC. Signalling
// is the console's own: the SDP offer and the buttons are POSTed with the session's CSRF
// token, and the calls' events arrive as server-sent events. The hotline is ICE-lite on
// one host candidate (in its answer), so nothing is trickled. The microphone is asked for
// only when the operator switches the phone on, and its track is enabled only in a call.
(function () {
  "use strict";
  var box = document.getElementById("webphone");
  var onButton = document.getElementById("phone-on");
  if (!box || !onButton) return;
  var csrf = box.getAttribute("data-csrf");
  var $ = function (id) { return document.getElementById(id); };
  var pc = null, mic = null, events = null, audio = null, leg = null;
  var ringer = null, timer = null, meters = null, muted = false;
  // The connection the hotline named in its answer: «off» ends only that one, so a
  // window that lost the phone to another cannot switch the other off.
  var connection = null;
  // Read by the browser tests: the two sides' analysers.
  var phone = window.hotlinePhone = { mic: null, remote: null, ring: null, calls: 0 };

  function post(action, fields) {
    var body = new URLSearchParams(fields || {});
    body.set("csrf", csrf);
    return fetch(action, { method: "POST", body: body, credentials: "same-origin" });
  }
  function act(name, extra) {
    var f = { action: name };
    if (leg !== null) f.leg = String(leg);
    for (var k in extra || {}) f[k] = extra[k];
    return post("/operator/phone/action", f);
  }
  function state(text) { $("phone-state").textContent = text; }
  function show(id, on) { $(id).hidden = !on; }

  function level(analyser) {
    if (!analyser) return 0;
    var data = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(data);
    var sum = 0;
    for (var i = 0; i < data.length; i++) sum += data[i] * data[i];
    return Math.min(1, Math.sqrt(sum / data.length) * 4);
  }
  function analyse(stream) {
    var a = audio.createAnalyser();
    a.fftSize = 2048;
    audio.createMediaStreamSource(stream).connect(a);
    return a;
  }

  // Ring tone: 425 Hz, 1 s on and 4 s off (the Russian ring-back cadence).
  function ring(on) {
    if (ringer) { clearInterval(ringer.every); ringer.osc.stop(); ringer = null; }
    phone.ring = null;
    if (!on || !audio) return;
    var osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 425;
    gain.gain.value = 0;
    osc.connect(gain).connect(audio.destination);
    // What the operator hears, for the meters' kind of check (and the tests).
    phone.ring = audio.createAnalyser();
    phone.ring.fftSize = 2048;
    gain.connect(phone.ring);
    osc.start();
    var beat = function () {
      gain.gain.setValueAtTime(0.2, audio.currentTime);
      gain.gain.setValueAtTime(0, audio.currentTime + 1);
    };
    beat();
    ringer = { osc: osc, every: setInterval(beat, 5000) };
  }

  function talking(on) {
    if (mic) mic.getAudioTracks().forEach(function (t) { t.enabled = on; });
    clearInterval(timer);
    show("phone-call", on);
    if (!on) return;
    var since = Date.now();
    timer = setInterval(function () {
      var s = Math.floor((Date.now() - since) / 1000);
      $("phone-timer").textContent = Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
    }, 500);
  }

  var why = {
    operator: "вы завершили звонок", caller: "клиент завершил звонок",
    cancelled: "клиент не дождался или звонок передан другому", declined: "вы отклонили звонок",
    connection_lost: "связь с браузером потеряна", signed_out: "телефон выключен",
    replaced: "телефон включён в другой вкладке", failed: "звонок не удался"
  };
  function onEvent(e) {
    var ev = JSON.parse(e.data);
    if (ev.type === "connected") {
      state("включён");
      show("phone-on", false);
      show("phone-off", true);
    } else if (ev.type === "ring") {
      leg = ev.leg;
      $("ring-from").textContent = ev.name ? ev.name + " (" + ev.number + ")" : ev.number;
      show("phone-ring", true);
      show("phone-ended", false);
      ring(true);
    } else if (ev.type === "answered") {
      leg = ev.leg;
      ring(false);
      show("phone-ring", false);
      phone.calls += 1;
      talking(true);
    } else if (ev.type === "ended") {
      if (leg !== ev.leg) return;
      leg = null;
      ring(false);
      show("phone-ring", false);
      talking(false);
      $("phone-ended").textContent = "Звонок завершён: " + (why[ev.why] || ev.why);
      show("phone-ended", true);
    } else if (ev.type === "muted") {
      muted = ev.on;
      $("phone-mute").textContent = muted ? "Включить микрофон" : "Выключить микрофон";
    } else if (ev.type === "closed") {
      off("выключен (" + (why[ev.why] || ev.why) + ")");
    }
  }

  function off(text) {
    ring(false);
    talking(false);
    show("phone-ring", false);
    if (events) { events.close(); events = null; }
    if (pc) { pc.close(); pc = null; }
    if (mic) { mic.getTracks().forEach(function (t) { t.stop(); }); mic = null; }
    clearInterval(meters);
    leg = null;
    connection = null;
    muted = false;
    $("phone-mute").textContent = "Выключить микрофон";
    state(text);
    show("phone-on", true);
    show("phone-off", false);
  }

  async function on() {
    show("mic-warning", false);
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (err) {
      show("mic-warning", true);
      state("выключен: нет микрофона");
      return;
    }
    talking(false);
    audio = audio || new AudioContext();
    phone.mic = analyse(mic);
    events = new EventSource("/operator/phone/events");
    events.addEventListener("phone", onEvent);
    pc = new RTCPeerConnection({ iceServers: [] });
    mic.getAudioTracks().forEach(function (t) { pc.addTrack(t, mic); });
    pc.ontrack = function (e) {
      var remote = e.streams[0] || new MediaStream([e.track]);
      $("phone-audio").srcObject = remote;
      phone.remote = analyse(remote);
    };
    pc.onconnectionstatechange = function () {
      if (pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
        off("выключен (соединение прервано)");
      }
    };
    meters = setInterval(function () {
      $("mic-level").value = level(phone.mic);
      $("remote-level").value = level(phone.remote);
    }, 200);
    state("подключается…");
    await pc.setLocalDescription(await pc.createOffer());
    var r = await post("/operator/phone/offer", { sdp: pc.localDescription.sdp });
    if (!r.ok) {
      off("ошибка: " + (await r.text()));
      return;
    }
    connection = r.headers.get("X-Phone-Connection");
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  }

  onButton.addEventListener("click", function () { on(); });
  function offFields() { return connection ? { connection: connection } : {}; }
  $("phone-off").addEventListener("click", function () { act("off", offFields()); off("выключен"); });
  $("phone-answer").addEventListener("click", function () { act("answer"); });
  $("phone-decline").addEventListener("click", function () { act("decline"); });
  $("phone-hangup").addEventListener("click", function () { act("hangup"); });
  $("phone-mute").addEventListener("click", function () { act(muted ? "unmute" : "mute"); });
  // The tab closes: the call ends at once rather than when ICE notices.
  window.addEventListener("pagehide", function () {
    if (!pc) return;
    var body = new URLSearchParams(offFields());
    body.set("csrf", csrf);
    body.set("action", "off");
    navigator.sendBeacon("/operator/phone/action", body);
  });
})();
