//! Wire compatibility with etcd v3.5: every byte string below is written by
//! hand from the field numbers in etcd's `rpc.proto` / `kv.proto`, not produced
//! by our own encoder, so a wrong field number or type in our protos fails here.
//!
//! Reminders: tag = (field_number << 3) | wire_type, with wire type 0 = varint
//! and 2 = length-delimited; varints are little-endian groups of 7 bits with
//! the high bit set on every byte but the last (300 = 0xAC 0x02).

use bytes::Bytes;
use detcd_proto::etcdserverpb::{
    compare, range_request, request_op, watch_create_request, watch_request, Compare, PutRequest, RangeRequest,
    RequestOp, ResponseHeader, TxnRequest, WatchRequest,
};
use detcd_proto::mvccpb::{event, Event};
use prost::Message;

#[test]
fn range_request() {
    #[rustfmt::skip]
    let wire: &[u8] = &[
        0x0A, 0x03, b'f', b'o', b'o', // field 1 (key), LEN: tag (1<<3)|2, length 3, "foo"
        0x12, 0x03, b'f', b'o', b'p', // field 2 (range_end), LEN: tag (2<<3)|2, length 3, "fop"
        0x18, 0x0A,                   // field 3 (limit), VARINT: tag (3<<3)|0, 10
        0x20, 0xAC, 0x02,             // field 4 (revision), VARINT: tag (4<<3)|0, 300
        0x28, 0x02,                   // field 5 (sort_order), VARINT: tag (5<<3)|0, DESCEND = 2
        0x30, 0x03,                   // field 6 (sort_target), VARINT: tag (6<<3)|0, MOD = 3
        0x38, 0x01,                   // field 7 (serializable), VARINT: tag (7<<3)|0, true
        0x48, 0x01,                   // field 9 (count_only), VARINT: tag (9<<3)|0, true
        0x68, 0x07,                   // field 13 (max_create_revision), VARINT: tag (13<<3)|0, 7
    ];
    let req = RangeRequest::decode(wire).unwrap();
    assert_eq!(req.key, Bytes::from_static(b"foo"));
    assert_eq!(req.range_end, Bytes::from_static(b"fop"));
    assert_eq!(req.limit, 10);
    assert_eq!(req.revision, 300);
    assert_eq!(req.sort_order(), range_request::SortOrder::Descend);
    assert_eq!(req.sort_target(), range_request::SortTarget::Mod);
    assert!(req.serializable);
    assert!(!req.keys_only);
    assert!(req.count_only);
    assert_eq!(req.min_mod_revision, 0);
    assert_eq!(req.max_create_revision, 7);
}

#[test]
fn put_request() {
    #[rustfmt::skip]
    let wire: &[u8] = &[
        0x0A, 0x01, b'k',       // field 1 (key), LEN: tag (1<<3)|2, length 1, "k"
        0x12, 0x02, b'v', b'1', // field 2 (value), LEN: tag (2<<3)|2, length 2, "v1"
        0x18, 0xE8, 0x07,       // field 3 (lease), VARINT: tag (3<<3)|0, 1000 = 0x68|0x80, 1000>>7 = 7
        0x20, 0x01,             // field 4 (prev_kv), VARINT: tag (4<<3)|0, true
    ];
    let req = PutRequest::decode(wire).unwrap();
    // Protobuf `bytes` fields are `bytes::Bytes` (a type error here otherwise).
    let key: &Bytes = &req.key;
    assert_eq!(key.as_ref(), b"k");
    assert_eq!(req.value, Bytes::from_static(b"v1"));
    assert_eq!(req.lease, 1000);
    assert!(req.prev_kv);
    assert!(!req.ignore_value);
    assert!(!req.ignore_lease);
}

#[test]
fn txn_request_with_nested_txn() {
    #[rustfmt::skip]
    let wire: &[u8] = &[
        // field 1 (compare), LEN: tag (1<<3)|2, length 13: Compare {
        0x0A, 0x0D,
            0x08, 0x01,       // field 1 (result), VARINT: GREATER = 1
            0x10, 0x02,       // field 2 (target), VARINT: MOD = 2
            0x1A, 0x01, b'k', // field 3 (key), LEN: length 1, "k"
            0x30, 0x05,       // field 6 (mod_revision, in oneof target_union), VARINT: 5
            0x82, 0x04,       // field 64 (range_end), LEN: tag (64<<3)|2 = 514 = 0x82 0x04
            0x01, b'l',       //   length 1, "l"
        // }
        // field 2 (success), LEN: tag (2<<3)|2, length 12: RequestOp {
        0x12, 0x0C,
            // field 4 (request_txn, in oneof request), LEN: tag (4<<3)|2, length 10: TxnRequest {
            0x22, 0x0A,
                // field 2 (success), LEN: length 8: RequestOp {
                0x12, 0x08,
                    // field 2 (request_put), LEN: length 6: PutRequest {
                    0x12, 0x06,
                        0x0A, 0x01, b'a', // field 1 (key), "a"
                        0x12, 0x01, b'b', // field 2 (value), "b"
                    // }
                // }
            // }
        // }
        // field 3 (failure), LEN: tag (3<<3)|2, length 5: RequestOp {
        0x1A, 0x05,
            // field 1 (request_range), LEN: tag (1<<3)|2, length 3: RangeRequest {
            0x0A, 0x03,
                0x0A, 0x01, b'k', // field 1 (key), "k"
            // }
        // }
    ];
    let txn = TxnRequest::decode(wire).unwrap();

    assert_eq!(txn.compare.len(), 1);
    let cmp: &Compare = &txn.compare[0];
    assert_eq!(cmp.result(), compare::CompareResult::Greater);
    assert_eq!(cmp.target(), compare::CompareTarget::Mod);
    assert_eq!(cmp.key, Bytes::from_static(b"k"));
    assert_eq!(cmp.target_union, Some(compare::TargetUnion::ModRevision(5)));
    assert_eq!(cmp.range_end, Bytes::from_static(b"l"));

    assert_eq!(txn.success.len(), 1);
    let Some(request_op::Request::RequestTxn(inner)) = &txn.success[0].request else {
        panic!("success op is not a txn: {:?}", txn.success[0]);
    };
    assert!(inner.compare.is_empty());
    assert!(inner.failure.is_empty());
    assert_eq!(
        inner.success,
        vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: Bytes::from_static(b"a"),
                value: Bytes::from_static(b"b"),
                ..Default::default()
            })),
        }]
    );

    assert_eq!(txn.failure.len(), 1);
    let Some(request_op::Request::RequestRange(range)) = &txn.failure[0].request else {
        panic!("failure op is not a range: {:?}", txn.failure[0]);
    };
    assert_eq!(range.key, Bytes::from_static(b"k"));
    assert!(range.range_end.is_empty());
}

#[test]
fn watch_create_request() {
    #[rustfmt::skip]
    let wire: &[u8] = &[
        // field 1 (create_request, in oneof request_union), LEN: tag (1<<3)|2, length 15:
        // WatchCreateRequest {
        0x0A, 0x0F,
            0x0A, 0x01, b'a',  // field 1 (key), LEN: "a"
            0x12, 0x01, b'b',  // field 2 (range_end), LEN: "b"
            0x18, 0x2A,        // field 3 (start_revision), VARINT: 42
            0x2A, 0x01, 0x01,  // field 5 (filters, packed), LEN: length 1, [NODELETE = 1]
            0x30, 0x01,        // field 6 (prev_kv), VARINT: true
            0x40, 0x01,        // field 8 (fragment), VARINT: true
        // }
    ];
    let req = WatchRequest::decode(wire).unwrap();
    let Some(watch_request::RequestUnion::CreateRequest(create)) = req.request_union else {
        panic!("not a create request: {req:?}");
    };
    assert_eq!(create.key, Bytes::from_static(b"a"));
    assert_eq!(create.range_end, Bytes::from_static(b"b"));
    assert_eq!(create.start_revision, 42);
    assert_eq!(create.filters().collect::<Vec<_>>(), vec![watch_create_request::FilterType::Nodelete]);
    assert!(create.prev_kv);
    assert!(!create.progress_notify);
    assert_eq!(create.watch_id, 0);
    assert!(create.fragment);

    // field 3 (progress_request), LEN: tag (3<<3)|2, length 0 (empty message).
    let progress = WatchRequest::decode(&[0x1A, 0x00][..]).unwrap();
    assert!(matches!(progress.request_union, Some(watch_request::RequestUnion::ProgressRequest(_))));
}

#[test]
fn event_delete() {
    #[rustfmt::skip]
    let wire: &[u8] = &[
        0x08, 0x01,             // field 1 (type), VARINT: DELETE = 1
        // field 2 (kv), LEN: length 5: KeyValue {
        0x12, 0x05,
            0x0A, 0x01, b'a',   // field 1 (key), "a"
            0x18, 0x09,         // field 3 (mod_revision), VARINT: 9
        // }
    ];
    let ev = Event::decode(wire).unwrap();
    assert_eq!(ev.r#type(), event::EventType::Delete);
    let kv = ev.kv.unwrap();
    assert_eq!(kv.key, Bytes::from_static(b"a"));
    assert_eq!(kv.mod_revision, 9);
    assert_eq!(kv.create_revision, 0);
    assert!(ev.prev_kv.is_none());
    assert_eq!(event::EventType::Put as i32, 0);
}

#[test]
fn response_header_round_trip() {
    let header = ResponseHeader { cluster_id: 0x1234, member_id: 1, revision: 300, raft_term: 5 };
    let encoded = header.encode_to_vec();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x08, 0xB4, 0x24, // field 1 (cluster_id), VARINT: 0x1234 = 4660: 0x34|0x80, 4660>>7 = 0x24
        0x10, 0x01,       // field 2 (member_id), VARINT: 1
        0x18, 0xAC, 0x02, // field 3 (revision), VARINT: 300
        0x20, 0x05,       // field 4 (raft_term), VARINT: 5
    ];
    assert_eq!(encoded, expected);
    assert_eq!(ResponseHeader::decode(expected).unwrap(), header);
    assert_eq!(ResponseHeader::decode(&encoded[..]).unwrap(), header);
}
