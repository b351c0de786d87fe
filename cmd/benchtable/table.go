package main

import (
	"fmt"
	"strconv"
	"strings"
)

// rowResult is one figure measured and judged.
type rowResult struct {
	f     figure
	value float64
	peer  float64
	ratio float64
	pass  bool
	err   error
}

// evaluate judges f against its target with the metrics m.
func evaluate(f figure, m map[string]float64, err error) rowResult {
	r := rowResult{f: f, err: err}
	if err != nil {
		return r
	}
	v, ok := m[f.metric]
	if !ok {
		r.err = fmt.Errorf("the benchmark reported no %q", f.metric)
		return r
	}
	r.value = v
	switch {
	case f.peerMetric != "":
		p, ok := m[f.peerMetric]
		if !ok || p == 0 {
			r.err = fmt.Errorf("the benchmark reported no %q", f.peerMetric)
			return r
		}
		r.peer = p
		r.ratio = v / p
		r.pass = r.ratio <= f.ratioTarget
	case f.higher:
		r.ratio = v / f.target
		r.pass = v >= f.target
	default:
		r.ratio = v / f.target
		r.pass = v <= f.target
	}
	return r
}

// render prints the rows as one Markdown table, failures' reasons after it.
func render(rows []rowResult) string {
	var b strings.Builder
	b.WriteString("| figure | value | target | peer | ratio | result |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	var errs []string
	for _, r := range rows {
		f := r.f
		target := ""
		switch {
		case f.peerMetric != "":
			target = "ratio ≤ " + short(f.ratioTarget)
		case f.higher:
			target = "≥ " + short(f.target) + " " + f.unit
		default:
			target = "≤ " + short(f.target) + " " + f.unit
		}
		if r.err != nil {
			fmt.Fprintf(&b, "| %s | — | %s | %s | — | ERROR |\n", f.name, target, orDash(f.peer))
			errs = append(errs, fmt.Sprintf("%s: %v", f.name, r.err))
			continue
		}
		peer, ratio := "—", num(r.ratio)+" of target"
		if f.before != "" {
			peer = f.before
		}
		if f.peerMetric != "" {
			peer = fmt.Sprintf("%s: %s %s", f.peer, num(r.peer), f.unit)
			ratio = num(r.ratio) + " of peer"
		}
		result := "PASS"
		if !r.pass {
			result = "FAIL"
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s | %s | %s | %s |\n", f.name, num(r.value), f.unit, target, peer, ratio, result)
	}
	for _, e := range errs {
		fmt.Fprintf(&b, "\n%s\n", e)
	}
	return b.String()
}

// num prints v with three significant digits, or fewer when whole.
func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// short prints a target as written: no trailing zeros.
func short(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
