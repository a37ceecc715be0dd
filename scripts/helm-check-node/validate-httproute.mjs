// Validates HTTPRoute objects against the Gateway API v1 schema as compiled
// by @kubernetes-models/gateway-api (the CRD's openAPIV3Schema turned into a
// validator: types, enums, patterns, lengths, bounds, required fields; not
// the CRD's CEL rules). Reads a JSON array of objects on stdin, prints a
// JSON array with null (valid) or the validator's message for each.
// Run by scripts/helm_check.py from the directory npm installed into.
import { readFileSync } from "node:fs";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";

const routes = JSON.parse(readFileSync(0, "utf8"));
const results = routes.map((route) => {
  try {
    new HTTPRoute(route).validate();
    return null;
  } catch (err) {
    return String(err && err.message ? err.message : err);
  }
});
process.stdout.write(JSON.stringify(results) + "\n");
