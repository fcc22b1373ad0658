# Shared by infra.sh and services.sh (sourced, not run).

# A killed process stays a zombie until its parent (often PID 1) reaps it, and `kill -0` still
# succeeds on a zombie: a crashed service would look alive and `make up` would not restart it.
pid_running() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }
alive() { [ -f "$1" ] && pid_running "$(cat "$1")"; }
