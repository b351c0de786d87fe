// Package deploy holds no code: its tests check the shipped Dockerfiles and
// Kubernetes manifests (deploy/k8s) against the invariants the design
// promises, such as "only the keyholder ever mounts the key Secret".
package deploy
