package deploy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestManifests_Current: deploy/kubernetes/ and the chart's copies of the
// dashboard and the shipped policies are what `make manifests` makes from
// the current chart and sources; anything else in them is stale.
func TestManifests_Current(t *testing.T) {
	dashboard, policies, err := Sources("..")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := Generated(".", dashboard, policies)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range gen {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v (run make manifests)", p, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/%s is stale: run make manifests", p)
		}
	}
	for _, dir := range []string{"kubernetes", filepath.Join("helm", "sluice", "files")} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if _, ok := gen[p]; !ok {
				t.Errorf("deploy/%s is not generated any more: run make manifests (or remove it)", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

var metricRe = regexp.MustCompile(`\bsluice_[a-z0-9_]+`)

// unknownMetrics returns the sluice_ metric names the expressions use that
// are not in names.
func unknownMetrics(exprs []string, names map[string]bool) []string {
	var out []string
	for _, e := range exprs {
		for _, m := range metricRe.FindAllString(e, -1) {
			if !names[m] && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "sluice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/sluice.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.Expr == "" || refs[q.RefID] {
				t.Errorf("panel %q: empty query or refId %q twice", p.Title, q.RefID)
			}
			refs[q.RefID] = true
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

// TestDashboard_Metrics: every metric the dashboard queries is one the
// node defines (core/metrics, policy, routing, wasm), and the dashboard
// answers the questions it is for.
func TestDashboard_Metrics(t *testing.T) {
	names, err := MetricNames("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"sluice_mirror_requests_total", "sluice_policy_decisions_total", "sluice_resolve_duration_seconds_bucket"} {
		if !names[n] {
			t.Fatalf("MetricNames found no %s in the source: the parser is broken", n)
		}
	}
	if got := unknownMetrics([]string{`rate(sluice_mirror_requests_total[5m]) / sluice_made_up_total`}, names); !slices.Equal(got, []string{"sluice_made_up_total"}) {
		t.Fatalf("unknownMetrics = %q, want the made-up name only", got)
	}
	exprs := dashboardExprs(t)
	if unknown := unknownMetrics(exprs, names); len(unknown) > 0 {
		t.Errorf("the dashboard queries metrics no code defines: %q", unknown)
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		`sluice_mirror_requests_total{instance=~"$instance",source="peer"}`, // hit ratio: peer …
		`source=~"peer|none"`, // … against not found
		"sluice_bytes_fetched_total", "sluice_bytes_served_total",
		"sluice_resolve_duration_seconds_bucket",
		"sum by (action, result) (rate(sluice_policy_decisions_total",
		"sluice_peer_verification_failures_total",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the dashboard has no query with %s", want)
		}
	}
}
