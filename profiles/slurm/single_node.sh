#!/usr/bin/env bash
# A single-node SLURM 22.05 cluster on this Debian 12 machine, for profiles/slurm (as root):
#   profiles/slurm/single_node.sh               # slurmctld + slurmd; no accounting (sacct fails)
#   profiles/slurm/single_node.sh --accounting  # and MariaDB + slurmdbd, so that sacct works
#   profiles/slurm/single_node.sh --stop        # stop the daemons this script started
# Idempotent: packages are installed only if missing, files rewritten only if they change, and
# daemons that already run are left alone (slurmctld/slurmd restart only if slurm.conf changed).
# No systemd here (containers, VMs): the daemons are started by hand.
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd}.log, /var/log/munge/munged.log,
# /var/log/mysql/single_node.log.
set -euo pipefail

CLUSTER=local        # ClusterName: lowercase; slurmctld refuses to start if it changes later
PARTITION=main
WAIT_S=60            # bound on every wait below
STATE=/run/slurm-single-node   # one file per daemon this script started (its pid), for --stop
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
HOST=$(hostname -s)

die() { echo "single_node.sh: error: $*" >&2; exit 1; }
say() { echo "single_node.sh: $*" >&2; }

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }

ACCOUNTING=0
STOP=0
for arg in "$@"; do
  case $arg in
    --accounting) ACCOUNTING=1 ;;
    --stop) STOP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $arg" ;;
  esac
done
[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts daemons)"
# Daemons must not inherit the caller's cwd (a repo that may be deleted) or its job context.
cd /
unset SLURM_JOB_ID SLURM_JOBID

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { if [[ -s $1 ]]; then tr -dc 0-9 <"$1"; fi; }   # pid from a pidfile, "" if none
# Remember that we started daemon $1, whose pidfile is $2 (daemons write it after forking).
mark() {
  local pid=''
  wait_for 10 test -s "$2" && pid=$(pid_of "$2")
  mkdir -p "$STATE"; echo "$pid" >"$STATE/$1"
}

# Wait (bounded) until the command succeeds; $1 = seconds, rest = command.
wait_for() {
  local limit=$1; shift
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < limit)) || return 1
    sleep 1
  done
}

# Stop daemon $1 if this script started it (its pid is in $STATE and still names that program).
stop_ours() {
  local name=$1 pid comm
  pid=$(pid_of "$STATE/$name")
  if alive "$pid"; then
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [[ $comm == "$name" ]]; then
      kill -TERM "$pid"
      if ! wait_for 30 bash -c "! kill -0 $pid"; then
        say "$name ($pid) still runs 30 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" || true
      fi
      say "stopped $name ($pid)"
    fi
  fi
  rm -f "$STATE/$name"
}

# ---------------------------------------------------------------------------------------- --stop
if ((STOP)); then
  # Jobs left behind would keep slurmstepd processes alive after slurmd is gone.
  if [[ -e $STATE/slurmctld ]] && command -v squeue >/dev/null; then
    mapfile -t jobs < <(squeue -h -o %i 2>/dev/null || true)
    if ((${#jobs[@]})); then
      say "cancelling jobs: ${jobs[*]}"
      scancel "${jobs[@]}" 2>/dev/null || true
      # shellcheck disable=SC2016  # expanded by the inner bash
      wait_for 20 bash -c '[[ -z $(squeue -h -o %i) ]]' || say "jobs still listed after 20 s"
    fi
  fi
  # Reverse start order: the node, the controller, accounting, then munge (all of them use it).
  for d in slurmd slurmctld slurmdbd mariadbd munged; do stop_ours "$d"; done
  rmdir "$STATE" 2>/dev/null || true
  echo "single_node.sh: stopped the SLURM daemons this script had started"
  exit 0
fi

# ------------------------------------------------------------------------------------- packages
PKGS=(slurmctld slurmd slurm-client munge)
((ACCOUNTING)) && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd the packages' init scripts would try (and fail) to start the daemons with
  # no slurm.conf yet: forbid service starts during the install (policy-rc.d exit 101).
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq || die "apt-get update failed"
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
fi

# ---------------------------------------------------------------------------------------- munge
# munged needs its runtime dir (on tmpfs, so gone after a reboot) and a key readable by munge only.
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /etc/munge /var/log/munge /var/lib/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
munge_ok() { munge -n | unmunge; }
if ! munge_ok >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid   # a stale pidfile would be taken for the new daemon's
  runuser -u munge -- munged || die "munged did not start: see /var/log/munge/munged.log"
  wait_for 10 munge_ok || die "munge does not work within 10 s: see /var/log/munge/munged.log"
  mark munged /run/munge/munged.pid
fi

# ------------------------------------------------------------------------------------ slurm.conf
install -d -o slurm -g slurm -m 755 /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld
install -d -m 755 /var/lib/slurm/slurmd
CPUS=$(nproc)
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
[[ -n $mem ]] || die "slurmd -C did not report RealMemory"
MEM=$((mem - 1024))   # leave 1 GiB to the OS and the daemons
# Gather job statistics only where they are stored (else slurmctld logs an error per job).
if ((ACCOUNTING)); then
  STORAGE=accounting_storage/slurmdbd GATHER=jobacct_gather/linux
else
  STORAGE=accounting_storage/none GATHER=jobacct_gather/none
fi

new_conf=$(cat <<EOF
# Written by profiles/slurm/single_node.sh: one node, $HOST, reached as 127.0.0.1.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroup v2 delegation without systemd: track processes by parent pid, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# CPUs and memory are consumable (CR_CPU: a hyperthread counts as a CPU, as nproc does).
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# A job without --mem would otherwise get the whole node's memory and run alone.
DefMemPerCPU=1024
SchedulerType=sched/backfill
# Finished jobs stay in squeue 300 s: needed by slurm-status-command: squeue without slurmdbd.
MinJobAge=300
ReturnToService=2
MailProg=/bin/true
JobAcctGatherType=$GATHER
AccountingStorageType=$STORAGE
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=0
if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$new_conf" ]]; then
  install -d -m 755 /etc/slurm
  printf '%s\n' "$new_conf" >"$CONF.tmp"; chmod 644 "$CONF.tmp"; mv "$CONF.tmp" "$CONF"
  conf_changed=1
  say "wrote $CONF (accounting: $STORAGE)"
fi

# ----------------------------------------------------------------------- accounting (optional)
if ((ACCOUNTING)); then
  # MariaDB by hand (mariadbd does not daemonize: setsid + log file). Debian's root@localhost
  # logs in through the unix socket, so no password is needed to create slurmdbd's user.
  install -d -o mysql -g mysql -m 755 /run/mysqld
  install -d -o mysql -g adm -m 2750 /var/log/mysql
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null \
    || die "mariadb-install-db failed"
  if ! mariadb-admin ping >/dev/null 2>&1; then
    rm -f /run/mysqld/mysqld.pid
    setsid mariadbd --user=mysql </dev/null >>/var/log/mysql/single_node.log 2>&1 &
    wait_for "$WAIT_S" mariadb-admin ping \
      || die "mariadbd did not answer within $WAIT_S s: see /var/log/mysql/single_node.log"
    mark mariadbd /run/mysqld/mysqld.pid
  fi
  # slurmdbd.conf holds the DB password: owned by slurm, mode 600, or slurmdbd refuses it.
  pass=$(sed -n 's/^StoragePass=//p' "$DBD_CONF" 2>/dev/null || true)
  [[ -n $pass ]] || pass=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
  new_dbd=$(cat <<EOF
# Written by profiles/slurm/single_node.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$pass
EOF
)
  if [[ ! -f $DBD_CONF ]] || [[ $(cat "$DBD_CONF") != "$new_dbd" ]]; then
    (umask 077; printf '%s\n' "$new_dbd" >"$DBD_CONF")
  fi
  chown slurm:slurm "$DBD_CONF"; chmod 600 "$DBD_CONF"
  mariadb <<EOF || die "could not create the MariaDB user slurm"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
  if ! alive "$(pid_of /run/slurmdbd.pid)"; then
    rm -f /run/slurmdbd.pid
    slurmdbd || die "slurmdbd did not start: see /var/log/slurm/slurmdbd.log"
    mark slurmdbd /run/slurmdbd.pid
  fi
  # sacctmgr reads slurm.conf (written above) to find slurmdbd.
  wait_for "$WAIT_S" sacctmgr -n list cluster \
    || die "slurmdbd did not answer within $WAIT_S s: see /var/log/slurm/slurmdbd.log"
  if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
  fi
else
  # Without --accounting the cluster must really have none: stop our slurmdbd/MariaDB, if any.
  stop_ours slurmdbd
  stop_ours mariadbd
fi

# ------------------------------------------------------------------------- slurmctld and slurmd
ctld_pid=$(pid_of /run/slurmctld.pid)
slurmd_pid=$(pid_of /run/slurmd.pid)
if ((conf_changed)); then
  # A changed AccountingStorageType or node line needs a restart, not scontrol reconfigure.
  for pid in $slurmd_pid $ctld_pid; do
    if alive "$pid"; then
      kill -TERM "$pid"
      wait_for 30 bash -c "! kill -0 $pid" || die "daemon $pid did not stop within 30 s"
    fi
  done
  ctld_pid='' slurmd_pid=''
fi
if ! alive "$ctld_pid"; then
  rm -f /run/slurmctld.pid
  slurmctld || die "slurmctld did not start: see /var/log/slurm/slurmctld.log"
  wait_for 30 scontrol ping \
    || die "slurmctld did not answer within 30 s: see /var/log/slurm/slurmctld.log"
  mark slurmctld /run/slurmctld.pid
fi
if ! alive "$slurmd_pid"; then
  rm -f /run/slurmd.pid
  slurmd || die "slurmd did not start: see /var/log/slurm/slurmd.log"
  mark slurmd /run/slurmd.pid
fi

# The node is usable once slurmctld lists it as idle (or busy with jobs).
node_up() { [[ $(sinfo -h -n "$HOST" -o %T 2>/dev/null) =~ ^(idle|mixed|allocated|completing)$ ]]; }
if ! wait_for "$WAIT_S" node_up; then
  state=$(sinfo -h -n "$HOST" -o '%T %E' 2>/dev/null || true)
  die "slurmd did not register within $WAIT_S s (node state: ${state:-unknown}):" \
    "see /var/log/slurm/slurmd.log and /var/log/slurm/slurmctld.log"
fi
if ((ACCOUNTING)); then
  sacct -X -n >/dev/null 2>&1 || die "sacct does not work: see /var/log/slurm/slurmdbd.log"
  acct="accounting: slurmdbd (sacct works)"
else
  acct="accounting: none (sacct fails; status via squeue)"
fi
echo "SLURM up: cluster $CLUSTER, node $HOST ($CPUS CPUs, $MEM MB), partition $PARTITION," \
  "$acct; stop with: $0 --stop"
