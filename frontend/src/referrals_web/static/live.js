// The status page, live: an enhancement only. Without JavaScript the page is whole and current
// each time it is opened. With it, the browser's own EventSource listens to this app's stream
// of the case (/case/status/events, Server-Sent Events, fed by the platform's stream of the
// case's timeline) and puts each region the server rendered anew in place: no polling, no
// reload. EventSource reconnects by itself, sending the last event's id, so nothing is missed.
(function () {
  "use strict";
  var live = document.querySelector("[data-live-events]");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-live-events"));
  function replace(id) {
    return function (event) {
      var region = document.getElementById(id);
      if (region) { region.innerHTML = event.data; }
    };
  }
  source.addEventListener("status", replace("case-status"));
  source.addEventListener("timeline", replace("timeline"));
  window.addEventListener("pagehide", function () { source.close(); });
})();
