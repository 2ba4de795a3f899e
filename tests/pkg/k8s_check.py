#!/usr/bin/python3
"""k8s_check.py DIR... - the Kubernetes manifests of deploy/ as TAP lines
(numbered from $TAP_N + 1; the last line '#TAP_N n' gives the count to
tests/pkg/deploy.sh):
  - every manifest parses and its kustomization.yaml lists it;
  - every object passes the Kubernetes API's own schema (kubernetes-models,
    through tools/k8s_validate.mjs; skipped by name without node or the tool);
  - every container: restricted securityContext, imagePullPolicy, no :latest;
  - deploy/k8s: the StatefulSet's service is headless (one store per pod);
  - deploy/k8s-fleet: the Deployment takes its store DSN and password from a
    Secret (never a literal), its service is not headless, readiness is
    /readyz, and the HPA scales that Deployment on the external metric that
    deploy/prometheus-adapter.yaml serves."""
import glob, json, os, shutil, subprocess, sys
import yaml

N = int(os.environ.get("TAP_N", "0"))
BAD = 0
HERE = os.path.dirname(os.path.abspath(__file__))
VALIDATOR = os.path.join(HERE, "..", "..", "tools", "k8s_validate.mjs")


def report(ok, name):
    global N, BAD
    N += 1
    print(("ok %d - %s" if ok else "not ok %d - %s") % (N, name))
    BAD |= not ok


def skip(name, why):
    global N
    N += 1
    print("ok %d - %s # SKIP %s" % (N, name, why))


def load(d):
    docs = {}
    for path in sorted(glob.glob(d + "/*.yaml")):
        try:
            docs[path] = [x for x in yaml.safe_load_all(open(path)) if x]
            report(True, "%s parses" % path)
        except yaml.YAMLError as e:
            report(False, "%s parses: %s" % (path, e))
    kust = docs.get(d + "/kustomization.yaml", [{}])[0]
    listed = set(kust.get("resources", []))
    report(listed == {os.path.basename(p) for p in docs} - {"kustomization.yaml"},
           "%s/kustomization.yaml lists every manifest" % d)
    for gen in kust.get("configMapGenerator", []):
        for env in gen.get("envs", []):
            report(os.path.exists(os.path.join(d, env)), "%s: configMapGenerator file %s exists" % (d, env))
            text = open(os.path.join(d, env)).read() if os.path.exists(os.path.join(d, env)) else ""
            report("0" * 64 not in text and "GENERATOR_SHA256=" in text,
                   "%s/%s: GENERATOR_SHA256 to fill, no zeros placeholder" % (d, env))
    return [o for ds in docs.values() for o in ds]


def schema_check(d, objs):
    modules = os.path.join(os.path.dirname(VALIDATOR), "node_modules", "kubernetes-models")
    if not shutil.which("node") or not os.path.isdir(modules):
        skip("%s objects pass the Kubernetes schemas" % d, "no node or no tools/node_modules/kubernetes-models (make deps)")
        return
    run = subprocess.run(["node", VALIDATOR], input=json.dumps(objs), capture_output=True, text=True)
    for line in run.stdout.splitlines():
        if not line.startswith("skip "):
            report(line.startswith("ok "), "%s: schema %s" % (d, line))
    report(run.returncode == 0, "%s: kubernetes-models validator exits 0%s" % (d, (": " + run.stderr.strip()[-300:]) if run.returncode else ""))


def containers_check(d, pod):
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        ok = (sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
              and sc.get("capabilities", {}).get("drop") == ["ALL"]
              and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
        report(ok, "%s: container %s: no privilege escalation, drop ALL, read-only root, RuntimeDefault" % (d, c["name"]))
        report(c.get("imagePullPolicy") in ("IfNotPresent", "Always", "Never"),
               "%s: container %s sets imagePullPolicy" % (d, c["name"]))
        report(not c["image"].endswith(":latest"), "%s: container %s image is not :latest" % (d, c["name"]))


def of_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def single_node_check(d, objs):
    sts = of_kind(objs, "StatefulSet")[0]
    svc = [o for o in of_kind(objs, "Service") if o["metadata"]["name"] == sts["spec"]["serviceName"]]
    report(len(svc) == 1 and svc[0]["spec"].get("clusterIP") == "None",
           "%s: the StatefulSet's service %s is headless" % (d, sts["spec"]["serviceName"]))
    containers_check(d, sts["spec"]["template"]["spec"])


def secret_env(c, name):
    for e in c.get("env", []):
        if e["name"] == name:
            return e.get("valueFrom", {}).get("secretKeyRef")
    return None


def fleet_check(d, objs, adapter):
    dep = of_kind(objs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    containers_check(d, pod)
    main = [c for c in pod["containers"] if c["name"] == "d2nwgd"][0]
    args = main.get("args", [])
    report("--store" in args and args[args.index("--store") + 1] == "$(STORE_DSN)",
           "%s: d2nwgd gets --store $(STORE_DSN)" % d)
    report(secret_env(main, "STORE_DSN") is not None and secret_env(main, "PGPASSWORD") is not None,
           "%s: STORE_DSN and PGPASSWORD come from a Secret" % d)
    store = [s for s in of_kind(objs, "Secret") if s["metadata"]["name"] == "d2nwgd-store"]
    dsn = store[0].get("stringData", {}).get("dsn", "") if store else ""
    report(dsn.startswith("postgresql://") and ":" not in dsn.split("://", 1)[1].split("@", 1)[0],
           "%s: the store DSN names no password" % d)
    report(main.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
           "%s: readiness is /readyz" % d)
    svc = of_kind(objs, "Service")
    report(len(svc) == 1 and svc[0]["spec"].get("clusterIP") != "None", "%s: one service, not headless" % d)
    hpa = of_kind(objs, "HorizontalPodAutoscaler")[0]["spec"]
    report(hpa["scaleTargetRef"]["kind"] == "Deployment" and hpa["scaleTargetRef"]["name"] == dep["metadata"]["name"],
           "%s: the HPA scales the Deployment" % d)
    metric = hpa["metrics"][0]["external"]["metric"]["name"]
    served = [r["name"]["as"] for r in adapter.get("externalRules", [])]
    report(metric in served, "%s: the HPA's metric %s is served by deploy/prometheus-adapter.yaml (%s)" % (d, metric, served))


def main():
    adapter = yaml.safe_load(open(os.path.join(HERE, "..", "..", "deploy", "prometheus-adapter.yaml")))
    for d in sys.argv[1:]:
        objs = load(d)
        schema_check(d, objs)
        if of_kind(objs, "StatefulSet"):
            single_node_check(d, objs)
        if of_kind(objs, "Deployment"):
            fleet_check(d, objs, adapter)
    print("#TAP_N %d" % N)
    sys.exit(BAD)


main()
