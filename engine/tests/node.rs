//! Scenario tests of the sans-IO node, driven by the deterministic in-process cluster.

use bytes::Bytes;
use detcd_engine::harness::Cluster;
use detcd_engine::node::{Config, Request, Response};
use detcd_engine::time::Duration;
use detcd_engine::Error;
use detcd_proto::etcdserverpb::{
    compare, CompactionRequest, Compare, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, MemberUpdateRequest, MoveLeaderRequest, RangeRequest, TxnRequest,
};
use detcd_proto::etcdserverpb::{
    watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, WatchCreateRequest, WatchRequest,
};

fn ok_put(c: &mut Cluster, id: u64, key: &str, value: &str) -> i64 {
    match c.put(id, key, value) {
        Some(Ok(r)) => r.revision(),
        other => panic!("put {key}={value} on {id}: {other:?}"),
    }
}

fn read(c: &mut Cluster, id: u64, key: &str) -> Option<String> {
    match c.get(id, key, false) {
        Some(Ok(v)) => v.map(|b| String::from_utf8(b.to_vec()).unwrap()),
        other => panic!("get {key} on {id}: {other:?}"),
    }
}

fn others(c: &Cluster, id: u64) -> Vec<u64> {
    c.ids().into_iter().filter(|&x| x != id).collect()
}

/// Runs until every running member has applied the same index as the leader's commit.
fn settle(c: &mut Cluster) {
    let ok = c.run_until(Duration::from_secs(30), |c| {
        let Some(leader) = c.leader() else {
            return false;
        };
        let commit = c.node(leader).unwrap().commit_index();
        c.ids().iter().filter_map(|&id| c.node(id)).all(|n| n.applied_index() == commit)
    });
    assert!(ok, "cluster did not settle");
}

#[test]
fn a_cluster_elects_one_leader_that_everyone_follows() {
    for n in [1, 3, 5] {
        let mut c = Cluster::new(n, 7);
        let leader = c.wait_for_leader();
        c.run_for(Duration::from_secs(2));
        assert_eq!(c.leader(), Some(leader), "a stable cluster keeps its leader");
        for id in c.ids() {
            assert_eq!(c.node(id).unwrap().leader_id(), leader, "{n} members: member {id} follows the leader");
        }
    }
}

#[test]
fn writes_and_reads_through_leader_and_followers() {
    let mut c = Cluster::new(3, 1);
    let leader = c.wait_for_leader();
    let follower = others(&c, leader)[0];
    let r1 = ok_put(&mut c, leader, "a", "1");
    let r2 = ok_put(&mut c, follower, "b", "2"); // forwarded to the leader by raft
    assert_eq!((r1, r2), (2, 3));
    assert_eq!(read(&mut c, follower, "a").as_deref(), Some("1"), "linearizable read on a follower");
    assert_eq!(read(&mut c, leader, "b").as_deref(), Some("2"));
    settle(&mut c);
    let hashes: Vec<_> = c.ids().iter().map(|&id| c.node(id).unwrap().store().hash_kv(0).unwrap()).collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members agree: {hashes:?}");
    // The header is filled as etcd fills it.
    let Some(Ok(Response::Range(r))) =
        c.call(follower, Request::Range(RangeRequest { key: Bytes::from("a"), ..Default::default() }))
    else {
        panic!("range failed")
    };
    let h = r.header.unwrap();
    assert_eq!((h.member_id, h.revision, h.cluster_id != 0, h.raft_term >= 1), (follower, 3, true, true));
}

/// raft-rs drops a ReadIndex round that reaches a leader before it has committed an entry of
/// its term; the member asks again as soon as it sees that commit instead of waiting out the
/// 500 ms retry, so a new cluster's (or a new leader's) first reads are not all half a second late.
#[test]
fn reads_sent_as_a_leader_is_elected_are_answered_once_it_commits_not_after_the_retry() {
    for seed in 1..=5 {
        let mut c = Cluster::new(3, seed);
        c.wait_for_leader();
        let sent_at = c.now();
        let reads: Vec<(u64, _)> = c
            .ids()
            .into_iter()
            .map(|id| {
                let req = RangeRequest { key: Bytes::from_static(b"k"), ..Default::default() };
                (id, c.request(id, Request::Range(req)))
            })
            .collect();
        for (id, rid) in reads {
            let answer = c.wait(id, rid, Duration::from_secs(5));
            assert!(matches!(answer, Some(Ok(Response::Range(_)))), "seed {seed}: read on {id}: {answer:?}");
            let waited = c.now().saturating_duration_since(sent_at);
            assert!(
                waited < Duration::from_millis(300),
                "seed {seed}: the read on member {id} took {waited:?} of virtual time (the retry is 500 ms)"
            );
        }
    }
}

#[test]
fn a_read_only_txn_is_a_linearizable_read_and_a_write_txn_commits_once() {
    let mut c = Cluster::new(3, 2);
    let leader = c.wait_for_leader();
    ok_put(&mut c, leader, "k", "v");
    let cmp = Compare {
        key: Bytes::from("k"),
        target: compare::CompareTarget::Value as i32,
        result: compare::CompareResult::Equal as i32,
        target_union: Some(compare::TargetUnion::Value(Bytes::from("v"))),
        ..Default::default()
    };
    let read_only = TxnRequest { compare: vec![cmp.clone()], ..Default::default() };
    let Some(Ok(Response::Txn(r))) = c.call(others(&c, leader)[0], Request::Txn(read_only)) else { panic!() };
    assert!(r.succeeded);
    assert_eq!(c.node(leader).unwrap().store().current_revision(), 2, "a read-only txn writes nothing");
}

#[test]
fn the_leader_crashes_and_the_rest_carry_on() {
    let mut c = Cluster::new(3, 3);
    let old = c.wait_for_leader();
    ok_put(&mut c, old, "k", "before");
    c.crash(old);
    let new = c.wait_for_leader();
    assert_ne!(new, old);
    assert_eq!(read(&mut c, new, "k").as_deref(), Some("before"), "an acknowledged write survives");
    ok_put(&mut c, new, "k", "after");
    c.restart(old);
    settle(&mut c);
    assert_eq!(read(&mut c, old, "k").as_deref(), Some("after"), "the restarted member catches up");
}

#[test]
fn a_partitioned_minority_cannot_write_and_the_majority_moves_on() {
    let mut c = Cluster::new(5, 4);
    let old = c.wait_for_leader();
    let rest = others(&c, old);
    c.partition(&[old, rest[0]], &rest[1..]);
    let rid = c.request(
        old,
        Request::Put(detcd_proto::etcdserverpb::PutRequest {
            key: Bytes::from("minority"),
            value: Bytes::from("x"),
            ..Default::default()
        }),
    );
    let new = {
        let ok = c.run_until(Duration::from_secs(30), |c| c.leader().is_some_and(|l| rest[1..].contains(&l)));
        assert!(ok, "the majority elects a leader");
        c.leader().unwrap()
    };
    ok_put(&mut c, new, "majority", "y");
    let answer = c.wait(old, rid, Duration::from_secs(30));
    assert!(matches!(answer, Some(Err(Error::Timeout | Error::TimeoutDueToLeaderFail))), "minority write: {answer:?}");
    c.heal();
    settle(&mut c);
    for id in c.ids() {
        assert_eq!(read(&mut c, id, "majority").as_deref(), Some("y"));
        assert_eq!(read(&mut c, id, "minority"), None, "the minority's write never committed");
    }
}

#[test]
fn a_deposed_leader_never_serves_a_stale_linearizable_read() {
    let mut c = Cluster::new(3, 5);
    let old = c.wait_for_leader();
    ok_put(&mut c, old, "k", "old");
    c.isolate(old);
    // The old leader still believes it leads for a while (check-quorum takes an election
    // timeout to depose it); a read sent now must not return "old" once "new" is written.
    let rid = c.request(old, Request::Range(RangeRequest { key: Bytes::from("k"), ..Default::default() }));
    let rest = others(&c, old);
    let ok = c.run_until(Duration::from_secs(30), |c| c.leader().is_some_and(|l| l != old));
    assert!(ok);
    let new = c.leader().unwrap();
    assert!(rest.contains(&new));
    ok_put(&mut c, new, "k", "new");
    match c.wait(old, rid, Duration::from_secs(30)) {
        Some(Err(Error::Timeout | Error::LeaderChanged | Error::NoLeader)) => {}
        other => panic!("a deposed leader answered a linearizable read: {other:?}"),
    }
    // A serializable read may be stale, and is: it is served from local state.
    assert_eq!(c.get(old, "k", true), Some(Ok(Some(Bytes::from("old")))));
}

#[test]
fn a_lagging_follower_installs_a_snapshot() {
    let voters = vec![1, 2, 3];
    let configs = voters
        .iter()
        .map(|&id| {
            let mut cfg = Config::new(id, voters.clone());
            cfg.snapshot_count = 20;
            cfg.snapshot_catch_up_entries = 5;
            (id, cfg)
        })
        .collect();
    let mut c = Cluster::with_configs(configs, 6);
    let leader = c.wait_for_leader();
    let lagging = others(&c, leader)[0];
    c.crash(lagging);
    for i in 0..100 {
        ok_put(&mut c, leader, &format!("k{}", i % 7), &i.to_string());
    }
    ok_put(&mut c, leader, "compacted-away", "x");
    let rev = c.node(leader).unwrap().store().current_revision();
    let Some(Ok(_)) = c.call(leader, Request::Compact(CompactionRequest { revision: rev - 10, physical: false }))
    else {
        panic!()
    };
    c.restart(lagging);
    assert_eq!(c.node(lagging).unwrap().snapshot_index(), 1, "only the founders' bootstrap snapshot");
    settle(&mut c);
    assert!(c.node(lagging).unwrap().snapshot_index() >= 20, "the follower was sent a snapshot, not the log");
    let a = c.node(leader).unwrap().store().hash_kv(0).unwrap();
    let b = c.node(lagging).unwrap().store().hash_kv(0).unwrap();
    assert_eq!(a, b, "the follower rebuilt the same store from the snapshot and the log after it");
    assert_eq!(read(&mut c, lagging, "k1").as_deref(), Some("99"));
}

#[test]
fn every_member_restarts_from_its_disk() {
    let mut c = Cluster::new(3, 8);
    let leader = c.wait_for_leader();
    for i in 0..30 {
        ok_put(&mut c, leader, &format!("k{i}"), "v");
    }
    settle(&mut c);
    let before = c.node(leader).unwrap().store().hash_kv(0).unwrap();
    for id in c.ids() {
        c.crash(id);
    }
    for id in c.ids() {
        c.restart(id);
    }
    let leader = c.wait_for_leader();
    settle(&mut c);
    for id in c.ids() {
        assert_eq!(c.node(id).unwrap().store().hash_kv(0).unwrap(), before, "member {id} after restart");
    }
    assert_eq!(ok_put(&mut c, leader, "after", "restart"), 32);
}

#[test]
fn bad_requests_get_etcds_errors_without_consensus() {
    let mut c = Cluster::new(1, 9);
    let leader = c.wait_for_leader();
    let huge = "x".repeat(2 * 1024 * 1024);
    assert_eq!(c.put(leader, "k", &huge), Some(Err(Error::RequestTooLarge)));
    assert_eq!(c.put(leader, "", "v"), Some(Err(Error::EmptyKey)));
    assert_eq!(c.node(leader).unwrap().store().current_revision(), 1);
}

#[test]
fn without_a_leader_requests_fail_fast() {
    let mut c = Cluster::new(3, 10);
    let leader = c.wait_for_leader();
    let follower = others(&c, leader)[0];
    c.crash(leader);
    c.isolate(follower);
    // The follower loses its leader after an election timeout.
    let ok = c.run_until(Duration::from_secs(10), |c| c.node(follower).unwrap().leader_id() == 0);
    assert!(ok);
    assert_eq!(c.put(follower, "k", "v"), Some(Err(Error::NoLeader)));
    assert_eq!(c.get(follower, "k", false), Some(Err(Error::NoLeader)));
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut c = Cluster::new(3, seed);
        c.faults.drop_ppm = 50_000;
        let leader = c.wait_for_leader();
        for i in 0..20 {
            let target = if i % 2 == 0 { leader } else { others(&c, leader)[0] };
            let _ = c.put(target, &format!("k{i}"), "v");
        }
        c.crash(leader);
        c.wait_for_leader();
        c.restart(leader);
        c.run_for(Duration::from_secs(5));
        (c.trace_hash(), c.events())
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42).0, run(43).0);
}

/// An operator retries a MemberAdd that timed out through another member, one that has not
/// applied the first addition yet: the check at proposal passes there, and the log holds two
/// additions of one peer URL. The second is refused when it applies, alike on every member
/// (etcd validates conf changes at apply too), and the member list holds the URL once (found by
/// detcd-sim, lease-only seed 17: the joiner could never start).
#[test]
fn a_second_addition_of_one_peer_url_is_refused_when_it_applies() {
    let mut c = Cluster::new(3, 4);
    let leader = c.wait_for_leader();
    let lagging = others(&c, leader)[0];
    c.faults.slow_disks.insert(lagging, Duration::from_millis(300));
    let url = "http://127.0.0.1:12380".to_string();
    let add = || Request::MemberAdd(MemberAddRequest { peer_ur_ls: vec![url.clone()], is_learner: true });
    let first = c.call(leader, add());
    assert!(matches!(first, Some(Ok(Response::MemberAdd(_)))), "the first addition: {first:?}");
    let in_list = |c: &Cluster, id: u64| c.node(id).unwrap().members().iter().any(|m| m.peer_ur_ls.contains(&url));
    assert!(!in_list(&c, lagging), "the scenario needs a member that has not applied the first addition");
    let second = c.call(lagging, add());
    assert_eq!(
        second,
        Some(Err(Error::PeerUrlExists)),
        "the second addition, proposed where the first was not applied"
    );
    c.faults.slow_disks.clear();
    settle(&mut c);
    for id in c.ids() {
        let list = c.node(id).unwrap().members();
        let with_url = list.iter().filter(|m| m.peer_ur_ls.contains(&url)).count();
        assert_eq!((list.len(), with_url), (4, 1), "member {id}'s list: {list:?}");
    }
}

#[test]
fn a_learner_joins_catches_up_and_is_promoted_then_members_move_and_leave() {
    let mut c = Cluster::new(3, 11);
    let leader = c.wait_for_leader();
    for i in 0..10 {
        ok_put(&mut c, leader, &format!("k{i}"), "v");
    }
    let add = MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:12380".into()], is_learner: true };
    let answer = c.call(others(&c, leader)[0], Request::MemberAdd(add.clone()));
    let Some(Ok(Response::MemberAdd(added))) = answer else { panic!("member add failed: {answer:?}") };
    let learner = added.member.unwrap().id;
    assert!(added.members.iter().any(|m| m.id == learner && m.is_learner));
    assert_eq!(c.call(leader, Request::MemberAdd(add)), Some(Err(Error::PeerUrlExists)));
    let promote = Request::MemberPromote(MemberPromoteRequest { id: learner });
    assert_eq!(c.call(leader, promote.clone()), Some(Err(Error::LearnerNotReady)), "it has not even started");

    c.add_node(learner);
    settle(&mut c);
    assert_eq!(c.node(learner).unwrap().store().hash_kv(0), c.node(leader).unwrap().store().hash_kv(0));
    assert_eq!(c.node(learner).unwrap().learners(), vec![learner]);
    assert_eq!(c.call(others(&c, leader)[0], promote.clone()), Some(Err(Error::NotLeader)));
    // The leader learns of the catch-up from the learner's next append response.
    c.run_for(Duration::from_millis(200));
    let answer = c.call(leader, promote);
    assert!(matches!(answer, Some(Ok(Response::MemberPromote(_)))), "promote: {answer:?}");
    settle(&mut c);
    assert!(c.node(learner).unwrap().voters().contains(&learner));
    assert!(!c.node(learner).unwrap().members().iter().any(|m| m.is_learner));

    // Peer URLs change through the log, on every member.
    let url = "http://127.0.0.1:22380".to_string();
    let update = MemberUpdateRequest { id: learner, peer_ur_ls: vec![url.clone()] };
    assert!(matches!(c.call(leader, Request::MemberUpdate(update)), Some(Ok(Response::MemberUpdate(_)))));
    settle(&mut c);
    let Some(Ok(Response::MemberList(list))) =
        c.call(learner, Request::MemberList(MemberListRequest { linearizable: true }))
    else {
        panic!("member list failed")
    };
    assert_eq!(list.members.iter().find(|m| m.id == learner).unwrap().peer_ur_ls, vec![url]);

    // Leadership moves to the new member.
    assert_eq!(
        c.call(leader, Request::MoveLeader(MoveLeaderRequest { target_id: 99 })),
        Some(Err(Error::BadLeaderTransferee))
    );
    assert!(matches!(c.call(leader, Request::MoveLeader(MoveLeaderRequest { target_id: learner })), Some(Ok(_))));
    assert_eq!(c.leader(), Some(learner));

    // The old leader leaves.
    assert!(matches!(c.call(learner, Request::MemberRemove(MemberRemoveRequest { id: leader })), Some(Ok(_))));
    settle(&mut c);
    assert!(c.node(leader).unwrap().is_removed());
    assert!(!c.node(learner).unwrap().voters().contains(&leader));
    assert_eq!(
        c.call(learner, Request::MemberRemove(MemberRemoveRequest { id: leader })),
        Some(Err(Error::MemberNotFound))
    );
    ok_put(&mut c, learner, "after", "changes");
}

/// Keeps lease `id` alive through whichever member leads, retrying while a new leader has not
/// started its lease clocks yet.
fn keep_alive(c: &mut Cluster, id: i64) {
    for _ in 0..50 {
        let Some(leader) = c.leader() else {
            c.run_for(Duration::from_millis(100));
            continue;
        };
        match c.call(leader, Request::LeaseKeepAlive(LeaseKeepAliveRequest { id })) {
            Some(Ok(Response::LeaseKeepAlive(r))) => {
                assert!(r.ttl > 0);
                return;
            }
            Some(Err(Error::NotLeader)) | None => c.run_for(Duration::from_millis(100)),
            other => panic!("keepalive of {id}: {other:?}"),
        }
    }
    panic!("lease {id} could not be kept alive");
}

/// A leader whose disk is slow applies entries after its followers: a follower answers a grant
/// the leader has not applied yet. A keepalive the leader gets then waits until the leader has
/// applied what was committed (etcd 3.5's waitAppliedIndex) instead of answering "lease not
/// found" for a lease the client was just granted (found by detcd-sim, lease-only seed 1).
#[test]
fn a_leader_behind_its_followers_renews_a_lease_they_granted() {
    let mut c = Cluster::new(3, 21);
    let leader = c.wait_for_leader();
    let follower = others(&c, leader)[0];
    c.faults.slow_disks.insert(leader, Duration::from_millis(300));
    let grant = c.request(follower, Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 }));
    let answer = c.wait(follower, grant, Duration::from_secs(2));
    let Some(Ok(Response::LeaseGrant(grant))) = answer else { panic!("grant failed: {answer:?}") };
    let leader_node = c.node(leader).unwrap();
    assert!(
        leader_node.applied_index() < leader_node.commit_index(),
        "the scenario needs a leader that has not applied the grant yet"
    );
    match c.call(leader, Request::LeaseKeepAlive(LeaseKeepAliveRequest { id: grant.id })) {
        Some(Ok(Response::LeaseKeepAlive(r))) => assert_eq!(r.ttl, 5, "renewed once the grant applied"),
        other => panic!("keepalive at the leader right after the grant: {other:?}"),
    }
}

#[test]
fn a_lease_survives_a_leader_change_and_expires_once_abandoned() {
    let mut c = Cluster::new(3, 12);
    let leader = c.wait_for_leader();
    let answer = c.call(others(&c, leader)[0], Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 }));
    let Some(Ok(Response::LeaseGrant(grant))) = answer else { panic!("grant failed: {answer:?}") };
    assert_eq!(grant.ttl, 5);
    let put = PutRequest { key: Bytes::from("owned"), value: Bytes::from("v"), lease: grant.id, ..Default::default() };
    assert!(matches!(c.call(leader, Request::Put(put)), Some(Ok(_))));
    for _ in 0..3 {
        c.run_for(Duration::from_secs(1));
        keep_alive(&mut c, grant.id);
    }
    c.crash(leader);
    let new = c.wait_for_leader();
    for _ in 0..8 {
        keep_alive(&mut c, grant.id);
        c.run_for(Duration::from_secs(1));
    }
    assert_eq!(read(&mut c, new, "owned").as_deref(), Some("v"), "kept alive across the leader change");
    c.restart(leader);
    // Abandoned: gone after its TTL (plus the leader's check interval), on every member.
    c.run_for(Duration::from_secs(7));
    settle(&mut c);
    for id in c.ids() {
        assert_eq!(read(&mut c, id, "owned"), None, "member {id}");
        assert!(c.node(id).unwrap().lessor().leases().is_empty());
    }
}

fn create_watch(key: &str, start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from(key.to_owned()),
            start_revision,
            prev_kv: true,
            ..Default::default()
        })),
    }
}

#[test]
fn a_watch_resumes_from_history_and_is_canceled_below_the_compaction() {
    let mut c = Cluster::new(3, 13);
    let leader = c.wait_for_leader();
    for i in 1..=5 {
        ok_put(&mut c, leader, "k", &i.to_string()); // revisions 2..=6
    }
    let Some(Ok(_)) = c.call(leader, Request::Compact(CompactionRequest { revision: 4, physical: false })) else {
        panic!()
    };
    settle(&mut c);
    let follower = others(&c, leader)[0];
    c.watch(follower, 1, create_watch("k", 2));
    c.watch(follower, 2, create_watch("k", 4));
    c.run_for(Duration::from_millis(100));
    let canceled = c.watch_responses(follower, 1);
    assert!(canceled[0].created);
    assert!(canceled.iter().any(|r| r.canceled && r.compact_revision == 4), "{canceled:?}");

    ok_put(&mut c, leader, "k", "6"); // revision 7
    c.run_for(Duration::from_millis(100));
    let resumed = c.watch_responses(follower, 2);
    assert!(resumed[0].created);
    let events: Vec<(i64, String)> = resumed
        .iter()
        .flat_map(|r| &r.events)
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (kv.mod_revision, String::from_utf8(kv.value.to_vec()).unwrap())
        })
        .collect();
    assert_eq!(events, [(4, "3".into()), (5, "4".into()), (6, "5".into()), (7, "6".into())]);
    let header = resumed.last().unwrap().header.as_ref().unwrap();
    assert_eq!((header.member_id, header.revision), (follower, 7));
}

/// The leader removes itself: once it applied its removal it serves and steps nothing (raft-rs
/// keeps it leader without a progress of its own, and an append response arriving then made it
/// unwrap that missing progress: sim seed 91), and the others elect a leader and go on.
#[test]
fn a_leader_that_removes_itself_stops_and_the_others_go_on() {
    let mut c = Cluster::new(3, 5);
    let leader = c.wait_for_leader();
    ok_put(&mut c, leader, "before", "1");
    let answer = c.call(leader, Request::MemberRemove(MemberRemoveRequest { id: leader }));
    assert!(matches!(answer, Some(Ok(Response::MemberRemove(_)))), "remove: {answer:?}");
    // The removed leader stays up and keeps hearing its former followers.
    c.run_for(Duration::from_secs(5));
    assert!(c.node(leader).unwrap().is_removed());
    assert_eq!(
        c.call(leader, Request::MemberList(MemberListRequest { linearizable: false })),
        Some(Err(Error::Stopped))
    );
    let new_leader = c.leader().expect("the others elect a leader");
    assert_ne!(new_leader, leader);
    ok_put(&mut c, new_leader, "after", "2");
    assert_eq!(read(&mut c, new_leader, "before").as_deref(), Some("1"));
}

/// A leader paused for a while (a GC pause, a stopped VM) still believes it leads when it
/// resumes, and its lessor is still the primary; meanwhile the others elected a new leader,
/// which granted a lease. The old leader must not answer a keepalive of that lease from its
/// stale lessor ("not found" for a lease that exists: etcd #15247): it confirms its leadership
/// first, fails to, and answers "not leader" (found by detcd-sim, lease-only seed 1).
#[test]
fn a_deposed_leader_does_not_answer_keepalives_from_its_stale_lessor() {
    let mut c = Cluster::new(3, 8);
    let old = c.wait_for_leader();
    ok_put(&mut c, old, "k", "v"); // applied an entry of its term: its lessor is the primary
    c.pause(old);
    let new = loop {
        c.run_for(Duration::from_millis(50));
        let leaders: Vec<u64> = others(&c, old).into_iter().filter(|&id| c.node(id).unwrap().is_leader()).collect();
        if let Some(&l) = leaders.first() {
            break l;
        }
    };
    let answer = c.call(new, Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 }));
    let Some(Ok(Response::LeaseGrant(grant))) = answer else { panic!("grant failed: {answer:?}") };
    // The keepalive reaches the old leader before the messages that wait for it.
    let keepalive = c.request(old, Request::LeaseKeepAlive(LeaseKeepAliveRequest { id: grant.id }));
    assert!(c.node(old).unwrap().lessor().is_primary(), "the scenario needs an old leader that still leads");
    c.resume(old);
    match c.wait(old, keepalive, Duration::from_secs(5)) {
        Some(Err(Error::NotLeader)) => {}
        other => panic!("the deposed leader answered {other:?} for a lease its successor granted"),
    }
}

/// etcd's lessor, asked to renew a lease it let expire, waits for that lease's revoke. A leader
/// cut off from the others cannot commit the revoke: it must not answer "not found" meanwhile
/// (the lease and its keys live on at the majority), only "not leader" once it steps down.
#[test]
fn a_keepalive_of_an_expired_lease_waits_for_its_revoke() {
    let mut c = Cluster::new(3, 5);
    let leader = c.wait_for_leader();
    let answer = c.call(leader, Request::LeaseGrant(LeaseGrantRequest { ttl: 2, id: 0 }));
    let Some(Ok(Response::LeaseGrant(grant))) = answer else { panic!("grant failed: {answer:?}") };
    let put = PutRequest { key: Bytes::from("owned"), value: Bytes::from("v"), lease: grant.id, ..Default::default() };
    assert!(matches!(c.call(leader, Request::Put(put)), Some(Ok(_))));
    // Cut off shortly before the lease runs out; it expires at the old leader, which stays
    // leader (by its own reckoning) for about an election timeout more.
    c.run_for(Duration::from_millis(1_800));
    c.isolate(leader);
    c.run_for(Duration::from_millis(500));
    assert!(c.node(leader).unwrap().lessor().is_expired(grant.id, c.now()), "expired at the old leader");
    let keepalive = c.request(leader, Request::LeaseKeepAlive(LeaseKeepAliveRequest { id: grant.id }));
    match c.wait(leader, keepalive, Duration::from_secs(5)) {
        Some(Err(Error::NotLeader)) => {}
        other => panic!("the old leader answered {other:?} for a lease whose revoke cannot commit"),
    }
    // The majority never revoked it: the key is still there.
    let others = others(&c, leader);
    assert_eq!(read(&mut c, others[0], "owned").as_deref(), Some("v"));
}

/// etcd's quota: a store past `--quota-backend-bytes` refuses writes that add data with NOSPACE
/// and raises the alarm for the whole cluster; reads, deletes and compaction still work; even
/// with the space freed, writes stay refused until the alarm is disarmed. The alarm is
/// replicated state: a member restarted from a snapshot still has it.
#[test]
fn a_full_store_raises_nospace_until_compacted_and_disarmed() {
    use detcd_proto::etcdserverpb::{
        alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmType, DeleteRangeRequest,
    };
    let voters = vec![1, 2, 3];
    let configs = voters
        .iter()
        .map(|&id| {
            let mut cfg = Config::new(id, voters.clone());
            cfg.quota_backend_bytes = 4_000;
            cfg.snapshot_count = 10;
            (id, cfg)
        })
        .collect();
    let mut c = Cluster::with_configs(configs, 8);
    let leader = c.wait_for_leader();
    let follower = others(&c, leader)[0];
    let value = "v".repeat(200);
    let mut written = 0;
    let refused = loop {
        match c.put(follower, &format!("k{written}"), &value) {
            Some(Ok(_)) => written += 1,
            other => break other,
        }
        assert!(written < 100, "the quota never bit");
    };
    assert_eq!(refused, Some(Err(Error::NoSpace)));
    assert!(written >= 5, "only {written} puts fit");
    // The refusing member proposed the alarm; it reaches every member through the log.
    let raised =
        c.run_until(Duration::from_secs(5), |c| c.ids().iter().all(|&id| !c.node(id).unwrap().alarms().is_empty()));
    assert!(raised, "the NOSPACE alarm was not raised everywhere");
    let alarm = |action: AlarmAction, member_id: u64| {
        Request::Alarm(AlarmRequest { action: action as i32, member_id, alarm: AlarmType::Nospace as i32 })
    };
    let nospace = AlarmMember { member_id: follower, alarm: AlarmType::Nospace as i32 };
    for id in c.ids() {
        assert_eq!(c.node(id).unwrap().alarms(), vec![nospace], "member {id}'s alarms");
    }
    match c.call(leader, alarm(AlarmAction::Get, 0)) {
        Some(Ok(Response::Alarm(r))) => assert_eq!(r.alarms, vec![nospace]),
        other => panic!("alarm list: {other:?}"),
    }
    // Reads and deletes work; a lease grant adds data and is refused.
    assert_eq!(read(&mut c, leader, "k0").as_deref(), Some(value.as_str()));
    let grant = c.call(leader, Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 0 }));
    assert_eq!(grant, Some(Err(Error::NoSpace)));
    let delete_all = Request::DeleteRange(DeleteRangeRequest {
        key: Bytes::from("k"),
        range_end: Bytes::from("l"),
        ..Default::default()
    });
    assert!(matches!(c.call(leader, delete_all), Some(Ok(Response::DeleteRange(r))) if r.deleted == written));
    let rev = c.node(leader).unwrap().store().current_revision();
    assert!(matches!(
        c.call(leader, Request::Compact(CompactionRequest { revision: rev, physical: true })),
        Some(Ok(_))
    ));
    assert!(c.node(leader).unwrap().store().size_bytes() < 1_000, "the compaction freed the space");
    // Still refused when it applies, with space to spare: the alarm holds until disarmed.
    assert_eq!(c.put(leader, "after", "compaction"), Some(Err(Error::NoSpace)));
    // A member restarted from its disk (a snapshot was taken) still knows the alarm.
    c.crash(follower);
    c.restart(follower);
    settle(&mut c);
    assert_eq!(c.node(follower).unwrap().alarms(), vec![nospace]);
    match c.call(leader, alarm(AlarmAction::Deactivate, follower)) {
        Some(Ok(Response::Alarm(r))) => assert_eq!(r.alarms, vec![nospace]),
        other => panic!("alarm disarm: {other:?}"),
    }
    ok_put(&mut c, follower, "after", "disarm");
    settle(&mut c);
    for id in c.ids() {
        assert!(c.node(id).unwrap().alarms().is_empty(), "member {id} still alarmed");
    }
}
