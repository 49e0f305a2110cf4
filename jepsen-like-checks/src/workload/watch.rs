//! `watch`: writers put and delete keys under the prefix while watchers watch them.
//!
//! Even client ids write (unique puts, some deletes, on a few keys); odd ids watch. A watcher
//! opens one watch at a time on a single key or the whole prefix, with a random start (the next
//! revision, or a past one it has seen since the run began), `prev_kv`, `progress_notify` and
//! filters drawn at random; it records the `watch` line (from the request to the `created`
//! response) and a `watch_response` line for every response, asks for progress now and then,
//! and after a while drops the watch and opens another.

use std::time::Duration;

use detcd_proto::etcdserverpb as pb;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{convert, prefix_end, Client, Failure, RequestStream};
use crate::history::{Bytes, DeleteRequest, PutRequest, Request, Response, WatchFilter, WatchRequest};

/// Out of 100 writes, deletes; the rest are puts.
const DELETE_PERCENT: u32 = 20;
/// How long one watch stays open before the watcher opens another.
const WATCH_OPEN_MS_MIN: u64 = 300;
const WATCH_OPEN_MS_MAX: u64 = 3000;
/// How often (at most) a watcher with `progress_notify` asks for a progress notification.
const PROGRESS_REQUEST_EVERY_MS_MAX: u64 = 500;
/// Requests queued on a watch stream (one create, then progress requests).
const REQUEST_QUEUE: usize = 4;

pub(crate) async fn run(client: &mut Client) {
    if client.spec.id.is_multiple_of(2) {
        write(client).await
    } else {
        watch(client).await
    }
}

async fn write(client: &mut Client) {
    while client.running() {
        let key: Bytes = client.random_key("w").into();
        let request = if client.rng.gen_range(0..100) < DELETE_PERCENT {
            Request::Delete(DeleteRequest { key, range_end: Bytes::default(), prev_kv: client.rng.gen_bool(0.5) })
        } else {
            Request::Put(PutRequest { key, value: client.unique_value().into(), lease: 0, prev_kv: false })
        };
        client.kv_recorded(request).await;
    }
}

async fn watch(client: &mut Client) {
    // The highest revision this watcher was told about (etcd's numbering), for past starts.
    let mut seen_revision = 0;
    while client.running() {
        let request = make_watch(client, seen_revision);
        let open_for = Duration::from_millis(client.rng.gen_range(WATCH_OPEN_MS_MIN..=WATCH_OPEN_MS_MAX));
        let close_at = (Instant::now() + open_for).min(client.spec.stop_at);
        if let Some(revision) = watch_once(client, request, close_at).await {
            seen_revision = seen_revision.max(revision);
        }
    }
}

fn make_watch(client: &mut Client, seen_revision: i64) -> WatchRequest {
    let watcher = client.recorder.new_watcher();
    let prefix = Bytes::from(client.spec.key_prefix.clone());
    let (key, range_end) = if client.rng.gen_bool(0.5) {
        (client.random_key("w").into(), Bytes::default())
    } else {
        (prefix.clone(), Bytes::from(prefix_end(prefix.as_slice())))
    };
    // Past starts stay within the run: before it, the prefix held nothing, and revisions before
    // the recorder's base mean nothing in the history.
    let first_revision = client.recorder.revision_base() + 1;
    let start_revision = if seen_revision >= first_revision && client.rng.gen_bool(0.5) {
        client.rng.gen_range(first_revision..=seen_revision)
    } else {
        0
    };
    let mut filters = Vec::new();
    if client.rng.gen_range(0..10) == 0 {
        filters.push(WatchFilter::NoPut);
    } else if client.rng.gen_range(0..10) == 0 {
        filters.push(WatchFilter::NoDelete);
    }
    WatchRequest {
        watcher,
        key,
        range_end,
        start_revision,
        prev_kv: client.rng.gen_bool(0.5),
        progress_notify: client.rng.gen_bool(0.3),
        filters,
    }
}

fn create_request(w: &WatchRequest) -> pb::WatchRequest {
    let filters = w
        .filters
        .iter()
        .map(|f| match f {
            WatchFilter::NoPut => pb::watch_create_request::FilterType::Noput as i32,
            WatchFilter::NoDelete => pb::watch_create_request::FilterType::Nodelete as i32,
        })
        .collect();
    let create = pb::WatchCreateRequest {
        key: bytes::Bytes::copy_from_slice(w.key.as_slice()),
        range_end: bytes::Bytes::copy_from_slice(w.range_end.as_slice()),
        start_revision: w.start_revision,
        progress_notify: w.progress_notify,
        filters,
        prev_kv: w.prev_kv,
        ..Default::default()
    };
    pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) }
}

fn response(r: &pb::WatchResponse) -> Response {
    Response::WatchResponse {
        header_revision: convert::header_revision(&r.header),
        watch_id: r.watch_id,
        events: r.events.iter().map(convert::event).collect(),
        compact_revision: r.compact_revision,
        canceled: r.canceled,
        fragment: r.fragment,
    }
}

/// One watch, open until `close_at`; the highest header revision it received.
async fn watch_once(client: &mut Client, request: WatchRequest, close_at: Instant) -> Option<i64> {
    let timeout = client.spec.op_timeout;
    let conn = client.conn().await?;
    let mut watch_client = conn.watch.clone();
    let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
    requests.try_send(create_request(&request)).expect("an empty queue has room");
    let call_ns = client.recorder.now_ns();
    let opened = tokio::time::timeout(timeout, async {
        let mut stream = watch_client.watch(RequestStream(queue)).await?.into_inner();
        let created = stream.message().await?;
        Ok::<_, tonic::Status>((stream, created))
    })
    .await;
    let (mut stream, created) = match client.settle(opened, timeout) {
        Ok((stream, Some(created))) if created.created => (stream, created),
        Ok((_, other)) => {
            let why = format!("the stream's first answer was not `created`: {other:?}");
            client.record(call_ns, Request::Watch(request), Err(Failure::Unknown(why)));
            client.broken();
            return None;
        }
        Err(failure) => {
            client.record(call_ns, Request::Watch(request), Err(failure));
            return None;
        }
    };
    let watcher = request.watcher;
    let mut seen = convert::header_revision(&created.header);
    let output = Response::Watch { header_revision: seen, watch_id: created.watch_id };
    let progress_notify = request.progress_notify;
    client.record(call_ns, Request::Watch(request), Ok(output));
    if created.canceled || !created.events.is_empty() {
        // etcd folds a refusal (or, in principle, events) into the creation: keep them too.
        record_response(client, watcher, &created);
    }
    let mut canceled = created.canceled;
    while !canceled && Instant::now() < close_at {
        let wait = if progress_notify {
            Duration::from_millis(client.rng.gen_range(1..=PROGRESS_REQUEST_EVERY_MS_MAX))
        } else {
            close_at.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait.min(close_at.saturating_duration_since(Instant::now())), stream.message()).await
        {
            Ok(Ok(Some(answer))) => {
                seen = seen.max(convert::header_revision(&answer.header));
                canceled = answer.canceled;
                record_response(client, watcher, &answer);
            }
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                tracing::debug!(client = client.spec.id, watcher, %status, "watch stream ended");
                client.broken();
                break;
            }
            Err(_) if progress_notify => {
                let progress = pb::WatchRequest {
                    request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                };
                // A full queue means the server is not reading: skip this one.
                let _ = requests.try_send(progress);
            }
            Err(_) => {}
        }
    }
    Some(seen)
}

fn record_response(client: &Client, watcher: u64, answer: &pb::WatchResponse) {
    let at_ns = client.recorder.now_ns();
    client.recorder.push(crate::history::Operation {
        client: client.spec.id,
        call_ns: at_ns,
        return_ns: at_ns,
        op: Request::WatchResponse { watcher },
        outcome: crate::history::Outcome::Ok,
        output: Some(response(answer)),
        error: None,
    });
}
