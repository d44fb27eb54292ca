{{- define "realtime.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name alone when it already names the chart (helm install realtime ...). */}}
{{- define "realtime.fullname" -}}
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

{{- define "realtime.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "realtime.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "realtime.selectorLabels" -}}
app.kubernetes.io/name: {{ include "realtime.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "realtime.secretName" -}}
{{- .Values.secret.existingSecret | default (include "realtime.fullname" .) }}
{{- end }}

{{/* The Secret's data when the chart creates it: only the values that are set. */}}
{{- define "realtime.secretData" -}}
{{- $data := dict }}
{{- with .Values.secret.databaseUrl }}{{ $_ := set $data "DATABASE_URL" . }}{{ end }}
{{- with .Values.secret.redisUrl }}{{ $_ := set $data "REDIS_URL" . }}{{ end }}
{{- with .Values.secret.djangoSecretKey }}{{ $_ := set $data "DJANGO_SECRET_KEY" . }}{{ end }}
{{- with .Values.secret.defaultAppSecret }}{{ $_ := set $data "DEFAULT_APP_SECRET" . }}{{ end }}
{{- toYaml $data }}
{{- end }}

{{/* The drain must finish before Kubernetes sends SIGKILL: the preStop pause, the drain, and a margin. */}}
{{- define "realtime.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.shutdownGraceSeconds | int) (.Values.preStopSleepSeconds | int) 15 }}
{{- end }}

{{- define "realtime.pathPrefix" -}}
{{- .Values.env.PATH_PREFIX | default "" | trimSuffix "/" }}
{{- end }}

{{/* Several pods are several nodes: without shared state and one database they would not agree. */}}
{{- define "realtime.validate" -}}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not .Values.secret.existingSecret) }}
{{- if or (not .Values.secret.redisUrl) (not .Values.secret.databaseUrl) }}
{{- fail "more than one pod needs secret.redisUrl and secret.databaseUrl (or secret.existingSecret with REDIS_URL and DATABASE_URL)" }}
{{- end }}
{{- end }}
{{- end }}
