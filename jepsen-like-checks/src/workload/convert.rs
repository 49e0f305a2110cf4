//! Between the history's requests and responses and etcd's protobuf messages.

use detcd_proto::etcdserverpb as pb;
use detcd_proto::mvccpb;

use crate::history::{
    Bytes, Compare, CompareResult, CompareTarget, DeleteRequest, Event, EventType, KeyValue, PutRequest, RangeRequest,
    Request, Response, TxnOp, TxnOpResponse, TxnRequest,
};

fn wire(b: &Bytes) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b.as_slice())
}

pub(crate) fn kv(kv: &mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::from(&kv.key[..]),
        value: Bytes::from(&kv.value[..]),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn kvs(found: &[mvccpb::KeyValue]) -> Vec<KeyValue> {
    found.iter().map(kv).collect()
}

pub(crate) fn header_revision(header: &Option<pb::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

pub(crate) fn range_request(r: &RangeRequest) -> pb::RangeRequest {
    pb::RangeRequest { key: wire(&r.key), range_end: wire(&r.range_end), revision: r.revision, ..Default::default() }
}

pub(crate) fn put_request(p: &PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: wire(&p.key),
        value: wire(&p.value),
        lease: p.lease,
        prev_kv: p.prev_kv,
        ..Default::default()
    }
}

pub(crate) fn delete_request(d: &DeleteRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest { key: wire(&d.key), range_end: wire(&d.range_end), prev_kv: d.prev_kv }
}

fn compare(c: &Compare) -> pb::Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match c.result {
        CompareResult::Equal => R::Equal,
        CompareResult::NotEqual => R::NotEqual,
        CompareResult::Greater => R::Greater,
        CompareResult::Less => R::Less,
    };
    let (target, union) = match &c.target {
        CompareTarget::Value(v) => (T::Value, U::Value(wire(v))),
        CompareTarget::Version(n) => (T::Version, U::Version(*n)),
        CompareTarget::CreateRevision(n) => (T::Create, U::CreateRevision(*n)),
        CompareTarget::ModRevision(n) => (T::Mod, U::ModRevision(*n)),
        CompareTarget::Lease(n) => (T::Lease, U::Lease(*n)),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: wire(&c.key),
        range_end: wire(&c.range_end),
        target_union: Some(union),
    }
}

fn request_op(op: &TxnOp) -> pb::RequestOp {
    use pb::request_op::Request as R;
    let request = match op {
        TxnOp::Range(r) => R::RequestRange(range_request(r)),
        TxnOp::Put(p) => R::RequestPut(put_request(p)),
        TxnOp::Delete(d) => R::RequestDeleteRange(delete_request(d)),
    };
    pb::RequestOp { request: Some(request) }
}

pub(crate) fn txn_request(t: &TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: t.compare.iter().map(compare).collect(),
        success: t.success.iter().map(request_op).collect(),
        failure: t.failure.iter().map(request_op).collect(),
    }
}

pub(crate) fn range_response(r: &pb::RangeResponse) -> Response {
    Response::Range { header_revision: header_revision(&r.header), kvs: kvs(&r.kvs) }
}

pub(crate) fn put_response(r: &pb::PutResponse) -> Response {
    Response::Put { header_revision: header_revision(&r.header), prev_kv: r.prev_kv.as_ref().map(kv) }
}

pub(crate) fn delete_response(r: &pb::DeleteRangeResponse) -> Response {
    Response::Delete { header_revision: header_revision(&r.header), deleted: r.deleted, prev_kvs: kvs(&r.prev_kvs) }
}

/// A txn's response; an error if it holds a response the format has no place for (a nested txn,
/// which the workloads never send).
pub(crate) fn txn_response(r: &pb::TxnResponse) -> Result<Response, String> {
    use pb::response_op::Response as R;
    let responses = r
        .responses
        .iter()
        .map(|op| match &op.response {
            Some(R::ResponseRange(r)) => Ok(TxnOpResponse::Range { kvs: kvs(&r.kvs) }),
            Some(R::ResponsePut(p)) => Ok(TxnOpResponse::Put { prev_kv: p.prev_kv.as_ref().map(kv) }),
            Some(R::ResponseDeleteRange(d)) => {
                Ok(TxnOpResponse::Delete { deleted: d.deleted, prev_kvs: kvs(&d.prev_kvs) })
            }
            Some(R::ResponseTxn(_)) | None => Err(format!("unexpected txn response op {op:?}")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Response::Txn { header_revision: header_revision(&r.header), succeeded: r.succeeded, responses })
}

pub(crate) fn event(e: &mvccpb::Event) -> Event {
    let kind = if e.r#type == mvccpb::event::EventType::Delete as i32 { EventType::Delete } else { EventType::Put };
    Event { kind, kv: kv(e.kv.as_ref().unwrap_or(&mvccpb::KeyValue::default())), prev_kv: e.prev_kv.as_ref().map(kv) }
}

/// A KV request of the history (range, put, delete, txn) as its gRPC call, for [`super::Conn::kv`].
pub(crate) enum KvCall {
    Range(pb::RangeRequest),
    Put(pb::PutRequest),
    Delete(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
}

pub(crate) fn kv_call(request: &Request) -> Option<KvCall> {
    Some(match request {
        Request::Range(r) => KvCall::Range(range_request(r)),
        Request::Put(p) => KvCall::Put(put_request(p)),
        Request::Delete(d) => KvCall::Delete(delete_request(d)),
        Request::Txn(t) => KvCall::Txn(txn_request(t)),
        _ => return None,
    })
}
