package deploy

import (
	"reflect"
	"testing"
)

// TestChart_PodTemplateFollowsReadAtStart: sluice reads the PSK, the TLS
// files and (through the init container) registries.yaml only when it
// starts, so a `helm upgrade` that changes one of them must change the pod
// template, or the DaemonSet restarts nothing and the nodes keep the old
// key until they restart one by one (a PSK rotation then splits the
// cluster into two private networks). Policies are reloaded live and must
// not restart the nodes.
func TestChart_PodTemplateFollowsReadAtStart(t *testing.T) {
	const otherPSK = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	otherPEM := testPEM + testPEM
	for _, tc := range []struct {
		name        string
		before      map[string]any
		after       map[string]any
		wantRestart bool
	}{
		{"psk rotated",
			map[string]any{"psk": map[string]any{"enabled": true, "value": testPSK}},
			map[string]any{"psk": map[string]any{"enabled": true, "value": otherPSK}}, true},
		{"tls certificate renewed",
			map[string]any{"tls": map[string]any{"enabled": true, "cert": testPEM, "key": testPEM, "ca": testPEM}},
			map[string]any{"tls": map[string]any{"enabled": true, "cert": otherPEM, "key": testPEM, "ca": testPEM}}, true},
		{"tls ca changed",
			map[string]any{"tls": map[string]any{"enabled": true, "cert": testPEM, "key": testPEM, "ca": testPEM}},
			map[string]any{"tls": map[string]any{"enabled": true, "cert": testPEM, "key": testPEM, "ca": otherPEM}}, true},
		{"registries changed",
			map[string]any{"registries": map[string]any{"config": map[string]any{"mirrors": map[string]any{"docker.io": map[string]any{}}}}},
			map[string]any{"registries": map[string]any{"config": map[string]any{"mirrors": map[string]any{"docker.io": map[string]any{"endpoint": []any{"https://mirror.example"}}}}}}, true},
		{"policy settings changed (reloaded live)",
			map[string]any{"policies": map[string]any{"settings": map[string]any{"digest_only": true}}},
			map[string]any{"policies": map[string]any{"settings": map[string]any{"digest_only": false}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmpl := func(values map[string]any) any {
				out, err := Render(chartDir, values)
				if err != nil {
					t.Fatal(err)
				}
				return decodeStrict(t, out).daemonSet.Spec.Template
			}
			before, after := tmpl(tc.before), tmpl(tc.after)
			if restart := !reflect.DeepEqual(before, after); restart != tc.wantRestart {
				t.Errorf("pod template changed: %v, want %v (a changed template is what makes the DaemonSet roll)", restart, tc.wantRestart)
			}
		})
	}
}
