{{/*
Names. Kubernetes names are limited to 63 characters (DNS labels).
*/}}
{{- define "vrypt-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vrypt-server.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vrypt-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vrypt-server.labels" -}}
helm.sh/chart: {{ include "vrypt-server.chart" . }}
{{ include "vrypt-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "vrypt-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vrypt-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vrypt-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vrypt-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; a digest wins over the
tag. Call with (dict "image" .Values.x.image "default" "fallback-tag").
*/}}
{{- define "vrypt-server.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag) }}
{{- end }}
{{- end }}

{{- define "vrypt-server.image" -}}
{{- include "vrypt-server.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) }}
{{- end }}

{{/*
A scalar as plain text. Values arrive as float64 from YAML/JSON; print whole
numbers without an exponent (65535, never 6.5535e+04).
*/}}
{{- define "vrypt-server.scalar" -}}
{{- if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* The sysctls the init container sets, without entries set to null. */}}
{{- define "vrypt-server.initSysctls" -}}
{{- $out := dict }}
{{- if .Values.sysctlInitContainer.enabled }}
{{- range $name, $value := (.Values.sysctlInitContainer.sysctls | default dict) }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $out $name (include "vrypt-server.scalar" $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
The net.core.somaxconn the pod ends up with, or "" when the chart does not
set it. The init container runs after the kubelet applies pod sysctls, so
its value wins when both set it.
*/}}
{{- define "vrypt-server.somaxconn" -}}
{{- $value := "" }}
{{- range .Values.podSysctls }}
{{- if eq .name "net.core.somaxconn" }}
{{- $value = .value }}
{{- end }}
{{- end }}
{{- $init := include "vrypt-server.initSysctls" . | fromJson }}
{{- if hasKey $init "net.core.somaxconn" }}
{{- $value = get $init "net.core.somaxconn" }}
{{- end }}
{{- $value }}
{{- end }}

{{/* Listen backlog: explicit value, else the pod's somaxconn, else "". */}}
{{- define "vrypt-server.backlog" -}}
{{- if .Values.server.backlog }}
{{- include "vrypt-server.scalar" .Values.server.backlog }}
{{- else }}
{{- include "vrypt-server.somaxconn" . }}
{{- end }}
{{- end }}

{{/* StatsD target: explicit, else the sidecar, else off. */}}
{{- define "vrypt-server.statsdTarget" -}}
{{- if .Values.statsd.target }}
{{- .Values.statsd.target }}
{{- else if .Values.statsdExporter.enabled }}
{{- printf "127.0.0.1:%d" (int .Values.statsdExporter.statsdPort) }}
{{- else }}
{{- "off" }}
{{- end }}
{{- end }}

{{/* preStop sleep seconds actually rendered (needs Kubernetes >= 1.30). */}}
{{- define "vrypt-server.preStopSleep" -}}
{{- if and (gt (int .Values.server.preStopSleepSeconds) 0) (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- int .Values.server.preStopSleepSeconds }}
{{- else }}
{{- 0 }}
{{- end }}
{{- end }}

{{/* Grace period: explicit (checked), else preStop + shutdown + 5 s. */}}
{{- define "vrypt-server.terminationGracePeriod" -}}
{{- $needed := add (include "vrypt-server.preStopSleep" . | int) (int .Values.server.shutdownTimeoutSeconds) }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than preStop sleep + server.shutdownTimeoutSeconds (%d), or Kubernetes kills the server before it has drained" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $needed 5 }}
{{- end }}
{{- end }}

{{/* Whether the ServiceMonitor renders. */}}
{{- define "vrypt-server.serviceMonitorEnabled" -}}
{{- if and .Values.serviceMonitor.enabled .Values.statsdExporter.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/* Combinations the schema cannot express; fail early and clearly. */}}
{{- define "vrypt-server.validate" -}}
{{- if and (eq .Values.kind "DaemonSet") .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs kind=Deployment: a DaemonSet runs one pod per node" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.statsdExporter.enabled) }}
{{- fail "serviceMonitor.enabled needs statsdExporter.enabled: the ServiceMonitor scrapes the exporter sidecar" }}
{{- end }}
{{- if and .Values.statsdExporter.enabled (eq (int .Values.statsdExporter.metricsPort) (int .Values.server.port)) }}
{{- fail "statsdExporter.metricsPort must differ from server.port" }}
{{- end }}
{{- end }}
