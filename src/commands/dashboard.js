// nubes dashboard: sort the table by the clicked column (each cell carries its sort key
// in data-sort; empty keys sort last). Without JavaScript the table stays sorted by name.
// The order is kept in the address (#sort=expires, #sort=-activity for descending), so a
// sorted view can be bookmarked or shared.
(function () {
  "use strict";
  var table = document.getElementById("envs");
  if (!table) { return; }
  var heads = table.tHead.rows[0].cells;
  var body = table.tBodies[0];
  function key(row, col, numeric) {
    var v = row.cells[col].getAttribute("data-sort") || "";
    if (v === "") { return null; }
    return numeric ? Number(v) : v.toLowerCase();
  }
  function sortBy(col, dir) {
    var th = heads[col];
    var numeric = th.getAttribute("data-type") === "num";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col, numeric), y = key(b, col, numeric);
      if (x === null || y === null) {
        if (x === y) { return 0; }
        return x === null ? 1 : -1;
      }
      if (x < y) { return -dir; }
      if (x > y) { return dir; }
      return 0;
    });
    for (var i = 0; i < rows.length; i++) { body.appendChild(rows[i]); }
    for (var j = 0; j < heads.length; j++) { heads[j].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    return (dir === 1 ? "" : "-") + th.getAttribute("data-key");
  }
  for (var c = 0; c < heads.length; c++) {
    (function (col) {
      var button = heads[col].querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var dir = heads[col].getAttribute("aria-sort") === "ascending" ? -1 : 1;
        var order = sortBy(col, dir);
        if (window.history && history.replaceState) { history.replaceState(null, "", "#sort=" + order); }
      });
    })(c);
  }
  var wanted = /^#sort=(-?)([a-z]+)$/.exec(location.hash);
  if (wanted) {
    for (var k = 0; k < heads.length; k++) {
      if (heads[k].getAttribute("data-key") === wanted[2]) { sortBy(k, wanted[1] ? -1 : 1); }
    }
  }
})();
