// tools/k8s_validate.mjs - checks Kubernetes objects against the API's own
// OpenAPI schemas (kubernetes-models, pinned in package.json). Reads a JSON
// array of objects on stdin; prints one line per object:
//   ok KIND/NAME   or   bad KIND/NAME: what the schema says
// and exits 1 when any object is bad or of a kind the package lacks.
// Objects of kustomize's own API (Kustomization) are not Kubernetes objects
// and are skipped with a line saying so.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "package.json"));

async function modelClass(apiVersion, kind) {
  const path = require.resolve(`kubernetes-models/${apiVersion}`);
  const mod = await import(pathToFileURL(path).href);
  return mod[kind] || (mod.default && mod.default[kind]);
}

async function check(obj) {
  const label = `${obj.kind}/${(obj.metadata && obj.metadata.name) || "-"}`;
  if (String(obj.apiVersion).startsWith("kustomize.config.k8s.io/"))
    return [true, `skip ${label} (kustomize's own API)`];
  let Cls;
  try {
    Cls = await modelClass(obj.apiVersion, obj.kind);
  } catch (e) {
    return [false, `bad ${label}: no schema for ${obj.apiVersion} (${e.code || e.message})`];
  }
  if (!Cls) return [false, `bad ${label}: no kind ${obj.kind} in ${obj.apiVersion}`];
  try {
    new Cls(obj).validate();
    return [true, `ok ${label}`];
  } catch (e) {
    return [false, `bad ${label}: ${e.message}`];
  }
}

const objects = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const obj of objects) {
  const [ok, line] = await check(obj);
  console.log(line);
  if (!ok) bad++;
}
process.exit(bad ? 1 : 0);
