//! `register`: each key a register — unique puts, single-key ranges, and now and then a delete
//! or a range at a past revision of the run.

use rand::Rng;

use super::Client;
use crate::history::{DeleteRequest, PutRequest, RangeRequest, Request};

/// Out of 100 requests: puts, then deletes, then ranges at a past revision; the rest are ranges
/// of the latest revision.
const PUT_PERCENT: u32 = 45;
const DELETE_PERCENT: u32 = 10;
const PAST_RANGE_PERCENT: u32 = 5;

pub(crate) async fn run(client: &mut Client) {
    // The highest revision an answer showed (etcd's numbering), and the first of the run: past
    // reads stay within the run, whose earlier revisions the history does not explain.
    let mut seen_revision = 0;
    let first_revision = client.recorder.revision_base() + 1;
    while client.running() {
        let key = client.random_key("r").into_bytes().into();
        let dice = client.rng.gen_range(0..100);
        let request = if dice < PUT_PERCENT {
            let value = client.unique_value().into();
            Request::Put(PutRequest { key, value, lease: 0, prev_kv: client.rng.gen_bool(0.5) })
        } else if dice < PUT_PERCENT + DELETE_PERCENT {
            Request::Delete(DeleteRequest { key, range_end: Default::default(), prev_kv: client.rng.gen_bool(0.5) })
        } else if dice < PUT_PERCENT + DELETE_PERCENT + PAST_RANGE_PERCENT && seen_revision >= first_revision {
            let revision = client.rng.gen_range(first_revision..=seen_revision);
            Request::Range(RangeRequest { key, range_end: Default::default(), revision })
        } else {
            Request::Range(RangeRequest { key, range_end: Default::default(), revision: 0 })
        };
        if let Some(Ok(response)) = client.kv_recorded(request).await {
            seen_revision = seen_revision.max(response.header_revision());
        }
    }
}
