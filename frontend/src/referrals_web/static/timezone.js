// The patient's time zone: an enhancement only. Without JavaScript the times are on Kyiv's clock
// and the form says so. With it, the form sends the browser's zone (the confirmation and the
// reminders then give the patient's own time), and the page is shown once more on that clock.
(function () {
  "use strict";
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone) { return; }
  var fields = document.querySelectorAll("input[name=time_zone]");
  for (var i = 0; i < fields.length; i++) { fields[i].value = zone; }
  var shown = document.querySelector("[data-time-zone]");
  if (shown && shown.getAttribute("data-time-zone") !== zone && !/[?&]tz=/.test(window.location.search) && window.URL) {
    var url = new URL(window.location.href);
    url.searchParams.set("tz", zone);
    window.location.replace(url.toString());
  }
})();
