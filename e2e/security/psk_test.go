package security

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
)

func writeKey(t *testing.T, dir, name string, n int) string {
	t.Helper()
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPSK: two nodes with the same key share content; a node with another
// key and a node with none never join and never receive content.
func TestPSK(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := writeKey(t, dir, "cluster.psk", 32)
	otherKey := writeKey(t, dir, "other.psk", 32)

	a := startNode(t, "psk-a", "127.0.0.71", []string{"--psk-file", key})
	b := startNode(t, "psk-b", "127.0.0.72", []string{"--psk-file", key}, a.Addr)
	outsiders := []*cluster.Node{
		startNode(t, "psk-other-key", "127.0.0.73", []string{"--psk-file", otherKey}, a.Addr),
		startNode(t, "psk-no-key", "127.0.0.74", nil, a.Addr),
	}
	ctx := t.Context()
	if !cluster.WaitFor(ctx, 20*time.Second, func() bool {
		sa, errA := a.Status(ctx)
		sb, errB := b.Status(ctx)
		return errA == nil && errB == nil && sa.Ready && sb.Ready
	}) {
		t.Fatal("the two nodes with the key did not find each other")
	}
	img := addImage(t, a, "docker.io/library/psk-secret:1.0", 71)

	// The insider shares content.
	pull(t, http.DefaultClient, b.RegistryURL(), img)
	if v, _ := b.Metric(ctx, "sluice_bytes_fetched_total", `from="peer"`); v <= 0 {
		t.Fatalf("psk-b fetched %v bytes from peers, want > 0", v)
	}

	// The outsiders: not ready, no peers, a 404 for everything the
	// insiders hold, and not one byte fetched.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, o := range outsiders {
			st, err := o.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Ready || st.Peers > 0 {
				t.Fatalf("%s joined the private network: ready %v, %d peers", o.Name, st.Ready, st.Peers)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, o := range outsiders {
		for _, p := range []string{
			path(img, "manifests", tagOf(img)),
			path(img, "manifests", img.Target.Digest.String()),
			path(img, "blobs", img.Largest().Digest.String()),
		} {
			r := get(ctx, http.DefaultClient, o.RegistryURL()+p)
			if r.err != nil || r.status != http.StatusNotFound {
				t.Fatalf("%s %s: status %d err %v, want 404", o.Name, p, r.status, r.err)
			}
			if c := ociCode(r.body); c != "MANIFEST_UNKNOWN" && c != "BLOB_UNKNOWN" {
				t.Fatalf("%s %s: code %q", o.Name, p, c)
			}
		}
		if v, _ := o.Metric(ctx, "sluice_bytes_fetched_total", `from="peer"`); v != 0 {
			t.Fatalf("%s fetched %v bytes from peers", o.Name, v)
		}
	}
	// The insider still sees exactly its one peer: the outsiders never
	// reached its DHT.
	if st, _ := a.Status(ctx); st.Peers != 1 {
		t.Fatalf("psk-a has %d peers, want 1 (psk-b only)", st.Peers)
	}
}

// TestPSK_shortKeyRefused: a key shorter than 32 bytes stops the node at
// start with a message that says what is wrong.
func TestPSK_shortKeyRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"hex-16":   []byte(strings.Repeat("ab", 16) + "\n"),
		"raw-31":   []byte(strings.Repeat("k", 31)),
		"empty":    {},
		"hex-63":   []byte(strings.Repeat("a", 63)),
		"garbage":  []byte("not a key at all, but long enough to be 32 bytes!!"),
		"v1-short": []byte("/key/swarm/psk/1.0.0/\n/base16/\n0123abcd\n"),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		nd := filepath.Join(dir, "node-"+name)
		_, err := cluster.Start(t.Context(), sluiceBin, cluster.Spec{
			Name: "short-" + name, IP: "127.0.0.70", Store: "oci:" + filepath.Join(nd, "oci"), DataDir: nd,
			Args: []string{"--psk-file", p},
		})
		if err == nil {
			t.Fatalf("%s: node started with a bad key", name)
		}
		if !strings.Contains(err.Error(), "--psk-file") || !strings.Contains(err.Error(), "exited at start") {
			t.Fatalf("%s: %v", name, err)
		}
		if name != "v1-short" && !strings.Contains(err.Error(), "want a 32-byte key") {
			t.Fatalf("%s: message does not say what a key must be: %v", name, err)
		}
	}
}
