package config

import (
	"strings"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// diffOps renders planned changes as a unified-style diff with whole files
// as context (hosts.toml files are a few lines long).
func diffOps(ops []op) string {
	var b strings.Builder
	for _, o := range ops {
		from, to := "a/"+o.rel, "b/"+o.rel
		if o.old == nil {
			from = "/dev/null"
		}
		if o.remove {
			to = "/dev/null"
		}
		b.WriteString("--- " + from + "\n+++ " + to + "\n")
		b.WriteString(lineDiff(string(o.old), string(o.data)))
	}
	return b.String()
}

// lineDiff prefixes every line of old and new with ' ', '-' or '+'.
func lineDiff(old, new string) string {
	dmp := diffmatchpatch.New()
	a, c, lines := dmp.DiffLinesToChars(old, new)
	diffs := dmp.DiffCharsToLines(dmp.DiffMain(a, c, false), lines)
	var b strings.Builder
	for _, d := range diffs {
		prefix := " "
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			prefix = "-"
		case diffmatchpatch.DiffInsert:
			prefix = "+"
		}
		text := d.Text
		if text == "" {
			continue
		}
		noEOL := !strings.HasSuffix(text, "\n")
		for _, line := range strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n") {
			b.WriteString(prefix + strings.TrimSuffix(line, "\n") + "\n")
		}
		if noEOL {
			b.WriteString("\\ No newline at end of file\n")
		}
	}
	return b.String()
}
