// Upload progress: an enhancement only. Without JavaScript the form posts as usual.
(function () {
  "use strict";
  if (!window.XMLHttpRequest || !window.FormData || !window.DOMParser) { return; }

  function replacePage(html, url) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    document.title = doc.title;
    document.body.replaceWith(doc.body);
    if (url && window.history && window.history.replaceState) { window.history.replaceState(null, "", url); }
    // As a page loaded anew: from its top, where the notice or the error summary is (the
    // person had scrolled down to the upload button).
    window.scrollTo(0, 0);
    var summary = document.getElementById("error-summary");
    (summary || document.getElementById("main")).focus();
    enhance();
  }

  function enhance() {
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var box = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-progress-bar");
  var text = document.getElementById("upload-progress-text");
  var button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", function (event) {
    var file = form.querySelector("input[type=file]");
    if (!file || !file.files || !file.files.length) { return; } // let the server say what is missing
    var from = parseInt(form.getAttribute("data-resumable-from") || "0", 10);
    if (from && file.files[0].size >= from && window.fetch && window.Blob && Blob.prototype.slice) {
      event.preventDefault();
      inParts(form, file.files[0], { box: box, bar: bar, text: text, button: button });
      return;
    }
    event.preventDefault();
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "text/html");
    request.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) { return; }
      var percent = Math.round((e.loaded / e.total) * 100);
      bar.value = percent;
      text.textContent = percent + " %";
    });
    request.addEventListener("load", function () {
      // The page the upload led to (the documents with the new one, or the form with its
      // errors): shown as it came, so its one-time notice is not lost to a second request.
      replacePage(request.responseText, request.status < 400 ? request.responseURL : null);
    });
    request.addEventListener("error", function () {
      box.hidden = true;
      button.disabled = false;
      text.textContent = "";
      form.submit(); // the connection dropped: try once more the plain way
    });
    box.hidden = false;
    button.disabled = true;
    button.textContent = button.getAttribute("data-uploading-text") || button.textContent;
    request.send(new FormData(form));
  });
  }

  // ------------------------------------------------------------- a large file, in parts
  // The app opens an upload at records and passes each part on; after a dropped connection the
  // script asks which parts arrived and goes on from the first missing one. The upload's id is
  // kept in sessionStorage, so a reload of the page resumes the same file too. `data-uploads`
  // names where the app takes the parts (a patient's document, or a center's opinion, whose form
  // says `data-then="submit"`: once the file is stored, the form is sent without it).

  function inParts(form, file, ui) {
    function field(name) {
      var input = form.querySelector("[name=" + name + "]");
      return input ? input.value : "";
    }
    var base = form.getAttribute("data-uploads");
    var csrf = field("csrf_token");
    var info = form.getAttribute("data-for") === "information" ? "?for=information" : "";
    var memo = "upload:" + base + ":" + file.name + ":" + file.size + ":" + file.lastModified + ":" + field("kind");
    var lastSaid = -1;
    var waited = 0;

    function say(message) { ui.text.textContent = message; }

    function show(done) {
      var percent = Math.floor((done / file.size) * 100);
      ui.bar.value = percent;
      // Spoken at every tenth, not at every event (aria-live would chatter).
      if (Math.floor(percent / 10) !== lastSaid || done === file.size) {
        lastSaid = Math.floor(percent / 10);
        var mb = function (n) { return (n / 1048576).toFixed(1); };
        say(percent + " % – " + (form.getAttribute("data-progress-text") || "{done} / {total}")
          .replace("{done}", mb(done)).replace("{total}", mb(file.size)));
      }
    }

    function fail(message) {
      ui.button.disabled = false;
      say(message || form.getAttribute("data-failed-text"));
    }

    function call(method, url, body, headers) {
      var sent = { "X-CSRF-Token": csrf, "Accept": "application/json" };
      for (var k in headers || {}) { sent[k] = headers[k]; }
      return fetch(url, { method: method, headers: sent, body: body, credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return { status: r.status, body: j }; }); });
    }

    function sendPart(upload, number) {
      // XMLHttpRequest, for the progress of the part's own bytes.
      return new Promise(function (resolve, reject) {
        var start = (number - 1) * upload.part_size;
        var blob = file.slice(start, Math.min(start + upload.part_size, file.size));
        var request = new XMLHttpRequest();
        request.open("PUT", base + "/" + upload.id + "/parts/" + number);
        request.setRequestHeader("X-CSRF-Token", csrf);
        request.setRequestHeader("Content-Type", "application/octet-stream");
        request.upload.addEventListener("progress", function (e) { show(start + e.loaded); });
        request.addEventListener("load", function () {
          var body = {};
          try { body = JSON.parse(request.responseText); } catch (e) { /* a proxy's page */ }
          if (request.status === 200) { resolve(body); }
          else if (request.status >= 500 || request.status === 409 && body && !body.message) { reject("retry"); }
          else { reject(body.message || ""); }
        });
        request.addEventListener("error", function () { reject("retry"); });
        request.addEventListener("abort", function () { reject("retry"); });
        request.send(blob);
      });
    }

    function resume(upload) {
      // After a dropped connection: wait (longer each time), then ask where to go on from.
      waited = Math.min(waited ? waited * 2 : 1000, 30000);
      say(form.getAttribute("data-resuming-text"));
      return new Promise(function (r) { setTimeout(r, waited); })
        .then(function () { return call("GET", base + "/" + upload.id); })
        .then(function (r) {
          if (r.status !== 200) { return Promise.reject(r.body.message || ""); }
          return r.body;
        }, function () { return resume(upload); });
    }

    function next(upload) {
      if (!upload.next_part) {
        return call("POST", base + "/" + upload.id + "/complete" + info).then(function (r) {
          if (r.status === 200 || r.status === 201) {
            sessionStorage.removeItem(memo);
            if (form.getAttribute("data-then") === "submit") {
              // The file is stored (the server keeps it for this form): the rest of the form
              // goes the plain way, without the file.
              form.querySelector("input[type=file]").value = "";
              form.submit();
              return;
            }
            window.location.assign(r.body.redirect);
            return;
          }
          sessionStorage.removeItem(memo);
          fail(r.body.message);
        }, function () { return resume(upload).then(next, fail); });
      }
      show(upload.received_bytes || (upload.next_part - 1) * upload.part_size);
      return sendPart(upload, upload.next_part).then(function (view) {
        waited = 0;
        return next(view);
      }, function (why) {
        if (why !== "retry") { sessionStorage.removeItem(memo); return fail(why); }
        return resume(upload).then(next, fail);
      });
    }

    ui.box.hidden = false;
    ui.button.disabled = true;
    ui.bar.value = 0;
    var known = sessionStorage.getItem(memo);
    var opened = known
      ? call("GET", base + "/" + known).then(function (r) { return r.status === 200 && r.body.state === "open" ? r.body : null; })
      : Promise.resolve(null);
    opened.then(function (upload) {
      if (upload) { return upload; }
      var key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
      return call("POST", base, JSON.stringify({
        kind: field("kind"), translation_of: field("translation_of") || null,
        file_name: file.name, size_bytes: file.size
      }), { "Content-Type": "application/json", "Idempotency-Key": key }).then(function (r) {
        if (r.status !== 200 && r.status !== 201) { return Promise.reject(r.body.message || ""); }
        sessionStorage.setItem(memo, r.body.id);
        return r.body;
      });
    }).then(next).catch(function (why) { fail(typeof why === "string" ? why : ""); });
  }

  enhance();
})();
