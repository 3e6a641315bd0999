{{/* The name prefix of every object: the release name, plus "-faisca" unless it says so. */}}
{{- define "faisca.fullname" -}}
{{- if contains "faisca" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-faisca" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "faisca.labels" -}}
app.kubernetes.io/name: faisca
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "faisca.selector" -}}
app.kubernetes.io/name: faisca
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "faisca.serviceAccountName" -}}
{{- default (printf "%s-driver" (include "faisca.fullname" .)) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "faisca.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The container security context every Faísca container runs with. */}}
{{- define "faisca.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "faisca.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}
