{{/* Environment of the server container. */}}
{{- define "vrypt-server.env" -}}
# The node's IP, so statsd.target can be "$(HOST_IP):8125".
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: VRYPT_PORT
  value: {{ .Values.server.port | int | quote }}
# /healthz, /readyz and /metrics on their own port (probes, metrics Service).
- name: VRYPT_ADMIN_LISTEN
  value: {{ printf "%s:%d" .Values.server.adminHost (int .Values.server.adminPort) | quote }}
{{- with .Values.server.healthPath }}
- name: VRYPT_HEALTH_PATH
  value: {{ . | quote }}
{{- end }}
- name: VRYPT_SHUTDOWN_DELAY
  value: {{ include "vrypt-server.durationText" .Values.server.shutdownDelay | quote }}
- name: VRYPT_SHUTDOWN_TIMEOUT
  value: {{ include "vrypt-server.durationText" .Values.server.shutdownTimeout | quote }}
{{- with include "vrypt-server.backlog" . }}
- name: VRYPT_BACKLOG
  value: {{ . | quote }}
{{- end }}
{{- with .Values.server.workers }}
- name: VRYPT_WORKERS
  value: {{ include "vrypt-server.scalar" . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.server.maxConnections) }}
- name: VRYPT_MAX_CONNECTIONS
  value: {{ include "vrypt-server.scalar" .Values.server.maxConnections | quote }}
{{- end }}
{{- with .Values.server.maxHeaderBytes }}
- name: VRYPT_MAX_HEADER_BYTES
  value: {{ include "vrypt-server.scalar" . | quote }}
{{- end }}
{{- with include "vrypt-server.durationText" .Values.server.headerTimeout }}
- name: VRYPT_HEADER_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with include "vrypt-server.durationText" .Values.server.idleTimeout }}
- name: VRYPT_IDLE_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with include "vrypt-server.durationText" .Values.server.bodyTimeout }}
- name: VRYPT_BODY_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with include "vrypt-server.durationText" .Values.server.writeTimeout }}
- name: VRYPT_WRITE_TIMEOUT
  value: {{ . | quote }}
{{- end }}
- name: VRYPT_LOG_LEVEL
  value: {{ .Values.server.logLevel | quote }}
{{- with .Values.response.status }}
- name: VRYPT_STATUS
  value: {{ include "vrypt-server.scalar" . | quote }}
{{- end }}
{{- with .Values.response.body }}
- name: VRYPT_BODY
  value: {{ . | quote }}
{{- end }}
{{- with .Values.response.contentType }}
- name: VRYPT_CONTENT_TYPE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.response.headers }}
- name: VRYPT_HEADER
  value: {{ join "\n" . | quote }}
{{- end }}
{{- if not .Values.response.serverHeader }}
- name: VRYPT_NO_SERVER_HEADER
  value: "1"
{{- end }}
- name: VRYPT_STATSD
  value: {{ include "vrypt-server.statsdTarget" . | quote }}
- name: VRYPT_STATSD_PREFIX
  value: {{ .Values.statsd.prefix | quote }}
- name: VRYPT_STATSD_INTERVAL
  value: {{ include "vrypt-server.durationText" .Values.statsd.interval | quote }}
{{- with .Values.statsd.tags }}
- name: VRYPT_STATSD_TAGS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod template shared by the Deployment and the DaemonSet. */}}
{{- define "vrypt-server.podTemplate" -}}
{{- $initSysctls := include "vrypt-server.initSysctls" . | fromJson }}
{{- $exporterConfig := and .Values.statsdExporter.enabled .Values.statsdExporter.mappingConfig -}}
metadata:
  labels:
    {{- include "vrypt-server.labelsWith" (dict "ctx" . "extra" .Values.podLabels) | nindent 4 }}
  {{- if or .Values.podAnnotations $exporterConfig }}
  annotations:
    {{- if $exporterConfig }}
    # Roll the pods when the exporter mapping changes.
    checksum/statsd-exporter: {{ .Values.statsdExporter.mappingConfig | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "vrypt-server.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  # No Service environment variables: a Service named like a VRYPT_*
  # setting would otherwise inject a colliding variable.
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- with .Values.podSecurityContext }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .Values.podSysctls }}
    sysctls:
      {{- range . }}
      - name: {{ .name }}
        value: {{ .value | quote }}
      {{- end }}
    {{- end }}
  terminationGracePeriodSeconds: {{ include "vrypt-server.terminationGracePeriod" . }}
  {{- if $initSysctls }}
  initContainers:
    # The server image itself: `vrypt-server sysctl NAME=VALUE...` writes
    # each sysctl, reads it back and exits 1 with one line on the first
    # that does not stick (the pod stays in Init:Error; `kubectl logs POD
    # -c sysctl` says which). Privileged on purpose: /proc/sys is read-only
    # in unprivileged containers. Only net.* sysctls, which belong to this
    # pod's network namespace; it exits before the server starts.
    - name: sysctl
      image: {{ include "vrypt-server.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - sysctl
        {{- range $name, $value := $initSysctls }}
        - {{ printf "%s=%s" $name $value | quote }}
        {{- end }}
      securityContext:
        privileged: true
        runAsNonRoot: false
        runAsUser: 0
        readOnlyRootFilesystem: true
      resources:
        {{- toYaml .Values.sysctlInitContainer.resources | nindent 8 }}
  {{- end }}
  {{- with .Values.extraInitContainers }}
  {{- if not $initSysctls }}
  initContainers:
  {{- end }}
    {{- include "vrypt-server.tplList" (list $ .) | nindent 4 }}
  {{- end }}
  containers:
    - name: server
      image: {{ include "vrypt-server.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- with .Values.extraArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "vrypt-server.env" . | nindent 8 }}
      {{- with .Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.server.port }}
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.server.adminPort }}
          protocol: TCP
      {{- with .Values.startupProbe }}
      startupProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- with .Values.extraVolumeMounts }}
      volumeMounts:
        {{- include "vrypt-server.tplList" (list $ .) | nindent 8 }}
      {{- end }}
    {{- if .Values.statsdExporter.enabled }}
    - name: statsd-exporter
      image: {{ include "vrypt-server.imageRef" (dict "image" .Values.statsdExporter.image "default" "") }}
      imagePullPolicy: {{ .Values.statsdExporter.image.pullPolicy }}
      args:
        # StatsD over UDP on loopback only: the server is in the same pod.
        - --statsd.listen-udp=127.0.0.1:{{ .Values.statsdExporter.statsdPort }}
        - --statsd.listen-tcp=
        - --web.listen-address=:{{ .Values.statsdExporter.metricsPort }}
        {{- if $exporterConfig }}
        - --statsd.mapping-config=/etc/statsd-exporter/mapping.yaml
        {{- end }}
        {{- with .Values.statsdExporter.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: exporter
          containerPort: {{ .Values.statsdExporter.metricsPort }}
          protocol: TCP
      readinessProbe:
        tcpSocket:
          port: exporter
        periodSeconds: 10
      livenessProbe:
        tcpSocket:
          port: exporter
        periodSeconds: 20
      resources:
        {{- toYaml .Values.statsdExporter.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.statsdExporter.securityContext | nindent 8 }}
      {{- if $exporterConfig }}
      volumeMounts:
        - name: statsd-exporter-config
          mountPath: /etc/statsd-exporter
          readOnly: true
      {{- end }}
    {{- end }}
    {{- with .Values.extraContainers }}
    {{- include "vrypt-server.tplList" (list $ .) | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and (eq .Values.kind "Deployment") .Values.topologySpreadConstraints }}
  {{- $constraints := list }}
  {{- range .Values.topologySpreadConstraints }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "vrypt-server.selectorLabels" $ | fromYaml)) }}
  {{- end }}
  {{- $constraints = append $constraints $constraint }}
  {{- end }}
  topologySpreadConstraints:
    {{- toYaml $constraints | nindent 4 }}
  {{- end }}
  {{- if or $exporterConfig .Values.extraVolumes }}
  volumes:
    {{- if $exporterConfig }}
    - name: statsd-exporter-config
      configMap:
        name: {{ include "vrypt-server.fullname" . }}-statsd-exporter
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- include "vrypt-server.tplList" (list $ .) | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
