#!/usr/bin/env bash
# A single-node SLURM cluster on 127.0.0.1, with accounting (slurmdbd + MariaDB), for
# `make test-slurm` and for trying the suite's SLURM launcher on a workstation (docs/clusters.md).
#
#   scripts/slurm_cluster.sh install          apt-get install the daemons (idempotent; root)
#   scripts/slurm_cluster.sh start [--no-accounting]   start them (restart slurmctld to switch)
#   scripts/slurm_cluster.sh stop             stop the daemons this script started (by pid file)
#   scripts/slurm_cluster.sh env              the line to `eval` in a shell that uses the cluster
#
# SLURM_NODE_CPUS: the CPUs the node offers (default: nproc).
# Everything lives under $SLURM_TEST_DIR (default /tmp/ticket-slurm): config, state, spool,
# logs, pid files, munge socket, database. No systemd, no cgroups (proctrack/linuxproc,
# task/none), nothing in /etc/slurm; clients find the cluster through SLURM_CONF.
set -euo pipefail

D="${SLURM_TEST_DIR:-/tmp/ticket-slurm}"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
CTLD_PORT=16817 SLURMD_PORT=16818 DBD_PORT=16819 DB_PORT=16306
NODE=ticketnode

die() { echo "error: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "the SLURM tests need root (they install and start slurmctld, slurmd, slurmdbd, munged and MariaDB): run make test-slurm as root, e.g. in CI"
}

install() {
    need_root
    local missing=()
    for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} = 0 ] && return 0
    command -v apt-get >/dev/null || die "the SLURM tests need apt-get to install ${missing[*]} (Debian/Ubuntu); install them by hand on this system"
    echo "installing ${missing[*]} with apt-get" >&2
    # policy-rc.d: the packages must not start their own services (we start ours by hand)
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    local rc=0
    if ! { apt-get update -qq >/dev/null \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then rc=1; fi
    [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || die "apt-get could not install ${missing[*]}: the SLURM tests need the Debian package registry"
}

comm() { case $1 in mariadb) echo mariadbd ;; *) echo "$1" ;; esac; }

# the daemon's pid file names a live process of that program (not a reused pid)
alive() { [ -f "$D/run/$1.pid" ] && [ "$(cat "/proc/$(cat "$D/run/$1.pid")/comm" 2>/dev/null)" = "$(comm "$1")" ]; }

wait_for() {  # wait_for <seconds> <what> <command...>
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "$what did not come up within ${secs}s (logs: $D/log/)"
}

write_slurm_conf() {  # write_slurm_conf <accounting: 1|0>
    local cpus mem acct
    cpus=${SLURM_NODE_CPUS:-$(nproc)}  # more than the machine has: more small jobs at once (the tests)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    if [ "$1" = 1 ]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT"
    else
        acct="AccountingStorageType=accounting_storage/none"
    fi
    cat > "$D/etc/slurm.conf" <<EOF
ClusterName=ticket
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again once its old credential expired (default 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$acct
# fast turnaround for tests: short kill wait, frequent scheduling, jobs kept visible 5 min
KillWait=2
SlurmdParameters=config_overrides
MinJobAge=300
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$NODE NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {  # on munge's default socket, which every SLURM command uses; a running munged is kept
    alive munged && return 0
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    [ -f /etc/munge/munge.key ] || { mungekey --create && chown munge:munge /etc/munge/munge.key; } \
        || die "no munge key: create one with mungekey --create"
    mkdir -p "$D/munge" /run/munge
    chown munge:munge "$D/munge" /run/munge && chmod 700 "$D/munge" && chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged --force --pid-file="$D/munge/munged.pid" \
        --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
    wait_for 10 munged sh -c "munge -n </dev/null | unmunge"
    cp "$D/munge/munged.pid" "$D/run/munged.pid"
}

start_mariadb() {
    alive mariadb && return 0
    if [ ! -d "$D/mysql/mysql" ]; then
        mkdir -p "$D/mysql" && chown mysql:mysql "$D/mysql"
        mariadb-install-db --user=mysql --datadir="$D/mysql" --auth-root-authentication-method=socket \
            >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $D/log/mariadb-install.log)"
    fi
    # `exec` in the subshell: the recorded pid is mariadbd's own
    (exec /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$D/mysql" --bind-address=127.0.0.1 \
        --port=$DB_PORT --socket="$D/mysql/mysqld.sock" --pid-file="$D/mysql/mariadbd.pid" \
        --log-error="$D/mysql/mariadb.log" </dev/null >/dev/null 2>&1) &
    echo $! > "$D/run/mariadb.pid"
    wait_for 60 MariaDB mariadb --no-defaults --socket="$D/mysql/mysqld.sock" -e "select 1"
    mariadb --no-defaults --socket="$D/mysql/mysqld.sock" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_slurmdbd() {
    alive slurmdbd && return 0
    cat > "$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$D/etc/slurmdbd.conf"
    /usr/sbin/slurmdbd
    wait_for 30 slurmdbd alive slurmdbd
    # the cluster must exist in the database before slurmctld registers with it
    wait_for 30 "slurmdbd's port" timeout 10 sacctmgr -i list cluster
    sacctmgr -i list cluster -n format=cluster | grep -qw ticket || sacctmgr -i add cluster ticket >/dev/null
}

start() {
    need_root
    local accounting=1
    [ "${1:-}" = --no-accounting ] && accounting=0
    for b in slurmctld slurmd munged; do command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] \
        || die "$b is not installed: run $0 install first"; done
    mkdir -p "$D"/{etc,state,spool,log,run}
    export SLURM_CONF="$D/etc/slurm.conf"
    local before
    before=$(cat "$D/etc/slurm.conf" 2>/dev/null || true)
    write_slurm_conf $accounting
    if [ "$before" != "$(cat "$D/etc/slurm.conf")" ]; then
        stop_one slurmd; stop_one slurmctld  # e.g. accounting switched: the daemons read it only at start
    fi
    start_munge
    if [ $accounting = 1 ]; then start_mariadb; start_slurmdbd; fi
    if ! alive slurmctld; then
        /usr/sbin/slurmctld
        wait_for 30 slurmctld timeout 10 scontrol ping
    fi
    if ! alive slurmd; then
        /usr/sbin/slurmd -N $NODE
    fi
    wait_for 60 "node $NODE" timeout 10 sh -c "sinfo -h -N -o %t | grep -qE '^(idle|mix|alloc)'"
    echo "cluster up ($( [ $accounting = 1 ] && echo with || echo without ) accounting): $(env_line)" >&2
}

stop_one() {  # stop a daemon by the pid file this script wrote, and wait for it to end
    local f="$D/run/$1.pid" pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if alive "$1"; then
        kill "$pid"
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$f"
}

stop() {
    for daemon in slurmd slurmctld slurmdbd mariadb munged; do stop_one $daemon; done
}

env_line() { echo "export SLURM_CONF=$D/etc/slurm.conf"; }

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    env) env_line ;;
    *) echo "usage: $0 install | start [--no-accounting] | stop | env" >&2; exit 2 ;;
esac
