package main

import (
	"bytes"
	"fmt"
	"html"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ipcbench -svg DIR draws two pictures with the standard library:
//
//   - rtt.svg: the round-trip latency distributions (cumulative, on a log
//     scale of microseconds) of the queue and its peers, one panel per
//     round-trip metric family (spinning, blocking), from the histograms of
//     each side's last round;
//   - ratios.svg: each metric's ratio against each peer (above 1 is ipckit
//     better), on a log scale, with the bar drawn where it has one.

// bars are the ratios each metric must reach against a peer (issue 15).
var bars = map[string]float64{
	"queue_64B_batch_msgs_per_s/chan_buffered": 1.5,
	"queue_64KiB_MB_per_s/memcpy":              0.5,
	"queue_64B_msgs_per_s/raw_ring_lock_add":   0.9,
	"queue_64B_msgs_per_s/pipe":                15,
	"queue_rtt_p50_spin/raw_pingpong":          0.5,
}

// hists holds, per metric and side, the histogram of the side's last
// round; lastHist is the one the run in progress kept (keepHist).
var (
	hists    = map[string]map[string]*histogram{}
	lastHist *histogram
)

// keepHist keeps a copy of h, the histogram of the side being measured.
func keepHist(h *histogram) {
	c := *h
	lastHist = &c
}

// noteHist files the histogram the last run kept, if any, under metric m
// and side s.
func noteHist(m, s string) {
	if lastHist == nil {
		return
	}
	if hists[m] == nil {
		hists[m] = map[string]*histogram{}
	}
	hists[m][s] = lastHist
	lastHist = nil
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// writeSVG writes rtt.svg and ratios.svg into dir.
func writeSVG(dir string, rows []row) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "rtt.svg"), rttSVG(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ratios.svg"), ratioSVG(rows), 0o644)
}

// rttSVG draws one panel of cumulative distributions per family of
// round-trip metrics (those named queue_rtt_p50_*: p99 runs the same
// round trips again).
func rttSVG() []byte {
	var names []string
	for m := range hists {
		if strings.HasPrefix(m, "queue_rtt_p50") {
			names = append(names, m)
		}
	}
	slices.Sort(names)
	const pw, ph, left, top = 640, 300, 70, 40
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", pw+left+200, max(1, len(names))*(ph+80)+20)
	for i, m := range names {
		y0 := 20 + i*(ph+80)
		sides := slices.Sorted(maps.Keys(hists[m]))
		lo, hi := math.Inf(1), 0.0
		for _, s := range sides {
			h := hists[m][s]
			lo = min(lo, float64(h.percentile(0.001))/1e3)
			hi = max(hi, float64(h.percentile(0.999))/1e3)
		}
		lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		x := func(us float64) float64 {
			return left + pw*(math.Log10(max(us, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
		}
		y := func(f float64) float64 { return float64(y0+top+ph) - f*ph }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14">%s: round trip, cumulative (log scale, us)</text>`+"\n", left, y0+20, html.EscapeString(strings.Replace(m, "_p50", "", 1)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", left, y0+top, pw, ph)
		for d := lo; d <= hi*1.0001; d *= 10 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(d), y0+top, x(d), y0+top+ph, x(d), y0+top+ph+16, d)
		}
		for _, f := range []float64{0, 0.5, 0.99, 1} {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">p%g</text>`+"\n", left, y(f), left+pw, y(f), left-4, y(f)+4, f*100)
		}
		for j, s := range sides {
			h := hists[m][s]
			var pts []string
			var seen uint64
			for k, c := range h.counts {
				if c == 0 {
					continue
				}
				seen += c
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(low(k+1))/1e3), y(float64(seen)/float64(h.total))))
			}
			color := palette[j%len(palette)]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s (p50 %.2f us)</text>`+"\n", left+pw+10, y0+top+20+18*j, color, html.EscapeString(s), float64(h.percentile(0.5))/1e3)
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// ratioSVG draws one horizontal bar per row: its ratio on a log scale,
// the 1x line, and the row's bar as a red mark where it has one.
func ratioSVG(rows []row) []byte {
	const left, width, rowH, top = 380, 420, 22, 40
	lo, hi := 1.0/64, 64.0
	for _, r := range rows {
		for lo > r.Ratio/2 && lo > 1e-6 {
			lo /= 4
		}
		for hi < r.Ratio*2 && hi < 1e6 {
			hi *= 4
		}
	}
	x := func(v float64) float64 {
		v = min(max(v, lo), hi)
		return left + width*(math.Log2(v)-math.Log2(lo))/(math.Log2(hi)-math.Log2(lo))
	}
	var b bytes.Buffer
	h := top + len(rows)*rowH + 40
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+width+80, h)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14">ratio against the peer (above 1: ipckit better; log scale); red: the bar to meet</text>`+"\n")
	for v := lo; v <= hi*1.0001; v *= 4 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%sx</text>`+"\n", x(v), top-6, x(v), h-30, x(v), h-14, sig3(v))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000"/>`+"\n", x(1), top-6, x(1), h-30)
	for i, r := range rows {
		y := top + i*rowH
		bar, hasBar := bars[r.Metric+"/"+r.Peer]
		color := "#1f77b4"
		if hasBar && r.Ratio < bar {
			color = "#aaa"
		}
		x0, x1 := x(1), x(r.Ratio)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s vs %s</text>`+"\n", left-8, y+14, html.EscapeString(r.Metric), html.EscapeString(r.Peer))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", min(x0, x1), y+3, math.Abs(x1-x0)+1, rowH-6, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%sx</text>`+"\n", max(x0, x1)+4, y+14, sig3(r.Ratio))
		if hasBar {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d62728" stroke-width="3"/>`+"\n", x(bar), y, x(bar), y+rowH)
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
