# Leadline as containers with podman (no Docker engine, no registry): included by the Makefile.
#   make containers        install what is missing, build every image (cached), run the compose
#                          stack, check every /health/ready, one order confirmed, tear it down
#   make containers-up     the same images and stack, left running (checkout on 127.0.0.1:18000)
#   make containers-down   remove the stack (containers, network, volumes); images stay cached
# Host ports default to 127.0.0.1:18000-18009, 19092, 15432 (clear of `make up`); override with
# CHECKOUT_HOST_PORT=... etc., and COMPOSE_PROJECT_NAME for a second stack. SECURE=1: the secured
# Kafka profile (docker-compose.secure.yml) on top.

CONTAINERS_ENV = $(if $(SECURE),LEADLINE_SECURE=$(SECURE) )

.PHONY: containers containers-up containers-down

containers: $(STAMP) ## build the images with podman, run the compose stack end to end, tear down
	@$(CONTAINERS_ENV)bash deploy/containers/containers.sh check

containers-up: $(STAMP) ## build the images with podman and leave the compose stack running
	@bash deploy/containers/containers.sh install
	@bash deploy/containers/containers.sh images
	@$(CONTAINERS_ENV)bash deploy/containers/containers.sh up

containers-down: ## remove the podman compose stack (containers, network, volumes)
	@$(CONTAINERS_ENV)bash deploy/containers/containers.sh down
