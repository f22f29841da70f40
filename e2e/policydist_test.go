package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/opaplugins/opatest"
)

// distModules allows everything but resolving repository blocked (the
// images' names carry the env's registry, so match on the suffix), and
// masks the peer address out of decision logs.
func distModules(blocked string) map[string]string {
	m := map[string]string{}
	for _, a := range policy.Actions {
		m["sluice/"+string(a)+".rego"] = "package sluice." + string(a) + "\nallow := true\n"
	}
	m["sluice/resolve.rego"] = "package sluice.resolve\nallow := true\n" +
		"deny contains \"blocked by the bundle\" if endswith(input.reference.repository, \"" + blocked + "\")\n"
	m["system/log.rego"] = "package system.log\nmask contains \"/input/peer/address\"\n"
	return m
}

// TestPolicyDistribution: node2 takes its policy from a loopback bundle
// server (--policy-config, OPA's format) while ten pulls run; a new
// bundle decides within one polling interval, one signed with the wrong
// key is refused and the last good keeps deciding, and decision logs
// arrive in OPA's event format with the peer address masked.
func TestPolicyDistribution(t *testing.T) {
	key, wrong := opatest.NewKey(t), opatest.NewKey(t)
	srv := &opatest.Server{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	srv.SetBundle(opatest.Bundle(t, "v1", distModules("/blocked"), nil, key, "k1"))
	const poll = 2 * time.Second
	cfg := filepath.Join(t.TempDir(), "opa.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `
services:
  bs: {url: %s}
bundles:
  authz:
    service: bs
    resource: bundles/authz.tar.gz
    polling: {min_delay_seconds: %d, max_delay_seconds: %d}
    signing: {keyid: k1}
keys:
  k1: {algorithm: ES256, key: %q}
decision_logs:
  service: bs
  resource: /logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1}
`, hs.URL, int(poll.Seconds()), int(poll.Seconds()), key.Public), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 2, nil, []string{"--policy-config", cfg})
	// The bundle deciding now, from sluice_policy_bundle_info.
	deciding := func(rev string) bool {
		return e.metric(1, "sluice_policy_bundle_info", `bundle="authz"`, `revision="`+rev+`"`) == 1
	}
	revision := func() string {
		for _, r := range []string{"v1", "v2", "v3"} {
			if deciding(r) {
				return "authz=" + r
			}
		}
		return ""
	}
	if !cluster.WaitFor(t.Context(), 10*time.Second, func() bool { return revision() == "authz=v1" }) {
		t.Fatalf("bundle v1 not loaded: %q", revision())
	}

	var imgs []*testimage.Image
	for i := range 10 {
		img := e.image(fmt.Sprintf("app%d:1.0", i), uint64(100+i), 64<<10)
		e.importTo(0, img)
		imgs = append(imgs, img)
	}
	blocked := e.image("blocked:1.0", 200, 64<<10)
	e.importTo(0, blocked)
	hosts := e.hostsDir(1)
	e.mustNotPull(1, hosts, blocked.Name) // v1 keeps it from the peers

	// Ten pulls while the bundle changes: none fails.
	var wg sync.WaitGroup
	errs := make(chan error, len(imgs))
	for _, img := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if err := e.pullWith(ctx, 1, hosts, img.Name); err != nil {
				errs <- fmt.Errorf("%s: %w", img.Name, err)
			}
		}()
	}
	srv.SetBundle(opatest.Bundle(t, "v2", distModules("/nothing"), nil, key, "k1"))
	published := time.Now()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !cluster.WaitFor(t.Context(), poll+2*time.Second, func() bool { return revision() == "authz=v2" }) {
		t.Fatalf("bundle v2 not deciding %v after it was published: %q", time.Since(published), revision())
	}
	if err := e.pullWith(t.Context(), 1, hosts, blocked.Name); err != nil {
		t.Fatalf("v2 allows %s, the pull failed: %v", blocked.Name, err)
	}

	// A bundle signed with the wrong key is refused; v2 keeps deciding.
	srv.SetBundle(opatest.Bundle(t, "v3", distModules("/app0"), nil, wrong, "k1"))
	if !cluster.WaitFor(t.Context(), poll+3*time.Second, func() bool {
		st, err := e.nodes[1].Status(t.Context())
		return err == nil && strings.Contains(st.PolicyError, "signature")
	}) {
		t.Fatal("the wrongly signed bundle's refusal is not on the status page")
	}
	if revision() != "authz=v2" {
		t.Fatalf("revision %q after a wrongly signed bundle", revision())
	}
	if got := e.metric(1, "sluice_policy_bundle_loads_total", `result="error"`); got < 1 {
		t.Errorf("sluice_policy_bundle_loads_total{result=error} = %v", got)
	}
	again := e.image("app0:2.0", 300, 64<<10)
	e.importTo(0, again)
	if err := e.pullWith(t.Context(), 1, hosts, again.Name); err != nil {
		t.Fatalf("the refused bundle decided: %v", err)
	}

	// Decision logs: OPA events, the peer address masked.
	if !cluster.WaitFor(t.Context(), 10*time.Second, func() bool { evs, _ := srv.Events(); return len(evs) > 0 }) {
		t.Fatal("no decision-log events")
	}
	evs, perrs := srv.Events()
	if len(perrs) > 0 {
		t.Fatalf("decision log posts: %v", perrs)
	}
	for _, ev := range evs {
		if ev.DecisionID == "" || !strings.HasPrefix(ev.Path, "sluice/") || ev.Input == nil || ev.Result == nil {
			t.Fatalf("event: %+v", ev)
		}
		in, _ := (*ev.Input).(map[string]any)
		if peer, ok := in["peer"].(map[string]any); ok {
			if _, ok := peer["address"]; ok {
				t.Fatalf("peer address not masked in %s", ev.DecisionID)
			}
		}
	}
}
