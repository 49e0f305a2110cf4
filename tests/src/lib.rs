//! # detcd-tests
//!
//! End-to-end tests against real processes: Debian's `etcdctl` 3.4, the `etcd-client` crate and
//! multi-process clusters, once the `detcd` server exists. Helpers shared by those tests will
//! live here; the tests themselves in `tests/tests/`.
