#!/usr/bin/env bash
# "A cluster on one host": every machine is a network namespace with its own
# address on a host bridge and its own sshd, so a launcher reaches it through the
# real SSH path (ssh/scp with DIR/ssh_config).
#
#   scripts/netns-cluster.sh up   --dir DIR --machines NAME[,NAME...] [--subnet A.B.C] [--prefix P]
#   scripts/netns-cluster.sh down [--dir DIR] [--prefix P]
#   scripts/netns-cluster.sh exec [--dir DIR] [--prefix P] NAME-OR-INDEX -- CMD...
#
# up: bridge P-br (SUBNET.1/24); machine i (1-based) is namespace P-i with eth0 =
#     SUBNET.(10+i)/24 and an sshd on port 22. Writes into DIR: id_ed25519 (client
#     key), ssh_host_ed25519_key, authorized_keys, sshd-i.config, sshd-i.log,
#     ssh_config, known_hosts, machine_info.txt (Mason format) and machine_list.txt
#     (Emulab "List View" like). Keys are generated once per DIR. No default route,
#     no IP forwarding, no NAT: traffic stays among the namespaces and the bridge.
# down: kill -9 every process in each namespace P-<n>, delete namespaces, veths and
#     the bridge. Idempotent. Keeps DIR's files except the sshd pid files.
# exec: run CMD in the machine's namespace (by index, or by name with --dir).
#
# Needs root, iproute2, openssh-server and openssh-client (ssh-keygen, ssh, scp).
set -euo pipefail

PROG=${0##*/}
SSHD=${SSHD:-/usr/sbin/sshd}
MAX_MACHINES=240
WAIT_SECS=${NETNS_CLUSTER_WAIT_SECS:-10}

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}
warn() { echo "$PROG: warning: $*" >&2; }

usage() {
  cat <<EOF
Usage:
  $PROG up   --dir DIR --machines NAME[,NAME...] [--subnet A.B.C] [--prefix P]
  $PROG down [--dir DIR] [--prefix P]
  $PROG exec [--dir DIR] [--prefix P] NAME-OR-INDEX -- CMD...

Defaults: --subnet 10.213.7  --prefix msn
up creates bridge P-br (SUBNET.1/24) and, for machine i, namespace P-i with eth0 at
SUBNET.(10+i) running sshd; then writes DIR/ssh_config, DIR/machine_info.txt and
DIR/machine_list.txt. Use: ssh -F DIR/ssh_config SUBNET.11 CMD
down kills every process in the namespaces and removes namespaces, veths and bridge.
EOF
}

# ---------------------------------------------------------------- arguments
cmd=${1:-}
[[ -n $cmd ]] || {
  usage >&2
  exit 2
}
shift
case $cmd in
  -h | --help | help)
    usage
    exit 0
    ;;
  up | down | exec) ;;
  *)
    usage >&2
    die "unknown command '$cmd'"
    ;;
esac

dir=
machines_arg=
subnet=10.213.7
prefix=msn
target=
exec_cmd=()
while (($#)); do
  case $1 in
    --dir | --machines | --subnet | --prefix)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --dir) dir=$2 ;;
        --machines) machines_arg=$2 ;;
        --subnet) subnet=$2 ;;
        --prefix) prefix=$2 ;;
      esac
      shift 2
      ;;
    --dir=* | --machines=* | --subnet=* | --prefix=*)
      v=${1#*=}
      case $1 in
        --dir=*) dir=$v ;;
        --machines=*) machines_arg=$v ;;
        --subnet=*) subnet=$v ;;
        --prefix=*) prefix=$v ;;
      esac
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      [[ $cmd == exec ]] || die "unexpected '--' for '$cmd'"
      shift
      exec_cmd=("$@")
      break
      ;;
    -*) die "unknown option '$1' (see $PROG --help)" ;;
    *)
      if [[ $cmd == exec && -z $target ]]; then
        target=$1
        shift
      else
        die "unexpected argument '$1' (see $PROG --help)"
      fi
      ;;
  esac
done

# Prefix: the bridge is "P-br" and host veth ends are "P-vNNN"; interface names
# are at most 15 characters, so the prefix is at most 10.
[[ $prefix =~ ^[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*$ ]] ||
  die "bad --prefix '$prefix' (letters, digits, '_', '-'; must start with a letter)"
((${#prefix} <= 10)) || die "--prefix '$prefix' is too long (at most 10 characters)"
bridge=$prefix-br
ns_re="^${prefix}-[0-9]+\$"

((EUID == 0)) || die "must run as root (network namespaces, bridge, sshd)"
command -v ip >/dev/null || die "'ip' (iproute2) not found"

if [[ -n $dir ]]; then
  [[ $dir != *[[:space:]]* ]] || die "--dir must not contain whitespace (it goes into ssh configs)"
fi

# Namespaces of this prefix that exist now, in numeric order.
list_ns() {
  ip netns list 2>/dev/null | awk '{print $1}' | { grep -E "$ns_re" || true; } |
    sed "s/^${prefix}-//" | sort -n | sed "s/^/${prefix}-/"
}
# Host veth ends of this prefix that exist now.
list_veths() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    { grep -E "^${prefix}-v[0-9]+\$" || true; }
}
link_exists() { ip link show dev "$1" >/dev/null 2>&1; }

# With br_netfilter loaded and bridge-nf-call-iptables=1, bridged frames go through
# the iptables FORWARD chain; a DROP policy (Docker sets one) then silently drops
# traffic between namespaces. Accept traffic that stays on our bridge.
fw_comment() { echo "netns-cluster $bridge"; }
fw_needed() {
  [[ -r /proc/sys/net/bridge/bridge-nf-call-iptables ]] &&
    [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables) == 1 ]] &&
    command -v iptables >/dev/null
}
fw_add() {
  if fw_needed; then
    iptables -w -I FORWARD -i "$bridge" -o "$bridge" -m comment --comment "$(fw_comment)" -j ACCEPT ||
      warn "could not add iptables FORWARD accept rule for $bridge; inter-namespace traffic may be dropped"
  fi
}
fw_del() {
  command -v iptables >/dev/null || return 0
  local n=0
  while ((n < 10)) && iptables -w -C FORWARD -i "$bridge" -o "$bridge" -m comment --comment "$(fw_comment)" -j ACCEPT 2>/dev/null; do
    iptables -w -D FORWARD -i "$bridge" -o "$bridge" -m comment --comment "$(fw_comment)" -j ACCEPT || break
    n=$((n + 1))
  done
}

# ---------------------------------------------------------------- down
do_down() {
  local ns pids round any
  local -a nss
  mapfile -t nss < <(list_ns)
  # Kill until every namespace is empty: something may fork between listing and
  # killing. All namespaces per round, so that many machines cost one round.
  for round in 1 2 3 4 5 6 7 8 9 10; do
    any=0
    for ns in "${nss[@]}"; do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [[ -n $pids ]] || continue
      any=1
      ((round < 10)) || warn "processes still alive in $ns: ${pids//$'\n'/ }"
      # shellcheck disable=SC2086 # word splitting of the pid list is intended
      kill -9 $pids 2>/dev/null || true
    done
    ((any)) || break
    sleep 0.1
  done
  for ns in "${nss[@]}"; do
    ip netns delete "$ns" 2>/dev/null || warn "could not delete namespace $ns"
  done
  # Deleting a namespace destroys its veth end and so the pair, but do it explicitly
  # for ends left by a half-finished 'up'.
  local v
  for v in $(list_veths); do
    ip link delete "$v" 2>/dev/null || true
  done
  if link_exists "$bridge"; then
    ip link delete "$bridge" type bridge 2>/dev/null || warn "could not delete bridge $bridge"
  fi
  fw_del
  if [[ -n $dir && -d $dir ]]; then
    rm -f "$dir"/sshd-*.pid
  fi
  # Report leftovers loudly.
  local left
  left=$(
    list_ns
    list_veths
    if link_exists "$bridge"; then echo "$bridge"; fi
  )
  [[ -z $left ]] || die "could not remove: ${left//$'\n'/ }"
}

# ---------------------------------------------------------------- up
do_up() {
  [[ -n $dir ]] || die "up needs --dir DIR"
  [[ -n $machines_arg ]] || die "up needs --machines NAME[,NAME...]"
  [[ -x $SSHD ]] || die "$SSHD not found (install openssh-server)"
  local tool
  for tool in ssh ssh-keygen; do
    command -v "$tool" >/dev/null || die "'$tool' not found (install openssh-client)"
  done

  # Subnet: three octets.
  [[ $subnet =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
    die "bad --subnet '$subnet' (want three octets, e.g. 10.213.7)"
  local o
  for o in "${BASH_REMATCH[@]:1}"; do
    ((10#$o <= 255)) || die "bad --subnet '$subnet' (octet $o > 255)"
  done

  # Machines.
  local -a names
  IFS=, read -r -a names <<<"$machines_arg"
  local n=${#names[@]}
  ((n >= 1)) || die "--machines is empty"
  ((n <= MAX_MACHINES)) || die "$n machines requested; at most $MAX_MACHINES (addresses $subnet.11..$subnet.$((10 + MAX_MACHINES)))"
  local name
  declare -A seen=()
  for name in "${names[@]}"; do
    [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || die "bad machine name '$name' (letters, digits, '-', '_')"
    [[ -z ${seen[$name]:-} ]] || die "machine name '$name' given twice"
    seen[$name]=1
  done

  # Refuse to touch an existing cluster.
  local existing
  existing=$(
    list_ns
    if link_exists "$bridge"; then echo "$bridge"; fi
    list_veths
  )
  [[ -z $existing ]] ||
    die "a cluster with prefix '$prefix' already exists (${existing//$'\n'/ }); run: $PROG down --prefix $prefix"
  if ip -4 -o addr show | awk '{print $4}' | grep -q "^${subnet//./\\.}\."; then
    die "subnet $subnet.0/24 is already used by a host address; pick another --subnet"
  fi
  if [[ -n $(ip -4 route show "$subnet.0/24" 2>/dev/null) ]]; then
    die "subnet $subnet.0/24 already has a host route; pick another --subnet"
  fi

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  [[ $dir != *[[:space:]]* ]] || die "--dir must not contain whitespace"

  # From here on, tear down on failure.
  up_ok=0
  # shellcheck disable=SC2317 # invoked via trap
  cleanup_up() {
    if ((up_ok == 0)); then
      echo "$PROG: up failed; tearing down what it made" >&2
      (do_down) || true
    fi
  }
  trap cleanup_up EXIT

  # Keys, once per DIR.
  if [[ ! -f $dir/id_ed25519 ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "netns-cluster-client" -f "$dir/id_ed25519"
  fi
  if [[ ! -f $dir/ssh_host_ed25519_key ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "netns-cluster-host" -f "$dir/ssh_host_ed25519_key"
    : >"$dir/known_hosts" # a new host key invalidates old entries
  fi
  chmod 600 "$dir/id_ed25519" "$dir/ssh_host_ed25519_key"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  chmod 600 "$dir/authorized_keys"
  touch "$dir/known_hosts"

  # With UsePAM no, sshd refuses even key logins to an account whose password
  # starts with '!' (locked, e.g. Ubuntu's root); PAM's account check does not.
  local use_pam=no
  if [[ $(getent shadow root 2>/dev/null | cut -d: -f2) == '!'* ]]; then
    use_pam=yes
  fi

  # Privilege separation directory (sshd refuses to start without it).
  mkdir -p /run/sshd
  chmod 755 /run/sshd

  # Bridge.
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  fw_add

  local i ns addr veth peer
  for ((i = 1; i <= n; i++)); do
    ns=$prefix-$i
    addr=$subnet.$((10 + i))
    veth=$prefix-v$i
    peer=$prefix-p$i
    ip netns add "$ns"
    ip link add "$veth" type veth peer name "$peer"
    ip link set "$peer" netns "$ns"
    ip -n "$ns" link set "$peer" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "$bridge"
    ip link set "$veth" up
  done

  # ssh client config.
  {
    echo "# Generated by $PROG; use: ssh -F $dir/ssh_config ADDRESS-or-NAME CMD"
    for ((i = 1; i <= n; i++)); do
      echo "Host ${names[i - 1]}"
      echo "  HostName $subnet.$((10 + i))"
    done
    echo
    echo "Host $subnet.* ${names[*]}"
    echo "  User root"
    echo "  Port 22"
    echo "  IdentityFile $dir/id_ed25519"
    echo "  IdentitiesOnly yes"
    echo "  UserKnownHostsFile $dir/known_hosts"
    echo "  StrictHostKeyChecking no"
    echo "  GlobalKnownHostsFile /dev/null"
    echo "  LogLevel ERROR"
    echo "  BatchMode yes"
    echo "  ConnectTimeout 5"
    # OpenSSH 9's default post-quantum key exchange costs ~0.15 s of client CPU per
    # connection on a slow VM; a local test cluster does not need it.
    echo "  KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org"
    echo "  ControlMaster no"
    echo "  ForwardAgent no"
  } >"$dir/ssh_config"

  # One sshd per namespace.
  local conf
  for ((i = 1; i <= n; i++)); do
    ns=$prefix-$i
    addr=$subnet.$((10 + i))
    conf=$dir/sshd-$i.config
    cat >"$conf" <<EOF
# Generated by $PROG for ${names[i - 1]} (namespace $ns)
ListenAddress $addr
Port 22
HostKey $dir/ssh_host_ed25519_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM $use_pam
StrictModes no
UseDNS no
PidFile $dir/sshd-$i.pid
Subsystem sftp internal-sftp
LogLevel ERROR
MaxStartups 100:30:200
MaxSessions 100
EOF
    rm -f "$dir/sshd-$i.pid"
    : >"$dir/sshd-$i.log"
    if ((i == 1)); then # the configs differ only in addresses and file names
      ip netns exec "$ns" "$SSHD" -t -f "$conf" || die "sshd rejects $conf"
    fi
    ip netns exec "$ns" "$SSHD" -f "$conf" -E "$dir/sshd-$i.log" ||
      die "sshd failed to start in $ns; see $dir/sshd-$i.log"
  done

  # machine_info.txt (Mason format) and machine_list.txt (Emulab List View like).
  local mac
  : >"$dir/machine_info.txt"
  {
    echo "Node ID Type Status SSH command"
  } >"$dir/machine_list.txt"
  for ((i = 1; i <= n; i++)); do
    ns=$prefix-$i
    addr=$subnet.$((10 + i))
    mac=$(ip -n "$ns" -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    [[ -n $mac ]] || die "no MAC for eth0 in $ns"
    echo "${names[i - 1]},$ns,eth0,$mac,$addr,$addr,eth0" >>"$dir/machine_info.txt"
    echo "${names[i - 1]} $ns netns ready ssh -p 22 root@$addr" >>"$dir/machine_list.txt"
  done

  # Wait for every sshd to accept a login, all machines in parallel. The deadline
  # grows with the count: each login costs some CPU (key exchange, sshd re-exec),
  # and 100 parallel logins took ~30 s on a loaded 2-CPU VM.
  local deadline=$((SECONDS + WAIT_SECS + n / 2)) failed=0
  local -a waiters=()
  for ((i = 1; i <= n; i++)); do
    (
      a=$subnet.$((10 + i))
      while ! ssh -F "$dir/ssh_config" -o ConnectTimeout=2 "$a" true >"$dir/.wait-$i.err" 2>&1 </dev/null; do
        ((SECONDS < deadline)) || exit 1
        sleep 0.2
      done
    ) &
    waiters[i]=$!
  done
  for ((i = 1; i <= n; i++)); do
    if ! wait "${waiters[i]}"; then
      failed=1
      echo "$PROG: ssh to ${names[i - 1]} ($subnet.$((10 + i))) failed: $(cat "$dir/.wait-$i.err")" >&2
      [[ ! -s $dir/sshd-$i.log ]] || sed 's/^/  sshd log: /' "$dir/sshd-$i.log" >&2
    fi
    rm -f "$dir/.wait-$i.err"
  done
  ((failed == 0)) || die "not every sshd accepted an SSH login within $((WAIT_SECS + n / 2))s"

  up_ok=1
  trap - EXIT
  echo "cluster '$prefix' up: bridge $bridge $subnet.1/24, $n machines, files in $dir"
  for ((i = 1; i <= n; i++)); do
    printf '  %-20s %-12s %s\n' "${names[i - 1]}" "$prefix-$i" "$subnet.$((10 + i))"
  done
  echo "ssh: ssh -F $dir/ssh_config $subnet.11 CMD   down: $PROG down --dir $dir --prefix $prefix"
}

# ---------------------------------------------------------------- exec
do_exec() {
  [[ -n $target ]] || die "exec needs NAME-OR-INDEX"
  ((${#exec_cmd[@]})) || die "exec needs -- CMD..."
  local idx
  if [[ $target =~ ^[0-9]+$ ]]; then
    idx=$((10#$target))
  else
    [[ -n $dir && -f $dir/machine_info.txt ]] || die "exec by name needs --dir DIR (with machine_info.txt)"
    idx=$(awk -F, -v n="$target" -v p="$prefix-" '$1 == n && index($2, p) == 1 {print substr($2, length(p) + 1); exit}' "$dir/machine_info.txt")
    [[ -n $idx ]] || die "no machine '$target' in $dir/machine_info.txt"
  fi
  ip netns list | awk '{print $1}' | grep -qx "$prefix-$idx" || die "namespace $prefix-$idx does not exist"
  exec ip netns exec "$prefix-$idx" "${exec_cmd[@]}"
}

case $cmd in
  up) do_up ;;
  down) do_down ;;
  exec) do_exec ;;
esac
