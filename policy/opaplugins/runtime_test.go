package opaplugins_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/opaplugins"
	"github.com/sluice-oci/sluice/policy/opaplugins/opatest"
)

// modules allows every action and denies resolving repository repo; it
// masks the peer address out of decision logs.
func modules(repo string) map[string]string {
	m := map[string]string{}
	for _, a := range policy.Actions {
		m["sluice/"+string(a)+".rego"] = "package sluice." + string(a) + "\nallow := true\n"
	}
	m["sluice/resolve.rego"] = "package sluice.resolve\nallow := true\n" +
		"deny contains sprintf(\"bundle refuses %s\", [input.reference.repository]) if input.reference.repository == \"" + repo + "\"\n"
	m["system/log.rego"] = "package system.log\nmask contains \"/input/peer/address\"\n"
	return m
}

func config(url string, key opatest.Key) []byte {
	return fmt.Appendf(nil, `
services:
  bs:
    url: %s
bundles:
  authz:
    service: bs
    resource: bundles/authz.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
    signing: {keyid: k1}
keys:
  k1:
    algorithm: ES256
    key: %q
decision_logs:
  service: bs
  resource: /logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1}
labels: {cluster: test}
`, url, key.Public)
}

func resolveInput(repo string) policy.Input {
	return policy.Input{
		Reference: &policy.Reference{Registry: "docker.io", Repository: repo, Tag: "1.0", Kind: policy.KindManifest},
		Peer:      &policy.Peer{ID: "12D3KooWpeer", Address: "10.0.0.7:5000"},
	}
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRuntime_BundlesAndDecisionLogs(t *testing.T) {
	key, wrong := opatest.NewKey(t), opatest.NewKey(t)
	srv := &opatest.Server{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	srv.SetBundle(opatest.Bundle(t, "v1", modules("org/a"), nil, key, "k1"))

	reg := prometheus.NewRegistry()
	rt, err := opaplugins.New(t.Context(), config(hs.URL, key), opaplugins.WithRegisterer(reg), opaplugins.WithID("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load(t.Context(), nil, append(rt.Options(), policy.WithRegisterer(reg))...)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if err := rt.Start(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	defer rt.Stop(t.Context())
	allows := func(repo string) bool {
		d, err := set.Decide(t.Context(), policy.ActionResolve, resolveInput(repo))
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	bundleRev := func() string { return set.Sources()[len(set.Sources())-1].Revision }

	waitFor(t, "bundle v1", 5*time.Second, func() bool { return bundleRev() == "authz=v1" })
	if allows("org/a") || !allows("org/b") {
		da, _ := set.Decide(t.Context(), policy.ActionResolve, resolveInput("org/a"))
		db, _ := set.Decide(t.Context(), policy.ActionResolve, resolveInput("org/b"))
		t.Fatalf("bundle v1 does not decide: org/a %+v, org/b %+v", da, db)
	}

	// A new bundle takes effect within a polling interval (plus slack).
	srv.SetBundle(opatest.Bundle(t, "v2", modules("org/b"), nil, key, "k1"))
	start := time.Now()
	waitFor(t, "bundle v2", 3*time.Second, func() bool { return allows("org/a") && !allows("org/b") })
	t.Logf("v2 decided %v after it was published", time.Since(start).Round(time.Millisecond))

	goodUntil := time.Now() // decision-log events before the refusals are checked below

	refused := []struct {
		name, revision string
		bundle         []byte
		want           string
		result         string
	}{
		{"wrong signing key", "v3", opatest.Bundle(t, "v3", modules("org/a"), nil, wrong, "k1"), "signature", "error"},
		{"does not compile", "v4", opatest.Bundle(t, "v4", map[string]string{"sluice/resolve.rego": "package sluice.resolve\nallow := \n"}, nil, key, "k1"), "rego_parse_error", "error"},
		{"undefined actions", "v5", opatest.Bundle(t, "v5", map[string]string{"sluice/resolve.rego": "package sluice.resolve\nallow := true\n"}, nil, key, "k1"), "sluice.advertise", "refused"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := loads(t, reg, tc.result)
			srv.SetBundle(tc.bundle)
			waitFor(t, "the refusal", 3*time.Second, func() bool {
				err := set.LastError()
				return err != nil && strings.Contains(err.Error(), tc.want)
			})
			if !allows("org/a") || allows("org/b") || bundleRev() != "authz=v2" {
				t.Errorf("the last good bundle no longer decides (revision %q)", bundleRev())
			}
			if after := loads(t, reg, tc.result); after <= before {
				t.Errorf("sluice_policy_bundle_loads_total{result=%q} %v → %v", tc.result, before, after)
			}
			if src := set.Sources(); !strings.Contains(src[len(src)-1].LastError, tc.want) {
				t.Errorf("status page source: %+v", src[len(src)-1])
			}
		})
	}

	// Back to a good bundle: the error clears.
	srv.SetBundle(opatest.Bundle(t, "v6", modules("org/c"), nil, key, "k1"))
	waitFor(t, "bundle v6", 3*time.Second, func() bool { return bundleRev() == "authz=v6" && set.LastError() == nil })

	// Decision logs: OPA events, peer address masked, bundle revision set.
	waitFor(t, "decision log events", 5*time.Second, func() bool {
		evs, errs := srv.Events()
		if len(errs) > 0 {
			t.Fatalf("decision log post: %v", errs)
		}
		return len(evs) > 0
	})
	evs, _ := srv.Events()
	checked := 0
	for _, ev := range evs {
		// A bundle OPA activates and sluice refuses (v5) does replace the
		// mask in OPA's store (RATIONALE.md): check the events of v1, v2.
		if ev.Timestamp.After(goodUntil) {
			continue
		}
		checked++
		in, _ := (*ev.Input).(map[string]any)
		peer, _ := in["peer"].(map[string]any)
		res, _ := (*ev.Result).(map[string]any)
		if ev.DecisionID == "" || ev.Path != "sluice/resolve" || ev.Timestamp.IsZero() || ev.Labels["cluster"] != "test" ||
			ev.Labels["id"] != "node-1" || peer == nil || peer["id"] != "12D3KooWpeer" || res == nil || ev.Metrics == nil {
			t.Fatalf("event: %+v", ev)
		}
		if _, ok := peer["address"]; ok {
			bs, _ := json.Marshal(ev)
			t.Fatalf("peer address not masked: %s", bs)
		}
		if len(ev.Erased) == 0 || ev.Erased[0] != "/input/peer/address" {
			t.Fatalf("erased: %v", ev.Erased)
		}
	}
	if checked == 0 {
		t.Fatal("no decision-log event of bundles v1, v2")
	}
	if b, ok := evs[0].Bundles["authz"]; !ok || b.Revision == "" {
		t.Errorf("bundles of the first event: %+v", evs[0].Bundles)
	}
}

func loads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return counterValue(t, reg, "sluice_policy_bundle_loads_total", "result", result)
}
