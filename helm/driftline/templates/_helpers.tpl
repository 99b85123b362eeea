{{/* Names: the release's full name, at most 63 characters (a DNS label). */}}
{{- define "driftline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "driftline.fullname" -}}
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

{{/* A name derived from the full name: (list $ "suffix"); suffix kept, prefix trimmed. */}}
{{- define "driftline.child" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "driftline.fullname" $root | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{- define "driftline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "driftline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (list $ "injector"|"agent"). */}}
{{- define "driftline.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "driftline.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "driftline.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "driftline.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "driftline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "driftline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "driftline.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "driftline.injectorService" -}}
{{- include "driftline.child" (list . "injector") }}
{{- end }}

{{- define "driftline.injectorTLSSecret" -}}
{{- include "driftline.child" (list . "injector-tls") }}
{{- end }}

{{- define "driftline.injectorCertificate" -}}
{{- include "driftline.child" (list . "injector") }}
{{- end }}

{{/* DNS names of the webhook Service, which the serving certificate must carry. */}}
{{- define "driftline.injectorDNSNames" -}}
{{- $svc := include "driftline.injectorService" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Whether any rollback action needs the Kubernetes API. */}}
{{- define "driftline.rollbackEnabled" -}}
{{- if or .Values.rollback.argoRollouts.enabled .Values.rollback.kserve.enabled }}true{{ end }}
{{- end }}

{{/* "true" when there can be more than one standalone agent: agent.replicas, or an
autoscaler allowed to add replicas. */}}
{{- define "driftline.manyAgents" -}}
{{- $a := .Values.agent }}
{{- $hpa := and $a.autoscaling.enabled (gt (int $a.autoscaling.maxReplicas) 1) }}
{{- $keda := and $a.keda.enabled (gt (int $a.keda.maxReplicaCount) 1) }}
{{- if or (gt (int $a.replicas) 1) $hpa $keda }}true{{ end }}
{{- end }}

{{/* "true" when the standalone agents publish partials to an aggregator Deployment
(agent.aggregator.enabled; auto: whenever there can be more than one agent, so the model
gets one verdict per window, not one per agent; docs/kubernetes.md, "Scaling out"). Every
template that depends on the aggregator reads this, never the value itself. */}}
{{- define "driftline.aggregatorEnabled" -}}
{{- $on := .Values.agent.aggregator.enabled }}
{{- if kindIs "string" $on }}
{{- if ne $on "auto" }}
{{- fail (printf "agent.aggregator.enabled is %q; use auto, true or false" $on) }}
{{- end }}
{{- include "driftline.manyAgents" . }}
{{- else if $on }}true{{ end }}
{{- end }}

{{/* Environment variables from existing Secrets (never values in the chart). */}}
{{- define "driftline.secretEnv" -}}
{{- range $name := list "kafkaPassword" "alertToken" "webhookSecret" }}
{{- $s := index $.Values.secrets $name }}
{{- if $s.existingSecret }}
- name: {{ $s.env }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.key }}
{{- end }}
{{- end }}
{{- end }}

{{/* The agent's reference profile inside its pod, when the chart provides it. */}}
{{- define "driftline.agentReferencePath" -}}
{{- $r := .Values.agent.reference }}
{{- if $r.url }}
{{- if hasSuffix ".gz" $r.url }}/etc/driftline/reference.json.gz{{ else }}/etc/driftline/reference.json{{ end }}
{{- else if or $r.existingConfigMap $r.volume }}
{{- printf "/etc/driftline-reference/%s" $r.key }}
{{- end }}
{{- end }}

{{/* Where the agents write their HTML reports (reports.html.enabled): an emptyDir. */}}
{{- define "driftline.reportsDir" -}}
/var/lib/driftline/reports
{{- end }}

{{/* monitor.yaml of the standalone agents: agent.config with the keys the chart owns. */}}
{{- define "driftline.agentConfig" -}}
{{- $cfg := deepCopy .Values.agent.config }}
{{- $exporter := mergeOverwrite (dict) (default (dict) (get $cfg "exporter")) (dict "host" "0.0.0.0" "port" (int .Values.agent.metricsPort)) }}
{{- $state := mergeOverwrite (dict) (default (dict) (get $cfg "state")) (dict "dir" "/var/lib/driftline") }}
{{- $_ := set $cfg "exporter" $exporter }}
{{- $_ := set $cfg "state" $state }}
{{- $ref := include "driftline.agentReferencePath" . }}
{{- if $ref }}
{{- $_ := set $cfg "reference" $ref }}
{{- end }}
{{- $html := .Values.reports.html }}
{{- if $html.enabled }}
{{- $pages := dict "html_dir" (include "driftline.reportsDir" .) }}
{{- with $html.baseUrl }}{{ $_ := set $pages "html_base_url" . }}{{ end }}
{{- $_ := set $cfg "reports" (mergeOverwrite (dict) (default (dict) (get $cfg "reports")) $pages) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* The agents' Kafka source as written in agent.config (an empty dict when absent). */}}
{{- define "driftline.agentKafka" -}}
{{- $source := default (dict) (get .Values.agent.config "source") }}
{{- toJson (default (dict) (get $source "kafka")) }}
{{- end }}
