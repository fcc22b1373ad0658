#!/usr/bin/env bash
# Render the Kubernetes manifests with kustomize and validate them strictly, with no cluster and
# no network once the Go modules are cached.
#
#   check.sh              build the tools if needed, render the base and every overlay, validate
#   check.sh tools        build the tools only; prints the validator's path
#   check.sh render DIR   print what kustomize renders for DIR (base, overlays/local, …), e.g.
#                         deploy/k8s/check.sh render overlays/local | kubectl apply -f -
#
# Both tools come from deploy/k8s/validate/go.mod, whose go.sum pins every byte: kustomize as a
# `tool` (sigs.k8s.io/kustomize/kustomize/v5) and the validator (main.go), which strictly decodes
# each object into the k8s.io/api types of go.mod's version and checks our policy. Modules and
# builds are cached under .cache/go, the binaries in .cache/k8s/bin; the first run fetches from
# the Go module proxy (a few minutes), later runs rebuild nothing and need no network.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S=$ROOT/deploy/k8s
CACHE=${LEADLINE_CACHE_DIR:-$ROOT/.cache}
BIN=$CACHE/k8s/bin
RENDERED=$CACHE/k8s/rendered

export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
# readonly: go.mod and go.sum are never rewritten, and a module that does not match go.sum's
# hash is refused; no VCS stamping, so a CI checkout's git state cannot fail the build.
export GOFLAGS="-mod=readonly -buildvcs=false"

log() { printf '[k8s] %s\n' "$*" >&2; }
die() { printf '[k8s] error: %s\n' "$*" >&2; exit 1; }

# Secrets the base only references: an operator creates them (see base/kustomization.yaml).
external_for() {
    case $1 in
        base) echo "-external Secret/leadline-secrets" ;;
    esac
}

tools() {
    command -v go >/dev/null || die "Go is needed to build kustomize and the validator (go.mod names the version)"
    local stamp
    stamp=$(cd "$K8S/validate" && cat go.mod go.sum ./*.go | cksum | cut -d' ' -f1)-$(go env GOVERSION)
    if [[ -x $BIN/kustomize && -x $BIN/k8s-validate && -f $BIN/.stamp-$stamp ]]; then
        return
    fi
    mkdir -p "$BIN"
    log "building kustomize and the validator (a first run fetches Go modules into $CACHE/go)"
    local started=$SECONDS
    # build to a temporary name and rename: a concurrent run never sees half a binary
    (
        cd "$K8S/validate"
        go build -o "$BIN/.kustomize.$$" sigs.k8s.io/kustomize/kustomize/v5
        go build -o "$BIN/.k8s-validate.$$" .
    ) || { rm -f "$BIN"/.*."$$"; die "building the tools failed"; }
    mv -f "$BIN/.kustomize.$$" "$BIN/kustomize"
    mv -f "$BIN/.k8s-validate.$$" "$BIN/k8s-validate"
    rm -f "$BIN"/.stamp-* && touch "$BIN/.stamp-$stamp"
    log "tools built in $((SECONDS - started))s: $("$BIN/kustomize" version)"
}

render() {
    "$BIN/kustomize" build --load-restrictor LoadRestrictionsRootOnly "$K8S/$1"
}

check() {
    local dirs=(base) dir name out failed=0
    for dir in "$K8S"/overlays/*/; do
        dirs+=("overlays/$(basename "$dir")")
    done
    mkdir -p "$RENDERED"
    for dir in "${dirs[@]}"; do
        name=${dir##*/}
        out=$RENDERED/$name.yaml
        if ! render "$dir" >"$out"; then
            log "$dir: kustomize build failed"
            failed=1
            continue
        fi
        # shellcheck disable=SC2046  # the flags are words on purpose
        if "$BIN/k8s-validate" $(external_for "$name") <"$out" >&2; then
            log "$dir ok"
        else
            log "$dir refused (rendered: $out)"
            failed=1
        fi
    done
    return $failed
}

case ${1:-check} in
    check) tools && check ;;
    tools) tools && echo "$BIN/k8s-validate" ;;
    render)
        [[ -n ${2:-} && -d $K8S/${2:-} ]] || die "usage: check.sh render base|overlays/NAME"
        tools && render "$2"
        ;;
    *) die "usage: check.sh [check|tools|render DIR]" ;;
esac
