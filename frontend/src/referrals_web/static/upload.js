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

  enhance();
})();
