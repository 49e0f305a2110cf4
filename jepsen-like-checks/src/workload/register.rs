//! `register`: each key a register — unique puts, single-key ranges, and now and then a delete.

use rand::Rng;

use super::Client;
use crate::history::{DeleteRequest, PutRequest, RangeRequest, Request};

/// Out of 100 requests: puts, then deletes; the rest are ranges.
const PUT_PERCENT: u32 = 45;
const DELETE_PERCENT: u32 = 10;

pub(crate) async fn run(client: &mut Client) {
    while client.running() {
        let key = client.random_key("r").into_bytes().into();
        let dice = client.rng.gen_range(0..100);
        let request = if dice < PUT_PERCENT {
            let value = client.unique_value().into();
            Request::Put(PutRequest { key, value, lease: 0, prev_kv: client.rng.gen_bool(0.5) })
        } else if dice < PUT_PERCENT + DELETE_PERCENT {
            Request::Delete(DeleteRequest { key, range_end: Default::default(), prev_kv: client.rng.gen_bool(0.5) })
        } else {
            Request::Range(RangeRequest { key, range_end: Default::default(), revision: 0 })
        };
        client.kv_recorded(request).await;
    }
}
