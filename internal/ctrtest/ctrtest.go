// Package ctrtest starts real containerd daemons for tests: the containerd
// and ctr binaries are built once from the module pinned in go.mod (go tool
// directives) into <repo>/bin, and each daemon runs as root with its own
// root, state and sockets in a temp dir and the CRI plugins disabled.
package ctrtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Namespace is the containerd namespace tests use (the kubelet's).
const Namespace = "k8s.io"

// Daemon is a running containerd.
type Daemon struct {
	Dir    string
	Socket string
	Root   string
	// Config is the daemon's config.toml.
	Config string
	bin    string
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

// RepoBin returns <repo>/bin, created when missing.
func RepoBin() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin")
	return bin, os.MkdirAll(bin, 0o755)
}

// Built returns <repo>/bin when containerd and ctr are already built there.
func Built() (string, bool) {
	bin, err := RepoBin()
	if err != nil {
		return "", false
	}
	return bin, exists(filepath.Join(bin, "containerd")) && exists(filepath.Join(bin, "ctr"))
}

// BinDir returns <repo>/bin with containerd and ctr built, building them on
// first use (serialised across test binaries by a file lock).
func BinDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	err = Locked(bin, "containerd", func() error {
		if exists(filepath.Join(bin, "containerd")) && exists(filepath.Join(bin, "ctr")) {
			return nil
		}
		cmd := exec.Command("go", "build", "-tags", "no_btrfs", "-o", bin+"/",
			"github.com/containerd/containerd/v2/cmd/containerd", "github.com/containerd/containerd/v2/cmd/ctr")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build containerd: %w\n%s", err, out)
		}
		return nil
	})
	return bin, err
}

// Locked runs fn holding the file lock bin/.<name>.lock, so test binaries
// running at once build a tool once, one after the other.
func Locked(bin, name string, fn func() error) error {
	lock, err := os.OpenFile(filepath.Join(bin, "."+name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	return fn()
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the sluice module")
	}
	return filepath.Dir(mod), nil
}

// Option changes how a daemon is started.
type Option func(*options)

type options struct{ extra string }

// WithConfig appends TOML to the daemon's generated config.toml, e.g. a
// [plugins."io.containerd.cri.v1.images".registry] table with config_path.
func WithConfig(toml string) Option {
	return func(o *options) { o.extra += "\n" + toml + "\n" }
}

// Start builds the binaries if needed and starts a daemon; it is stopped
// when the test ends.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containerd tests need root (they run as root here and in CI)")
	}
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ctrd")
	if err != nil {
		t.Fatal(err)
	}
	d, err := StartIn(bin, dir, opts...)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("containerd log (%s):\n%s", dir, tail(d.log.String(), 4000))
		}
		os.RemoveAll(dir)
	})
	return d
}

// StartIn starts a daemon with its files in dir (used by the demo too).
func StartIn(bin, dir string, opts ...Option) (*Daemon, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "c.sock"), Root: filepath.Join(dir, "root"), bin: bin, log: &bytes.Buffer{}}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
`, d.Root, filepath.Join(dir, "state"), d.Socket, d.Socket+".ttrpc", filepath.Join(dir, "debug.sock")) + o.extra
	cfgPath := filepath.Join(dir, "config.toml")
	d.Config = cfgPath
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(filepath.Join(bin, "containerd"), "--config", cfgPath, "--log-level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			return d, nil
		}
		if d.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Stop()
	return nil, fmt.Errorf("containerd did not come up in %s:\n%s", dir, tail(d.log.String(), 4000))
}

// Stop stops the daemon.
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	d.cmd = nil
}

// Ctr runs ctr against the daemon in the test namespace.
func (d *Daemon) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--address", d.Socket, "--namespace", Namespace}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "ctr"), full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// ContentPath is where the daemon keeps the blob of digest "sha256:<hex>".
func (d *Daemon) ContentPath(dgst string) string {
	alg, hex, _ := strings.Cut(dgst, ":")
	return filepath.Join(d.Root, "io.containerd.content.v1.content", "blobs", alg, hex)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
