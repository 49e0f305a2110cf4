/// A point in the store's history: `main` is the store revision a write (or a whole txn)
/// created, `sub` numbers the changes inside it, from 0.
///
/// Clients only ever see `main` (as `mod_revision`, `create_revision` and header revisions);
/// `sub` orders the changes of one txn, so that the events of a revision replay in the order
/// they were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }
}
