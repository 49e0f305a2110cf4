//! Small hand-made histories with known verdicts, each checked with both models where it means
//! something to both. The outputs are those a correct etcd would give (revisions included), so
//! the etcd model checks every field and the register model the values and versions.
//!
//! Times are in ns; `put(client, call_ns, return_ns, key, value, header_revision)`, and so on
//! (see `common`). A new cluster is at revision 1, so the first write makes revision 2.

mod common;

use common::*;
use detcd_checks::history::{
    Bytes, Compare, CompareResult, CompareTarget, DeleteRequest, Operation, PutRequest, RangeRequest, Request,
    Response, TxnOp, TxnOpResponse, TxnRequest, WatchRequest,
};
use detcd_checks::linearizability::CheckOptions;
use detcd_checks::{check_history, ModelKind};

// ---- Linearizable ------------------------------------------------------------------------

#[test]
fn sequential_put_get_delete() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        get(1, 20, 30, "a", 2, Some(kv("a", "1", 2, 2, 1))),
        put(2, 40, 50, "a", "2", 3),
        get(3, 60, 70, "a", 3, Some(kv("a", "2", 2, 3, 2))),
        del(1, 80, 90, "a", 4, 1),
        get(2, 100, 110, "a", 4, None),
        put(3, 120, 130, "a", "3", 5),
        // Re-created: version starts again at 1, create revision is the new one.
        get(1, 140, 150, "a", 5, Some(kv("a", "3", 5, 5, 1))),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn concurrent_puts_take_effect_in_the_other_order() {
    // Client 1 calls first but its put lands second.
    let h = vec![
        put(1, 0, 100, "a", "1", 3),
        put(2, 10, 90, "a", "2", 2),
        get(3, 20, 30, "a", 2, Some(kv("a", "2", 2, 2, 1))),
        get(3, 110, 120, "a", 3, Some(kv("a", "1", 2, 3, 2))),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn three_concurrent_puts_observed_in_order_3_1_2() {
    let h = vec![
        put(1, 0, 1000, "x", "1", 3),
        put(2, 0, 1000, "x", "2", 4),
        put(3, 0, 1000, "x", "3", 2),
        get(4, 100, 200, "x", 2, Some(kv("x", "3", 2, 2, 1))),
        get(4, 300, 400, "x", 3, Some(kv("x", "1", 2, 3, 2))),
        get(4, 500, 600, "x", 4, Some(kv("x", "2", 2, 4, 3))),
        // A read spanning all of it may see any of them.
        get(5, 50, 950, "x", 3, Some(kv("x", "1", 2, 3, 2))),
        // One that starts before any put may also see none.
        get(6, 0, 990, "x", 1, None),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn reads_concurrent_with_a_put_see_old_then_new() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(2, 20, 100, "a", "2", 3),
        get(3, 30, 40, "a", 2, Some(kv("a", "1", 2, 2, 1))),
        get(4, 50, 60, "a", 3, Some(kv("a", "2", 2, 3, 2))),
        get(3, 70, 80, "a", 3, Some(kv("a", "2", 2, 3, 2))),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn compare_and_set_one_wins_one_loses() {
    let h = vec![
        put(1, 0, 10, "x", "0", 2),
        get(1, 20, 30, "x", 2, Some(kv("x", "0", 2, 2, 1))),
        get(2, 20, 30, "x", 2, Some(kv("x", "0", 2, 2, 1))),
        cas(1, 40, 60, "x", "0", "1", 3, true, None),
        cas(2, 45, 65, "x", "0", "1", 3, false, Some(kv("x", "1", 2, 3, 2))),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // The read is called at the instant the put returns: either order is allowed.
    let h = vec![put(1, 0, 10, "a", "1", 2), get(2, 10, 20, "a", 1, None)];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

// ---- Not linearizable -----------------------------------------------------------------------

#[test]
fn stale_read_after_a_write_completed() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(2, 20, 30, "a", "2", 3),
        get(3, 40, 50, "a", 2, Some(kv("a", "1", 2, 2, 1))),
    ];
    for model in MODELS {
        let (prefix, involved) = assert_violation(&h, model);
        assert_eq!(prefix, vec![0, 1], "{model}");
        assert_eq!(involved, vec![2], "{model}");
    }
}

#[test]
fn stale_read_with_a_current_header() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(2, 20, 30, "a", "2", 3),
        get(3, 40, 50, "a", 3, Some(kv("a", "1", 2, 2, 1))),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

#[test]
fn lost_update_two_compare_and_sets_both_succeed_from_the_same_read() {
    let h = vec![
        put(1, 0, 10, "x", "0", 2),
        get(1, 20, 30, "x", 2, Some(kv("x", "0", 2, 2, 1))),
        get(2, 20, 30, "x", 2, Some(kv("x", "0", 2, 2, 1))),
        // Both increment 0 to 1, concurrently, and both report success.
        cas(1, 40, 60, "x", "0", "1", 3, true, None),
        cas(2, 45, 65, "x", "0", "1", 4, true, None),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

#[test]
fn lost_update_by_mod_revision_compare() {
    // etcd's idiom: txn if mod_revision(x) == what I read then put. Both read mod 2.
    let guarded_put = |client, call_ns, return_ns, value: &str, header_revision| Operation {
        client,
        call_ns,
        return_ns,
        op: Request::Txn(TxnRequest {
            compare: vec![Compare {
                key: "x".into(),
                range_end: Bytes::default(),
                result: CompareResult::Equal,
                target: CompareTarget::ModRevision(2),
            }],
            success: vec![TxnOp::Put(PutRequest { key: "x".into(), value: value.into(), lease: 0, prev_kv: false })],
            failure: vec![],
        }),
        outcome: detcd_checks::history::Outcome::Ok,
        output: Some(Response::Txn {
            header_revision,
            succeeded: true,
            responses: vec![TxnOpResponse::Put { prev_kv: None }],
        }),
        error: None,
    };
    let h = vec![
        put(1, 0, 10, "x", "0", 2),
        guarded_put(1, 40, 60, "1", 3),
        guarded_put(2, 45, 65, "1", 4),
        get(3, 70, 80, "x", 4, Some(kv("x", "1", 2, 4, 3))),
    ];
    assert_violation(&h, ModelKind::Etcd);
    // The first alone is fine.
    let ok = vec![h[0].clone(), h[1].clone(), get(3, 70, 80, "x", 3, Some(kv("x", "1", 2, 3, 2)))];
    assert_linearizable(&ok, ModelKind::Etcd);
}

#[test]
fn read_goes_back_in_time_across_clients() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(2, 20, 100, "a", "2", 3),
        // Client 3 sees the new value; client 4, starting after that read returned, the old.
        get(3, 30, 40, "a", 3, Some(kv("a", "2", 2, 3, 2))),
        get(4, 50, 60, "a", 2, Some(kv("a", "1", 2, 2, 1))),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

#[test]
fn indeterminate_write_shows_up_later() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        indeterminate(put(2, 20, 30, "a", "2", 0)),
        // The client gave up at 30; the write still lands between 50 and 60.
        get(3, 40, 50, "a", 2, Some(kv("a", "1", 2, 2, 1))),
        get(3, 60, 70, "a", 3, Some(kv("a", "2", 2, 3, 2))),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn indeterminate_write_never_shows_up() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        indeterminate(put(2, 20, 30, "a", "2", 0)),
        get(3, 40, 50, "a", 2, Some(kv("a", "1", 2, 2, 1))),
        // Revision 3 went to another key: the indeterminate put had not happened by then.
        put(1, 60, 70, "b", "1", 3),
        get(3, 80, 90, "a", 3, Some(kv("a", "1", 2, 2, 1))),
    ];
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn indeterminate_write_seen_then_unseen_then_seen_again() {
    // Only the indeterminate put wrote "2", once: after a read saw it and a later one did not,
    // nothing can make it come back.
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        indeterminate(put(2, 20, 30, "a", "2", 0)),
        get(3, 40, 50, "a", 3, Some(kv("a", "2", 2, 3, 2))),
        get(4, 60, 70, "a", 3, Some(kv("a", "1", 2, 2, 1))),
        get(3, 80, 90, "a", 3, Some(kv("a", "2", 2, 3, 2))),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

#[test]
fn indeterminate_write_takes_effect_twice() {
    // A retried request must not apply twice: the second application shows as a new version
    // (and, for etcd, a new revision) of the same value, which no single put explains.
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        indeterminate(put(2, 20, 30, "a", "2", 0)),
        get(3, 40, 50, "a", 3, Some(kv("a", "2", 2, 3, 2))),
        get(3, 60, 70, "a", 4, Some(kv("a", "2", 2, 4, 3))),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

#[test]
fn indeterminate_write_cannot_take_effect_before_its_call() {
    let h = vec![get(1, 0, 10, "a", 2, Some(kv("a", "2", 2, 2, 1))), indeterminate(put(2, 20, 30, "a", "2", 0))];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

#[test]
fn failed_write_whose_value_is_read() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        failed(put(2, 20, 30, "a", "2", 0)),
        get(3, 40, 50, "a", 3, Some(kv("a", "2", 2, 3, 2))),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
    // The same history with the write indeterminate instead is fine.
    let mut h = h;
    h[1] = indeterminate(put(2, 20, 30, "a", "2", 0));
    for model in MODELS {
        assert_linearizable(&h, model);
    }
}

#[test]
fn wrong_version_is_caught_by_both_models() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(1, 20, 30, "a", "1", 3),
        // Same value, but two puts make version 2.
        get(2, 40, 50, "a", 3, Some(kv("a", "1", 2, 3, 1))),
    ];
    for model in MODELS {
        assert_violation(&h, model);
    }
}

// ---- The etcd model's revisions ---------------------------------------------------------------

#[test]
fn stale_header_revision_is_caught_by_the_etcd_model_only() {
    // The value read is right, but the header says revision 2 after a write made revision 3.
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(2, 20, 30, "b", "1", 3),
        get(3, 40, 50, "a", 2, Some(kv("a", "1", 2, 2, 1))),
    ];
    assert_violation(&h, ModelKind::Etcd);
    // Registers know no revisions.
    assert_linearizable(&h, ModelKind::Register);
}

#[test]
fn header_revision_ahead_of_every_write_is_caught() {
    let h = vec![put(1, 0, 10, "a", "1", 2), get(3, 40, 50, "a", 5, Some(kv("a", "1", 2, 2, 1)))];
    assert_violation(&h, ModelKind::Etcd);
}

#[test]
fn writes_that_change_nothing_make_no_revision() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        // Deletes nothing: no new revision.
        del(1, 20, 30, "b", 2, 0),
        // A failed compare whose branch only reads: none either.
        cas(1, 40, 50, "a", "zzz", "2", 2, false, Some(kv("a", "1", 2, 2, 1))),
        put(1, 60, 70, "c", "1", 3),
    ];
    assert_linearizable(&h, ModelKind::Etcd);
    // A delete of nothing that claims a new revision is wrong.
    let mut bad = h.clone();
    bad[1] = del(1, 20, 30, "b", 3, 0);
    bad[3] = put(1, 60, 70, "c", "1", 4);
    assert_violation(&bad, ModelKind::Etcd);
}

#[test]
fn ranges_over_several_keys() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(1, 20, 30, "b", "2", 3),
        put(1, 40, 50, "c", "3", 4),
        range(2, 60, 70, "a", "c", 4, vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)]),
        range(2, 80, 90, "a", "\0", 4, vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1)]),
        // An end at or before the key selects nothing.
        range(2, 100, 110, "b", "a", 4, vec![]),
        Operation {
            op: Request::Delete(DeleteRequest { key: "a".into(), range_end: "c".into(), prev_kv: true }),
            output: Some(Response::Delete {
                header_revision: 5,
                deleted: 2,
                prev_kvs: vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)],
            }),
            ..put(1, 120, 130, "", "", 0)
        },
        range(2, 140, 150, "a", "\0", 5, vec![kv("c", "3", 4, 4, 1)]),
    ];
    assert_linearizable(&h, ModelKind::Etcd);
    // A range that misses a key written before it was called.
    let mut bad = h.clone();
    bad[4] = range(2, 80, 90, "a", "\0", 4, vec![kv("a", "1", 2, 2, 1), kv("c", "3", 4, 4, 1)]);
    assert_violation(&bad, ModelKind::Etcd);
}

#[test]
fn txn_sees_its_own_writes_and_writes_at_one_revision() {
    let txn = Operation {
        op: Request::Txn(TxnRequest {
            compare: vec![Compare {
                key: "a".into(),
                range_end: Bytes::default(),
                result: CompareResult::Equal,
                target: CompareTarget::Version(0),
            }],
            success: vec![
                TxnOp::Put(PutRequest { key: "a".into(), value: "1".into(), lease: 0, prev_kv: false }),
                TxnOp::Put(PutRequest { key: "b".into(), value: "2".into(), lease: 0, prev_kv: false }),
                TxnOp::Range(RangeRequest { key: "a".into(), range_end: "\0".into(), revision: 0 }),
            ],
            failure: vec![],
        }),
        output: Some(Response::Txn {
            header_revision: 2,
            succeeded: true,
            responses: vec![
                TxnOpResponse::Put { prev_kv: None },
                TxnOpResponse::Put { prev_kv: None },
                TxnOpResponse::Range { kvs: vec![kv("a", "1", 2, 2, 1), kv("b", "2", 2, 2, 1)] },
            ],
        }),
        ..put(1, 0, 10, "", "", 0)
    };
    let h = vec![txn.clone(), get(2, 20, 30, "b", 2, Some(kv("b", "2", 2, 2, 1)))];
    assert_linearizable(&h, ModelKind::Etcd);
    // Had the range inside not seen the txn's own writes:
    let mut blind = txn;
    if let Some(Response::Txn { responses, .. }) = &mut blind.output {
        responses[2] = TxnOpResponse::Range { kvs: vec![] };
    }
    assert_violation(&[blind], ModelKind::Etcd);
}

#[test]
fn prev_kv_must_be_the_previous_value() {
    let with_prev = |prev| Operation {
        op: Request::Put(PutRequest { key: "a".into(), value: "2".into(), lease: 0, prev_kv: true }),
        output: Some(Response::Put { header_revision: 3, prev_kv: prev }),
        ..put(2, 20, 30, "", "", 0)
    };
    let good = vec![put(1, 0, 10, "a", "1", 2), with_prev(Some(kv("a", "1", 2, 2, 1)))];
    for model in MODELS {
        assert_linearizable(&good, model);
    }
    let bad = vec![put(1, 0, 10, "a", "1", 2), with_prev(None)];
    for model in MODELS {
        assert_violation(&bad, model);
    }
}

// ---- What the checker refuses or skips ------------------------------------------------

fn refusal(h: &[Operation], model: ModelKind) -> String {
    match check_history(h, model, &CheckOptions::default()) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("{model} model checked what it cannot: {:?}", c.result.verdict),
    }
}

#[test]
fn unsupported_operations_are_refused_not_passed() {
    let lease = Operation {
        op: Request::LeaseGrant { ttl_s: 10, id: 0 },
        output: Some(Response::LeaseGrant { header_revision: 1, id: 7, ttl_s: 10 }),
        ..put(1, 0, 10, "", "", 0)
    };
    let compact = Operation {
        op: Request::Compact { revision: 1, physical: false },
        output: Some(Response::Compact { header_revision: 1 }),
        ..put(1, 0, 10, "", "", 0)
    };
    let leased_put = Operation {
        op: Request::Put(PutRequest { key: "a".into(), value: "1".into(), lease: 7, prev_kv: false }),
        ..put(1, 0, 10, "a", "1", 2)
    };
    let old_read = Operation {
        op: Request::Range(RangeRequest { key: "a".into(), range_end: Bytes::default(), revision: 1 }),
        ..get(1, 0, 10, "a", 1, None)
    };
    // Registers have no leases, compaction nor revisions.
    let model = ModelKind::Register;
    assert!(refusal(&[put(1, 0, 1, "a", "1", 2), lease.clone()], model).starts_with("op 1 (line 2): lease_grant"));
    assert!(refusal(std::slice::from_ref(&compact), model).contains("compaction needs revisions"));
    assert!(refusal(std::slice::from_ref(&leased_put), model).contains("leases span keys"));
    assert!(refusal(std::slice::from_ref(&old_read), model).contains("past revision"));
    // Even indeterminate ones: they may have happened.
    assert!(refusal(&[indeterminate(lease.clone())], model).contains("leases"));
    // The etcd model cannot follow a lease whose id nobody knows, when a lease it could be is used.
    let unknown = indeterminate(lease.clone());
    assert!(
        refusal(&[unknown.clone(), leased_put.clone()], ModelKind::Etcd).contains("recorders should pick lease ids")
    );
    // Unused, it makes no difference.
    assert_linearizable(&[unknown, put(1, 20, 30, "a", "1", 2)], ModelKind::Etcd);
    // A failed one certainly did not happen: nothing to model.
    assert_linearizable(&[failed(lease)], ModelKind::Etcd);
    // Registers are single keys.
    let h = vec![range(1, 0, 10, "a", "c", 1, vec![])];
    assert!(refusal(&h, ModelKind::Register).contains("spans registers"));
    assert_linearizable(&h, ModelKind::Etcd);
}

#[test]
fn watch_lines_are_skipped_and_counted() {
    let watch = Operation {
        op: Request::Watch(WatchRequest {
            watcher: 1,
            key: "a".into(),
            range_end: Bytes::default(),
            start_revision: 0,
            prev_kv: false,
            progress_notify: false,
            filters: vec![],
        }),
        output: Some(Response::Watch { header_revision: 1, watch_id: 0 }),
        ..put(1, 0, 10, "", "", 0)
    };
    let h = vec![watch, put(1, 20, 30, "a", "1", 2)];
    for model in MODELS {
        let checked = check_history(&h, model, &CheckOptions::default()).unwrap();
        assert!(checked.result.verdict.is_linearizable());
        assert_eq!(checked.watch_lines_skipped, 1);
    }
}

#[test]
fn a_mismatched_output_is_an_error_not_a_violation() {
    let mut h = vec![put(1, 0, 10, "a", "1", 2)];
    h[0].output = Some(Response::Range { header_revision: 2, kvs: vec![] });
    assert!(refusal(&h, ModelKind::Etcd).contains("a put request has a range output"));
}

#[test]
fn observed_indeterminate_writes_are_pinned_and_verdicts_do_not_change() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        indeterminate(put(2, 20, 30, "a", "2", 0)),
        indeterminate(put(2, 40, 50, "b", "never seen", 0)),
        get(3, 60, 70, "a", 3, Some(kv("a", "2", 2, 3, 2))),
    ];
    for model in MODELS {
        let checked = check_history(&h, model, &CheckOptions::default()).unwrap();
        assert!(checked.result.verdict.is_linearizable(), "{model}");
        assert_eq!(checked.indeterminate_pinned, 1, "{model}: only the write whose value was seen");
    }
}

#[test]
fn a_value_written_twice_may_show_up_twice() {
    // Unlike `indeterminate_write_seen_then_unseen_then_seen_again`, here "2" and "1" are each
    // written twice, so nothing is pinned and the reads are explained by I1, I2, I3 in order.
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        indeterminate(put(2, 20, 30, "a", "2", 0)),
        indeterminate(put(4, 20, 30, "a", "1", 0)),
        indeterminate(put(5, 20, 30, "a", "2", 0)),
        get(3, 40, 50, "a", 3, Some(kv("a", "2", 2, 3, 2))),
        get(3, 60, 70, "a", 4, Some(kv("a", "1", 2, 4, 3))),
        get(3, 80, 90, "a", 5, Some(kv("a", "2", 2, 5, 4))),
    ];
    for model in MODELS {
        let checked = check_history(&h, model, &CheckOptions::default()).unwrap();
        assert!(checked.result.verdict.is_linearizable(), "{model}: {:?}", checked.result.verdict);
        assert_eq!(checked.indeterminate_pinned, 0);
    }
}
