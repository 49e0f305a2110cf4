//! # detcd-checks
//!
//! Jepsen-like checkers over recorded histories of etcd v3 clients. This crate will hold:
//! a documented JSON-lines history format; a linearizability checker (Wing–Gong/Lowe search
//! with memoisation and P-compositionality) with register and etcd models; watch-guarantee
//! checks (ordered, unique, atomic, bookmarkable, reliable, resumable); Elle-style
//! transaction-anomaly detection on list-append histories; an HTML report; and a recorder that
//! drives any etcd v3 endpoint. It depends only on `detcd-proto`, so it can check histories of
//! any etcd, not just detcd.
//!
//! Not built yet: the binary `detcd-check` says so and exits.
