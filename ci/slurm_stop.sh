#!/bin/bash
# Stop the daemons started by ci/slurm_start.sh, by the pids in their pid files (never by
# name, so other SLURM or MariaDB processes on the machine are left alone).
#   usage:  S=<the directory given to slurm_start.sh> bash ci/slurm_stop.sh
S=${S:?set S to the directory given to slurm_start.sh}
for f in "$S"/state/slurmd.pid "$S"/state/slurmctld.pid "$S"/state/slurmdbd.pid \
         "$S"/mysql/run/mysqld.pid "$S"/munge/munged.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then      # e.g. slurmd waiting for a dead slurmctld
      kill -9 "$pid"; echo "killed $f ($pid) after 10 s"
    else
      echo "stopped $f ($pid)"
    fi
  fi
  rm -f "$f"
done
# remove the /etc/slurm links only if they point into $S
for l in /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf; do
  [ -L "$l" ] && [[ "$(readlink "$l")" == "$S"/* ]] && rm -f "$l"
done
true
