// Draws every chart of a page from its JSON block. The pages carry no inline script (the Content Security
// Policy is script-src 'self'): each chart is a <script type="application/json" class="chart-data"
// data-chart="ID"> holding {"data": [...], "layout": {...}}, drawn by plotly.js into the element #ID.
(function () {
  "use strict";
  function draw() {
    if (!window.Plotly) { return; }
    var blocks = document.querySelectorAll("script.chart-data[type='application/json']");
    Array.prototype.forEach.call(blocks, function (block) {
      var target = document.getElementById(block.getAttribute("data-chart"));
      if (!target) { return; }
      var figure = JSON.parse(block.textContent);
      window.Plotly.newPlot(target, figure.data, figure.layout, {
        responsive: true, displaylogo: false, scrollZoom: false
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
