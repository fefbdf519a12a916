// How the pages' scripts write numbers and lengths (as the server's pages do).
"use strict";
window.lullFormat = (function () {
  const none = (n) => n === null || n === undefined;
  return {
    none: none,
    number: (n) => (none(n) ? "–" : Number(n).toLocaleString("en-US")),
    decimal: (n) => (none(n) ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 })),
    // 12 -> "12s", 754 -> "12m 34s", 7260 -> "2h 1m"
    length: function (s) {
      if (none(s)) return "–";
      s = Math.floor(Number(s));
      if (s < 60) return s + "s";
      if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
      return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    },
  };
})();
