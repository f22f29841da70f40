package security

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/certs"
	"github.com/sluice-oci/sluice/internal/cluster"
)

// requireNodeCN is a drop-in for the serve decision point: a peer must
// present a certificate whose subject names a node. The local containerd
// (no peer) is not affected.
const requireNodeCN = `package sluice.serve

import rego.v1

deny contains msg if {
	input.peer
	not contains(object.get(input.peer, "tls_subject", ""), "CN=node-")
	msg := sprintf("serve: peer subject %q is not a node", [object.get(input.peer, "tls_subject", "")])
}
`

type tlsNode struct {
	*cluster.Node
	local string // plain loopback listener for the local containerd
}

func (n tlsNode) httpsURL() string { return "https://" + n.RegistryAddr() }

func startTLSNode(t *testing.T, name, ip, certDir, caDir string, policyArgs []string, bootstrap ...string) tlsNode {
	t.Helper()
	port, err := cluster.FreePort(ip)
	if err != nil {
		t.Fatal(err)
	}
	local := net.JoinHostPort(ip, strconv.Itoa(port))
	cert, key := certs.Paths(certDir, name)
	ca := filepath.Join(caDir, certs.CAFile)
	args := append([]string{"--tls-cert", cert, "--tls-key", key, "--client-ca", ca, "--peer-ca", ca, "--local-addr", local}, policyArgs...)
	return tlsNode{Node: startNode(t, name, ip, args, bootstrap...), local: local}
}

func clientWith(t *testing.T, ca *certs.CA, n *certs.Node) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if n != nil {
		c, err := n.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// TestMTLS: the node-facing port requires a client certificate of the
// cluster CA; the verified subject reaches the serve policy; nodes with
// certificate and key fetch from each other through their local listener.
func TestMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, otherDir := filepath.Join(dir, "ca"), filepath.Join(dir, "other-ca")
	ca, err := certs.Init(good, "cluster CA", false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.Init(otherDir, "some other CA", false)
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]string{"node-1": "127.0.0.75", "node-2": "127.0.0.76"}
	for name, ip := range ips {
		if _, err := certs.IssueFiles(good, name, []net.IP{net.ParseIP(ip)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// node-3 has a certificate of another CA, with the right IP and name.
	if _, err := certs.IssueFiles(otherDir, "node-3", []net.IP{net.ParseIP("127.0.0.77")}, nil); err != nil {
		t.Fatal(err)
	}
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	dropIn := filepath.Join(dir, "require-node-cn.rego")
	if err := os.WriteFile(dropIn, []byte(requireNodeCN), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := []string{"--policy", policies, "--policy", dropIn}

	a := startTLSNode(t, "node-1", ips["node-1"], good, good, pol)
	b := startTLSNode(t, "node-2", ips["node-2"], good, good, pol, a.Addr)
	c := startTLSNode(t, "node-3", "127.0.0.77", otherDir, good, pol, a.Addr) // trusts the cluster CA, is not trusted by it
	ctx := t.Context()
	if !cluster.WaitFor(ctx, 20*time.Second, func() bool {
		sb, err := b.Status(ctx)
		sc, err2 := c.Status(ctx)
		return err == nil && err2 == nil && sb.Ready && sc.Ready
	}) {
		t.Fatal("nodes did not find each other")
	}
	img := addImage(t, a.Node, "docker.io/library/mtls-secret:1.0", 75)
	blob := a.httpsURL() + path(img, "blobs", img.Largest().Digest.String())
	manifest := a.httpsURL() + path(img, "manifests", tagOf(img))

	mustIssue := func(ca *certs.CA, name string) *certs.Node {
		n, err := ca.Issue(name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("no client certificate", func(t *testing.T) {
		for _, u := range []string{blob, manifest, a.httpsURL() + "/v2/"} {
			r := get(ctx, clientWith(t, ca, nil), u)
			wantNoContent(t, "no certificate "+u, r, http.StatusUnauthorized, http.StatusForbidden)
		}
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		r := get(ctx, clientWith(t, ca, mustIssue(other, "node-evil")), blob)
		wantNoContent(t, "other CA", r, http.StatusUnauthorized, http.StatusForbidden)
	})
	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		r := get(ctx, http.DefaultClient, "http://"+a.RegistryAddr()+path(img, "blobs", img.Largest().Digest.String()))
		if r.err == nil && (r.status != http.StatusBadRequest || len(r.body) > 200) {
			t.Fatalf("plain HTTP: status %d, %d bytes", r.status, len(r.body))
		}
	})
	t.Run("subject reaches the serve policy", func(t *testing.T) {
		// A certificate of the cluster CA that does not name a node gets
		// through TLS and is refused by the drop-in, which only sees the
		// subject in input.peer.tls_subject.
		r := get(ctx, clientWith(t, ca, mustIssue(ca, "intruder")), blob)
		if code := wantNoContent(t, "CN=intruder", r, http.StatusForbidden); code != "DENIED" {
			t.Fatalf("CN=intruder: status %d code %q err %v, want 403 DENIED", r.status, code, r.err)
		}
		if !cluster.WaitFor(ctx, 5*time.Second, func() bool {
			return strings.Contains(a.Log(), `CN=intruder`)
		}) {
			t.Log("the deny reason is not in node-1's log (not required)")
		}
		r = get(ctx, clientWith(t, ca, mustIssue(ca, "node-9")), blob)
		if r.err != nil || r.status != http.StatusOK || len(r.body) != int(img.Largest().Size) {
			t.Fatalf("CN=node-9: status %d err %v, %d bytes", r.status, r.err, len(r.body))
		}
	})
	t.Run("node with certificate and key fetches through its local listener", func(t *testing.T) {
		pull(t, http.DefaultClient, "http://"+b.local, img)
		if v, _ := b.Metric(ctx, "sluice_bytes_fetched_total", `from="peer"`); v <= 0 {
			t.Fatalf("node-2 fetched %v bytes from peers", v)
		}
		if v, _ := a.Metric(ctx, "sluice_bytes_served_total", `to="peer"`); v <= 0 {
			t.Fatalf("node-1 served %v bytes to peers", v)
		}
		// node-1's own containerd (no peer, plain loopback listener) is not
		// subject to the drop-in, which only judges peers.
		pull(t, http.DefaultClient, "http://"+a.local, img)
	})
	t.Run("node with a certificate of another CA gets nothing", func(t *testing.T) {
		for _, p := range []string{path(img, "manifests", tagOf(img)), path(img, "blobs", img.Largest().Digest.String())} {
			r := get(ctx, http.DefaultClient, "http://"+c.local+p)
			if r.err != nil || r.status != http.StatusNotFound {
				t.Fatalf("node-3 %s: status %d err %v, want 404", p, r.status, r.err)
			}
		}
		if v, _ := c.Metric(ctx, "sluice_bytes_fetched_total", `from="peer"`); v != 0 {
			t.Fatalf("node-3 fetched %v bytes from peers", v)
		}
	})
}
