package deploy

import (
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/sluice"

// chartCase is a set of values and the node layout it must produce.
type chartCase struct {
	name   string
	values map[string]any
	// Expected node paths.
	socket, contentDir, hostsDir string
	// registries is the node's registries.yaml, "" when the chart's
	// ConfigMap is used.
	registries string
	// external are Secrets the values name but the chart does not make.
	external []string
}

const (
	testPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	testPSK = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func chartCases() []chartCase {
	return []chartCase{
		{name: "default", values: nil,
			socket: "/run/containerd/containerd.sock", contentDir: "/var/lib/containerd/io.containerd.content.v1.content",
			hostsDir: "/etc/containerd/certs.d"},
		{name: "containerd", values: map[string]any{"distribution": "containerd"},
			socket: "/run/containerd/containerd.sock", contentDir: "/var/lib/containerd/io.containerd.content.v1.content",
			hostsDir: "/etc/containerd/certs.d"},
		{name: "k3s", values: map[string]any{"distribution": "k3s"},
			socket: "/run/k3s/containerd/containerd.sock", contentDir: "/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content",
			hostsDir: "/var/lib/rancher/k3s/agent/etc/containerd/certs.d", registries: "/etc/rancher/k3s/registries.yaml"},
		{name: "rke2", values: map[string]any{"distribution": "rke2"},
			socket: "/run/k3s/containerd/containerd.sock", contentDir: "/var/lib/rancher/rke2/agent/containerd/io.containerd.content.v1.content",
			hostsDir: "/var/lib/rancher/rke2/agent/etc/containerd/certs.d", registries: "/etc/rancher/rke2/registries.yaml"},
		{name: "every option", values: map[string]any{
			"distribution": "k3s",
			"registries":   map[string]any{"source": "configMap", "config": map[string]any{"mirrors": map[string]any{"*": map[string]any{}}}},
			"containerd":   map[string]any{"hostsDir": "/etc/containerd/certs.d"},
			"configure":    map[string]any{"disableDefaultEndpoint": true},
			"metrics": map[string]any{"host": "127.0.0.1",
				"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
				"dashboard":      map[string]any{"enabled": true}},
			"policies": map[string]any{
				"settings":    map[string]any{"digest_only": true},
				"files":       map[string]any{"quay.rego": "package sluice.policies\n\nviolation contains \"no quay\" if input.reference.registry == \"quay.io\"\n"},
				"binaryFiles": map[string]any{"extra.wasm": "AGFzbQEAAAA="},
				"paths":       []any{"/opt/policy/bundle.tar.gz"},
				"failOpen":    true,
			},
			"extraVolumes":      []any{map[string]any{"name": "bundle", "emptyDir": map[string]any{}}},
			"extraVolumeMounts": []any{map[string]any{"name": "bundle", "mountPath": "/opt/policy", "readOnly": true}},
			"psk":               map[string]any{"enabled": true, "value": testPSK},
			"tls":               map[string]any{"enabled": true, "cert": testPEM, "key": testPEM, "ca": testPEM},
			"extraArgs":         []any{"--peer-rate-limit=104857600", "--max-peer-fetches=16"},
			"priorityClassName": "system-node-critical",
		},
			socket: "/run/k3s/containerd/containerd.sock", contentDir: "/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content",
			hostsDir: "/etc/containerd/certs.d"},
		{name: "signed bundles and existing secrets", values: map[string]any{
			"distribution": "rke2",
			"policies": map[string]any{"shipped": false, "verificationKeySecret": "sluice-policy-key",
				"binaryFiles": map[string]any{"policy.tar.gz": "H4sIAAAAAAAAAwMAAAAAAAAAAAA="}},
			"psk": map[string]any{"enabled": true, "existingSecret": "cluster-psk"},
			"tls": map[string]any{"enabled": true, "existingSecret": "node-tls"},
		},
			socket: "/run/k3s/containerd/containerd.sock", contentDir: "/var/lib/rancher/rke2/agent/containerd/io.containerd.content.v1.content",
			hostsDir: "/var/lib/rancher/rke2/agent/etc/containerd/certs.d", registries: "/etc/rancher/rke2/registries.yaml",
			external: []string{"sluice-policy-key", "cluster-psk", "node-tls"}},
	}
}

func TestChart_Render(t *testing.T) {
	runFlags, err := CommandFlags("../cmd/sluice", "runFlags")
	if err != nil {
		t.Fatal(err)
	}
	configureFlags, err := CommandFlags("../cmd/sluice", "configureCmd")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range chartCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := Render(chartDir, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			o := decodeStrict(t, out)
			checkDaemonSet(t, tc, o, runFlags, configureFlags)
			checkReferences(t, tc, o)
		})
	}
}

func checkDaemonSet(t *testing.T, tc chartCase, o *objects, runFlags, configureFlags map[string]FlagKind) {
	t.Helper()
	spec := o.daemonSet.Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %q: want host network with ClusterFirstWithHostNet (the dns: bootstrap needs cluster DNS)", spec.HostNetwork, spec.DNSPolicy)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	run := spec.Containers[0]
	if len(run.Args) == 0 || run.Args[0] != "run" {
		t.Fatalf("container args %q: want `sluice run …`", run.Args)
	}
	args := parseArgs(t, run, run.Args[1:], runFlags)

	// The node's containerd, at the preset's paths.
	store := one(t, args, "store")
	sock, ok := strings.CutPrefix(store, "containerd://")
	if !ok || sock != tc.socket {
		t.Errorf("--store %q: want containerd://%s", store, tc.socket)
	}
	if ns := one(t, args, "containerd-namespace"); ns != "k8s.io" {
		t.Errorf("--containerd-namespace %q: want k8s.io", ns)
	}
	checkHostMount(t, run, volumes, filepath.Dir(tc.socket), true)
	checkHostMount(t, run, volumes, tc.contentDir, true)
	registries := one(t, args, "registries")
	if tc.registries != "" {
		if registries != tc.registries {
			t.Errorf("--registries %q: want the node's %s", registries, tc.registries)
		}
		checkHostMount(t, run, volumes, tc.registries, true)
	}
	for _, name := range []string{"store", "data-dir", "registries", "policy", "psk-file", "tls-cert", "tls-key", "client-ca", "peer-ca", "policy-verification-key"} {
		for _, p := range args[name] {
			checkMounted(t, run, name, strings.TrimPrefix(p, "containerd://"))
		}
	}
	if m := mountFor(run, one(t, args, "data-dir")); m == nil || m.ReadOnly {
		t.Errorf("--data-dir %s must be writable", one(t, args, "data-dir"))
	}

	// Ports: the flags, the container's ports and the probes agree.
	ports := map[string]corev1.ContainerPort{}
	for _, p := range run.Ports {
		ports[p.Name] = p
		if p.HostPort != p.ContainerPort {
			t.Errorf("port %s: hostPort %d != containerPort %d (host network)", p.Name, p.HostPort, p.ContainerPort)
		}
	}
	for flag, name := range map[string]string{"registry-addr": "registry", "p2p-addr": "p2p", "metrics-addr": "metrics"} {
		if got := portOf(t, one(t, args, flag)); got != ports[name].ContainerPort {
			t.Errorf("--%s port %d, container port %s %d", flag, got, name, ports[name].ContainerPort)
		}
	}
	metricsHost, _, _ := net.SplitHostPort(one(t, args, "metrics-addr"))
	for probe, p := range map[string]*corev1.Probe{"/readyz": run.ReadinessProbe, "/healthz": run.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP probe for %s", probe)
			continue
		}
		if p.HTTPGet.Path != probe || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %s on port %s: want %s on metrics", p.HTTPGet.Path, p.HTTPGet.Port.String(), probe)
		}
		loopback := metricsHost == "127.0.0.1" || metricsHost == "localhost" || metricsHost == "::1"
		if loopback != (p.HTTPGet.Host != "") {
			t.Errorf("metrics bound to %q but probe host %q: the kubelet would not reach it", metricsHost, p.HTTPGet.Host)
		}
	}

	// The dns: bootstrap names the headless Service that lists every node.
	boot := one(t, args, "bootstrap")
	rest, ok := strings.CutPrefix(boot, "dns:")
	if !ok {
		t.Fatalf("--bootstrap %q: want dns:NAME:PORT", boot)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		t.Fatalf("--bootstrap %q: %v", boot, err)
	}
	svcName, svcNS, _ := strings.Cut(strings.TrimSuffix(host, ".svc.cluster.local"), ".")
	svc := o.services[svcName]
	switch {
	case svc == nil || svcNS != o.daemonSet.Namespace:
		t.Errorf("--bootstrap %q: no Service %s in %s", boot, svcName, o.daemonSet.Namespace)
	case svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses:
		t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v: want headless, listing nodes before they are ready", svcName, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	default:
		if !servesPort(svc, port) || port != strconv.Itoa(int(ports["p2p"].ContainerPort)) {
			t.Errorf("--bootstrap port %s: Service ports %v, p2p port %d", port, svc.Spec.Ports, ports["p2p"].ContainerPort)
		}
		for k, v := range svc.Spec.Selector {
			if o.daemonSet.Spec.Template.Labels[k] != v {
				t.Errorf("Service selector %s=%s does not match the pods", k, v)
			}
		}
	}

	// The soft memory limit follows the memory limit (sluice takes 90%).
	if _, ok := run.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	if !hasMemLimitEnv(run) {
		t.Errorf("env %v: want SLUICE_MEMORY_LIMIT from resourceFieldRef limits.memory of container %s", run.Env, run.Name)
	}

	// Shutdown: the preStop pause and sluice's drain fit in the grace
	// period, or the kubelet kills transfers the drain would let finish.
	grace := spec.TerminationGracePeriodSeconds
	drain, err := time.ParseDuration(one(t, args, "shutdown-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	var pause time.Duration
	if l := run.Lifecycle; l != nil && l.PreStop != nil {
		if l.PreStop.Sleep == nil {
			t.Errorf("preStop %+v: want a sleep (the image has no shell)", l.PreStop)
		} else {
			pause = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		}
	}
	if grace == nil || time.Duration(*grace)*time.Second <= pause+drain {
		t.Errorf("terminationGracePeriodSeconds %v: want more than preStop %s + --shutdown-timeout %s", grace, pause, drain)
	}

	// The init container points containerd's hosts directory at the node.
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want 1 (sluice configure)", len(spec.InitContainers))
	}
	cfg := spec.InitContainers[0]
	if len(cfg.Args) == 0 || cfg.Args[0] != "configure" {
		t.Fatalf("init container args %q: want `sluice configure …`", cfg.Args)
	}
	cargs := parseArgs(t, cfg, cfg.Args[1:], configureFlags)
	hostsDir := one(t, cargs, "hosts-dir")
	if hostsDir != tc.hostsDir {
		t.Errorf("--hosts-dir %q: want %s", hostsDir, tc.hostsDir)
	}
	checkHostMount(t, cfg, volumes, hostsDir, false)
	if got := one(t, cargs, "registries"); got != registries {
		t.Errorf("configure --registries %q, run --registries %q: want the same file", got, registries)
	}
	checkMounted(t, cfg, "registries", registries)
	mirror, err := url.Parse(one(t, cargs, "mirror"))
	if err != nil {
		t.Fatal(err)
	}
	want := one(t, args, "registry-addr")
	if local := args["local-addr"]; len(local) > 0 {
		want = local[0]
		if h, _, _ := net.SplitHostPort(want); h != "127.0.0.1" {
			t.Errorf("--local-addr %q: want loopback", want)
		}
	}
	if mirror.Scheme != "http" || mirror.Hostname() != "127.0.0.1" || mirror.Port() != strconv.Itoa(int(portOf(t, want))) {
		t.Errorf("configure --mirror %s: want http://127.0.0.1 on the port of %s", mirror, want)
	}
	if len(args["tls-cert"]) > 0 && len(args["local-addr"]) == 0 {
		t.Error("TLS on the registry port but no --local-addr for the local containerd")
	}
}

// parseArgs checks every argument is --flag=value (or --flag for a
// boolean) of a flag the command defines, with a value of the flag's type
// and only $(VAR)s the container defines, and returns the values by flag.
func parseArgs(t *testing.T, c corev1.Container, args []string, flags map[string]FlagKind) map[string][]string {
	t.Helper()
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	out := map[string][]string{}
	for _, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		kind, ok := flags[name]
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("container %s: argument %q is not a flag of the command", c.Name, a)
			continue
		}
		for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(value, -1) {
			if !env[m[1]] {
				t.Errorf("container %s: %s uses $(%s), which is not in its env", c.Name, a, m[1])
			}
		}
		var err error
		switch {
		case kind == FlagBool:
			if hasValue {
				_, err = strconv.ParseBool(value)
			}
			value = "true"
		case !hasValue:
			t.Errorf("container %s: %q: want --%s=VALUE", c.Name, a, name)
		case kind == FlagDuration:
			_, err = time.ParseDuration(value)
		case kind == FlagInt:
			_, err = strconv.ParseInt(value, 10, 64)
		}
		if err != nil {
			t.Errorf("container %s: %q: %v", c.Name, a, err)
		}
		if kind != FlagValue && len(out[name]) > 0 {
			t.Errorf("container %s: --%s given twice", c.Name, name)
		}
		out[name] = append(out[name], value)
	}
	return out
}

func one(t *testing.T, args map[string][]string, name string) string {
	t.Helper()
	if len(args[name]) != 1 {
		t.Fatalf("--%s: %q, want one value", name, args[name])
	}
	return args[name][0]
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

// mountFor returns the mount a path lies in, the deepest one.
func mountFor(c corev1.Container, path string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	return best
}

func checkMounted(t *testing.T, c corev1.Container, flag, path string) {
	t.Helper()
	if !filepath.IsAbs(path) {
		t.Errorf("container %s: --%s %q is not an absolute path", c.Name, flag, path)
		return
	}
	if mountFor(c, path) == nil {
		t.Errorf("container %s: --%s %s is on no volume mount", c.Name, flag, path)
	}
}

// checkHostMount checks the node path is mounted from the node at the same
// path (containerd reports host paths, e.g. its content root), read-only
// or writable as asked.
func checkHostMount(t *testing.T, c corev1.Container, volumes map[string]corev1.Volume, path string, readOnly bool) {
	t.Helper()
	m := mountFor(c, path)
	if m == nil {
		t.Errorf("container %s: %s is not mounted", c.Name, path)
		return
	}
	v := volumes[m.Name]
	if v.HostPath == nil || v.HostPath.Path != m.MountPath {
		t.Errorf("container %s: %s is on volume %s mounted at %s, want the node's %s at the same path", c.Name, path, m.Name, m.MountPath, m.MountPath)
	}
	if m.ReadOnly != readOnly {
		t.Errorf("container %s: %s readOnly %v, want %v", c.Name, path, m.ReadOnly, readOnly)
	}
}

func servesPort(svc *corev1.Service, port string) bool {
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port && p.TargetPort.String() == "p2p" {
			return true
		}
	}
	return false
}

func hasMemLimitEnv(c corev1.Container) bool {
	for _, e := range c.Env {
		if e.Name != "SLUICE_MEMORY_LIMIT" || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
			continue
		}
		r := e.ValueFrom.ResourceFieldRef
		return r.Resource == "limits.memory" && (r.ContainerName == "" || r.ContainerName == c.Name)
	}
	return false
}

// checkReferences checks every ConfigMap and Secret the pods use is in the
// render or named in the values as existing, and what the chart writes
// into them is what the node reads.
func checkReferences(t *testing.T, tc chartCase, o *objects) {
	t.Helper()
	external := map[string]bool{}
	for _, s := range tc.external {
		external[s] = true
	}
	for _, v := range o.daemonSet.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil && o.configMaps[v.ConfigMap.Name] == nil:
			t.Errorf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
		case v.Secret != nil && o.secrets[v.Secret.SecretName] == nil && !external[v.Secret.SecretName]:
			t.Errorf("volume %s: Secret %s is not rendered", v.Name, v.Secret.SecretName)
		}
	}
	for name, cm := range o.configMaps {
		if body, ok := cm.Data["registries.yaml"]; ok {
			var reg struct {
				Mirrors map[string]any `json:"mirrors"`
			}
			if err := yaml.UnmarshalStrict([]byte(body), &reg); err != nil || len(reg.Mirrors) == 0 {
				t.Errorf("ConfigMap %s: registries.yaml %q: %v (want mirrors)", name, body, err)
			}
		}
		if body, ok := cm.Data["settings.json"]; ok {
			var doc struct {
				Sluice struct {
					Settings map[string]bool `json:"settings"`
				} `json:"sluice"`
			}
			if err := yaml.UnmarshalStrict([]byte(body), &doc); err != nil || len(doc.Sluice.Settings) == 0 {
				t.Errorf("ConfigMap %s: settings.json %q: %v (want data.sluice.settings)", name, body, err)
			}
		}
	}
	if o.serviceMonitor != nil {
		for _, e := range o.serviceMonitor.Spec.Endpoints {
			if e.Port != "metrics" {
				t.Errorf("ServiceMonitor endpoint port %q: want metrics", e.Port)
			}
		}
	}
}

// TestChart_Lint runs Helm's own linter on the chart with each case's
// values; warnings fail as errors do.
func TestChart_Lint(t *testing.T) {
	for _, tc := range chartCases() {
		t.Run(tc.name, func(t *testing.T) {
			l := lint.AllWithKubeVersion(chartDir, tc.values, ReleaseNamespace, nil)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestChart_RenderErrors: values the node could not run with fail the
// render with a message naming the value.
func TestChart_RenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown distribution", map[string]any{"distribution": "microk8s"}, `distribution "microk8s": want containerd, k3s or rke2`},
		{"bad registries source", map[string]any{"registries": map[string]any{"source": "url"}}, `registries.source "url"`},
		{"hostPath without a file", map[string]any{"registries": map[string]any{"source": "hostPath"}}, "needs registries.hostPath"},
		{"short psk", map[string]any{"psk": map[string]any{"enabled": true, "value": "abc"}}, "psk.value: want 64 hex digits"},
		{"tls without cert", map[string]any{"tls": map[string]any{"enabled": true}}, "tls: set tls.cert"},
		{"signed bundles beside rego", map[string]any{"policies": map[string]any{"verificationKeySecret": "k", "settings": map[string]any{"digest_only": true}}}, "must then be a signed bundle"},
		{"unsigned wasm with a key", map[string]any{"policies": map[string]any{"shipped": false, "verificationKeySecret": "k", "binaryFiles": map[string]any{"p.wasm": "AA=="}}}, `"p.wasm": with verificationKeySecret`},
		{"bad log format", map[string]any{"logFormat": "xml"}, `logFormat "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Render(chartDir, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}
