{{/* Chart name, truncated to the DNS-label limit. */}}
{{- define "pgsched.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name. */}}
{{- define "pgsched.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pgsched.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgsched.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgsched.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgsched.labels" -}}
helm.sh/chart: {{ include "pgsched.chart" . }}
{{ include "pgsched.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgsched
{{- end -}}

{{/* Labels of the worker pods (what Services, PDBs and NetworkPolicies select). */}}
{{- define "pgsched.workerSelectorLabels" -}}
{{ include "pgsched.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "pgsched.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pgsched.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pgsched.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* True ("true") when the chart renders its own database Secret. */}}
{{- define "pgsched.createDatabaseSecret" -}}
{{- if .Values.database.url -}}true{{- end -}}
{{- end -}}

{{- define "pgsched.databaseSecretName" -}}
{{- if .Values.database.url -}}
{{- printf "%s-database" (include "pgsched.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- .Values.database.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "pgsched.databaseSecretKey" -}}
{{- if .Values.database.url -}}database-url{{- else -}}{{ .Values.database.existingSecretKey }}{{- end -}}
{{- end -}}

{{/* Key holding PGSCHED_LISTEN_DATABASE_URL, or empty when none is configured. */}}
{{- define "pgsched.databaseListenKey" -}}
{{- if .Values.database.url -}}
{{- if .Values.database.listenUrl -}}listen-database-url{{- end -}}
{{- else -}}
{{- .Values.database.existingSecretListenKey -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the worker's own grace plus a margin, so
     Kubernetes never SIGKILLs a worker that is still handing work back. */}}
{{- define "pgsched.terminationGracePeriodSeconds" -}}
{{- add (int .Values.worker.shutdownGraceSeconds) (int .Values.worker.terminationGraceMarginSeconds) -}}
{{- end -}}

{{/* Queue names end up inside SQL (KEDA trigger queries) and CLI args; the
     schema restricts them, and this re-checks in case schema validation was
     skipped (--skip-schema-validation). */}}
{{- define "pgsched.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled -}}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: enable only one autoscaler" -}}
{{- end -}}
{{- if not .Values.app -}}
{{- fail "app is required: the pgsched app to run, e.g. myapp.tasks:app or examples/quickstart.py" -}}
{{- end -}}
{{- $bundled := or (hasPrefix "examples/" (toString .Values.app)) (hasPrefix "examples." (toString .Values.app)) -}}
{{- if and (not $bundled) (eq (toString .Values.image.repository) "ghcr.io/pgsched/pgsched") -}}
{{- fail (printf "image.repository is required when app (%s) is not one of the bundled examples: the pgsched image (ghcr.io/pgsched/pgsched, built from the repository's Dockerfile) contains pgsched and examples/ only, so %s would not be importable in it. Build an image with your code (FROM ghcr.io/pgsched/pgsched plus COPY of your package, or pip install pgsched in your app's image), push it, and set image.repository (and image.tag); see the chart README" (toString .Values.app) (toString .Values.app)) -}}
{{- end -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) -}}
{{- fail "database: set database.existingSecret (recommended) or database.url" -}}
{{- end -}}
{{- if and .Values.database.listenUrl (not .Values.database.url) -}}
{{- fail "database.listenUrl needs database.url (with database.existingSecret use database.existingSecretListenKey)" -}}
{{- end -}}
{{- if not (regexMatch "^[a-z_][a-z0-9_]{0,62}$" (toString .Values.database.schema)) -}}
{{- fail (printf "database.schema %q must match ^[a-z_][a-z0-9_]{0,62}$" (toString .Values.database.schema)) -}}
{{- end -}}
{{- range .Values.queues -}}
{{- if not (regexMatch "^[A-Za-z0-9_.:-]{1,128}$" (toString .)) -}}
{{- fail (printf "queues: %q must match ^[A-Za-z0-9_.:-]{1,128}$" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.keda.enabled (not .Values.queues) -}}
{{- fail "keda.enabled needs at least one entry in queues (one postgresql trigger per queue)" -}}
{{- end -}}
{{- if lt (int .Values.worker.terminationGraceMarginSeconds) 1 -}}
{{- fail "worker.terminationGraceMarginSeconds must be >= 1" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the worker and the migration Job. */}}
{{- define "pgsched.env" -}}
- name: PGSCHED_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "pgsched.databaseSecretName" . }}
      key: {{ include "pgsched.databaseSecretKey" . }}
{{- with include "pgsched.databaseListenKey" . }}
- name: PGSCHED_LISTEN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "pgsched.databaseSecretName" $ }}
      key: {{ . }}
{{- end }}
- name: PGSCHED_SCHEMA
  value: {{ .Values.database.schema | quote }}
- name: PGSCHED_LOG_JSON
  value: {{ .Values.worker.logJson | toString | quote }}
- name: PGSCHED_LOG_LEVEL
  value: {{ .Values.worker.logLevel | quote }}
{{- end -}}

{{/* The pod-level /tmp volume plus extras. */}}
{{- define "pgsched.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "pgsched.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}
