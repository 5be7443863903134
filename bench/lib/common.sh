# shellcheck shell=bash
# Small helpers shared by the bench scripts (sourced).

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# now: seconds since the epoch with nanoseconds.
now() { date +%s.%N; }

# per_second COUNT T0 T1: COUNT / (T1 - T0) with one decimal (T0, T1 from now).
per_second() {
  awk -v n="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.1f\n", n / (t1 - t0) }'
}

# wait_for_port PORT [PID]: until something accepts on 127.0.0.1:PORT (10 s
# at most); fails early if PID is given and exits.
wait_for_port() {
  local _
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.05
  done
  return 1
}
