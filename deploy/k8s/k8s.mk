# Kubernetes manifests (deploy/k8s): `include deploy/k8s/k8s.mk` in the Makefile.
.PHONY: k8s-check
k8s-check: ## render deploy/k8s with kustomize and validate it strictly, offline
	@bash deploy/k8s/check.sh
