{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sluice.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sluice.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
sluice.paths: the node paths of the distribution preset, with the
containerd.* and registries.hostPath overrides applied, as YAML.
*/}}
{{- define "sluice.paths" -}}
{{- $presets := dict
  "containerd" (dict "socket" "/run/containerd/containerd.sock" "contentDir" "/var/lib/containerd/io.containerd.content.v1.content" "hostsDir" "/etc/containerd/certs.d" "registries" "" "registriesSource" "configMap")
  "k3s" (dict "socket" "/run/k3s/containerd/containerd.sock" "contentDir" "/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content" "hostsDir" "/var/lib/rancher/k3s/agent/etc/containerd/certs.d" "registries" "/etc/rancher/k3s/registries.yaml" "registriesSource" "hostPath")
  "rke2" (dict "socket" "/run/k3s/containerd/containerd.sock" "contentDir" "/var/lib/rancher/rke2/agent/containerd/io.containerd.content.v1.content" "hostsDir" "/var/lib/rancher/rke2/agent/etc/containerd/certs.d" "registries" "/etc/rancher/rke2/registries.yaml" "registriesSource" "hostPath")
}}
{{- $p := get $presets .Values.distribution }}
{{- if not $p }}
{{- fail (printf "distribution %q: want containerd, k3s or rke2" .Values.distribution) }}
{{- end }}
{{- $source := default $p.registriesSource .Values.registries.source }}
{{- if not (has $source (list "hostPath" "configMap")) }}
{{- fail (printf "registries.source %q: want hostPath or configMap" $source) }}
{{- end }}
{{- $regHost := default $p.registries .Values.registries.hostPath }}
{{- if and (eq $source "hostPath") (not $regHost) }}
{{- fail "registries.source hostPath needs registries.hostPath (the containerd preset has no registries.yaml on the node)" }}
{{- end }}
socket: {{ default $p.socket .Values.containerd.socket }}
socketDir: {{ dir (default $p.socket .Values.containerd.socket) }}
contentDir: {{ default $p.contentDir .Values.containerd.contentDir }}
hostsDir: {{ default $p.hostsDir .Values.containerd.hostsDir }}
registriesSource: {{ $source }}
registriesHostPath: {{ $regHost | quote }}
registriesFile: {{ if eq $source "hostPath" }}{{ $regHost }}{{ else }}/etc/sluice/registries/registries.yaml{{ end }}
{{- end }}

{{/* sluice.policyConfigMap: "true" when the chart mounts a policy ConfigMap. */}}
{{- define "sluice.policyConfigMap" -}}
{{- $p := .Values.policies }}
{{- if or $p.files $p.binaryFiles $p.settings (and $p.paths $p.shipped) }}true{{ end }}
{{- end }}

{{- define "sluice.pskSecret" -}}
{{- default (printf "%s-psk" (include "sluice.fullname" .)) .Values.psk.existingSecret }}
{{- end }}

{{- define "sluice.tlsSecret" -}}
{{- default (printf "%s-tls" (include "sluice.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* sluice.mirror: the URL the local containerd reaches sluice at. */}}
{{- define "sluice.mirror" -}}
{{- if .Values.tls.enabled }}
{{- printf "http://127.0.0.1:%d" (int .Values.ports.local) }}
{{- else }}
{{- printf "http://127.0.0.1:%d" (int .Values.ports.registry) }}
{{- end }}
{{- end }}

{{/*
sluice.securityContext: root (the containerd socket, content directory and
hosts directory are root's) with no capabilities and a read-only root.
*/}}
{{- define "sluice.securityContext" -}}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
sluice.probeHost: the kubelet probes the pod IP (the node's) unless the
metrics listener is bound to loopback, which the kubelet shares with a
host-network pod.
*/}}
{{- define "sluice.probeHost" -}}
{{- if has .Values.metrics.host (list "127.0.0.1" "localhost" "[::1]") }}
host: {{ .Values.metrics.host | trimPrefix "[" | trimSuffix "]" }}
{{- end }}
{{- end }}

{{/*
sluice.metricsHost: metrics.host for a host:port, in brackets unless it is
empty or has them: $(POD_IP) is an IPv6 address on IPv6 clusters, and Go
takes [10.0.0.7] as well as [fd00::7].
*/}}
{{- define "sluice.metricsHost" -}}
{{- $h := .Values.metrics.host }}
{{- if or (not $h) (hasPrefix "[" $h) }}{{ $h }}{{ else }}[{{ $h }}]{{ end }}
{{- end }}

{{/* sluice.validate fails on value combinations the node would refuse. */}}
{{- define "sluice.validate" -}}
{{- $p := .Values.policies }}
{{- if and $p.verificationKeySecret (eq (include "sluice.policyConfigMap" .) "true") }}
{{- if or $p.shipped $p.files $p.settings }}
{{- fail "policies.verificationKeySecret: every policy path must then be a signed bundle; set policies.shipped=false, no files or settings, and give bundles (.tar.gz) in binaryFiles or paths" }}
{{- end }}
{{- range $name, $_ := $p.binaryFiles }}
{{- if not (hasSuffix ".tar.gz" $name) }}
{{- fail (printf "policies.binaryFiles %q: with verificationKeySecret only signed bundles (.tar.gz) are accepted" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (has .Values.logFormat (list "text" "json")) }}
{{- fail (printf "logFormat %q: want text or json" .Values.logFormat) }}
{{- end }}
{{- end }}
