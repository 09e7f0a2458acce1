{{/* The release's base name, at most 52 characters (a CronJob's name leaves 11 for its Jobs). */}}
{{- define "heirloom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "heirloom.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "heirloom.labels" -}}
{{ include "heirloom.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "heirloom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "heirloom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "heirloom.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{/* A name for a per-source object: fullname-source-suffix, at most 52 characters. */}}
{{- define "heirloom.sourceName" -}}
{{- printf "%s-%s-%s" (include "heirloom.fullname" .root) (.source | lower | replace "_" "-" | replace "." "-") .suffix | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The pod spec's common part: service account, security, volumes. */}}
{{- define "heirloom.podCommon" -}}
serviceAccountName: {{ include "heirloom.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken | default false }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "heirloom.fullname" . }}
  - name: key
    secret:
      secretName: {{ required "repository.keySecret.name: the Secret holding the repository's key file" .Values.repository.keySecret.name }}
      defaultMode: 0440
      items:
        - key: {{ .Values.repository.keySecret.key }}
          path: key
  - name: scratch
    emptyDir:
      sizeLimit: {{ .Values.scratch.sizeLimit }}
{{- end -}}

{{/* The container's common part: `.only` names the one source whose environment it gets ("":
     every source's, "-": none), `.extra` more variables, from the values' `.extraField`. */}}
{{- define "heirloom.containerCommon" -}}
image: {{ include "heirloom.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
resources:
  {{- toYaml .root.Values.resources | nindent 2 }}
env:
  - name: HEIRLOOM_CONFIG
    value: /etc/heirloom/heirloom.yaml
  - name: HEIRLOOM_HOST
    value: {{ default .root.Release.Name .root.Values.host | quote }}
  - name: HEIRLOOM_LOG_FORMAT
    value: json
  # A Secret's file in a pod is readable by the pod's group: the pod, not the mode, is the boundary.
  - name: HEIRLOOM_ALLOW_INSECURE_KEY_FILE
    value: "1"
  - name: TMPDIR
    value: /tmp
  {{- /* One container may hold several sources' variables (the agent), and a restore's
         for its target: a name set twice the same way is given once, and set two ways is
         refused (the pod would keep one of them). */}}
  {{- $lists := list }}
  {{- range $name, $source := .root.Values.sources }}
  {{- if or (eq $.only "") (eq $.only $name) }}
  {{- $lists = append $lists (dict "field" (printf "sources.%s.env" $name) "suggest" $name "env" ($source.env | default list)) }}
  {{- end }}
  {{- end }}
  {{- with .extra }}
  {{- $lists = append $lists (dict "field" $.extraField "suggest" "target" "env" .) }}
  {{- end }}
  {{- $seen := dict }}
  {{- range $lists }}
  {{- $list := . }}
  {{- range .env }}
  {{- $entry := toYaml . }}
  {{- $var := .name }}
  {{- with get $seen $var }}
  {{- if ne .entry $entry }}
  {{- fail (printf "%s: %s is also set by %s, another way, and both are in one pod: give each its own name (%s_PASSWORD, say) and name it in the url as ${...}" $list.field $var .field (upper (replace "-" "_" $list.suggest))) }}
  {{- end }}
  {{- else }}
  {{- $_ := set $seen $var (dict "entry" $entry "field" $list.field) }}
  - {{ $entry | nindent 4 | trim }}
  {{- end }}
  {{- end }}
  {{- end }}
{{- with .root.Values.repository.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
volumeMounts:
  - name: config
    mountPath: /etc/heirloom
    readOnly: true
  - name: key
    mountPath: /etc/heirloom-key
    readOnly: true
  - name: scratch
    mountPath: /tmp
{{- end -}}

{{/* A duration such as 12h, 30m or 90s in seconds. */}}
{{- define "heirloom.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "h" $d -}}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else -}}{{ trimSuffix "s" $d | int }}
{{- end -}}
{{- end -}}
