package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckConfigPath_ConfigFiles reads containerd config files of every
// version and checks config_path against the hosts directory sluice wrote.
func TestCheckConfigPath_ConfigFiles(t *testing.T) {
	t.Parallel()
	const hosts = "/etc/sluice-test/certs.d"
	tests := []struct {
		name     string
		files    map[string]string // relative to the temp dir; "config.toml" is loaded
		major    int
		hostsDir string
		want     string // status
		detail   string // in the detail
		disabled string
	}{
		{name: "v2", files: map[string]string{"config.toml": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"" + hosts + "\"\n"},
			major: 1, want: statusOK, detail: "containerd reads " + hosts},
		{name: "v3", files: map[string]string{"config.toml": "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"" + hosts + "\"\n"},
			major: 2, want: statusOK, detail: "containerd reads " + hosts},
		{name: "v1 plugin names", files: map[string]string{"config.toml": "[plugins.cri.registry]\n  config_path = \"" + hosts + "\"\n"},
			major: 1, want: statusOK},
		{name: "v2 list, ours second", files: map[string]string{"config.toml": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/docker/certs.d:" + hosts + "\"\n"},
			want: statusOK},
		{name: "v3 from an import", files: map[string]string{
			"config.toml":       "version = 3\nimports = [\"conf.d/*.toml\"]\n",
			"conf.d/hosts.toml": "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"" + hosts + "\"\n"},
			major: 2, want: statusOK},
		{name: "wrong path", files: map[string]string{"config.toml": "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/x/certs.d\"\n"},
			major: 2, want: statusFail, detail: "containerd reads hosts from /x/certs.d (config_path = \"/x/certs.d\" in "},
		{name: "wrong path says what to rerun", files: map[string]string{"config.toml": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/x/certs.d\"\n"},
			want: statusFail, detail: "rerun sluice configure --hosts-dir /x/certs.d"},
		{name: "v3 missing config_path, containerd 2 default", files: map[string]string{"config.toml": "version = 3\n"},
			major: 2, hostsDir: "/etc/containerd/certs.d", want: statusOK, detail: "containerd's default"},
		{name: "v3 missing config_path, not the default", files: map[string]string{"config.toml": "version = 3\n"},
			major: 2, want: statusFail, detail: "but sluice configured " + hosts},
		{name: "v2 missing config_path, containerd 1", files: map[string]string{"config.toml": "version = 2\n"},
			major: 1, want: statusFail, detail: "sets no config_path"},
		{name: "v3 config_path in the v2 table", files: map[string]string{"config.toml": "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"" + hosts + "\"\n"},
			major: 2, want: statusFail, detail: "which containerd ignores"},
		{name: "mirrors and no config_path", files: map[string]string{"config.toml": "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"http://127.0.0.1:5000\"]\n"},
			major: 2, want: statusFail, detail: "deprecated"},
		{name: "plugin disabled", files: map[string]string{"config.toml": "version = 3\ndisabled_plugins = [\"io.containerd.cri.v1.images\"]\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"" + hosts + "\"\n"},
			major: 2, want: statusOK, disabled: criImagesPlugin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			hc, err := loadHostsConfig(t.Context(), filepath.Join(dir, "config.toml"), tt.major)
			if err != nil {
				t.Fatal(err)
			}
			hostsDir := tt.hostsDir
			if hostsDir == "" {
				hostsDir = hosts
			}
			c := checkConfigPath(hc, hostsDir)
			if c.Status != tt.want || !strings.Contains(c.Detail, tt.detail) {
				t.Errorf("check = %s %q, want %s containing %q", c.Status, c.Detail, tt.want, tt.detail)
			}
			if hc.Disabled != tt.disabled {
				t.Errorf("disabled = %q, want %q", hc.Disabled, tt.disabled)
			}
		})
	}
}

// TestLoadHostsConfig_Errors: a file containerd cannot read is an error
// naming the file.
func TestLoadHostsConfig_Errors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"bad.toml":    "version = 3\n[plugins\n",
		"future.toml": "version = 99\n",
	} {
		p := writeFile(t, filepath.Join(dir, name), content)
		if _, err := loadHostsConfig(t.Context(), p, 2); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want an error naming the file", name, err)
		}
	}
	if _, err := loadHostsConfig(t.Context(), filepath.Join(dir, "missing.toml"), 2); err == nil {
		t.Error("missing file: no error")
	}
}

// TestCheckHostsFiles_FirstHost reads hosts directories with containerd's
// own hosts.toml loader: the sluice mirror must come first in each.
func TestCheckHostsFiles_FirstHost(t *testing.T) {
	t.Parallel()
	const mirror = "http://127.0.0.1:5000"
	configured := func(t *testing.T, dir string) {
		t.Helper()
		reg := writeFile(t, filepath.Join(t.TempDir(), "registries.yaml"), "mirrors:\n  docker.io:\n  registry.k8s.io:\n")
		var out, errb bytes.Buffer
		if err := configureCmd(t.Context(), []string{"--registries", reg, "--hosts-dir", dir, "--mirror", mirror}, &out, &errb); err != nil {
			t.Fatalf("configure: %v\n%s", err, errb.String())
		}
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T, hosts, other string) (roots []string)
		mirror string
		want   string
		detail string
	}{
		{name: "configured", setup: func(t *testing.T, hosts, _ string) []string { configured(t, hosts); return []string{hosts} },
			want: statusOK, detail: "2 registries try " + mirror + " first: docker.io, registry.k8s.io"},
		{name: "second in config_path, not shadowed", setup: func(t *testing.T, hosts, other string) []string {
			configured(t, hosts)
			writeFile(t, filepath.Join(other, "quay.io", "hosts.toml"), "server = \"https://quay.io\"\n")
			return []string{other, hosts}
		}, want: statusOK},
		{name: "empty dir", setup: func(t *testing.T, hosts, _ string) []string { return []string{hosts} },
			want: statusFail, detail: "no hosts.toml under"},
		{name: "other mirror configured", setup: func(t *testing.T, hosts, _ string) []string { configured(t, hosts); return []string{hosts} },
			mirror: "http://127.0.0.1:5002", want: statusFail, detail: "docker.io: first host is http://127.0.0.1:5000, not http://127.0.0.1:5002"},
		{name: "hand-written hosts.toml", setup: func(t *testing.T, hosts, _ string) []string {
			writeFile(t, filepath.Join(hosts, "docker.io", "hosts.toml"), "server = \"https://registry-1.docker.io\"\n[host.\"https://mirror.example.com\"]\n  capabilities = [\"pull\"]\n")
			return []string{hosts}
		}, want: statusFail, detail: "first host is https://mirror.example.com"},
		{name: "shadowed by an earlier root", setup: func(t *testing.T, hosts, other string) []string {
			configured(t, hosts)
			writeFile(t, filepath.Join(other, "docker.io", "hosts.toml"), "server = \"https://registry-1.docker.io\"\n")
			return []string{other, hosts}
		}, want: statusFail, detail: "containerd reads " + "%OTHER%/docker.io first"},
		{name: "bad mirror URL", setup: func(t *testing.T, hosts, _ string) []string { configured(t, hosts); return []string{hosts} },
			mirror: "127.0.0.1:5000", want: statusFail, detail: "want a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hosts, other := t.TempDir(), t.TempDir()
			roots := tt.setup(t, hosts, other)
			m := tt.mirror
			if m == "" {
				m = mirror
			}
			c := checkHostsFiles(t.Context(), roots, hosts, m)
			detail := strings.ReplaceAll(tt.detail, "%OTHER%", other)
			if c.Status != tt.want || !strings.Contains(c.Detail, detail) {
				t.Errorf("check = %s %q, want %s containing %q", c.Status, c.Detail, tt.want, detail)
			}
		})
	}
}

// doctorJSON runs sluice doctor --json and returns its checks by name.
func doctorJSON(t *testing.T, args ...string) (map[string]check, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := doctorCmd(t.Context(), append(args, "--json"), &out, &errb)
	var doc struct {
		Checks []check `json:"checks"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &doc); jerr != nil {
		t.Fatalf("doctor --json output %q: %v (stderr %s)", out.String(), jerr, errb.String())
	}
	byName := map[string]check{}
	for _, c := range doc.Checks {
		byName[c.Name] = c
	}
	return byName, err
}

func wantCheck(t *testing.T, checks map[string]check, name, status, detail string) {
	t.Helper()
	c, ok := checks[name]
	if !ok {
		t.Errorf("no %q check in %v", name, checks)
		return
	}
	if c.Status != status || !strings.Contains(c.Detail, detail) {
		t.Errorf("%s = %s %q, want %s containing %q", name, c.Status, c.Detail, status, detail)
	}
}

// TestDoctorCmd_Text: one line per check, FAIL lines make the command
// fail.
func TestDoctorCmd_Text(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "config.toml"), fmt.Sprintf("version = 3\n[plugins.%q.registry]\n  config_path = %q\n", criImagesPlugin, "/x"))
	var out, errb bytes.Buffer
	err := doctorCmd(t.Context(), []string{"--store", "containerd://" + filepath.Join(dir, "none.sock"), "--containerd-config", cfg,
		"--hosts-dir", filepath.Join(dir, "certs.d"), "--metrics-addr", "127.0.0.1:1", "--p2p-addr", "127.0.0.1:1", "--mirror", "http://127.0.0.1:1"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "checks failed") {
		t.Fatalf("err = %v, want checks failed", err)
	}
	for _, want := range []string{`FAIL\s+containerd\s+no containerd socket at `, `ok\s+containerd config\s+` + regexp.QuoteMeta(cfg), `FAIL\s+config_path\s+containerd reads hosts from /x `,
		`FAIL\s+hosts.toml\s+no hosts.toml`, `FAIL\s+registry\s+nothing answers`, `FAIL\s+readyz\s+nothing answers`, `FAIL\s+p2p\s+127.0.0.1:1 does not accept`} {
		if !regexp.MustCompile(`(?m)^` + want).MatchString(out.String()) {
			t.Errorf("no line matching %q in:\n%s", want, out.String())
		}
	}
}

// TestDoctorCmd_Node runs doctor against a real containerd whose config
// sets config_path, with an image imported, and real sluice nodes; then
// breaks each part and expects its check to say so.
func TestDoctorCmd_Node(t *testing.T) {
	hostsDir := filepath.Join(t.TempDir(), "certs.d")
	d := ctrtest.Start(t, ctrtest.WithConfig(fmt.Sprintf("[plugins.%q.registry]\n  config_path = %q", criImagesPlugin, hostsDir)))
	store := "containerd://" + d.Socket

	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/doctor:1.0", Platforms: []string{"linux/amd64"}, LayerSizes: []int64{300}, Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	var tarBuf bytes.Buffer
	if err := img.WriteExport(&tarBuf, testimage.Export{Platforms: []string{"linux/amd64"}}); err != nil {
		t.Fatal(err)
	}
	tarPath := writeFile(t, filepath.Join(t.TempDir(), "img.tar"), tarBuf.String())
	var out, errb bytes.Buffer
	if err := importCmd(t.Context(), []string{"--store", store, "--containerd-namespace", ctrtest.Namespace, tarPath}, &out, &errb); err != nil {
		t.Fatalf("import: %v\n%s", err, errb.String())
	}
	if _, err := d.Ctr(t.Context(), "namespaces", "create", "empty"); err != nil {
		t.Fatal(err)
	}

	bin, err := cluster.BuildSluice()
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, ip string, boot ...string) *cluster.Node {
		n, err := cluster.Start(t.Context(), bin, cluster.Spec{Name: name, IP: ip, Store: store, DataDir: t.TempDir()}, boot...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			n.Stop()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, n.Log())
			}
		})
		return n
	}
	n1 := start("doc1", "127.0.0.61")
	p2p := net.JoinHostPort(n1.IP, strconv.Itoa(n1.P2PPort))

	reg := writeFile(t, filepath.Join(t.TempDir(), "registries.yaml"), "mirrors:\n  docker.io:\n")
	if err := configureCmd(t.Context(), []string{"--registries", reg, "--hosts-dir", hostsDir, "--mirror", n1.RegistryURL()}, &out, &errb); err != nil {
		t.Fatalf("configure: %v\n%s", err, errb.String())
	}
	base := func(over ...string) []string {
		flags := map[string]string{"--store": store, "--hosts-dir": hostsDir, "--mirror": n1.RegistryURL(), "--metrics-addr": n1.MetricsURL(), "--p2p-addr": p2p}
		for i := 0; i+1 < len(over); i += 2 {
			flags[over[i]] = over[i+1]
		}
		var args []string
		for k, v := range flags {
			args = append(args, k, v)
		}
		return args
	}

	// Healthy, alone (no bootstrap): ready, but readyz warns, the CRI plugin is disabled
	// in ctrtest's config, everything else is ok.
	checks, err := doctorJSON(t, base()...)
	if err != nil {
		t.Fatalf("doctor on a healthy node: %v: %v", err, checks)
	}
	wantCheck(t, checks, "containerd", statusOK, "containerd 2.")
	wantCheck(t, checks, "namespace", statusOK, `namespace "k8s.io" holds 1 images`)
	wantCheck(t, checks, "containerd config", statusOK, d.Config+" (version 3, from the daemon's command line)")
	wantCheck(t, checks, "config_path", statusOK, "containerd reads "+hostsDir)
	wantCheck(t, checks, "cri plugin", statusWarn, "disables "+criImagesPlugin)
	wantCheck(t, checks, "hosts.toml", statusOK, "1 registries try "+n1.RegistryURL()+" first: docker.io")
	wantCheck(t, checks, "registry", statusOK, n1.RegistryURL()+"/v2/ answers")
	wantCheck(t, checks, "readyz", statusWarn, "ready but alone")
	wantCheck(t, checks, "p2p", statusOK, p2p+" accepts connections")

	// A peer joins: ready.
	start("doc2", "127.0.0.62", n1.Addr)
	if !cluster.WaitFor(t.Context(), 20*time.Second, func() bool {
		c, _ := doctorJSON(t, base()...)
		return c["readyz"].Status == statusOK
	}) {
		t.Fatal("readyz never became ok with a peer")
	}

	otherCfg := writeFile(t, filepath.Join(t.TempDir(), "config.toml"), "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/elsewhere\"\n")
	tests := []struct {
		name, check, status, detail string
		over                        []string
	}{
		{"no socket", "containerd", statusFail, "no containerd socket at", []string{"--store", "containerd://" + filepath.Join(d.Dir, "none.sock")}},
		{"no namespace", "namespace", statusFail, `namespace "nope" does not exist`, []string{"--containerd-namespace", "nope"}},
		{"empty namespace", "namespace", statusWarn, `namespace "empty" holds no images`, []string{"--containerd-namespace", "empty"}},
		{"config missing", "containerd config", statusFail, "no such file", []string{"--containerd-config", filepath.Join(d.Dir, "missing.toml")}},
		{"other config", "config_path", statusFail, "containerd reads hosts from /elsewhere", []string{"--containerd-config", otherCfg}},
		{"other hosts dir", "config_path", statusFail, "but sluice configured " + d.Dir, []string{"--hosts-dir", d.Dir}},
		{"other mirror", "hosts.toml", statusFail, "docker.io: first host is " + n1.RegistryURL(), []string{"--mirror", "http://127.0.0.61:1"}},
		{"registry down", "registry", statusFail, "nothing answers at http://127.0.0.61:1/v2/", []string{"--mirror", "http://127.0.0.61:1"}},
		{"metrics down", "readyz", statusFail, "nothing answers", []string{"--metrics-addr", "127.0.0.61:1"}},
		{"p2p down", "p2p", statusFail, "127.0.0.61:1 does not accept", []string{"--p2p-addr", "127.0.0.61:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks, err := doctorJSON(t, base(tt.over...)...)
			wantCheck(t, checks, tt.check, tt.status, tt.detail)
			if (tt.status == statusFail) != (err != nil) {
				t.Errorf("err = %v with %s %s", err, tt.check, tt.status)
			}
		})
	}
}
