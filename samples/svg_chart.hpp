// A small SVG line chart for the samples: titled panels with axes, ticks, gridlines, a legend and one
// polyline per series. Not part of the library.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

namespace samples {

struct Series {
  std::string name, color;
  std::vector<double> y;  // one value per x = 1, 2, ...
};

struct Panel {
  std::string title, y_label;
  std::vector<Series> series;
  bool percent = false;
};

// Panels side by side, x = epoch.
inline void write_svg_chart(const std::string& path, const std::vector<Panel>& panels) {
  const double w = 460, h = 320, left = 62, right = 16, top = 40, bottom = 48;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      w * static_cast<double>(panels.size()), h);
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    const double x0 = w * static_cast<double>(p) + left, x1 = w * static_cast<double>(p + 1) - right;
    const double y0 = h - bottom, y1 = top;
    double lo = INFINITY, hi = -INFINITY;
    std::size_t n = 0;
    for (const Series& s : panel.series) {
      for (const double v : s.y) lo = std::min(lo, v), hi = std::max(hi, v);
      n = std::max(n, s.y.size());
    }
    if (n == 0) continue;
    const double pad = (hi - lo) * 0.08 + 1e-9;
    lo -= pad;
    hi += pad;
    auto px = [&](double i) { return n == 1 ? (x0 + x1) / 2 : x0 + (x1 - x0) * (i - 1) / static_cast<double>(n - 1); };
    auto py = [&](double v) { return y0 - (y0 - y1) * (v - lo) / (hi - lo); };
    svg += fmt::format("<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                       (x0 + x1) / 2, panel.title);
    for (int t = 0; t <= 5; ++t) {  // horizontal gridlines and y ticks
      const double v = lo + (hi - lo) * t / 5, y = py(v);
      svg += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n", x0, y, x1, y);
      svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" fill=\"#444\">{}</text>\n", x0 - 6, y + 4,
                         panel.percent ? fmt::format("{:.1f}%", 100 * v) : fmt::format("{:.3f}", v));
    }
    for (std::size_t i = 1; i <= n; ++i)  // x ticks: epochs
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" fill=\"#444\">{}</text>\n",
                         px(static_cast<double>(i)), y0 + 18, i);
    svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n", x0, y0, x1, y0);
    svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n", x0, y0, x0, y1);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">epoch</text>\n", (x0 + x1) / 2,
                       h - 10);
    svg += fmt::format(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 {} {})\">{}</text>\n",
        x0 - 48, (y0 + y1) / 2, x0 - 48, (y0 + y1) / 2, panel.y_label);
    // The legend goes in the right-hand corner away from where the curves end.
    double last = 0;
    for (const Series& s : panel.series) last += s.y.empty() ? 0 : s.y.back() / static_cast<double>(panel.series.size());
    const bool legend_below = py(last) < (y0 + y1) / 2;
    for (std::size_t k = 0; k < panel.series.size(); ++k) {
      const Series& s = panel.series[k];
      std::string points;
      for (std::size_t i = 0; i < s.y.size(); ++i)
        points += fmt::format("{:.1f},{:.1f} ", px(static_cast<double>(i + 1)), py(s.y[i]));
      svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" points=\"{}\"/>\n", s.color, points);
      for (std::size_t i = 0; i < s.y.size(); ++i)
        svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(static_cast<double>(i + 1)),
                           py(s.y[i]), s.color);
      const double ly = legend_below ? y0 - 12 - 18 * static_cast<double>(panel.series.size() - 1 - k)
                                     : y1 + 8 + 18 * static_cast<double>(k);
      svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"/>\n", x1 - 120,
                         ly, x1 - 100, ly, s.color);
      svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#222\">{}</text>\n", x1 - 94, ly + 4, s.name);
    }
  }
  svg += "</svg>\n";
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << svg;
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace samples
