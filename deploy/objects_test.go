package deploy

import (
	"fmt"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// objects is a render decoded into the Kubernetes API types.
type objects struct {
	daemonSet      *appsv1.DaemonSet
	services       map[string]*corev1.Service
	configMaps     map[string]*corev1.ConfigMap
	secrets        map[string]*corev1.Secret
	serviceMonitor *monitoringv1.ServiceMonitor
}

// decodeStrict decodes every document of a render into its API type; a
// field the type does not have, a kind the chart should not make, or a
// duplicate name fails.
func decodeStrict(t *testing.T, manifest string) *objects {
	t.Helper()
	o := &objects{services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	seen := map[string]bool{}
	for i, doc := range strings.Split(manifest, "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		key := meta.APIVersion + "/" + meta.Kind + "/" + meta.Metadata.Name
		if seen[key] {
			t.Fatalf("document %d: %s twice", i, key)
		}
		seen[key] = true
		if meta.Metadata.Namespace == "" {
			t.Errorf("%s: no namespace", key)
		}
		var target any
		switch meta.APIVersion + "/" + meta.Kind {
		case "apps/v1/DaemonSet":
			if o.daemonSet != nil {
				t.Fatalf("two DaemonSets")
			}
			o.daemonSet = &appsv1.DaemonSet{}
			target = o.daemonSet
		case "v1/Service":
			s := &corev1.Service{}
			o.services[meta.Metadata.Name], target = s, s
		case "v1/ConfigMap":
			c := &corev1.ConfigMap{}
			o.configMaps[meta.Metadata.Name], target = c, c
		case "v1/Secret":
			s := &corev1.Secret{}
			o.secrets[meta.Metadata.Name], target = s, s
		case "monitoring.coreos.com/v1/ServiceMonitor":
			o.serviceMonitor = &monitoringv1.ServiceMonitor{}
			target = o.serviceMonitor
		default:
			t.Fatalf("document %d: unexpected kind %s %s", i, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", key, err, doc)
		}
	}
	if o.daemonSet == nil {
		t.Fatal("no DaemonSet rendered")
	}
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}
