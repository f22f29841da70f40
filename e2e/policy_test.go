package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policies"
)

// The policy issue's end-to-end checks: real containerd daemons and sluice
// nodes on 127.0.0.1-3, the upstream registries closed ports, so a pull
// that succeeds came through a peer and a pull the policy keeps from the
// peers fails.

// failTimeout bounds a pull that is expected to fail: the mirror answers
// 404 at once and the closed upstream refuses the connection.
const failTimeout = 30 * time.Second

// policyDir writes the shipped policies (tests left out) and the given
// extra files into a new directory for --policy.
func policyDir(t *testing.T, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(policies.FS(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range extra {
		writeAtomic(t, filepath.Join(dir, name), content)
	}
	return dir
}

// writeAtomic replaces path by content in one rename, through a hidden
// temporary file the policy loader skips.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// byDigest is img's name with its tag replaced by its target digest.
func byDigest(img *testimage.Image) string {
	name := img.Name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name + "@" + img.Target.Digest.String()
}

// assertContent checks node i's containerd holds every blob of img.
func (e *env) assertContent(i int, img *testimage.Image) {
	e.t.Helper()
	out, err := e.daemons[i].Ctr(e.t.Context(), "content", "ls", "--quiet")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range img.Digests() {
		if !strings.Contains(string(out), d.String()) {
			e.t.Fatalf("node%d lacks %s", i+1, d)
		}
	}
}

// denials is node i's count of resolve decisions the Rego set denied.
func (e *env) denials(i int, action string) float64 {
	return e.metric(i, "sluice_policy_decisions_total", `action="`+action+`"`, `engine="rego"`, `result="deny"`)
}

// mustNotPull pulls ref on node i through hostsDir and fails the test if
// the pull succeeds or node i's policy did not deny a resolve for it.
func (e *env) mustNotPull(i int, hostsDir, ref string) {
	e.t.Helper()
	before := e.denials(i, "resolve")
	ctx, cancel := context.WithTimeout(e.t.Context(), failTimeout)
	defer cancel()
	if err := e.pullWith(ctx, i, hostsDir, ref); err == nil {
		e.t.Fatalf("node%d pulled %s; the policy should have kept it from the peers", i+1, ref)
	}
	if after := e.denials(i, "resolve"); after <= before {
		e.t.Fatalf("node%d: pull of %s failed but no resolve was denied (%.0f → %.0f)", i+1, ref, before, after)
	}
}

// TestPolicyDigestOnly: with digest_only a tag is never resolved from a
// peer (the pull fails: the upstream is closed) while a digest is.
func TestPolicyDigestOnly(t *testing.T) {
	dir := policyDir(t, map[string]string{"settings.json": `{"sluice":{"settings":{"digest_only":true}}}`})
	flags := []string{"--policy", dir}
	e := newEnv(t, 3, flags, flags, flags)
	img := e.image("digest:1.0", 11, 1<<20, 4096)
	// Every digest is advertised, the tag is not.
	e.importKeys(0, img, len(img.Blobs))
	hosts := e.hostsDir(2)

	t.Run("TagIsNotResolvedFromPeers", func(t *testing.T) {
		e.mustNotPull(2, hosts, img.Name)
		if !strings.Contains(e.nodes[2].Log(), "digest_only: tag reference") {
			t.Fatal("node3's decision log does not name digest_only")
		}
	})
	t.Run("DigestIsPulledThroughPeer", func(t *testing.T) {
		if err := e.pull(t.Context(), 2, byDigest(img)); err != nil {
			t.Fatal(err)
		}
		e.assertContent(2, img)
		if served := e.metric(0, "sluice_bytes_served_total", `to="peer"`); served < float64(img.Largest().Size) {
			t.Fatalf("node1 served %.0f bytes to peers, want at least %d", served, img.Largest().Size)
		}
	})
}

// TestPolicyMirrors: a node given a registries.yaml shares only the
// registries it lists; :latest is not shared by default.
func TestPolicyMirrors(t *testing.T) {
	regA := closedAddr(t) // listed in registries.yaml
	regB := closedAddr(t) // not listed
	yaml := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(yaml, []byte("mirrors:\n  \""+regA+"\":\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	onlyA := []string{"--registries", yaml}
	// node1 shares every registry (no registries.yaml); node2 and node3
	// only registry A.
	e := newEnv(t, 3, nil, onlyA, onlyA)
	hosts := e.hostsDirFor(2, regA, regB)

	t.Run("ListedRegistryIsShared", func(t *testing.T) {
		img := e.imageOf(regA, "listed:1.0", 21, 1<<20)
		e.importTo(1, img)
		if err := e.pullWith(t.Context(), 2, hosts, img.Name); err != nil {
			t.Fatal(err)
		}
		e.assertHas(2, img)
	})
	t.Run("UnlistedRegistryIsNotAdvertised", func(t *testing.T) {
		imgB := e.imageOf(regB, "unlisted:1.0", 22, 1<<20)
		imgA := e.imageOf(regA, "after:1.0", 23, 4096)
		before := e.advertised(1)
		// Events are handled in order: once imgA's keys are out, imgB's
		// have been decided on.
		e.importKeys(1, imgB, 0)
		e.importTo(1, imgA)
		if got, want := e.advertised(1)-before, len(imgA.Blobs)+1; got != want {
			t.Fatalf("node2 advertised %d new keys, want %d (only registry A's image)", got, want)
		}
		if e.denials(1, "advertise") < float64(len(imgB.Blobs)) {
			t.Fatalf("node2 denied %.0f advertise decisions, want ≥ %d", e.denials(1, "advertise"), len(imgB.Blobs))
		}
	})
	t.Run("UnlistedRegistryIsNotResolved", func(t *testing.T) {
		// node1 shares every registry and advertises it; node3 still does
		// not look it up among peers.
		img := e.imageOf(regB, "unlisted:2.0", 24, 1<<20)
		e.importTo(0, img)
		e.mustNotPull(2, hosts, img.Name)
		if !strings.Contains(e.nodes[2].Log(), "is not in mirrors") {
			t.Fatal("node3's decision log does not name the mirrors policy")
		}
	})
	t.Run("LatestGoesUpstreamByDefault", func(t *testing.T) {
		img := e.imageOf(regA, "app:latest", 25, 1<<20)
		e.importKeys(0, img, len(img.Blobs)) // digests, not the tag
		e.mustNotPull(2, hosts, img.Name)
		if !strings.Contains(e.nodes[2].Log(), "latest tag is not shared") {
			t.Fatal("node3's decision log does not name the latest policy")
		}
	})
}

// TestPolicyEnableLatest: the data switch enable_latest shares :latest.
func TestPolicyEnableLatest(t *testing.T) {
	dir := policyDir(t, map[string]string{"settings.yaml": "sluice:\n  settings:\n    enable_latest: true\n"})
	flags := []string{"--policy", dir}
	e := newEnv(t, 3, flags, flags, flags)
	img := e.image("app:latest", 31, 1<<20)
	e.importTo(0, img) // the tag is advertised too
	if err := e.pull(t.Context(), 2, img.Name); err != nil {
		t.Fatal(err)
	}
	e.assertHas(2, img)
}

// TestPolicyHotReload: a broken policy written into node3's watched
// directory while pulls run: no pull fails, the error names file and
// line (log and /status), the last good policy keeps deciding; once the
// file is fixed the new policy decides.
func TestPolicyHotReload(t *testing.T) {
	const blockV1 = `package sluice.resolve

import rego.v1

deny contains "e2e: e2e/blocked is blocked" if input.reference.repository == "e2e/blocked"
`
	// Line 6 does not parse.
	const blockBroken = `package sluice.resolve

import rego.v1

deny contains "e2e: e2e/blocked is blocked" if {
	input.reference.repository == == "e2e/blocked"
}
`
	const blockV2 = `package sluice.resolve

import rego.v1

deny contains "e2e: e2e/late is blocked" if input.reference.repository == "e2e/late"
`
	dir := policyDir(t, map[string]string{"block.rego": blockV1})
	file := filepath.Join(dir, "block.rego")
	e := newEnv(t, 3, nil, nil, []string{"--policy", dir})
	ctx := t.Context()
	hosts := e.hostsDir(2)
	node3 := e.nodes[2]

	const n = 10
	imgs := make([]*testimage.Image, n)
	for i := range imgs {
		imgs[i] = e.image("ok"+string(rune('a'+i))+":1.0", uint64(100+i), 64<<10)
		e.importTo(0, imgs[i])
	}
	blocked := e.image("blocked:1.0", 200, 64<<10)
	e.importTo(0, blocked)
	late := e.image("late:1.0", 201, 64<<10)
	e.importTo(0, late)

	e.mustNotPull(2, hosts, blocked.Name) // v1 in force
	st0, err := node3.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Pulls 0-4 run before and while the broken file lands, 5-9 once
	// node3 reports the error.
	errored := make(chan struct{})
	results := make(chan error, n)
	go func() {
		for i, img := range imgs {
			if i == 5 {
				select {
				case <-errored:
				case <-time.After(30 * time.Second):
				}
			}
			if err := e.pullWith(ctx, 2, hosts, img.Name); err != nil {
				results <- fmt.Errorf("pull %d (%s): %w", i, img.Name, err)
				continue
			}
			results <- nil
		}
	}()
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("pull before the switch failed: %v", err)
		}
	}
	logBefore := len(node3.Log())
	writeAtomic(t, file, blockBroken)
	var st cluster.Status
	if !cluster.WaitFor(ctx, 20*time.Second, func() bool {
		st, err = node3.Status(ctx)
		return err == nil && st.PolicyError != ""
	}) {
		t.Fatal("node3 /status never showed the policy error")
	}
	close(errored)
	t.Logf("policy_error: %s", st.PolicyError)
	if !strings.Contains(st.PolicyError, "block.rego:6") {
		t.Errorf("/status policy_error does not name block.rego:6: %q", st.PolicyError)
	}
	if st.PolicyRevision != st0.PolicyRevision {
		t.Errorf("revision changed from %s to %s on a broken policy", st0.PolicyRevision, st.PolicyRevision)
	}
	if !cluster.WaitFor(ctx, 5*time.Second, func() bool {
		return strings.Contains(node3.Log()[logBefore:], "block.rego:6")
	}) {
		t.Errorf("node3's log does not name block.rego:6:\n%s", tail(node3.Log()[logBefore:], 3000))
	}
	// The old policy still decides: e2e/blocked stays blocked, for the
	// reason of v1.
	logMark := len(node3.Log())
	e.mustNotPull(2, hosts, blocked.Name)
	if !strings.Contains(node3.Log()[logMark:], "e2e/blocked is blocked") {
		t.Error("the deny of e2e/blocked did not come from the last good policy")
	}

	failed := 0
	for i := 2; i < n; i++ {
		if err := <-results; err != nil {
			t.Error(err)
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d pulls failed during the reload", failed, n)
	}
	for _, img := range imgs {
		e.assertHas(2, img)
	}

	// Fixed: v2 decides. e2e/blocked is shared now, e2e/late is not.
	writeAtomic(t, file, blockV2)
	if !cluster.WaitFor(ctx, 20*time.Second, func() bool {
		st, err = node3.Status(ctx)
		return err == nil && st.PolicyError == "" && st.PolicyRevision != st0.PolicyRevision
	}) {
		t.Fatalf("node3 did not load the fixed policy: %+v", st)
	}
	if err := e.pull(ctx, 2, blocked.Name); err != nil {
		t.Fatalf("pull of e2e/blocked under the fixed policy: %v", err)
	}
	e.assertHas(2, blocked)
	logMark = len(node3.Log())
	e.mustNotPull(2, hosts, late.Name)
	if !strings.Contains(node3.Log()[logMark:], "e2e/late is blocked") {
		t.Error("the deny of e2e/late did not come from the fixed policy")
	}
}
