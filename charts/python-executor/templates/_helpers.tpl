{{/*
Names, labels and the shared pieces of the chart's templates.
*/}}

{{- define "python-executor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name: the release name, plus the chart name unless it already contains it. */}}
{{- define "python-executor.fullname" -}}
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

{{- define "python-executor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "python-executor.labels" -}}
helm.sh/chart: {{ include "python-executor.chart" . }}
app.kubernetes.io/name: {{ include "python-executor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: python-executor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels of one component: name, instance and component. Execution Pods carry
app.kubernetes.io/name=python-executor too, but never the instance label, so these selectors never pick them.
Call with (dict "root" $ "component" "apiserver").
*/}}
{{- define "python-executor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "python-executor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects. Call with (dict "root" $ "component" "apiserver"). */}}
{{- define "python-executor.componentLabels" -}}
{{ include "python-executor.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object names. */}}
{{- define "python-executor.apiserver.fullname" -}}
{{- include "python-executor.fullname" . }}
{{- end }}
{{- define "python-executor.operator.fullname" -}}
{{- printf "%s-operator" (include "python-executor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "python-executor.packageProxy.fullname" -}}
{{- printf "%s-package-proxy" (include "python-executor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "python-executor.apiserver.serviceAccountName" -}}
{{- if .Values.apiserver.serviceAccount.create }}
{{- default (printf "%s-apiserver" (include "python-executor.fullname" .)) .Values.apiserver.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.apiserver.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "python-executor.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "python-executor.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace of the executions: executions.namespace, or the release namespace. */}}
{{- define "python-executor.executionsNamespace" -}}
{{- if .Values.executions.dedicatedNamespace }}
{{- default (printf "%s-executions" .Release.Name | trunc 63 | trimSuffix "-") .Values.executions.namespace }}
{{- else }}
{{- default .Release.Namespace .Values.executions.namespace }}
{{- end }}
{{- end }}

{{/* Whether the chart creates the executions namespace (asked for, and not the release namespace). */}}
{{- define "python-executor.createsExecutionsNamespace" -}}
{{- if and .Values.executions.createNamespace (ne (include "python-executor.executionsNamespace" .) .Release.Namespace) }}true{{ end }}
{{- end }}

{{/* Secret names and keys: the existing Secret when given, otherwise the chart's. */}}
{{- define "python-executor.apiKeys.secretName" -}}
{{- default (printf "%s-api-keys" (include "python-executor.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}
{{- define "python-executor.archiveToken.secretName" -}}
{{- default (printf "%s-archive-token" (include "python-executor.fullname" .)) .Values.archiveToken.existingSecret }}
{{- end }}
{{- define "python-executor.logsToken.secretName" -}}
{{- default (printf "%s-logs-token" (include "python-executor.fullname" .)) .Values.logsToken.existingSecret }}
{{- end }}
{{- define "python-executor.logsTokens.secretName" -}}
{{- default (printf "%s-logs-tokens" (include "python-executor.fullname" .)) .Values.logsToken.existingTokensSecret }}
{{- end }}

{{/*
Images: repository:tag, the tag defaulting to the chart's appVersion, and @digest when the image has one (then the
kubelet pulls exactly that image, whatever the tag points at now). Call with (dict "image" ... "root" $).
*/}}
{{- define "python-executor.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- with .image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* An image named by a string (the execution images), with "@digest" appended when a digest is given. Call with
(dict "image" "python:3.12-slim" "digest" "sha256:..."). */}}
{{- define "python-executor.pinnedImage" -}}
{{- if and .digest (contains "@" .image) }}
{{- fail (printf "the image %q already has a digest: remove the one in operator.imageDigests" .image) }}
{{- end }}
{{- .image }}{{ with .digest }}@{{ . }}{{ end }}
{{- end }}

{{/* The namespaces that get a log store token of their own: the executions namespace and logsToken.extraNamespaces. */}}
{{- define "python-executor.logsTokenNamespaces" -}}
{{- concat (list (include "python-executor.executionsNamespace" .)) .Values.logsToken.extraNamespaces | uniq | toJson }}
{{- end }}

{{/* Whether the log store uses per-namespace tokens (not the single shared token of logsToken.existingSecret). */}}
{{- define "python-executor.logsTokensPerNamespace" -}}
{{- if and .Values.operator.logStore.enabled (not .Values.logsToken.existingSecret) }}true{{ end }}
{{- end }}

{{/* Where the containers find their files. */}}
{{- define "python-executor.secretsDir" -}}/etc/pyexec{{- end }}
{{- define "python-executor.logsTokensDir" -}}/etc/pyexec-logs-tokens{{- end }}
{{- define "python-executor.operatorConfigDir" -}}/etc/pyexec-operator{{- end }}
{{- define "python-executor.logsDir" -}}/var/lib/pyexec-operator/logs{{- end }}
{{- define "python-executor.dataDir" -}}/var/lib/python-executor{{- end }}

{{/* In-cluster URLs of the Services. */}}
{{- define "python-executor.apiserver.url" -}}
{{- printf "http://%s.%s.svc:%v" (include "python-executor.apiserver.fullname" .) .Release.Namespace .Values.apiserver.service.port }}
{{- end }}
{{- define "python-executor.operator.url" -}}
{{- printf "http://%s.%s.svc:%v" (include "python-executor.operator.fullname" .) .Release.Namespace .Values.operator.service.port }}
{{- end }}
{{- define "python-executor.packageProxy.url" -}}
{{- printf "http://%s.%s.svc:%v/index/" (include "python-executor.packageProxy.fullname" .) .Release.Namespace .Values.packageProxy.service.port }}
{{- end }}

{{/*
PYEXEC_ALLOWED_HOSTS: the names of the API server's Service (short, with the namespace, .svc and .svc.cluster.local)
and apiserver.allowedHosts. Without API keys the server answers only to these, loopback names and IP addresses.
*/}}
{{- define "python-executor.apiserver.allowedHosts" -}}
{{- $name := include "python-executor.apiserver.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns) }}
{{- join "," (concat $hosts .Values.apiserver.allowedHosts) }}
{{- end }}

{{/*
The container security context of every control-plane container: passes Pod Security "restricted" and keeps the
root file system read-only (writable paths are emptyDirs or volumes).
*/}}
{{- define "python-executor.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The Pod security context of every control-plane Pod. */}}
{{- define "python-executor.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
A checksum of what decides the Secrets' contents, for Pod annotations: the processes read keys and tokens at start.
Generated values are left out on purpose: they never change (see secrets.yaml), and hashing the rendered Secrets
would hash a fresh random value whenever `lookup` sees no cluster.
*/}}
{{- define "python-executor.secretsChecksum" -}}
{{- list .Values.apiKeys .Values.archiveToken .Values.logsToken | toJson | sha256sum }}
{{- end }}

{{/* Checks of combinations the schema cannot express; each fails rendering with a message naming the values. */}}
{{- define "python-executor.validate" -}}
{{- $cfg := .Values.operator.config }}
{{- range $version, $_ := .Values.operator.imageDigests.python }}
{{- if not (hasKey $cfg.images $version) }}
{{- fail (printf "operator.imageDigests.python has %q, which is no key of operator.config.images" $version) }}
{{- end }}
{{- end }}
{{- if not (hasKey $cfg.images $cfg.defaultPythonVersion) }}
{{- fail (printf "operator.config.defaultPythonVersion %q has no entry in operator.config.images" $cfg.defaultPythonVersion) }}
{{- end }}
{{- with .Values.apiserver.runtimeClassName }}
{{- if not (has . $cfg.allowedRuntimeClasses) }}
{{- fail (printf "apiserver.runtimeClassName %q must be listed in operator.config.allowedRuntimeClasses" .) }}
{{- end }}
{{- end }}
{{- if and .Values.executions.dedicatedNamespace (eq (include "python-executor.executionsNamespace" .) .Release.Namespace) }}
{{- fail "executions.namespace is the release namespace: executions.createNamespace and executions.dedicatedNamespace need another one (or set dedicatedNamespace to false)" }}
{{- end }}
{{- if and (include "python-executor.createsExecutionsNamespace" .) $cfg.docker.enabled (has (include "python-executor.executionsNamespace" .) (default list $cfg.docker.namespaces)) (ne .Values.executions.podSecurity.enforce "privileged") }}
{{- fail (printf "operator.config.docker.enabled with %s in operator.config.docker.namespaces runs privileged sidecars there: set executions.podSecurity.enforce to privileged (or remove it from the list)" (include "python-executor.executionsNamespace" .)) }}
{{- end }}
{{- if and .Values.packageProxy.enabled $cfg.packageIndex }}
{{- range $key := list "url" "egressTo" "ports" }}
{{- if hasKey $cfg.packageIndex $key }}
{{- fail (printf "operator.config.packageIndex.%s is set by the chart when packageProxy.enabled is true: remove it" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not .Values.packageProxy.enabled) $cfg.packageIndex }}
{{- if not (and $cfg.packageIndex.url $cfg.packageIndex.egressTo) }}
{{- fail "operator.config.packageIndex needs url and a non-empty egressTo (or enable packageProxy)" }}
{{- end }}
{{- end }}
{{- if and .Values.packageProxy.enabled .Values.packageProxy.persistence.enabled (gt (int .Values.packageProxy.replicas) 1) }}
{{- fail "packageProxy.persistence is a ReadWriteOnce claim: it needs packageProxy.replicas 1" }}
{{- end }}
{{- $ap := .Values.apiserver.persistence }}
{{- if and $ap.enabled (not $ap.existingClaim) (gt (int .Values.apiserver.replicas) 1) (not (has "ReadWriteMany" $ap.accessModes)) }}
{{- fail "apiserver.persistence with more than one replica needs accessModes [ReadWriteMany] (every replica must see every archive)" }}
{{- end }}
{{- end }}
