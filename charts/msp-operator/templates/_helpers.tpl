{{/*
The chart name (nameOverride wins), at most 63 characters.
*/}}
{{- define "msp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the Deployment, ServiceAccount, ClusterRole and
ClusterRoleBinding: the release name, plus the chart name unless the release
name already contains it. With release name "msp-operator" the ClusterRole is
named "msp-operator", as in deploy/operator-clusterrole.yaml.
*/}}
{{- define "msp-operator.fullname" -}}
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

{{/*
name-version, for the helm.sh/chart label.
*/}}
{{- define "msp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator pod.
*/}}
{{- define "msp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "msp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels of every object: the standard ones, then commonLabels.
*/}}
{{- define "msp-operator.labels" -}}
helm.sh/chart: {{ include "msp-operator.chart" . }}
{{ include "msp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: msp-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The labels of every object as a dict, to merge into objects read from files/.
*/}}
{{- define "msp-operator.labelsDict" -}}
{{- include "msp-operator.labels" . | fromYaml | toJson }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "msp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "msp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest, or repository:tag (tag defaults to the
chart's appVersion).
*/}}
{{- define "msp-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Renders the YAML documents of a file under files/ (a multi-document file),
each with the chart's labels merged in (the file's own labels win) and, when
given, extra annotations. Comments of the file are not carried over; the
objects are otherwise exactly the file's.
Arguments: (dict "root" $ "file" "files/deploy/x.yaml" "annotations" (dict ...))
*/}}
{{- define "msp-operator.filesObjects" -}}
{{- $root := .root }}
{{- $labels := include "msp-operator.labelsDict" $root | fromJson }}
{{- $content := $root.Files.Get .file }}
{{- if not $content }}
{{- fail (printf "%s is missing from the chart (run `make chart-crds`)" .file) }}
{{- end }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $content -1 }}
{{- $object := fromYaml $doc }}
{{- if $object }}
{{- if hasKey $object "Error" }}
{{- fail (printf "cannot parse %s: %s" $.file $object.Error) }}
{{- end }}
{{- $metadata := $object.metadata }}
{{- $_ := set $metadata "labels" (merge (default (dict) $metadata.labels) $labels) }}
{{- if $.annotations }}
{{- $_ := set $metadata "annotations" (merge (default (dict) $metadata.annotations) $.annotations) }}
{{- end }}
---
{{ toYaml $object }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of the leader election Lease: leaderElection.leaseName, else the
full name.
*/}}
{{- define "msp-operator.leaseName" -}}
{{- default (include "msp-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express (JSON Schema
does not compare one value with another); rendering fails with the reason.
*/}}
{{- define "msp-operator.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if and (gt $replicas 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount=%d needs leaderElection.enabled=true: without leader election every replica reconciles and writes the same objects at once. Turn leader election on, or set replicaCount to 1." $replicas) }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
{{- if ge (int .Values.leaderElection.leaseGraceSeconds) (int .Values.leaderElection.leaseDurationSeconds) }}
{{- fail (printf "leaderElection.leaseGraceSeconds (%d) must be less than leaderElection.leaseDurationSeconds (%d): the leader renews the Lease that many seconds before it expires." (int .Values.leaderElection.leaseGraceSeconds) (int .Values.leaderElection.leaseDurationSeconds)) }}
{{- end }}
{{- end }}
{{- if ge (int .Values.operator.shutdownGraceSeconds) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "operator.shutdownGraceSeconds (%d) must be less than terminationGracePeriodSeconds (%d): the operator must finish its reconciles and release the Lease before the kubelet kills it." (int .Values.operator.shutdownGraceSeconds) (int .Values.terminationGracePeriodSeconds)) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ne (toString .Values.podDisruptionBudget.minAvailable) "") (ne (toString .Values.podDisruptionBudget.maxUnavailable) "") }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}
