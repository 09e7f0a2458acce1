"""Renders charts/heirloom-backup with each values file under ci/ through Helm's own engine
(helm-python-sdk), lints it strictly, validates every manifest against the Kubernetes 1.30 schemas
(kubernetes-validate --strict) and the Prometheus Operator's CRDs (npm
@kubernetes-models/prometheus-operator), checks that values.schema.json refuses bad values, and
writes what the Rust test checks further: the rendered config files, the commands the CronJobs,
Deployments and Jobs run, and the alert expressions.

Usage: chart_check.py CHART OUT_DIR NODE_MODULES
"""
import copy
import json
import os
import subprocess
import sys

import helm_python as helm
import yaml

chart, out, node_modules = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
failures = []
found = {"configs": [], "commands": [], "exprs": [], "kinds": {}}
crds = []

for name in sorted(os.listdir(os.path.join(chart, "ci"))):
    values = yaml.safe_load(open(os.path.join(chart, "ci", name)))
    lint = helm.lint(chart, values, strict=True, kube_version="v1.30.0")
    for message in lint["messages"]:
        # Severity 1 is INFO; an icon is a recommendation for chart repositories.
        if message["severity"] <= 1 and "icon" in message["error"]:
            continue
        failures.append(f"{name}: lint: {message}")
    failures.extend(f"{name}: lint error: {e}" for e in lint["errors"])
    with helm.Chart.load(chart) as c:
        rendered = c.render(values=values, name="prod", namespace="backups")
    files = []
    for template, manifest in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            if "prod" not in manifest:
                failures.append(f"{name}: NOTES.txt does not name the release")
            continue
        for doc in yaml.safe_load_all(manifest):
            if not doc:
                continue
            kind = doc["kind"]
            found["kinds"].setdefault(name, []).append(kind)
            found.setdefault("objects", []).append(f"{name}:{kind}/{doc['metadata']['name']}")
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                crds.append(doc)
                if kind == "PrometheusRule":
                    for group in doc["spec"]["groups"]:
                        for rule in group["rules"]:
                            found["exprs"].append({"alert": rule["alert"], "expr": rule["expr"]})
                continue
            path = os.path.join(out, f"{name}-{kind}-{doc['metadata']['name']}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(doc, f)
            files.append(path)
            if kind == "ConfigMap":
                found["configs"].append({"values": name, "files": doc["data"]})
            spec = None
            if kind == "CronJob":
                spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                if doc["spec"]["concurrencyPolicy"] != "Forbid":
                    failures.append(f"{name}: {doc['metadata']['name']}: concurrencyPolicy")
            elif kind in ("Deployment", "Job"):
                spec = doc["spec"]["template"]["spec"]
            if spec:
                pod = spec["securityContext"]
                for c in spec["containers"]:
                    sc = c["securityContext"]
                    if not (pod.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
                            and sc.get("capabilities", {}).get("drop") == ["ALL"]
                            and pod.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
                        failures.append(f"{name}: {doc['metadata']['name']}: pod security")
                    env = [e["name"] for e in c.get("env", [])]
                    if len(env) != len(set(env)):
                        failures.append(f"{name}: {doc['metadata']['name']}: a variable set twice: {env}")
                    found["commands"].append({"values": name, "object": doc["metadata"]["name"],
                                              "args": c["args"], "env": env})
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"), "--strict", "-k", "1.30", "--quiet", *files],
        capture_output=True, text=True)
    if result.returncode != 0:
        failures.append(f"{name}: kubernetes-validate: {result.stdout}{result.stderr}")

# The Prometheus Operator's objects, by their own schemas.
with open(os.path.join(out, "crds.json"), "w") as f:
    json.dump(crds, f)
script = """
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { readFileSync } from "node:fs";
const kinds = { PrometheusRule, ServiceMonitor };
let bad = 0;
for (const doc of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  try { new kinds[doc.kind](doc).validate(); } catch (e) { bad++; console.log(doc.kind, doc.metadata.name, e.message); }
}
process.exit(bad ? 1 : 0);
"""
check = os.path.join(node_modules, "..", "heirloom-crd-check.mjs")
with open(check, "w") as f:
    f.write(script)
result = subprocess.run(["node", check, os.path.join(out, "crds.json")], capture_output=True, text=True)
if result.returncode != 0:
    failures.append(f"CRDs: {result.stdout}{result.stderr}")
kinds = {d["kind"] for d in crds}
if kinds != {"PrometheusRule", "ServiceMonitor"}:
    failures.append(f"CRDs rendered: {sorted(kinds)}")

# values.schema.json refuses each of these, naming where.
base = yaml.safe_load(open(os.path.join(chart, "ci", "cronjobs-values.yaml")))
bad_values = [
    (["mode"], "sometimes"),
    (["repository", "url"], "http://not-a-store"),
    (["repository", "keySecret"], {"key": "key"}),
    (["sources", "notes-mysql", "kind"], "oracle"),
    (["sources", "notes-mysql", "schedules", "backup"], "every night"),
    (["sources", "notes-mysql", "schedules", "backups"], "0 2 * * *"),
    (["sources", "notes-mysql", "timeZone"], "Berlin time"),
    (["sources", "notes-mysql", "verifyParts"], 0),
    (["sources", "notes-mysql", "stream", "flushInterval"], "fast"),
    (["sources", "notes-mysql", "stream", "mode"], "daemonset"),
    (["sources", "../etc"], {"kind": "mysql"}),
    (["agent", "replicas"], 2),
    (["podSecurityContext", "runAsNonRoot"], False),
    (["securityContext", "allowPrivilegeEscalation"], True),
    (["restore", "time"], "yesterday"),
    (["metrics", "prometheusRule", "maxStreamLagSeconds"], -5),
]
# A sidecar streamer: streamed by the config, but no Deployment of this chart's.
objects = found["objects"]
if "cronjobs-values.yaml:Deployment/prod-heirloom-backup-notes-mysql-stream" not in objects:
    failures.append(f"no streamer Deployment for notes-mysql: {objects}")
if any("orders-stream" in o for o in objects):
    failures.append("a streamer Deployment for orders, whose streamer is a sidecar")
config = next(c for c in found["configs"] if c["values"] == "cronjobs-values.yaml")["files"]["heirloom.yaml"]
if "spool-orders" not in config:
    failures.append("the sidecar source orders is not streamed by the config")
# In agent mode the agent streams every source itself: a sidecar is refused.
sidecar_in_agent = copy.deepcopy(base)
sidecar_in_agent["mode"] = "agent"
try:
    with helm.Chart.load(chart) as c:
        c.render(values=sidecar_in_agent, name="prod", namespace="backups")
    failures.append("a sidecar streamer was accepted in agent mode")
except Exception as e:
    if "sidecar" not in str(e):
        failures.append(f"a sidecar in agent mode refused for another reason: {e}")

# Two sources in one agent pod setting one variable two ways: refused, naming both.
agent_base = yaml.safe_load(open(os.path.join(chart, "ci", "agent-values.yaml")))
clash = copy.deepcopy(agent_base)
clash["sources"]["notes-mysql"]["env"] = [
    {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "notes-mysql", "key": "x"}}}]
try:
    with helm.Chart.load(chart) as c:
        c.render(values=clash, name="prod", namespace="backups")
    failures.append("one variable set two ways by two sources of one pod was accepted")
except Exception as e:
    if not ("sources.notes-mysql.env" in str(e) and "sources.api-pg.env" in str(e)):
        failures.append(f"a variable set two ways refused without naming both: {e}")
# The same variable set the same way by two sources is given once.
same = copy.deepcopy(agent_base)
same["sources"]["notes-mysql"]["env"] = copy.deepcopy(agent_base["sources"]["api-pg"]["env"])
with helm.Chart.load(chart) as c:
    rendered = c.render(values=same, name="prod", namespace="backups")
agent_pod = next(d for t, m in rendered.items() if not t.endswith("NOTES.txt")
                 for d in yaml.safe_load_all(m)
                 if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-agent"))
names = [e["name"] for e in agent_pod["spec"]["template"]["spec"]["containers"][0]["env"]]
if names.count("PGPASSWORD") != 1:
    failures.append(f"a variable both sources set the same way is not given once: {names}")

refused = 0
for path, value in bad_values:
    values = copy.deepcopy(base)
    at = values
    for key in path[:-1]:
        at = at.setdefault(key, {})
    at[path[-1]] = value
    try:
        with helm.Chart.load(chart) as c:
            c.render(values=values, name="prod", namespace="backups")
        failures.append(f"values.schema.json accepted {'.'.join(path)} = {value!r}")
    except Exception as e:
        refused += 1
found["refused"] = refused
with open(os.path.join(out, "found.json"), "w") as f:
    json.dump(found, f, indent=1)
if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"ok: {len(found['commands'])} commands, {len(found['exprs'])} alerts, {refused} bad values refused")
