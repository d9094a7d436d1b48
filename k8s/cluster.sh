#!/usr/bin/env bash
# trainops on a Kubernetes cluster, through kubectl and its current context (the Makefile's
# deploy, refresh, port-forward and stop-port-forward targets run this).
#
#   k8s/cluster.sh deploy              apply k8s/overlays/$OVERLAY, wait for its Deployments
#   k8s/cluster.sh refresh             delete the overlay's objects but the Namespace and the
#                                      PersistentVolumeClaims (the data survives), deploy again
#   k8s/cluster.sh port-forward        MLflow, Prometheus and, while a sweep runs, the Ray
#                                      dashboard on localhost, in the background
#   k8s/cluster.sh stop-port-forward   stop the forwards port-forward started
#
# Settings, from the environment:
#   OVERLAY             a directory of k8s/overlays (dev, gpu, prod) or a path to a kustomization
#   TRAINOPS_NAMESPACE  the namespace the overlay deploys to (trainops)
#   ROLLOUT_TIMEOUT     how long deploy waits for each Deployment (5m)
#   MLFLOW_LOCAL_PORT, PROMETHEUS_LOCAL_PORT, RAY_DASHBOARD_LOCAL_PORT   (5000, 9090, 8265)
#   RAY_DASHBOARD_SERVICE  the Ray head service to forward (default: the newest in the namespace)
#   TRAINOPS_HOME       where the forwards' PID files and logs go, under port-forward/ (~/.trainops)
#   FORWARD_READY_SECONDS  how long a new forward may take to listen (15)
set -euo pipefail

# Builtins only up to the kubectl check, so that it speaks even on a bare PATH.
case "${BASH_SOURCE[0]}" in
    */*) K8S_DIR=${BASH_SOURCE[0]%/*} ;;
    *) K8S_DIR=. ;;
esac
K8S_DIR=$(cd "$K8S_DIR" && pwd)
OVERLAY=${OVERLAY:-dev}
NAMESPACE=${TRAINOPS_NAMESPACE:-trainops}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-5m}
MLFLOW_LOCAL_PORT=${MLFLOW_LOCAL_PORT:-5000}
PROMETHEUS_LOCAL_PORT=${PROMETHEUS_LOCAL_PORT:-9090}
RAY_DASHBOARD_LOCAL_PORT=${RAY_DASHBOARD_LOCAL_PORT:-8265}
RUN_DIR=${TRAINOPS_HOME:-$HOME/.trainops}/port-forward
FORWARD_READY_SECONDS=${FORWARD_READY_SECONDS:-15}

die() {
    echo "error: $*" >&2
    exit 1
}

need_kubectl() {
    command -v kubectl >/dev/null 2>&1 ||
        die "kubectl is not on PATH; install it (https://kubernetes.io/docs/tasks/tools/)"
    local context
    context=$(kubectl config current-context 2>/dev/null) ||
        die "kubectl has no current context; pick a cluster with 'kubectl config use-context NAME' (or set KUBECONFIG)"
    CONTEXT=$context
}

need_cluster() {
    local answer
    answer=$(kubectl get --raw=/version --request-timeout=15s 2>&1) ||
        die "cannot reach the cluster of context '$CONTEXT': $(head -n 1 <<<"$answer"); check the context or your VPN"
}

overlay_dir() {
    if [[ -f "$K8S_DIR/overlays/$OVERLAY/kustomization.yaml" ]]; then
        echo "$K8S_DIR/overlays/$OVERLAY"
    elif [[ "$OVERLAY" == */* && -f "$OVERLAY/kustomization.yaml" ]]; then
        (cd "$OVERLAY" && pwd)
    else
        local names=() dir
        for dir in "$K8S_DIR"/overlays/*/; do
            dir=${dir%/}
            names+=("${dir##*/}")
        done
        die "no overlay '$OVERLAY'; choose one of: ${names[*]} (OVERLAY=NAME), or give a path to a kustomization"
    fi
}

# The overlay rendered to a file: what is checked is exactly what is applied.
render() {
    local dir out
    dir=$(overlay_dir)
    RENDERED=$(mktemp)
    trap 'rm -f "$RENDERED" "$RENDERED.delete"' EXIT
    out=$(kubectl kustomize "$dir" 2>&1 >"$RENDERED") ||
        die "kubectl kustomize $dir failed: $(head -n 1 <<<"$out")"
}

# The Secrets the rendered pods read that the overlay does not make itself (kustomize prints
# keys sorted and indented by two, so a secretKeyRef's name is the first deeper 'name:').
required_secrets() {
    awk '
        function indent(line) { match(line, /^ */); return RLENGTH }
        /^---$/ { in_ref = 0; secret_doc = 0; next }
        /^kind: Secret$/ { secret_doc = 1 }
        secret_doc && /^  name: / { made[$2] = 1; secret_doc = 0 }
        in_ref && indent($0) <= ref_indent { in_ref = 0 }
        in_ref && /^ *name: / { wanted[$2] = 1; in_ref = 0 }
        /^ *(secretKeyRef|secretRef):$/ { in_ref = 1; ref_indent = indent($0) }
        /^ *secretName: / { wanted[$2] = 1 }
        END { for (name in wanted) if (!(name in made)) print name }
    ' "$RENDERED" | sort
}

check_secrets() {
    local name missing=()
    for name in $(required_secrets); do
        kubectl -n "$NAMESPACE" get secret "$name" -o name >/dev/null 2>&1 || missing+=("$name")
    done
    if ((${#missing[@]})); then
        die "the overlay reads Secrets that namespace $NAMESPACE lacks: ${missing[*]}; create them first (for MLflow's: the kubectl commands in k8s/components/mlflow-postgres-s3/kustomization.yaml)"
    fi
}

# The names of the rendered objects of one kind.
names_of() {
    awk -v kind="$1" '
        /^---$/ { this = 0; next }
        /^kind: / { this = ($2 == kind) }
        this && /^  name: / { print $2; this = 0 }
    ' "$RENDERED"
}

# Checks that need no change to the cluster, then the overlay rendered in $RENDERED.
prepare() {
    need_kubectl
    render
    need_cluster
    check_secrets
}

apply_and_wait() {
    echo "Applying $(overlay_dir) to context '$CONTEXT'"
    kubectl apply --server-side --field-manager=trainops -f "$RENDERED"
    local name
    for name in $(names_of Deployment); do
        kubectl -n "$NAMESPACE" rollout status "deployment/$name" --timeout="$ROLLOUT_TIMEOUT" ||
            die "deployment/$name did not become ready in $ROLLOUT_TIMEOUT; look at: kubectl -n $NAMESPACE describe deployment/$name; kubectl -n $NAMESPACE logs deployment/$name"
    done
    echo "Deployed. make port-forward puts MLflow and Prometheus on localhost."
}

deploy() {
    prepare
    apply_and_wait
}

refresh() {
    prepare
    local kept=$RENDERED.delete
    # Every document but the Namespace and the PersistentVolumeClaims.
    awk '
        function flush() { if (doc != "" && !keep) printf "---\n%s", doc; doc = ""; keep = 0 }
        /^---$/ { flush(); next }
        /^kind: (Namespace|PersistentVolumeClaim)$/ { keep = 1 }
        { doc = doc $0 "\n" }
        END { flush() }
    ' "$RENDERED" >"$kept"
    echo "Deleting the objects of $(overlay_dir) from context '$CONTEXT' (the namespace and the volumes stay)"
    kubectl delete --ignore-not-found --cascade=foreground --wait=true --timeout="$ROLLOUT_TIMEOUT" -f "$kept"
    apply_and_wait
}

# PID is a kubectl port-forward (of svc/SERVICE, when given): a PID file can outlive its
# process, and the PID be reused by another, which is then no business of ours.
is_forward() {
    local args
    [[ "$1" =~ ^[0-9]+$ ]] || return 1
    args=$(ps -ww -p "$1" -o args= 2>/dev/null) || return 1
    if [[ -n "${2:-}" ]]; then
        [[ "$args" == *"port-forward svc/$2 "* ]]
    else
        [[ "$args" == *"port-forward svc/"* ]]
    fi
}

# The PID of the running forward NAME of svc/SERVICE, from its PID file.
forward_pid() {
    local pidfile=$RUN_DIR/$1.pid pid
    [[ -f "$pidfile" ]] || return 1
    pid=$(<"$pidfile")
    is_forward "$pid" "$2" || return 1
    echo "$pid"
}

start_forward() {
    local name=$1 service=$2 local_port=$3 remote_port=$4 pid log
    log=$RUN_DIR/$name.log
    if pid=$(forward_pid "$name" "$service"); then
        echo "$name: already forwarded (pid $pid)"
        return 0
    fi
    # Ours, but to another service (the Ray head of an earlier sweep): it holds the port.
    if [[ -f "$RUN_DIR/$name.pid" ]] && is_forward "$(<"$RUN_DIR/$name.pid")"; then
        stop_forward "$name"
    fi
    kubectl -n "$NAMESPACE" get service "$service" -o name >/dev/null 2>&1 ||
        die "no Service $service in namespace $NAMESPACE; deploy first (make deploy)"
    nohup kubectl -n "$NAMESPACE" port-forward "svc/$service" "$local_port:$remote_port" \
        >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$RUN_DIR/$name.pid"
    local deadline=$((SECONDS + FORWARD_READY_SECONDS))
    until grep -q '^Forwarding from' "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$RUN_DIR/$name.pid"
            die "port-forward of svc/$service to localhost:$local_port stopped: $(grep -v '^$' "$log" | tail -n 1) (log: $log)"
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            rm -f "$RUN_DIR/$name.pid"
            die "port-forward of svc/$service is not listening after ${FORWARD_READY_SECONDS}s (log: $log)"
        fi
        sleep 0.2
    done
    echo "$name: forwarding localhost:$local_port to svc/$service:$remote_port (pid $pid)"
}

ray_service() {
    if [[ -n "${RAY_DASHBOARD_SERVICE:-}" ]]; then
        echo "$RAY_DASHBOARD_SERVICE"
        return
    fi
    kubectl -n "$NAMESPACE" get service -l ray.io/node-type=head \
        --sort-by=.metadata.creationTimestamp -o 'jsonpath={.items[-1:].metadata.name}'
}

port_forward() {
    need_kubectl
    need_cluster
    mkdir -p "$RUN_DIR"
    start_forward mlflow mlflow "$MLFLOW_LOCAL_PORT" 5000
    start_forward prometheus prometheus "$PROMETHEUS_LOCAL_PORT" 9090
    local ray
    ray=$(ray_service 2>/dev/null) || {
        echo "ray-dashboard: could not list the services of $NAMESPACE; skipped"
        ray=""
    }
    if [[ -n "$ray" ]]; then
        start_forward ray-dashboard "$ray" "$RAY_DASHBOARD_LOCAL_PORT" 8265
    else
        echo "ray-dashboard: no Ray head service in $NAMESPACE (a sweep starts one); run this again then"
    fi
    cat <<EOF

MLflow         http://localhost:$MLFLOW_LOCAL_PORT
Prometheus     http://localhost:$PROMETHEUS_LOCAL_PORT
EOF
    [[ -z "$ray" ]] || echo "Ray dashboard  http://localhost:$RAY_DASHBOARD_LOCAL_PORT"
    cat <<EOF

For the agent, in \$TRAINOPS_HOME/config.yaml:
  backend: cluster
  mlflow_tracking_uri: http://localhost:$MLFLOW_LOCAL_PORT
  prometheus_url: http://localhost:$PROMETHEUS_LOCAL_PORT
or in the environment:
  export TRAINOPS_BACKEND=cluster MLFLOW_TRACKING_URI=http://localhost:$MLFLOW_LOCAL_PORT TRAINOPS_PROMETHEUS_URL=http://localhost:$PROMETHEUS_LOCAL_PORT
Logs in $RUN_DIR; a forward ends when its pod restarts: run make port-forward again.
Stop them with: make stop-port-forward
EOF
}

# Stops the forward of PID file NAME.pid if it is one of ours, and removes the file.
stop_forward() {
    local pidfile=$RUN_DIR/$1.pid pid deadline
    pid=$(<"$pidfile")
    if is_forward "$pid"; then
        kill "$pid"
        deadline=$((SECONDS + 10))
        while is_forward "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        echo "$1: stopped (pid $pid)"
    fi
    rm -f "$pidfile"
}

stop_port_forward() {
    local pidfile name any=0
    for pidfile in "$RUN_DIR"/*.pid; do
        [[ -e "$pidfile" ]] || continue
        is_forward "$(<"$pidfile")" && any=1
        name=${pidfile##*/}
        stop_forward "${name%.pid}"
    done
    ((any)) || echo "No port-forward of ours is running."
}

case "${1:-}" in
    deploy) deploy ;;
    refresh) refresh ;;
    port-forward) port_forward ;;
    stop-port-forward) stop_port_forward ;;
    *)
        echo "usage: ${0##*/} deploy|refresh|port-forward|stop-port-forward" >&2
        exit 2
        ;;
esac
