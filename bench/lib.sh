# Helpers shared by the bench scripts (sourced, not run).

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (at most 10 s) for the gateway's ready line in OUT; shows LOG and exits if it never comes.
wait_ready() { # OUT LOG
  for _ in $(seq 100); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "gateway did not start" >&2; cat "$2" >&2; exit 1
}

# A `Livepeer` job header for capability "bench", valid for the gateway and the simulator.
bench_header() { # ID
  printf '{"id":"%s","request":"{}","parameters":"{}","capability":"bench","capability_url":"","sender":"","sig":"","timeout_seconds":30}' "$1" | base64 -w0
}

# Prints the wrk script lines that POST a small JSON job with the job header of ID; a bench
# appends its own hooks.
wrk_post() { # ID
  cat <<LUA
wrk.method = "POST"
wrk.body = '{"prompt":"x"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Livepeer"] = "$(bench_header "$1")"
LUA
}

# Waits (at most 30 s) until the simulators writing "$WORK"/sim*.out have printed N ready lines
# (one per URL), then writes their URLs to "$WORK/urls"; shows their logs and exits if not.
wait_sims() { # N
  for _ in $(seq 300); do
    [ "$(cat "$WORK"/sim*.out 2>/dev/null | grep -c 'sim ready')" -ge "$1" ] && break; sleep 0.1
  done
  grep -ho 'sim ready url=[^ ]*' "$WORK"/sim*.out | sed 's/.*url=//' >"$WORK/urls"
  [ "$(wc -l <"$WORK/urls")" -eq "$1" ] || { echo "simulators did not start" >&2; cat "$WORK"/sim*.log >&2; exit 1; }
}
