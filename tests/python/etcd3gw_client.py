"""The etcd3gw Python client (etcd's JSON gateway client) against one etcd or detcd member.

    python3 tests/python/etcd3gw_client.py HOST PORT

Run by tests/tests/gateway.rs (against detcd; tests/run-all.sh installs etcd3gw in a virtualenv
under target/). Puts, gets, deletes, transactions, leases, a watch and a lock through etcd3gw's
own calls; exits non-zero at the first answer that is not what etcd gives, and prints
"N passed, 0 failed" at the end.
"""

import sys
import threading
import time

from etcd3gw.client import Etcd3Client

checks = 0


def check(what, got, expected):
    global checks
    if got != expected:
        sys.exit(f"etcd3gw: {what}: got {got!r}, expected {expected!r}")
    checks += 1


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    client = Etcd3Client(host=host, port=port, timeout=10)

    # The API path is found from /version (3.4 and later: /v3/).
    check("api path", client.api_path, "/v3/")
    status = client.status()
    check("status names the leader", status["leader"], status["header"]["member_id"])
    members = client.members()
    check("one member", len(members), 1)
    check("its name", "name" in members[0], True)

    # Keys and values.
    check("put", client.put("gw/key", "v1"), True)
    check("get", client.get("gw/key"), [b"v1"])
    value, meta = client.get("gw/key", metadata=True)[0]
    check("get with metadata", (value, meta["key"], meta["version"]), (b"v1", b"gw/key", "1"))
    check("create on a present key", client.create("gw/key", "other"), False)
    check("create", client.create("gw/new", "n"), True)
    check("replace with the wrong old value", client.replace("gw/key", "nope", "v2"), False)
    check("replace", client.replace("gw/key", "v1", "v2"), True)
    check("after replace", client.get("gw/key"), [b"v2"])
    client.put("gw/prefix/a", "1")
    client.put("gw/prefix/b", "2")
    check("get_prefix", sorted(v for v, _ in client.get_prefix("gw/prefix/")), [b"1", b"2"])
    check("get_all sees every key", len(client.get_all()) >= 4, True)
    check("delete", client.delete("gw/key"), True)
    check("get after delete", client.get("gw/key"), [])
    check("delete of a missing key", client.delete("gw/key"), False)
    check("delete_prefix", client.delete_prefix("gw/prefix/"), True)
    check("get_prefix after delete_prefix", client.get_prefix("gw/prefix/"), [])

    # Leases.
    lease = client.lease(ttl=30)
    check("lease id", lease.id > 0, True)
    client.put("gw/leased", "x", lease=lease)
    check("refresh (keepalive stream)", lease.refresh(), 30)
    ttl = lease.ttl()
    check("ttl", 0 < ttl <= 30, True)
    check("lease keys", lease.keys(), [b"gw/leased"])
    check("revoke", lease.revoke(), True)
    check("leased key gone with the lease", client.get("gw/leased"), [])

    # A watch sees a put made after it started.
    events, cancel = client.watch("gw/watched")
    got = []

    def watch_one():
        for event in events:
            got.append(event)
            return

    reader = threading.Thread(target=watch_one, daemon=True)
    reader.start()
    deadline = time.time() + 10
    while reader.is_alive() and time.time() < deadline:
        client.put("gw/watched", "w1")
        reader.join(0.5)
    cancel()
    check("watch saw the put", (len(got) >= 1, got[0]["kv"]["key"] if got else None), (True, b"gw/watched"))
    check("watched value", got[0]["kv"]["value"], b"w1")

    # A lock (a key created in a transaction under a lease).
    lock = client.lock("gw-lock", ttl=30)
    check("lock acquire", lock.acquire(), True)
    check("lock held", lock.is_acquired(), True)
    other = client.lock("gw-lock", ttl=30)
    check("a second holder is refused", other.acquire(), False)
    check("lock release", lock.release(), True)
    check("then it is free", other.acquire(), True)
    other.release()

    print(f"etcd3gw: {checks} passed, 0 failed")


if __name__ == "__main__":
    main()
