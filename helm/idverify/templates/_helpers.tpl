{{/* Names and labels shared by every manifest. */}}

{{- define "idverify.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "idverify.fullname" -}}
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

{{- define "idverify.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idverify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "idverify.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "idverify.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end }}

{{- define "idverify.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "idverify.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "idverify.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "idverify.keyringSecret" -}}
{{- default (printf "%s-keyring" (include "idverify.fullname" .)) .Values.keyring.existingSecret }}
{{- end }}

{{- define "idverify.auditSecret" -}}
{{- default (printf "%s-audit" (include "idverify.fullname" .)) .Values.audit.signingKey.existingSecret }}
{{- end }}

{{- define "idverify.tlsSecret" -}}
{{- default (printf "%s-tls" (include "idverify.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/*
The Redis URL: the external one, or the bundled Bitnami chart's services (Sentinel or primary).
*/}}
{{- define "idverify.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- $redis := printf "%s-redis" .Release.Name }}
{{- if .Values.redis.sentinel.enabled }}
{{- printf "redis+sentinel://%s:26379/%s" $redis .Values.redis.sentinel.masterSet }}
{{- else }}
{{- printf "redis://%s-master:6379/0" $redis }}
{{- end }}
{{- else }}
{{- required "externalRedis.url is required (or redis.enabled=true for a trial Redis)" .Values.externalRedis.url }}
{{- end }}
{{- end }}

{{/* The Secret and key holding the Redis password, as "name key", or empty. */}}
{{- define "idverify.redisPasswordRef" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.enabled }}
{{- printf "%s %s" (default (printf "%s-redis" .Release.Name) .Values.redis.auth.existingSecret) (default "redis-password" .Values.redis.auth.existingSecretPasswordKey) }}
{{- end }}
{{- else if .Values.externalRedis.existingSecret }}
{{- printf "%s %s" .Values.externalRedis.existingSecret .Values.externalRedis.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "idverify.paths" -}}
data: /var/lib/idverify
keyring: /var/run/secrets/idverify/keyring
redis: /var/run/secrets/idverify/redis
audit: /var/run/secrets/idverify/audit
tls: /var/run/secrets/idverify/tls
clientCa: /var/run/secrets/idverify/client-ca
geoip: /var/lib/idverify-geoip
{{- end }}

{{/* The audit tiles' claim the chart creates; empty when tiles are off or live on a named claim or volume. */}}
{{- define "idverify.auditTilesNewClaim" -}}
{{- $tiles := .Values.auditTiles }}
{{- if and $tiles.enabled (not $tiles.existingClaim) (not $tiles.volume) }}
{{- printf "%s-audit-tiles" (include "idverify.fullname" .) }}
{{- end }}
{{- end }}

{{/*
"true" when the chart's tiles claim is not ReadWriteMany: one node at a time attaches it, so
pods on other nodes cannot mount it. Refused with more than one pod (the autoscaler's maximum
when it is on).
*/}}
{{- define "idverify.auditTilesOneNode" -}}
{{- if and (include "idverify.auditTilesNewClaim" .) (not (has "ReadWriteMany" .Values.auditTiles.persistence.accessModes)) }}
{{- $pods := ternary .Values.autoscaling.maxReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- if gt (int $pods) 1 }}
{{- fail (printf "auditTiles.persistence.accessModes %v: up to %d pods would write the tiles, and pods on other nodes cannot mount a claim that is not ReadWriteMany; use ReadWriteMany (NFS, CephFS, EFS, ...), a shared auditTiles.existingClaim or auditTiles.volume, or one pod (replicaCount=1, autoscaling.enabled=false)" .Values.auditTiles.persistence.accessModes (int $pods)) }}
{{- end }}
{{- true }}
{{- end }}
{{- end }}

{{/* idverify.toml: the chart's settings over the user's `config`. */}}
{{- define "idverify.config" -}}
{{- $paths := include "idverify.paths" . | fromYaml }}
{{- /* Production mode only: codes in the log, or plain HTTP off the host, let log readers and the network verify anyone. */}}
{{- $sender := dig "sms" "sender" "" .Values.config }}
{{- if not $sender }}
{{- fail "config.sms.sender is required: set an SMS sender (e.g. http, with config.sms.options)" }}
{{- else if eq (toString $sender) "console" }}
{{- fail "config.sms.sender: the console sender writes every code to the log and runs only in development mode; set a real sender (e.g. http, with config.sms.options)" }}
{{- end }}
{{- if hasKey .Values.config "mode" }}
{{- fail "config.mode: the chart deploys production mode only (development mode is for a developer's machine)" }}
{{- end }}
{{- $chart := dict
  "listen" (printf "%s:%d" .Values.listenHost (int .Values.containerPort))
  "data_dir" $paths.data
  "workers" (int .Values.workers)
  "grace_seconds" (int .Values.drainSeconds)
  "redis_url" (include "idverify.redisUrl" .)
  "keyring_file" (printf "%s/%s" $paths.keyring .Values.keyring.key)
  "audit_signing_key_file" (printf "%s/%s" $paths.audit .Values.audit.signingKey.key)
}}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $paths.tls) "key_file" (printf "%s/tls.key" $paths.tls) }}
{{- if .Values.tls.clientCa.existingSecret }}
{{- $_ := set $tls "client_ca_file" (printf "%s/%s" $paths.clientCa .Values.tls.clientCa.key) }}
{{- end }}
{{- if .Values.tls.clientPrincipals }}
{{- $_ := set $tls "client_principals" .Values.tls.clientPrincipals }}
{{- end }}
{{- $_ := set $chart "tls" $tls }}
{{- end }}
{{- if .Values.auditTiles.enabled }}
{{- if .Values.auditTiles.bucket.url }}
{{- fail "auditTiles: enabled (a volume) or bucket.url (a bucket), not both: the server keeps its tiles in one place" }}
{{- end }}
{{- $_ := set $chart "audit_tiles_dir" .Values.auditTiles.mountPath }}
{{- end }}
{{- with .Values.auditTiles.bucket }}
{{- if .url }}
{{- $_ := set $chart "audit_tiles_url" .url }}
{{- if .endpoint }}{{- $_ := set $chart "audit_tiles_s3_endpoint" .endpoint }}{{- end }}
{{- if .region }}{{- $_ := set $chart "audit_tiles_s3_region" .region }}{{- end }}
{{- end }}
{{- end }}
{{- if .Values.geoip.enabled }}
{{- $_ := set $chart "geo" (dict "database" (printf "%s/%s" $paths.geoip .Values.geoip.file) "type" .Values.geoip.type) }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $chart "telemetry" (dict "metrics" "prometheus" "prometheus_port" (int .Values.metrics.prometheusPort)) }}
{{- end }}
{{- /* The console signs auditors in with a token: over HTTPS only, with the gRPC certificate. */}}
{{- if .Values.console.enabled }}
{{- if not .Values.tls.enabled }}
{{- fail "console.enabled needs tls.enabled: the console signs auditors in with a token, which must not cross the network in the clear" }}
{{- end }}
{{- $_ := set $chart "console" (dict "enabled" "on" "listen" (printf "%s:%d" .Values.listenHost (int .Values.console.port))) }}
{{- else }}
{{- $_ := set $chart "console" (dict "enabled" "off") }}
{{- end }}
{{- if .Values.callbacks.enabled }}
{{- if not .Values.callbacks.publicUrl }}
{{- fail "callbacks.publicUrl is required when callbacks.enabled: the https:// address the vendor calls (forwarded to callbacks.port)" }}
{{- end }}
{{- $_ := set $chart "callbacks" (dict "listen" (printf "%s:%d" .Values.listenHost (int .Values.callbacks.port)) "public_url" .Values.callbacks.publicUrl) }}
{{- end }}
{{- mergeOverwrite (deepCopy .Values.config) $chart | toToml }}
{{- end }}

{{/* The probe: the gRPC health service, natively over plaintext, through the CLI over TLS. */}}
{{- define "idverify.probe" -}}
{{- $paths := include "idverify.paths" .root | fromYaml }}
{{- if .root.Values.tls.enabled }}
exec:
  command:
    - idverify
    - health
    - --server
    - {{ printf "127.0.0.1:%d" (int .root.Values.containerPort) | quote }}
    - --tls-ca
    - {{ printf "%s/ca.crt" $paths.tls | quote }}
    - --tls-server-name
    - {{ include "idverify.fullname" .root | quote }}
    {{- if .root.Values.tls.clientCa.existingSecret }}
    - --tls-cert
    - {{ printf "%s/tls.crt" $paths.tls | quote }}
    - --tls-key
    - {{ printf "%s/tls.key" $paths.tls | quote }}
    {{- end }}
{{- else }}
grpc:
  port: {{ .root.Values.containerPort }}
  service: ""
{{- end }}
{{- end }}

{{/* One metrics port per worker, so the worker count must be explicit. */}}
{{- define "idverify.metricsPorts" -}}
{{- if le (int .Values.workers) 0 }}
{{- fail "metrics.enabled needs an explicit workers count: each worker has its own metrics port" }}
{{- end }}
{{- int .Values.workers }}
{{- end }}
