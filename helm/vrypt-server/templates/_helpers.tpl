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

{{/*
Labels, as YAML: commonLabels, then the object's own labels, then the
chart's (which always win; the schema refuses commonLabels that would
replace them). Call with (dict "ctx" $ "extra" .Values.x.labels); the
object labels may be left out.
*/}}
{{- define "vrypt-server.labelsWith" -}}
{{- $ctx := .ctx }}
{{- $chart := dict
  "helm.sh/chart" (include "vrypt-server.chart" $ctx)
  "app.kubernetes.io/name" (include "vrypt-server.name" $ctx)
  "app.kubernetes.io/instance" $ctx.Release.Name
  "app.kubernetes.io/version" $ctx.Chart.AppVersion
  "app.kubernetes.io/managed-by" $ctx.Release.Service }}
{{- toYaml (mergeOverwrite (dict) ($ctx.Values.commonLabels | default dict) (.extra | default dict) $chart) }}
{{- end }}

{{/*
`labels:` and `annotations:` of an object's metadata: the labels above, and
commonAnnotations overridden by the object's own annotations (no
`annotations:` key when both are empty). Call with (dict "ctx" $ "labels"
.Values.x.labels "annotations" .Values.x.annotations).
*/}}
{{- define "vrypt-server.metadata" -}}
labels:
  {{- include "vrypt-server.labelsWith" (dict "ctx" .ctx "extra" .labels) | nindent 2 }}
{{- with mergeOverwrite (dict) (.ctx.Values.commonAnnotations | default dict) (.annotations | default dict) }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "vrypt-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vrypt-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the `helm test` pod: not the workload's, so no
DaemonSet or Service claims it; the NetworkPolicy lets it in by these.
*/}}
{{- define "vrypt-server.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "vrypt-server.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
A list value rendered with `tpl`, so it may use the chart's helpers (e.g.
{{ include "vrypt-server.image" . }}). Call with (list $ .Values.x).
*/}}
{{- define "vrypt-server.tplList" -}}
{{- tpl (toYaml (index . 1)) (index . 0) }}
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

{{/*
Durations, as the server parses them: a number of seconds or a number with
a unit ms, s, m or h (`10`, `10s`, `1.5s`, `500ms`, `2m`, `1h`, `0`), at
most 365 days. Values arrive as strings or as numbers (float64 from YAML,
int64 from --set).

"vrypt-server.durationText": the value as the server reads it (numbers
without an exponent: 1e-05 would be a unit "e-05" to the server).
*/}}
{{- define "vrypt-server.durationText" -}}
{{- if or (kindIs "int64" .) (kindIs "int" .) }}
{{- int64 . }}
{{- else if kindIs "float64" . }}
{{- if eq . (floor .) }}
{{- int64 . }}
{{- else }}
{{- regexReplaceAll "0+$" (printf "%.9f" .) "" }}
{{- end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Milliseconds of a duration value, failing with a message naming the value.
Call with (list "server.shutdownDelay" .Values.server.shutdownDelay
minimumMs); prints a float.
*/}}
{{- define "vrypt-server.durationMs" -}}
{{- $name := index . 0 }}
{{- $text := include "vrypt-server.durationText" (index . 1) }}
{{- $min := index . 2 | float64 }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ms|s|m|h)?$" $text) }}
{{- fail (printf "%s: %q is not a duration (a number of seconds, or a number with ms, s, m or h: 10, 10s, 1.5s, 500ms, 2m, 1h)" $name $text) }}
{{- end }}
{{- $number := regexFind "^[0-9.]+" $text }}
{{- $unit := trimPrefix $number $text }}
{{- $scale := get (dict "" 1000.0 "s" 1000.0 "ms" 1.0 "m" 60000.0 "h" 3600000.0) $unit }}
{{- $ms := mulf (float64 $number) $scale }}
{{- if gt $ms 31536000000.0 }}
{{- fail (printf "%s: %q is longer than the server's maximum of 365 days" $name $text) }}
{{- end }}
{{- if lt $ms $min }}
{{- fail (printf "%s: %q is shorter than the server's minimum of %vms" $name $text $min) }}
{{- end }}
{{- $ms }}
{{- end }}

{{/*
Grace period: explicit (checked), else shutdownDelay + shutdownTimeout,
rounded up to whole seconds, + 5 s for the kubelet and the process exit.
Without a preStop hook, SIGTERM reaches the server at once; it keeps
serving for the delay, then drains for at most the timeout.
*/}}
{{- define "vrypt-server.terminationGracePeriod" -}}
{{- $delay := include "vrypt-server.durationMs" (list "server.shutdownDelay" .Values.server.shutdownDelay 0) | float64 }}
{{- $drain := include "vrypt-server.durationMs" (list "server.shutdownTimeout" .Values.server.shutdownTimeout 0) | float64 }}
{{- $neededMs := addf $delay $drain }}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) }}
{{- $grace := .Values.terminationGracePeriodSeconds | int64 }}
{{- if le (mulf $grace 1000.0) $neededMs }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than server.shutdownDelay + server.shutdownTimeout (%s + %s = %vs), or Kubernetes kills the server before it has drained" $grace (include "vrypt-server.durationText" .Values.server.shutdownDelay) (include "vrypt-server.durationText" .Values.server.shutdownTimeout) (divf $neededMs 1000.0)) }}
{{- end }}
{{- $grace }}
{{- else }}
{{- add (ceil (divf $neededMs 1000.0) | int64) 5 }}
{{- end }}
{{- end }}

{{- define "vrypt-server.metricsServiceName" -}}
{{- printf "%s-metrics" (include "vrypt-server.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* Labels that select the metrics Service (the ServiceMonitor uses them). */}}
{{- define "vrypt-server.metricsSelectorLabels" -}}
{{ include "vrypt-server.selectorLabels" . }}
app.kubernetes.io/component: metrics
{{- end }}

{{/* Whether the ServiceMonitor renders. */}}
{{- define "vrypt-server.serviceMonitorEnabled" -}}
{{- if and .Values.serviceMonitor.enabled .Values.metricsService.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/* Whether the HTTPRoute renders: asked for, and the cluster serves the API. */}}
{{- define "vrypt-server.httpRouteEnabled" -}}
{{- if and .Values.httpRoute.enabled (.Capabilities.APIVersions.Has "gateway.networking.k8s.io/v1") }}true{{ end }}
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
{{- if and .Values.serviceMonitor.enabled (not .Values.metricsService.enabled) }}
{{- fail "serviceMonitor.enabled needs metricsService.enabled: the ServiceMonitor scrapes the admin port through the metrics Service" }}
{{- end }}
{{- if and .Values.serviceMonitor.scrapeExporter (not .Values.statsdExporter.enabled) }}
{{- fail "serviceMonitor.scrapeExporter needs statsdExporter.enabled" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one ingress.hosts entry ({host, paths: [{path: /, pathType: Prefix}]})" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled needs at least one httpRoute.parentRefs entry: the Gateway the route attaches to ({name: GATEWAY, namespace: NAMESPACE})" }}
{{- end }}
{{- $names := list "sysctl" }}
{{- range concat (.Values.extraInitContainers | default list) (.Values.extraContainers | default list) }}
{{- if has .name (concat $names (list "server" "statsd-exporter")) }}
{{- fail (printf "extraInitContainers/extraContainers: the name %q is taken (the chart's containers are sysctl, server and statsd-exporter; every container needs its own name)" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- $ports := dict }}
{{- $_ := set $ports "server.port" (int .Values.server.port) }}
{{- $_ := set $ports "server.adminPort" (int .Values.server.adminPort) }}
{{- if .Values.statsdExporter.enabled }}
{{- $_ := set $ports "statsdExporter.metricsPort" (int .Values.statsdExporter.metricsPort) }}
{{- end }}
{{- range $a, $pa := $ports }}
{{- range $b, $pb := $ports }}
{{- if and (lt $a $b) (eq $pa $pb) }}
{{- fail (printf "%s and %s are both %d: every listener in the pod needs its own port" $a $b $pa) }}
{{- end }}
{{- end }}
{{- end }}
{{- if regexMatch "^(127\\.|\\[::1\\]$|\\[::ffff:127\\.)" .Values.server.adminHost }}
{{- fail (printf "server.adminHost %s is loopback: the kubelet probes the pod IP, so the probes would fail" .Values.server.adminHost) }}
{{- end }}
{{- range $name := list "headerTimeout" "idleTimeout" "bodyTimeout" "writeTimeout" }}
{{- $value := get $.Values.server $name }}
{{- if ne (include "vrypt-server.durationText" $value) "" }}
{{- $_ := include "vrypt-server.durationMs" (list (printf "server.%s" $name) $value 10) }}
{{- end }}
{{- end }}
{{- $_ := include "vrypt-server.durationMs" (list "statsd.interval" .Values.statsd.interval 10) }}
{{- include "vrypt-server.validatePodSecurity" . }}
{{- end }}

{{/*
The privileged sysctl init container cannot run in a namespace that
enforces the "baseline" or "restricted" Pod Security level: the ReplicaSet
would exist but never create a pod. On install and upgrade, look the
release namespace up and refuse with the way out. `lookup` returns nothing
without a cluster (`helm template`, `--dry-run=client`), a namespace that
does not exist yet (`--create-namespace`) or without read access to
namespaces; then nothing is checked. A cluster-wide default level set in
the API server's admission configuration is not visible here either.
*/}}
{{- define "vrypt-server.validatePodSecurity" -}}
{{- if and (include "vrypt-server.initSysctls" . | fromJson) (or .Release.IsInstall .Release.IsUpgrade) }}
{{- $namespace := lookup "v1" "Namespace" "" .Release.Namespace }}
{{- $level := dig "metadata" "labels" "pod-security.kubernetes.io/enforce" "" ($namespace | default dict) }}
{{- if has $level (list "baseline" "restricted") }}
{{- fail (printf "namespace %s enforces the %q Pod Security level (label pod-security.kubernetes.io/enforce), which refuses the privileged sysctl init container: no pod would be created. Set sysctlInitContainer.enabled=false and use podSysctls for the sysctls you need (safe ones such as net.ipv4.tcp_fin_timeout are allowed there), or install into a namespace that allows privileged pods" .Release.Namespace $level) }}
{{- end }}
{{- end }}
{{- end }}
