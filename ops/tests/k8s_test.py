#!/usr/bin/env python3
"""ops/k8s/ checked without a cluster (nothing can be downloaded here):
- every YAML file passes yamllint (ops/k8s/.yamllint);
- every object of a built-in kind passes kubernetes-validate --strict against Kubernetes 1.29's
  bundled schemas (unknown fields refused);
- every custom resource (KEDA 2.14, RabbitMQ Cluster Operator 2.9, CloudNativePG 1.23) is
  checked against ops/k8s/schemas/: the fields of their published CRDs that Tally uses;
- the objects fit together: every worker role has its workload, a PodDisruptionBudget and an
  autoscaler (KEDA on its queue for the queue workers), probes, resources and a grace period;
  every Secret, ConfigMap and scale target they name exists or is created by an operator;
  every KEDA queue exists in ops/rabbitmq/definitions.json;
- the Dockerfile, without building it: a Swift build stage and a slim runtime stage, every
  executable of Package.swift built and copied, the runtime libraries of every -dev package
  built against, a non-root user, and the migrations.
Run by ./ops/local.sh test with the virtualenv's Python."""
import glob
import json
import os
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "ops", "k8s")
KUBERNETES = "1.29.0"
problems = []


def problem(text):
    problems.append(text)


files = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
lint = subprocess.run([sys.executable, "-m", "yamllint", "-c", os.path.join(K8S, ".yamllint"), "-f", "parsable"] + files,
                      capture_output=True, text=True)
if lint.returncode != 0 or lint.stdout.strip():
    problem("yamllint:\n" + lint.stdout + lint.stderr)

schemas = {}
for path in glob.glob(os.path.join(K8S, "schemas", "*.json")):
    schema = json.load(open(path))
    api, kind = schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"]
    jsonschema.Draft7Validator.check_schema(schema)
    schemas[(api, kind)] = schema

objects = []
for path in files:
    if os.path.basename(path) == "kustomization.yaml":
        continue
    for document in yaml.safe_load_all(open(path)):
        if document:
            objects.append((os.path.basename(path), document))

for name, document in objects:
    key = (document.get("apiVersion"), document.get("kind"))
    label = f"{name}: {key[1]} {document.get('metadata', {}).get('name')}"
    if key in schemas:
        for error in jsonschema.Draft7Validator(schemas[key]).iter_errors(document):
            problem(f"{label}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
        continue
    try:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        problem(f"{label}: {'/'.join(map(str, error.path))}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError:
        problem(f"{label}: neither a Kubernetes {KUBERNETES} kind nor a custom resource with a schema in ops/k8s/schemas/")

kustomization = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))
listed = set(kustomization["resources"])
on_disk = {os.path.basename(p) for p in files} - {"kustomization.yaml"}
if listed != on_disk:
    problem(f"kustomization.yaml lists {sorted(listed)}, the folder holds {sorted(on_disk)}")

by_kind = {}
for _, document in objects:
    by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
definitions = json.load(open(os.path.join(ROOT, "ops", "rabbitmq", "definitions.json")))
queues = {queue["name"] for queue in definitions["queues"]}
# Created by the operators: CloudNativePG's application secret, the RabbitMQ operator's default user.
secrets = set(by_kind.get("Secret", {})) | {"tally-postgres-app", "tally-rabbitmq-default-user"}
configmaps = set(by_kind.get("ConfigMap", {})) | {"tally-rabbitmq-definitions"}
for role, queue in [("producer", None), ("aggregator", "aggregator.usage"), ("invoicer", "invoicer.commands"),
                    ("notifier", "notifier.events"), ("billing-api", None)]:
    name = f"tally-{role}"
    workload = workloads.get(name)
    if workload is None:
        problem(f"no Deployment or StatefulSet {name}")
        continue
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            problem(f"{name} has no {probe}")
    if "limits" not in container.get("resources", {}) or "requests" not in container.get("resources", {}):
        problem(f"{name} has no resource requests and limits")
    if pod.get("terminationGracePeriodSeconds", 30) < 30:
        problem(f"{name}: a grace period under 30 s cuts SIGTERM's drain short")
    if container["command"][0] != role:
        problem(f"{name} runs {container['command']}, not the {role} executable")
    if name not in by_kind.get("PodDisruptionBudget", {}):
        problem(f"{name} has no PodDisruptionBudget")
    for variable in container.get("env", []):
        if variable["name"] == "AMQP_URL":
            # The rules of RabbitMQClient.AMQPConfiguration: options on the first URL; after it, host:port or whole URLs.
            first, *others = variable["value"].split(",")
            if not re.match(r"^amqps?://[^/?]+(/[^?]*)?(\?.*)?$", first):
                problem(f"{name}: AMQP_URL's first node is not an amqp:// URL: {first}")
            for other in others:
                if "://" not in other and not re.match(r"^[A-Za-z0-9.-]+(:[0-9]+)?$", other):
                    problem(f"{name}: AMQP_URL lists '{other}': after the first URL, host:port only (options go on the first URL)")
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference and reference["name"] not in secrets:
            problem(f"{name} reads Secret {reference['name']}, which nothing creates")
    for source in container.get("envFrom", []):
        if "configMapRef" in source and source["configMapRef"]["name"] not in configmaps:
            problem(f"{name} reads ConfigMap {source['configMapRef']['name']}, which nothing creates")
        if "secretRef" in source and source["secretRef"]["name"] not in secrets:
            problem(f"{name} reads Secret {source['secretRef']['name']}, which nothing creates")
    if queue:
        scaler = by_kind.get("ScaledObject", {}).get(name)
        if scaler is None:
            problem(f"{name} has no KEDA ScaledObject")
        else:
            if scaler["spec"]["scaleTargetRef"]["name"] != name:
                problem(f"ScaledObject {name} scales {scaler['spec']['scaleTargetRef']['name']}")
            names = [trigger["metadata"].get("queueName") for trigger in scaler["spec"]["triggers"]]
            if names != [queue] or queue not in queues:
                problem(f"ScaledObject {name} watches {names}; expected [{queue}], declared in ops/rabbitmq/definitions.json")
            for trigger in scaler["spec"]["triggers"]:
                auth = trigger.get("authenticationRef", {}).get("name")
                if auth not in by_kind.get("TriggerAuthentication", {}):
                    problem(f"ScaledObject {name} authenticates with {auth}, which is not defined")
    else:
        autoscalers = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
        if name not in autoscalers:
            problem(f"{name} has no HorizontalPodAutoscaler")
for kind, expected in [("RabbitmqCluster", 3), ("Cluster", 3)]:
    for document in by_kind.get(kind, {}).values():
        count = document["spec"].get("replicas", document["spec"].get("instances"))
        if count != expected:
            problem(f"{kind} {document['metadata']['name']} has {count} members, expected {expected}")
if "tally-migrate" not in by_kind.get("Job", {}):
    problem("no migrations Job tally-migrate")

# The Dockerfile, read, not built.
dockerfile = open(os.path.join(K8S, "Dockerfile")).read()
stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", dockerfile, re.M)
if [stage for _, stage in stages] != ["build", "runtime"]:
    problem(f"Dockerfile stages {stages}: expected build, then runtime")
build_stage, runtime_stage = dockerfile.split("AS runtime")
package = open(os.path.join(ROOT, "Package.swift")).read()
executables = [name for name in re.findall(r'\.executable\(name: "([^"]+)"', package) if name != "tally-bench"]
for executable in executables:
    if f"--product {executable}" not in build_stage:
        problem(f"the Dockerfile does not build {executable}")
if "COPY --from=build /out/bin/" not in runtime_stage:
    problem("the runtime stage does not copy the built binaries")
runtime_libraries = {"librabbitmq-dev": "librabbitmq4", "libpq-dev": "libpq5", "libcurl4-openssl-dev": "libcurl4",
                     "libcairo2-dev": "libcairo2", "libssl-dev": "libssl3"}
for dev, runtime in runtime_libraries.items():
    if dev not in build_stage:
        problem(f"the build stage does not install {dev}")
    if not re.search(rf"\b{re.escape(runtime)}\b", runtime_stage):
        problem(f"the runtime stage lacks {runtime}, the library {dev} links against")
local_sh = open(os.path.join(ROOT, "ops", "local.sh")).read()
for dev in re.findall(r"\b(lib[a-z0-9]+-dev|lib[a-z0-9]+-openssl-dev)\b", local_sh):
    if dev not in runtime_libraries:
        problem(f"ops/local.sh installs {dev}; the Dockerfile does not know its runtime library")
if not re.search(r"^USER\s+(?!0\b|root\b)\S+", runtime_stage, re.M):
    problem("the runtime stage runs as root")
if "COPY ops/sql/" not in runtime_stage or "TALLY_MIGRATIONS_DIR" not in runtime_stage:
    problem("the runtime image lacks the migrations (ops/sql) or TALLY_MIGRATIONS_DIR")
if "-dev" in runtime_stage:
    problem("the runtime stage installs -dev packages")

if problems:
    print("k8s test: FAILED", file=sys.stderr)
    for text in problems:
        print(" - " + text, file=sys.stderr)
    sys.exit(1)
print(f"k8s test: {len(files)} YAML files lint clean; {len(objects)} objects valid ({KUBERNETES} strict, and the CRD schemas "
      f"of {', '.join(sorted(k for _, k in schemas))}); the roles, budgets, autoscalers and references fit; the Dockerfile's stages check")
