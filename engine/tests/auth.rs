//! Auth as scenarios on the deterministic in-process cluster: the state replicated through raft,
//! tokens issued on one member accepted on the others, permissions on every request kind, the
//! state across restarts, snapshots and a snapshot install.

use std::collections::BTreeMap;

use bytes::Bytes;
use detcd_engine::auth::Caller;
use detcd_engine::harness::Cluster;
use detcd_engine::node::{Config, Request, Response};
use detcd_engine::Error;
use detcd_proto::authpb::{permission, Permission};
use detcd_proto::etcdserverpb::*;
use detcd_proto::internalpb::AuthTokenIssue;

fn cluster(seed: u64) -> Cluster {
    let voters = vec![1, 2, 3];
    let configs: BTreeMap<u64, Config> = voters
        .iter()
        .map(|&id| {
            let mut cfg = Config::new(id, voters.clone());
            cfg.snapshot_count = 20;
            cfg.snapshot_catch_up_entries = 5;
            (id, cfg)
        })
        .collect();
    Cluster::with_configs(configs, seed)
}

fn call(c: &mut Cluster, id: u64, caller: &Caller, r: Request) -> Result<Response, Error> {
    c.call_as(id, caller.clone(), r).expect("answered")
}

/// Authenticates `name` at member `id` the way the server does (the password check itself is
/// the server's; the engine only hands out the hash).
fn login(c: &mut Cluster, id: u64, name: &str) -> Caller {
    let revision = match call(c, id, &Caller::Client(None), Request::AuthPasswordOf { name: name.into() }) {
        Ok(Response::AuthPassword(p)) => p.revision,
        other => panic!("{other:?}"),
    };
    let issue = AuthTokenIssue { name: name.into(), token: format!("tok{name}"), auth_revision: revision };
    match call(c, id, &Caller::Client(None), Request::Authenticate(issue)) {
        Ok(Response::Authenticate(r)) => Caller::Client(Some(r.token)),
        other => panic!("{other:?}"),
    }
}

fn put(key: &str) -> Request {
    Request::Put(PutRequest { key: Bytes::from(key.to_owned()), value: Bytes::from("v"), ..Default::default() })
}

fn get(key: &str, end: &[u8]) -> Request {
    Request::Range(RangeRequest {
        key: Bytes::from(key.to_owned()),
        range_end: Bytes::from(end.to_vec()),
        ..Default::default()
    })
}

fn setup(c: &mut Cluster, leader: u64) {
    let internal = Caller::Internal;
    let user = |name: &str| {
        Request::AuthUserAdd(AuthUserAddRequest {
            name: name.into(),
            hashed_password: "$hash".into(),
            ..Default::default()
        })
    };
    assert_eq!(call(c, leader, &internal, Request::AuthEnable(AuthEnableRequest {})), Err(Error::RootUserNotExist));
    call(c, leader, &internal, user("root")).unwrap();
    assert_eq!(call(c, leader, &internal, Request::AuthEnable(AuthEnableRequest {})), Err(Error::RootRoleNotExist));
    let grant =
        |u: &str, r: &str| Request::AuthUserGrantRole(AuthUserGrantRoleRequest { user: u.into(), role: r.into() });
    call(c, leader, &internal, grant("root", "root")).unwrap();
    call(c, leader, &internal, user("alice")).unwrap();
    call(c, leader, &internal, Request::AuthRoleAdd(AuthRoleAddRequest { name: "pub-reader".into() })).unwrap();
    let perm = Permission {
        perm_type: permission::Type::Read as i32,
        key: Bytes::from("/pub/"),
        range_end: Bytes::from("/pub0"),
    };
    call(
        c,
        leader,
        &internal,
        Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "pub-reader".into(),
            perm: Some(perm),
        }),
    )
    .unwrap();
    call(c, leader, &internal, grant("alice", "pub-reader")).unwrap();
    call(c, leader, &internal, Request::AuthEnable(AuthEnableRequest {})).unwrap();
}

#[test]
fn tokens_and_permissions_across_members() {
    let mut c = cluster(11);
    let leader = c.wait_for_leader();
    setup(&mut c, leader);
    // Until a follower applied the enable it admits anonymous writes (see `recheck_permission`).
    c.run_for(std::time::Duration::from_millis(500));
    let anonymous = Caller::Client(None);
    let followers: Vec<u64> = c.ids().into_iter().filter(|&i| i != leader).collect();
    assert_eq!(call(&mut c, followers[0], &anonymous, put("a")), Err(Error::UserEmpty));
    assert_eq!(
        call(&mut c, followers[0], &Caller::Client(Some("forged.1".into())), put("a")),
        Err(Error::InvalidAuthToken)
    );
    // Issued through one follower, known to every member.
    let root = login(&mut c, followers[0], "root");
    let alice = login(&mut c, followers[1], "alice");
    for id in c.ids() {
        call(&mut c, id, &root, put(&format!("/pub/{id}"))).unwrap();
        call(&mut c, id, &alice, get("/pub/", b"/pub0")).unwrap();
        assert_eq!(call(&mut c, id, &alice, put("/pub/x")), Err(Error::PermissionDenied));
        assert_eq!(call(&mut c, id, &alice, get("/pub/", b"\0")), Err(Error::PermissionDenied));
        assert_eq!(
            call(&mut c, id, &alice, Request::AuthUserList(AuthUserListRequest {})),
            Err(Error::PermissionDenied)
        );
    }
    // Watches: created only on what the user may read (etcd's isWatchPermitted).
    let create = |key: &str, end: &[u8]| WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from(key.to_owned()),
            range_end: Bytes::from(end.to_vec()),
            ..Default::default()
        })),
    };
    c.watch_as(leader, 1, &alice, create("/pub/", b"/pub0"));
    c.watch_as(leader, 1, &alice, create("/secret", b""));
    c.watch_as(leader, 2, &anonymous, create("/pub/", b"/pub0"));
    let answers = c.watch_responses(leader, 1);
    assert!(answers[0].created && !answers[0].canceled, "{answers:?}");
    assert!(answers[1].created && answers[1].canceled && answers[1].cancel_reason.contains("permission denied"));
    let answers = c.watch_responses(leader, 2);
    assert!(answers[0].canceled && answers[0].watch_id == -1, "{answers:?}");
    // A txn is checked op by op, compares included.
    let txn = TxnRequest {
        compare: vec![Compare { key: Bytes::from("/secret"), ..Default::default() }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: Bytes::from("/pub/1"),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    assert_eq!(call(&mut c, leader, &alice, Request::Txn(txn.clone())), Err(Error::PermissionDenied));
    let ok_txn = TxnRequest { compare: vec![Compare { key: Bytes::from("/pub/1"), ..Default::default() }], ..txn };
    call(&mut c, leader, &alice, Request::Txn(ok_txn)).unwrap();
    // A lease whose keys the user may not write cannot be revoked by it.
    let lease = match call(&mut c, leader, &root, Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 0 })) {
        Ok(Response::LeaseGrant(g)) => g.id,
        other => panic!("{other:?}"),
    };
    let leased = PutRequest { key: Bytes::from("/pub/leased"), value: Bytes::from("v"), lease, ..Default::default() };
    call(&mut c, leader, &root, Request::Put(leased)).unwrap();
    assert_eq!(
        call(&mut c, leader, &alice, Request::LeaseRevoke(LeaseRevokeRequest { id: lease })),
        Err(Error::PermissionDenied)
    );
    call(&mut c, leader, &root, Request::LeaseRevoke(LeaseRevokeRequest { id: lease })).unwrap();
    // A deleted user's tokens die with it.
    call(&mut c, leader, &root, Request::AuthUserDelete(AuthUserDeleteRequest { name: "alice".into() })).unwrap();
    c.run_for(std::time::Duration::from_millis(500));
    for id in c.ids() {
        assert_eq!(call(&mut c, id, &alice, get("/pub/1", b"")), Err(Error::InvalidAuthToken));
    }
    // Disabled: anyone may do anything.
    call(&mut c, leader, &root, Request::AuthDisable(AuthDisableRequest {})).unwrap();
    c.run_for(std::time::Duration::from_millis(500));
    call(&mut c, followers[1], &anonymous, put("free")).unwrap();
}

#[test]
fn auth_state_survives_restarts_snapshots_and_installs() {
    let mut c = cluster(12);
    let leader = c.wait_for_leader();
    let lagging = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.crash(lagging);
    setup(&mut c, leader);
    let root = login(&mut c, leader, "root");
    // Enough entries for snapshots and log compaction: the lagging member needs a snapshot.
    for i in 0..60 {
        call(&mut c, leader, &root, put(&format!("k{}", i % 5))).unwrap();
    }
    c.restart(lagging);
    c.run_for(std::time::Duration::from_secs(3));
    let status = call(&mut c, lagging, &Caller::Client(None), Request::AuthStatus(AuthStatusRequest {})).unwrap();
    match status {
        Response::AuthStatus(s) => assert!(s.enabled && s.auth_revision > 0, "{s:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(call(&mut c, lagging, &Caller::Client(None), get("/pub/1", b"")), Err(Error::UserEmpty));
    let alice = login(&mut c, lagging, "alice");
    call(&mut c, lagging, &alice, get("/pub/1", b"")).unwrap();
    // Every member restarts: the state is back, the tokens (memory only, as etcd's) are not.
    for id in c.ids() {
        c.crash(id);
        c.restart(id);
    }
    let leader = c.wait_for_leader();
    assert_eq!(call(&mut c, leader, &root, put("x")), Err(Error::InvalidAuthToken));
    let root = login(&mut c, leader, "root");
    match call(&mut c, leader, &root, Request::AuthUserList(AuthUserListRequest {})) {
        Ok(Response::AuthUserList(l)) => assert_eq!(l.users, vec!["alice".to_string(), "root".to_string()]),
        other => panic!("{other:?}"),
    }
}
