package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

var sluiceBin string

func TestMain(m *testing.M) {
	var err error
	if sluiceBin, err = cluster.BuildSluice(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := ctrtest.BinDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// env is N nodes, each a containerd and a sluice serving it on 127.0.0.i.
type env struct {
	t        *testing.T
	daemons  []*ctrtest.Daemon
	nodes    []*cluster.Node
	registry string // the images' registry: a closed port on loopback
	tars     map[string]string
}

// newEnv starts n nodes; args[i] are extra flags of node i.
func newEnv(t *testing.T, n int, args ...[]string) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens here: the "upstream" refuses every connection
	e := &env{t: t, registry: closed}
	for i := range n {
		d := ctrtest.Start(t)
		e.daemons = append(e.daemons, d)
		var extra []string
		if i < len(args) {
			extra = args[i]
		}
		spec := cluster.Spec{Name: fmt.Sprintf("node%d", i+1), IP: fmt.Sprintf("127.0.0.%d", i+1),
			Store: "containerd://" + d.Socket, DataDir: filepath.Join(d.Dir, "sluice"), Args: extra}
		var boot []string
		if len(e.nodes) > 0 {
			boot = []string{e.nodes[0].Addr}
		}
		nd, err := cluster.Start(t.Context(), sluiceBin, spec, boot...)
		if err != nil {
			t.Fatal(err)
		}
		e.nodes = append(e.nodes, nd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log:\n%s", nd.Name, tail(nd.Log(), 6000))
			}
			nd.Stop()
		})
	}
	if n > 1 {
		e.waitReady()
	}
	return e
}

func (e *env) waitReady() {
	e.t.Helper()
	if !cluster.WaitFor(e.t.Context(), 30*time.Second, func() bool {
		for _, n := range e.nodes {
			if n.Exited() {
				continue
			}
			st, err := n.Status(e.t.Context())
			if err != nil || !st.Ready {
				return false
			}
		}
		return true
	}) {
		e.t.Fatal("nodes did not find each other")
	}
}

// image builds an image of the env's registry.
func (e *env) image(name string, seed uint64, sizes ...int64) *testimage.Image {
	e.t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: e.registry + "/e2e/" + name, Platforms: []string{"linux/amd64", "linux/arm64"},
		LayerSizes: sizes, Seed: seed})
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// importTo imports img into node i's containerd with `sluice import`, as
// an air-gap image, while sluice runs, and waits until node i advertises
// every key of it.
func (e *env) importTo(i int, img *testimage.Image) {
	e.t.Helper()
	tarPath := e.tarOf(img)
	before := e.advertised(i)
	out, err := runCmd(e.t.Context(), sluiceBin, "import", "--store", "containerd://"+e.daemons[i].Socket, tarPath)
	if err != nil {
		e.t.Fatalf("sluice import: %v\n%s", err, out)
	}
	if len(e.nodes) > 1 { // a lone node has nobody to advertise to
		e.waitAdvertised(i, func(n int) bool { return n >= before+len(img.Blobs)+1 })
	}
}

// tarOf writes img's import tarball once and returns its path.
func (e *env) tarOf(img *testimage.Image) string {
	e.t.Helper()
	if e.tars == nil {
		e.tars = map[string]string{}
	}
	if p, ok := e.tars[img.Name]; ok {
		return p
	}
	p := filepath.Join(e.t.TempDir(), "img.tar")
	if err := img.WriteTarFile(p); err != nil {
		e.t.Fatal(err)
	}
	e.tars[img.Name] = p
	return p
}

func (e *env) advertised(i int) int {
	st, err := e.nodes[i].Status(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return st.AdvertisedKeys
}

func (e *env) waitAdvertised(i int, ok func(int) bool) {
	e.t.Helper()
	var last int
	if !cluster.WaitFor(e.t.Context(), 20*time.Second, func() bool {
		st, err := e.nodes[i].Status(e.t.Context())
		if err != nil {
			return false
		}
		last = st.AdvertisedKeys
		return ok(st.AdvertisedKeys)
	}) {
		e.t.Fatalf("node%d advertised keys stuck at %d", i+1, last)
	}
}

// hostsDir writes node i's containerd hosts.toml: its own sluice first,
// then the (closed) upstream.
func (e *env) hostsDir(i int) string {
	e.t.Helper()
	dir := filepath.Join(e.daemons[i].Dir, "certs.d")
	regs, _, err := config.ParseRegistries("e2e.yaml", []byte("mirrors:\n  \""+e.registry+"\":\n"))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := config.WriteHosts(e.t.Context(), config.HostsOptions{Registries: regs, HostsDir: dir, Mirror: e.nodes[i].RegistryURL()}); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// pull runs `ctr images pull` on node i through its hosts.toml.
func (e *env) pull(ctx context.Context, i int, ref string) error {
	_, err := e.daemons[i].Ctr(ctx, "images", "pull", "--hosts-dir", e.hostsDir(i), "--all-platforms", "--local", "--snapshotter", "native", ref)
	return err
}

// assertHas checks node i's containerd holds img: the name points at the
// target digest and every blob is present.
func (e *env) assertHas(i int, img *testimage.Image) {
	e.t.Helper()
	out, err := e.daemons[i].Ctr(e.t.Context(), "images", "ls")
	if err != nil {
		e.t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, img.Name+" ") && strings.Contains(line, img.Target.Digest.String()) {
			found = true
		}
	}
	if !found {
		e.t.Fatalf("node%d: %s is not at %s:\n%s", i+1, img.Name, img.Target.Digest, out)
	}
	content, err := e.daemons[i].Ctr(e.t.Context(), "content", "ls", "--quiet")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range img.Digests() {
		if !bytes.Contains(content, []byte(d.String())) {
			e.t.Fatalf("node%d lacks %s", i+1, d)
		}
	}
}

func (e *env) metric(i int, name string, labels ...string) float64 {
	v, err := e.nodes[i].Metric(e.t.Context(), name, labels...)
	if err != nil {
		e.t.Fatalf("node%d metrics: %v", i+1, err)
	}
	return v
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// importKeys imports img into node i like importTo, but waits for want
// more advertised keys: a policy may refuse to advertise some of them.
func (e *env) importKeys(i int, img *testimage.Image, want int) {
	e.t.Helper()
	before := e.advertised(i)
	out, err := runCmd(e.t.Context(), sluiceBin, "import", "--store", "containerd://"+e.daemons[i].Socket, e.tarOf(img))
	if err != nil {
		e.t.Fatalf("sluice import: %v\n%s", err, out)
	}
	e.waitAdvertised(i, func(n int) bool { return n >= before+want })
}

// imageOf builds an image named name of registry reg (host:port).
func (e *env) imageOf(reg, name string, seed uint64, sizes ...int64) *testimage.Image {
	e.t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: reg + "/e2e/" + name, Platforms: []string{"linux/amd64"},
		LayerSizes: sizes, Seed: seed})
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// hostsDirFor writes node i's hosts.toml for each of registries (its own
// sluice first, then the upstream) into a directory of its own, so that
// hostsDir's files are left alone.
func (e *env) hostsDirFor(i int, registries ...string) string {
	e.t.Helper()
	dir := filepath.Join(e.daemons[i].Dir, "certs.d-"+strconv.Itoa(len(registries)))
	var y strings.Builder
	y.WriteString("mirrors:\n")
	for _, r := range registries {
		y.WriteString("  \"" + r + "\":\n")
	}
	regs, _, err := config.ParseRegistries("e2e.yaml", []byte(y.String()))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := config.WriteHosts(e.t.Context(), config.HostsOptions{Registries: regs, HostsDir: dir, Mirror: e.nodes[i].RegistryURL()}); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// pullWith runs `ctr images pull` on node i through the hosts directory
// hostsDir.
func (e *env) pullWith(ctx context.Context, i int, hostsDir, ref string) error {
	_, err := e.daemons[i].Ctr(ctx, "images", "pull", "--hosts-dir", hostsDir, "--all-platforms", "--local", "--snapshotter", "native", ref)
	return err
}

// closedAddr returns a loopback host:port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
