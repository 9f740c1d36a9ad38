#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (munge + slurmctld + slurmd, as root) and run
# the SLURM end-to-end test (tests/test_slurm.py): the generated array + group job on the demo
# dataset, compared byte for byte with a serial run.
#
# Usage: sudo scripts/slurm-test.sh            start, test, stop
#        sudo scripts/slurm-test.sh start      only start (prints the SLURM_CONF to export)
#        sudo scripts/slurm-test.sh stop
# Needs: apt-get install -y slurm-wlm munge    Exits 0 with "SKIP: ..." where that cannot work.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
STATE="${SLURM_TEST_DIR:-/tmp/bids-deid-slurm}"
CONF="$STATE/slurm.conf"
ACTION="${1:-all}"

skip() { echo "SKIP: $*"; exit 0; }

stop() {
  for name in slurmd slurmctld munged; do
    if [ -f "$STATE/$name.pid" ]; then
      kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid"
    fi
  done
}

start() {
  for exe in munged slurmctld slurmd sbatch sinfo; do
    command -v "$exe" >/dev/null || skip "$exe is missing (apt-get install -y slurm-wlm munge)"
  done
  [ "$(id -u)" = 0 ] || skip "starting slurmctld/slurmd needs root"
  mkdir -p "$STATE"/{spool,ctld,munge,log}
  touch "$STATE/log/munged.log"
  chown munge:munge "$STATE/munge" "$STATE/log/munged.log" 2>/dev/null || true
  chmod 0755 "$STATE/munge"  # munged wants the socket dir reachable by all
  local host cpus mem_mb
  host="$(hostname -s)"
  cpus="$(nproc)"
  mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
  cat > "$CONF" <<EOF
# One-node test cluster for bids-deid (written by scripts/slurm-test.sh).
ClusterName=bidsdeidtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPort=${SLURM_TEST_PORT:-16817}
SlurmdPort=$(( ${SLURM_TEST_PORT:-16817} + 1 ))
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
MaxArraySize=10001
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # munged: the socket in our state dir, so a system munge (if any) is left alone.
  if ! [ -S "$STATE/munge/munge.socket" ] || ! munge -n -S "$STATE/munge/munge.socket" >/dev/null 2>&1; then
    [ -f /etc/munge/munge.key ] || skip "no /etc/munge/munge.key (reinstall munge or run mungekey)"
    runuser -u munge -- munged --socket="$STATE/munge/munge.socket" --pid-file="$STATE/munge/munged.pid" \
      --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed" \
      || skip "munged does not start here (see $STATE/log/munged.log)"
    cp "$STATE/munge/munged.pid" "$STATE/munged.pid" 2>/dev/null || true
  fi
  export SLURM_CONF="$CONF"
  if ! scontrol ping 2>/dev/null | grep -q UP; then
    slurmctld -f "$CONF" -i || skip "slurmctld does not start here (see $STATE/log/slurmctld.log)"
  fi
  if ! pgrep -F "$STATE/slurmd.pid" >/dev/null 2>&1; then
    slurmd -f "$CONF" || skip "slurmd does not start here (see $STATE/log/slurmd.log)"
  fi
  for _ in $(seq 30); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "SLURM is up: export SLURM_CONF=$CONF"
      sinfo
      return 0
    fi
    sleep 1
  done
  tail -5 "$STATE/log/slurmd.log" "$STATE/log/slurmctld.log" || true
  stop
  skip "the SLURM node did not become idle (see $STATE/log)"
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  all)
    start
    trap stop EXIT
    PY="$REPO/.venv/bin/python"
    [ -x "$PY" ] || PY=python3
    SLURM_CONF="$CONF" BIDS_DEID_SLURM_TEST=1 "$PY" -m pytest -q -p no:cacheprovider -m slurm tests/test_slurm.py ${SLURM_TEST_K:+-k "$SLURM_TEST_K"} -rs
    ;;
  *) echo "usage: $0 [start|stop|all]" >&2; exit 2 ;;
esac
