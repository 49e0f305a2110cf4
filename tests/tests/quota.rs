//! etcd's space quota end to end with Debian's etcdctl 3.4: a small `--quota-backend-bytes`,
//! puts until NOSPACE, the alarm listed, reads still served, then the way out etcd documents
//! (delete, compact, defrag, `alarm disarm`).

use detcd_tests::{etcdctl, fails, ok, Cluster};

/// The first `"revision":N` in etcdctl's JSON output.
fn revision(json: &str) -> i64 {
    let at = json.find("\"revision\":").unwrap_or_else(|| panic!("no revision in {json}")) + "\"revision\":".len();
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a revision")
}

/// The first `"dbSize":N` in `endpoint status -w json`.
fn db_size(json: &str) -> u64 {
    let at = json.find("\"dbSize\":").unwrap_or_else(|| panic!("no dbSize in {json}")) + "\"dbSize\":".len();
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a size")
}

#[test]
fn a_full_member_refuses_writes_with_nospace_until_compacted_defragmented_and_disarmed() {
    let mut cluster = Cluster::start_with(1, "quota", &["--quota-backend-bytes=32768"]);
    cluster.wait_ready();
    let ep = &cluster.endpoints();
    let value = "v".repeat(1024);
    let mut written = 0;
    let refused = loop {
        let out = etcdctl(ep, &["put", &format!("k{written}"), &value]);
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        written += 1;
        assert!(written < 100, "a 32 KiB quota took {written} puts of 1 KiB");
    };
    assert!(refused.contains("etcdserver: mvcc: database space exceeded"), "{refused}");
    assert!(written >= 20, "only {written} puts of 1 KiB fit in 32 KiB");
    let status = ok(etcdctl(ep, &["endpoint", "status", "-w", "json"]));
    let size = db_size(&status);
    assert!(size > 20 * 1024 && size <= 32 * 1024, "dbSize {size} after {written} puts");

    // The alarm is raised for this member, reads work, writes that add data do not.
    let alarms = ok(etcdctl(ep, &["alarm", "list"]));
    assert!(alarms.starts_with("memberID:") && alarms.trim_end().ends_with("alarm:NOSPACE"), "{alarms:?}");
    assert_eq!(ok(etcdctl(ep, &["get", "k0", "--print-value-only"])).trim_end(), value);
    assert!(fails(etcdctl(ep, &["lease", "grant", "60"])).contains("database space exceeded"));
    let small = fails(etcdctl(ep, &["put", "tiny", "x"]));
    assert!(small.contains("database space exceeded"), "{small}");

    // etcd's way out: free the space, then disarm. Until the disarm, writes stay refused.
    assert_eq!(ok(etcdctl(ep, &["del", "k", "--prefix"])).trim_end(), written.to_string());
    let rev = revision(&ok(etcdctl(ep, &["endpoint", "status", "-w", "json"])));
    assert!(ok(etcdctl(ep, &["compaction", "--physical", &rev.to_string()])).contains("compacted revision"));
    assert!(ok(etcdctl(ep, &["defrag"])).contains("Finished defragmenting"));
    // (The deletes' tombstones stay: they are at the compaction revision; see README.)
    let after = db_size(&ok(etcdctl(ep, &["endpoint", "status", "-w", "json"])));
    assert!(after < size / 4, "compaction freed the space: {size} → {after}");
    assert!(fails(etcdctl(ep, &["put", "tiny", "x"])).contains("database space exceeded"), "the alarm still holds");
    let disarmed = ok(etcdctl(ep, &["alarm", "disarm"]));
    assert!(disarmed.trim_end().ends_with("alarm:NOSPACE"), "disarm lists what it disarmed: {disarmed:?}");
    assert_eq!(ok(etcdctl(ep, &["alarm", "list"])), "");
    assert_eq!(ok(etcdctl(ep, &["put", "tiny", "x"])), "OK\n");
    cluster.members[0].terminate();
}
