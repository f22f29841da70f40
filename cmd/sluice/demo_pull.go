package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// pullWithContainerd starts a containerd for node 3, writes its hosts.toml
// with `sluice configure` logic (node 3 first, then the upstream) and pulls
// every platform with ctr.
func pullWithContainerd(ctx context.Context, bin, dir string, n3 *cluster.Node, registryHost string, img *testimage.Image, stdout io.Writer) error {
	d, err := ctrtest.StartIn(bin, filepath.Join(dir, "ctrd3"))
	if err != nil {
		return err
	}
	defer d.Stop()
	hostsDir := filepath.Join(dir, "certs.d")
	regs, _, err := config.ParseRegistries("demo-registries.yaml", []byte("mirrors:\n  \""+registryHost+"\":\n"))
	if err != nil {
		return err
	}
	if _, err := config.WriteHosts(ctx, config.HostsOptions{Registries: regs, HostsDir: hostsDir, Mirror: n3.RegistryURL()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  containerd for node3 at %s; hosts.toml tries %s first, then %s\n", d.Socket, n3.RegistryURL(), registryHost)
	if _, err := d.Ctr(ctx, "images", "pull", "--hosts-dir", hostsDir, "--all-platforms", "--local", "--snapshotter", "native", img.Name); err != nil {
		return err
	}
	out, err := d.Ctr(ctx, "images", "ls", "--quiet")
	if err != nil {
		return err
	}
	if !strings.Contains(string(out), img.Name) {
		return fmt.Errorf("ctr images ls does not list %s:\n%s", img.Name, out)
	}
	content, err := d.Ctr(ctx, "content", "ls", "--quiet")
	if err != nil {
		return err
	}
	for _, dg := range img.Digests() {
		if !strings.Contains(string(content), dg.String()) {
			return fmt.Errorf("containerd lacks %s after the pull", dg)
		}
	}
	return nil
}

// pullInProcess pulls every blob of the image through node 3 with
// containerd's registry client, as containerd would with a mirror host,
// verifying each digest.
func pullInProcess(ctx context.Context, n3 *cluster.Node, img *testimage.Image) error {
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: func(string) ([]docker.RegistryHost, error) {
		return []docker.RegistryHost{{
			Client: http.DefaultClient, Host: n3.RegistryAddr(), Scheme: "http", Path: "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		}}, nil
	}})
	name, desc, err := resolver.Resolve(ctx, img.Name)
	if err != nil {
		return fmt.Errorf("resolve through node3: %w", err)
	}
	if desc.Digest != img.Target.Digest {
		return fmt.Errorf("node3 resolved %s to %s, want %s", name, desc.Digest, img.Target.Digest)
	}
	f, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return err
	}
	queue := []ocispec.Descriptor{desc}
	seen := map[digest.Digest]bool{}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		rc, err := f.Fetch(ctx, d)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", d.Digest, err)
		}
		v := d.Digest.Verifier()
		b, err := io.ReadAll(io.TeeReader(rc, v))
		rc.Close()
		if err != nil {
			return fmt.Errorf("fetch %s: %w", d.Digest, err)
		}
		if !v.Verified() {
			return fmt.Errorf("fetch %s: digest mismatch", d.Digest)
		}
		for _, c := range img.Children(d, b) {
			queue = append(queue, c)
		}
	}
	if len(seen) != len(img.Blobs) {
		return errors.New("not every blob of the image was fetched")
	}
	return nil
}
