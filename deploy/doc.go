// Package deploy holds no code: its tests check the shipped Dockerfiles and
// Kubernetes manifests (deploy/k8s) against the promises of docs/deploy.md
// and docs/security.md, such as "only the keyholder ever mounts the key
// Secret". The edge's promises are checked on what kustomize renders (the
// base, each Component, every overlay), not file by file: the base trusts
// no identity header, and wherever the web trusts it, every Ingress route to
// the web overwrites it from a forward-auth answer; the metrics port is
// never routed. deploy/testdata/overlays holds one overlay per way to break
// that, each of which the check must refuse.
package deploy
