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

{{/* Whether TLS is on (a Secret with tls.crt, tls.key and ca.crt is named). */}}
{{- define "faisca.tls" -}}
{{- if .Values.security.tls.secretName -}}true{{- end -}}
{{- end -}}

{{/* The driver's address as executors reach it. */}}
{{- define "faisca.driverUrl" -}}
{{- printf "%s://%s-driver:%d" (ternary "faisca+tls" "faisca" (eq (include "faisca.tls" .) "true")) (include "faisca.fullname" .) (int .Values.driver.port) -}}
{{- end -}}

{{/* The prometheus.io scrape annotations of a pod serving metrics on `port`. */}}
{{- define "faisca.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- if eq (include "faisca.tls" .root) "true" }}
prometheus.io/scheme: https
{{- end }}
{{- end -}}

{{/* TLS and authentication arguments of a process (`driver`: the driver also reads user tokens). */}}
{{- define "faisca.securityArgs" -}}
{{- $s := .root.Values.security -}}
{{- if $s.tls.secretName }}
- --tls-cert
- /etc/faisca/tls/tls.crt
- --tls-key
- /etc/faisca/tls/tls.key
- --tls-ca
- /etc/faisca/tls/ca.crt
{{- if $s.tls.clientAuth }}
- --conf
- faisca.ssl.clientAuth=required
{{- end }}
{{- if $s.tls.serverName }}
- --conf
- {{ printf "faisca.ssl.serverName=%s" $s.tls.serverName | quote }}
{{- end }}
{{- end }}
{{- if $s.authentication.secretName }}
- --conf
- faisca.authenticate.secret.file=/etc/faisca/auth/secret
{{- end }}
{{- if and .driver $s.authentication.tokensSecretName }}
- --conf
- faisca.authenticate.tokensFile=/etc/faisca/tokens/tokens
{{- end }}
{{- if and .root.Values.metrics.enabled $s.metricsTokenSecretName }}
- --conf
- faisca.metrics.tokenFile=/etc/faisca/metrics/token
{{- end }}
{{- end -}}

{{/* The read-only mounts of those Secrets. */}}
{{- define "faisca.securityMounts" -}}
{{- $s := .root.Values.security -}}
{{- if $s.tls.secretName }}
- name: tls
  mountPath: /etc/faisca/tls
  readOnly: true
{{- end }}
{{- if $s.authentication.secretName }}
- name: cluster-secret
  mountPath: /etc/faisca/auth
  readOnly: true
{{- end }}
{{- if and .driver $s.authentication.tokensSecretName }}
- name: user-tokens
  mountPath: /etc/faisca/tokens
  readOnly: true
{{- end }}
{{- if and .root.Values.metrics.enabled $s.metricsTokenSecretName }}
- name: metrics-token
  mountPath: /etc/faisca/metrics
  readOnly: true
{{- end }}
{{- end -}}

{{/* The Secret volumes behind those mounts (owner-only files). */}}
{{- define "faisca.securityVolumes" -}}
{{- $s := .root.Values.security -}}
{{- if $s.tls.secretName }}
- name: tls
  secret:
    secretName: {{ $s.tls.secretName }}
    defaultMode: 0400
{{- end }}
{{- if $s.authentication.secretName }}
- name: cluster-secret
  secret:
    secretName: {{ $s.authentication.secretName }}
    defaultMode: 0400
    items:
      - key: secret
        path: secret
{{- end }}
{{- if and .driver $s.authentication.tokensSecretName }}
- name: user-tokens
  secret:
    secretName: {{ $s.authentication.tokensSecretName }}
    defaultMode: 0400
    items:
      - key: tokens
        path: tokens
{{- end }}
{{- if and .root.Values.metrics.enabled $s.metricsTokenSecretName }}
- name: metrics-token
  secret:
    secretName: {{ $s.metricsTokenSecretName }}
    defaultMode: 0400
    items:
      - key: token
        path: token
{{- end }}
{{- end -}}
