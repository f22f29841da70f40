package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

//go:embed status.html
var statusHTML string

// newStatusPage parses the status page template (embedded, so a parse
// error is a build bug caught by the tests).
func newStatusPage() *template.Template {
	return template.Must(template.New("status").Funcs(template.FuncMap{
		"bytes": humanBytes,
		"ago":   ago,
		"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	}).Parse(statusHTML))
}

// writeStatus serves the node's status document as JSON. It names only the
// images the advertise policy shares (what peers can learn anyway) and
// counts the rest: the page must not reveal what the policy hides.
func writeStatus(w http.ResponseWriter, r *http.Request, s *statusSource) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.doc(r.Context()))
}

// writeStatusHTML serves the status page people look at: server-rendered,
// no JavaScript, refreshed every 10 s by the browser.
func writeStatusHTML(w http.ResponseWriter, r *http.Request, s *statusSource) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	var buf bytes.Buffer
	if err := s.page.Execute(&buf, s.doc(r.Context())); err != nil {
		http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(buf.Bytes())
}

// humanBytes prints n in binary units: 0 B, 512 B, 4.0 KiB, 200.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// ago prints how long before now t was, to the second.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d <= 0 {
		return "now"
	}
	return d.String() + " ago"
}
