#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests marked `slurm` and for trying examples/slurm/:
#
#   bash tools/slurm-local.sh install   # Debian's slurm-wlm 22.05, munge, slurmdbd and mariadb-server (apt-get)
#   bash tools/slurm-local.sh start     # starts munged, mariadbd, slurmdbd, slurmctld and slurmd
#   bash tools/slurm-local.sh stop      # stops the daemons that `start` started, and nothing else (a daemon
#                                       # that was already running when `start` ran is left running)
#
# As root, in a container or a CI machine: the daemons run as root, without cgroups
# (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none). slurmdbd and MariaDB are there because submitit
# polls `sacct` for the states of its jobs. Everything `start` writes goes into $SLURM_LOCAL_DIR
# (default /tmp/slurm-local); the configuration goes into /etc/slurm, where SLURM's commands look for it.
# The node offers $SLURM_LOCAL_CPUS CPUs (default 8, more than a small machine has, so that a few test jobs
# can run side by side).
set -euo pipefail

state=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
cpus=${SLURM_LOCAL_CPUS:-8}
db_port=${SLURM_LOCAL_DB_PORT:-3307}
conf_dir=/etc/slurm
host=$(hostname -s)

install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurm-wlm slurmdbd munge mariadb-server
}

started() {  # the pid file of a daemon names a live process
    [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

mine() {  # `start` notes each daemon it starts itself; `stop` stops those only
    echo "$1" >>"$state/started-here"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$((seconds * 5))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "slurm-local: $what did not come up in ${seconds} s; logs in $state" >&2
    return 1
}

write_config() {
    mkdir -p "$conf_dir" "$state"/{ctld,slurmd,log}
    cat >"$conf_dir/slurm.conf" <<EOF
# written by tools/slurm-local.sh: a one-node cluster for tests
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# a requeued job waits this long before it starts again (SLURM's default: 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$conf_dir/slurmdbd.conf" <<EOF
# written by tools/slurm-local.sh
AuthType=auth/munge
# a requeued job waits this long before it starts again (SLURM's default: 120 s)
AuthInfo=cred_expire=10
DbdHost=localhost
SlurmUser=root
PidFile=$state/slurmdbd.pid
LogFile=$state/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=root
EOF
    chmod 600 "$conf_dir/slurmdbd.conf"
}

start() {
    write_config
    : >"$state/started-here"  # what this start starts (a daemon already running is someone else's)
    if ! started munged; then
        [ -f /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
        mkdir -p /run/munge
        munged --force --pid-file="$state/munged.pid" --socket=/run/munge/munge.socket.2 \
            --log-file="$state/log/munged.log"
        mine munged
    fi
    if ! started mariadbd; then
        [ -d "$state/mysql" ] || mariadb-install-db --datadir="$state/mysql" --user=root >"$state/log/mariadb-install.log"
        # grant tables skipped: the database listens on 127.0.0.1 only, for slurmdbd
        mariadbd --datadir="$state/mysql" --user=root --skip-grant-tables --bind-address=127.0.0.1 \
            --port="$db_port" --socket="$state/mysql.sock" --pid-file="$state/mariadbd.pid" \
            --log-error="$state/log/mariadb.log" 2>/dev/null &
        mine mariadbd
        wait_for 60 "mariadbd" mariadb --protocol=tcp -h 127.0.0.1 -P "$db_port" -e "select 1"
    fi
    for daemon in slurmdbd slurmctld slurmd; do
        if ! started "$daemon"; then
            "$daemon"
            mine "$daemon"
        fi
        case $daemon in
            slurmdbd) wait_for 60 "slurmdbd" sacctmgr -n list cluster ;;
            slurmctld) wait_for 60 "slurmctld" scontrol ping ;;
            slurmd) wait_for 60 "the node" sh -c "sinfo -h -o %t | grep -qx idle" ;;
        esac
    done
    echo "slurm-local: cluster 'local' is up on $host ($cpus CPUs); stop it with: bash $0 stop"
}

stop() {
    [ -f "$state/started-here" ] || return 0
    for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
        if grep -qx "$daemon" "$state/started-here" && started "$daemon"; then
            pid=$(cat "$state/$daemon.pid")
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
    done
    rm -f "$state/started-here"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: bash $0 install|start|stop" >&2; exit 2 ;;
esac
