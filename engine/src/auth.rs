//! etcd's auth store: users, roles, key-range permissions, the root rules, enabled or not, and
//! the simple tokens. Replicated state (everything but the tokens' clocks) changes only when a
//! raft entry applies; every member computes the same result.
//!
//! Semantics are etcd's (`server/auth/store.go`, 3.4/3.5):
//! - a user with the role `root` may do anything; the role `root` need not exist as a role
//!   (granting it to a user is always allowed), and `auth enable` needs a user `root` holding it;
//! - a permission is READ, WRITE or READWRITE on `key` alone (empty `range_end`), on
//!   `[key, range_end)`, or on every key from `key` (`range_end = "\0"`); a request is allowed
//!   when the union of its user's roles' permissions of the right kind covers every key it names;
//! - every change bumps the auth revision (AuthStatus shows it);
//! - passwords arrive hashed (bcrypt, by the member that received the request: the engine never
//!   sees a password and never draws the salt);
//! - simple tokens live in memory, as etcd's do: issued through raft (so every member knows
//!   them), forgotten on restart, expiring `token_ttl` after their last use on each member;
//! - JWTs (`--auth-token jwt,...`) are signed and verified by the server (`detcd_server::jwt`)
//!   and reach the engine as [`Caller::Jwt`]: only their auth revision is checked here.

use std::collections::BTreeMap;

use detcd_proto::authpb::{permission, Permission, Role, User, UserAddOptions};
use detcd_proto::etcdserverpb::*;
use detcd_proto::internalpb::AuthImage;

use crate::time::{Duration, Instant};
use crate::Error;

pub const ROOT: &str = "root";

/// etcd's cancel reason for a watch its user may not read (the gRPC error's text, as etcd's
/// `ErrGRPCPermissionDenied.Error()` gives it).
pub const WATCH_PERMISSION_DENIED: &str = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

/// Upper bound on live simple tokens per member (etcd has none; a client authenticating in a
/// loop must not grow memory without end). The oldest-expiring token goes first.
pub const TOKENS_MAX: usize = 65_536;

/// Who sends a request, as far as auth is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The member itself (lease expiry, publish, alarms) or a test: never checked.
    Internal,
    /// A client, with the token its request carried (gRPC metadata `token` or
    /// `authorization`), if any.
    Client(Option<String>),
    /// A client whose JWT the member verified (signature, algorithm and expiry) before
    /// asking: the token's `username` and `revision` claims. JWTs are stateless: the engine
    /// keeps nothing of them, and checks only the revision, as etcd's `isOpPermitted` does.
    Jwt { user: String, revision: u64 },
}

/// A caller once its token was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Not checked: auth disabled, or the member itself.
    Anyone,
    /// A client without a token while auth is enabled: refused wherever a permission is needed
    /// ("user name is empty"), let through where none is (lease grant, status...).
    Anonymous,
    User(String),
}

#[derive(Debug, Clone)]
struct Token {
    user: String,
    expires: Instant,
}

#[derive(Debug, Clone, Default)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    tokens: BTreeMap<String, Token>,
    token_ttl: Duration,
}

/// What a key range asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl AuthStore {
    pub fn new(token_ttl: Duration) -> AuthStore {
        AuthStore { token_ttl, ..Default::default() }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn set_token_ttl(&mut self, ttl: Duration) {
        self.token_ttl = ttl;
    }

    // ---- images ----------------------------------------------------------------------------

    pub fn to_image(&self) -> Option<AuthImage> {
        if !self.enabled && self.revision == 0 && self.users.is_empty() && self.roles.is_empty() {
            // Nothing was ever done: images stay byte-identical to those before auth existed.
            return None;
        }
        Some(AuthImage {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        })
    }

    pub fn from_image(image: Option<AuthImage>, token_ttl: Duration) -> Result<AuthStore, String> {
        let mut store = AuthStore::new(token_ttl);
        let Some(image) = image else { return Ok(store) };
        store.enabled = image.enabled;
        store.revision = image.revision;
        for u in image.users {
            let name = String::from_utf8(u.name.to_vec()).map_err(|_| "auth image: user name not UTF-8")?;
            if store.users.insert(name.clone(), u).is_some() {
                return Err(format!("auth image: user {name:?} twice"));
            }
        }
        for r in image.roles {
            let name = String::from_utf8(r.name.to_vec()).map_err(|_| "auth image: role name not UTF-8")?;
            if store.roles.insert(name.clone(), r).is_some() {
                return Err(format!("auth image: role {name:?} twice"));
            }
        }
        Ok(store)
    }

    // ---- tokens ----------------------------------------------------------------------------

    /// Who `caller` is. An unknown or expired token is "invalid auth token" while auth is
    /// enabled; while it is disabled every token is ignored, as in etcd.
    pub fn who(&mut self, caller: &Caller, now: Instant) -> Result<Who, Error> {
        if !self.enabled {
            return Ok(Who::Anyone);
        }
        match caller {
            Caller::Internal => Ok(Who::Anyone),
            Caller::Client(None) => Ok(Who::Anonymous),
            Caller::Client(Some(token)) => match self.tokens.get_mut(token) {
                Some(t) if t.expires > now => {
                    // etcd's simple tokens live `--auth-token-ttl` past their last use.
                    t.expires = now + self.token_ttl;
                    Ok(Who::User(t.user.clone()))
                }
                Some(_) => {
                    self.tokens.remove(token);
                    Err(Error::InvalidAuthToken)
                }
                None => Err(Error::InvalidAuthToken),
            },
            // etcd refuses a token issued before the last auth change ("revision of auth
            // store is old"; clientv3 then authenticates again). etcd makes that check where
            // it checks a key permission; here it is made for every request the token names.
            Caller::Jwt { revision, .. } if *revision < self.revision => Err(Error::AuthOldRevision),
            Caller::Jwt { user, .. } => Ok(Who::User(user.clone())),
        }
    }

    /// The user's password hash and the auth revision, for the password check done outside
    /// the engine before a token is issued.
    pub fn password_of(&self, name: &str) -> Result<(String, u64), Error> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(Error::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(Error::AuthFailed);
        }
        let hash = String::from_utf8(user.password.to_vec()).map_err(|_| Error::AuthFailed)?;
        Ok((hash, self.revision))
    }

    /// Applies an Authenticate whose password the proposing member checked at `auth_revision`.
    /// The token becomes `token.index`, as etcd's simple tokens.
    pub fn issue_token(
        &mut self,
        name: &str,
        token: &str,
        auth_revision: u64,
        index: u64,
        now: Instant,
    ) -> Result<String, Error> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        if !self.users.contains_key(name) {
            return Err(Error::AuthFailed);
        }
        if auth_revision != self.revision {
            return Err(Error::AuthOldRevision);
        }
        self.tokens.retain(|_, t| t.expires > now);
        while self.tokens.len() >= TOKENS_MAX {
            let oldest = self.tokens.iter().min_by_key(|(_, t)| t.expires).map(|(k, _)| k.clone());
            self.tokens.remove(&oldest.expect("tokens not empty"));
        }
        let token = format!("{token}.{index}");
        self.tokens.insert(token.clone(), Token { user: name.to_owned(), expires: now + self.token_ttl });
        Ok(token)
    }

    /// After a snapshot install: keep the tokens of `before` whose users still exist.
    pub fn adopt_tokens(&mut self, before: AuthStore) {
        if self.enabled {
            self.tokens = before.tokens.into_iter().filter(|(_, t)| self.users.contains_key(&t.user)).collect();
        }
    }

    fn forget_tokens_of(&mut self, user: &str) {
        self.tokens.retain(|_, t| t.user != user);
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    // ---- checks ----------------------------------------------------------------------------

    fn has_root_role(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// etcd's `IsAdminPermitted`.
    pub fn check_admin(&self, who: &Who) -> Result<(), Error> {
        match who {
            Who::Anyone => Ok(()),
            _ if !self.enabled => Ok(()),
            Who::Anonymous => Err(Error::UserEmpty),
            Who::User(u) if self.users.contains_key(u) && self.has_root_role(u) => Ok(()),
            Who::User(u) if !self.users.contains_key(u) => Err(Error::UserNotFound),
            Who::User(_) => Err(Error::PermissionDenied),
        }
    }

    /// etcd's `isOpPermitted`: may `who` read (or write) every key of `[key, range_end)`?
    pub fn check_range(&self, who: &Who, key: &[u8], range_end: &[u8], access: Access) -> Result<(), Error> {
        let user = match who {
            Who::Anyone => return Ok(()),
            _ if !self.enabled => return Ok(()),
            Who::Anonymous => return Err(Error::UserEmpty),
            Who::User(u) => u,
        };
        let Some(u) = self.users.get(user) else { return Err(Error::PermissionDenied) };
        if u.roles.iter().any(|r| r == ROOT) {
            return Ok(());
        }
        let mut granted: Vec<(Vec<u8>, Bound)> = Vec::new();
        for role in u.roles.iter().filter_map(|r| self.roles.get(r)) {
            for p in &role.key_permission {
                let kind = p.perm_type();
                let fits = match access {
                    Access::Read => kind != permission::Type::Write,
                    Access::Write => kind != permission::Type::Read,
                };
                if fits {
                    granted.push((p.key.to_vec(), end_of(&p.key, &p.range_end)));
                }
            }
        }
        if covered(key, end_of(key, range_end), &mut granted) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// etcd's `checkTxnReqsPermission`: compares and reads need read, puts and deletes write
    /// (and read too when they ask for the previous values), nested txns alike.
    pub fn check_txn(&self, who: &Who, t: &TxnRequest) -> Result<(), Error> {
        for c in &t.compare {
            self.check_range(who, &c.key, &c.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    self.check_range(who, &r.key, &r.range_end, Access::Read)?
                }
                Some(request_op::Request::RequestPut(p)) => self.check_put(who, p)?,
                Some(request_op::Request::RequestDeleteRange(d)) => self.check_delete(who, d)?,
                Some(request_op::Request::RequestTxn(inner)) => self.check_txn(who, inner)?,
                None => {}
            }
        }
        Ok(())
    }

    pub fn check_put(&self, who: &Who, p: &PutRequest) -> Result<(), Error> {
        self.check_range(who, &p.key, &[], Access::Write)?;
        if p.prev_kv {
            self.check_range(who, &p.key, &[], Access::Read)?;
        }
        Ok(())
    }

    pub fn check_delete(&self, who: &Who, d: &DeleteRangeRequest) -> Result<(), Error> {
        self.check_range(who, &d.key, &d.range_end, Access::Write)?;
        if d.prev_kv {
            self.check_range(who, &d.key, &d.range_end, Access::Read)?;
        }
        Ok(())
    }

    /// etcd's `checkLeasePuts`: a lease may be revoked (or attached to another key) only by a
    /// user who may write every key attached to it.
    pub fn check_lease_keys<'k>(&self, who: &Who, keys: impl IntoIterator<Item = &'k [u8]>) -> Result<(), Error> {
        for k in keys {
            self.check_range(who, k, &[], Access::Write)?;
        }
        Ok(())
    }

    // ---- applies ---------------------------------------------------------------------------

    fn bump(&mut self) {
        self.revision += 1;
    }

    pub fn enable(&mut self) -> Result<AuthEnableResponse, Error> {
        if self.enabled {
            return Ok(AuthEnableResponse::default());
        }
        let root = self.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        self.tokens.clear();
        self.bump();
        Ok(AuthEnableResponse::default())
    }

    pub fn disable(&mut self) -> AuthDisableResponse {
        if self.enabled {
            self.enabled = false;
            self.tokens.clear();
            self.bump();
        }
        AuthDisableResponse::default()
    }

    pub fn status(&self) -> AuthStatusResponse {
        AuthStatusResponse { header: None, enabled: self.enabled, auth_revision: self.revision }
    }

    pub fn user_add(&mut self, r: &AuthUserAddRequest) -> Result<AuthUserAddResponse, Error> {
        if r.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(Error::UserAlreadyExist);
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let user = User {
            name: r.name.clone().into_bytes().into(),
            password: if no_password { Default::default() } else { r.hashed_password.clone().into_bytes().into() },
            roles: Vec::new(),
            options: Some(UserAddOptions { no_password }),
        };
        self.users.insert(r.name.clone(), user);
        self.bump();
        Ok(AuthUserAddResponse::default())
    }

    pub fn user_delete(&mut self, r: &AuthUserDeleteRequest) -> Result<AuthUserDeleteResponse, Error> {
        if self.enabled && r.name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.users.remove(&r.name).ok_or(Error::UserNotFound)?;
        self.forget_tokens_of(&r.name);
        self.bump();
        Ok(AuthUserDeleteResponse::default())
    }

    pub fn user_change_password(
        &mut self,
        r: &AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, Error> {
        let user = self.users.get_mut(&r.name).ok_or(Error::UserNotFound)?;
        user.password = r.hashed_password.clone().into_bytes().into();
        user.options = Some(UserAddOptions { no_password: false });
        self.forget_tokens_of(&r.name);
        self.bump();
        Ok(AuthUserChangePasswordResponse::default())
    }

    pub fn user_grant_role(&mut self, r: &AuthUserGrantRoleRequest) -> Result<AuthUserGrantRoleResponse, Error> {
        if !self.users.contains_key(&r.user) {
            return Err(Error::UserNotFound);
        }
        if r.role != ROOT && !self.roles.contains_key(&r.role) {
            return Err(Error::RoleNotFound);
        }
        let user = self.users.get_mut(&r.user).expect("checked");
        if let Err(at) = user.roles.binary_search(&r.role) {
            user.roles.insert(at, r.role.clone());
            self.bump();
        }
        Ok(AuthUserGrantRoleResponse::default())
    }

    pub fn user_revoke_role(&mut self, r: &AuthUserRevokeRoleRequest) -> Result<AuthUserRevokeRoleResponse, Error> {
        if self.enabled && r.name == ROOT && r.role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(&r.name).ok_or(Error::UserNotFound)?;
        let at = user.roles.iter().position(|x| *x == r.role).ok_or(Error::RoleNotGranted)?;
        user.roles.remove(at);
        self.bump();
        Ok(AuthUserRevokeRoleResponse::default())
    }

    pub fn user_get(&self, r: &AuthUserGetRequest) -> Result<AuthUserGetResponse, Error> {
        let user = self.users.get(&r.name).ok_or(Error::UserNotFound)?;
        Ok(AuthUserGetResponse { header: None, roles: user.roles.clone() })
    }

    pub fn user_list(&self) -> AuthUserListResponse {
        AuthUserListResponse { header: None, users: self.users.keys().cloned().collect() }
    }

    pub fn role_add(&mut self, r: &AuthRoleAddRequest) -> Result<AuthRoleAddResponse, Error> {
        if r.name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(&r.name) {
            return Err(Error::RoleAlreadyExist);
        }
        self.roles
            .insert(r.name.clone(), Role { name: r.name.clone().into_bytes().into(), key_permission: Vec::new() });
        self.bump();
        Ok(AuthRoleAddResponse::default())
    }

    pub fn role_delete(&mut self, r: &AuthRoleDeleteRequest) -> Result<AuthRoleDeleteResponse, Error> {
        if self.enabled && r.role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.roles.remove(&r.role).ok_or(Error::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.retain(|x| *x != r.role);
        }
        self.bump();
        Ok(AuthRoleDeleteResponse::default())
    }

    pub fn role_get(&self, r: &AuthRoleGetRequest) -> Result<AuthRoleGetResponse, Error> {
        let role = self.roles.get(&r.role).ok_or(Error::RoleNotFound)?;
        Ok(AuthRoleGetResponse { header: None, perm: role.key_permission.clone() })
    }

    pub fn role_list(&self) -> AuthRoleListResponse {
        AuthRoleListResponse { header: None, roles: self.roles.keys().cloned().collect() }
    }

    /// etcd keeps a role's permissions sorted by (key, range_end); granting the same range
    /// again replaces its type.
    pub fn role_grant_permission(
        &mut self,
        r: &AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, Error> {
        let perm: Permission = r.perm.clone().ok_or(Error::PermissionNotGiven)?;
        let role = self.roles.get_mut(&r.name).ok_or(Error::RoleNotFound)?;
        let at = role.key_permission.binary_search_by(|p| (&p.key, &p.range_end).cmp(&(&perm.key, &perm.range_end)));
        match at {
            Ok(i) => role.key_permission[i].perm_type = perm.perm_type,
            Err(i) => role.key_permission.insert(i, perm),
        }
        self.bump();
        Ok(AuthRoleGrantPermissionResponse::default())
    }

    pub fn role_revoke_permission(
        &mut self,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, Error> {
        let role = self.roles.get_mut(&r.role).ok_or(Error::RoleNotFound)?;
        let at = role
            .key_permission
            .iter()
            .position(|p| p.key == r.key && p.range_end == r.range_end)
            .ok_or(Error::PermissionNotGranted)?;
        role.key_permission.remove(at);
        self.bump();
        Ok(AuthRoleRevokePermissionResponse::default())
    }
}

/// The end of a key range, etcd's encoding: empty = just `key` (the next key is `key + "\0"`),
/// `"\0"` = unbounded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Excluded(Vec<u8>),
    Unbounded,
}

fn end_of(key: &[u8], range_end: &[u8]) -> Bound {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            Bound::Excluded(next)
        }
        [0] => Bound::Unbounded,
        end => Bound::Excluded(end.to_vec()),
    }
}

/// Whether the union of `granted` covers `[start, end)` (an empty or inverted request range is
/// covered by anything, as etcd's interval check finds nothing uncovered in it).
fn covered(start: &[u8], end: Bound, granted: &mut [(Vec<u8>, Bound)]) -> bool {
    if let Bound::Excluded(e) = &end {
        if e.as_slice() <= start {
            // etcd refuses an inverted range outright; a request can't name one that reads
            // anything, but refuse to be safe.
            return false;
        }
    }
    granted.sort();
    let mut reached = start.to_vec();
    for (s, e) in granted.iter() {
        if s.as_slice() > reached.as_slice() {
            break;
        }
        match e {
            Bound::Unbounded => return true,
            Bound::Excluded(e) if e.as_slice() > reached.as_slice() => reached = e.clone(),
            Bound::Excluded(_) => {}
        }
        if let Bound::Excluded(want) = &end {
            if reached.as_slice() >= want.as_slice() {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(kind: permission::Type, key: &str, end: &[u8]) -> Permission {
        Permission { perm_type: kind as i32, key: key.as_bytes().to_vec().into(), range_end: end.to_vec().into() }
    }

    fn store_with_user(perms: &[Permission]) -> AuthStore {
        let mut a = AuthStore::new(Duration::from_secs(300));
        a.user_add(&AuthUserAddRequest { name: "root".into(), hashed_password: "h".into(), ..Default::default() })
            .unwrap();
        a.user_grant_role(&AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).unwrap();
        a.user_add(&AuthUserAddRequest { name: "u".into(), hashed_password: "h".into(), ..Default::default() })
            .unwrap();
        a.role_add(&AuthRoleAddRequest { name: "r".into() }).unwrap();
        for p in perms {
            a.role_grant_permission(&AuthRoleGrantPermissionRequest { name: "r".into(), perm: Some(p.clone()) })
                .unwrap();
        }
        a.user_grant_role(&AuthUserGrantRoleRequest { user: "u".into(), role: "r".into() }).unwrap();
        a.enable().unwrap();
        a
    }

    #[test]
    fn enable_needs_root_user_with_root_role() {
        let mut a = AuthStore::new(Duration::from_secs(300));
        assert_eq!(a.enable(), Err(Error::RootUserNotExist));
        a.user_add(&AuthUserAddRequest { name: "root".into(), hashed_password: "h".into(), ..Default::default() })
            .unwrap();
        assert_eq!(a.enable(), Err(Error::RootRoleNotExist));
        assert_eq!(
            a.user_grant_role(&AuthUserGrantRoleRequest { user: "root".into(), role: "x".into() }),
            Err(Error::RoleNotFound)
        );
        a.user_grant_role(&AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).unwrap();
        let before = a.revision();
        a.enable().unwrap();
        assert!(a.is_enabled() && a.revision() == before + 1);
        assert_eq!(a.user_delete(&AuthUserDeleteRequest { name: "root".into() }), Err(Error::InvalidAuthMgmt));
        assert_eq!(
            a.user_revoke_role(&AuthUserRevokeRoleRequest { name: "root".into(), role: "root".into() }),
            Err(Error::InvalidAuthMgmt)
        );
        assert_eq!(a.user_add(&AuthUserAddRequest { name: "".into(), ..Default::default() }), Err(Error::UserEmpty));
        assert_eq!(
            a.user_add(&AuthUserAddRequest { name: "root".into(), ..Default::default() }),
            Err(Error::UserAlreadyExist)
        );
        a.disable();
        assert!(!a.is_enabled());
    }

    #[test]
    fn permissions_merge_into_intervals() {
        use permission::Type::*;
        let a = store_with_user(&[
            perm(Read, "a", b"c"),
            perm(Read, "c", b"e"),
            perm(Write, "k", b""),
            perm(Readwrite, "p/", b"p0"),
        ]);
        let u = Who::User("u".into());
        // [a, e) is covered by [a, c) ∪ [c, e).
        assert_eq!(a.check_range(&u, b"a", b"e", Access::Read), Ok(()));
        assert_eq!(a.check_range(&u, b"b", b"d", Access::Read), Ok(()));
        assert_eq!(a.check_range(&u, b"a", b"f", Access::Read), Err(Error::PermissionDenied));
        assert_eq!(a.check_range(&u, b"a", b"", Access::Write), Err(Error::PermissionDenied));
        assert_eq!(a.check_range(&u, b"k", b"", Access::Write), Ok(()));
        assert_eq!(a.check_range(&u, b"k", b"", Access::Read), Err(Error::PermissionDenied));
        assert_eq!(a.check_range(&u, b"k", b"l", Access::Write), Err(Error::PermissionDenied));
        assert_eq!(a.check_range(&u, b"p/x", b"", Access::Write), Ok(()));
        assert_eq!(a.check_range(&u, b"p/", b"p0", Access::Read), Ok(()));
        assert_eq!(a.check_range(&u, b"p/", b"\0", Access::Read), Err(Error::PermissionDenied));
        assert_eq!(a.check_range(&Who::Anonymous, b"a", b"", Access::Read), Err(Error::UserEmpty));
        assert_eq!(a.check_range(&Who::User("root".into()), b"\0", b"\0", Access::Write), Ok(()));
        assert_eq!(a.check_admin(&u), Err(Error::PermissionDenied));
        assert_eq!(a.check_admin(&Who::User("root".into())), Ok(()));
    }

    #[test]
    fn from_key_permission_covers_everything_after() {
        let a = store_with_user(&[perm(permission::Type::Readwrite, "m", b"\0")]);
        let u = Who::User("u".into());
        assert_eq!(a.check_range(&u, b"m", b"\0", Access::Write), Ok(()));
        assert_eq!(a.check_range(&u, b"zz", b"", Access::Read), Ok(()));
        assert_eq!(a.check_range(&u, b"l", b"\0", Access::Read), Err(Error::PermissionDenied));
    }

    #[test]
    fn tokens_are_issued_used_and_expire() {
        let mut a = store_with_user(&[]);
        let t0 = Instant::from_nanos(0);
        let rev = a.revision();
        assert_eq!(a.issue_token("u", "abc", rev - 1, 7, t0), Err(Error::AuthOldRevision));
        assert_eq!(a.issue_token("nobody", "abc", rev, 7, t0), Err(Error::AuthFailed));
        let token = a.issue_token("u", "abc", rev, 7, t0).unwrap();
        assert_eq!(token, "abc.7");
        let c = Caller::Client(Some(token.clone()));
        assert_eq!(a.who(&c, t0 + Duration::from_secs(299)), Ok(Who::User("u".into())));
        // Used at 299 s: lives until 599 s.
        assert_eq!(a.who(&c, t0 + Duration::from_secs(598)), Ok(Who::User("u".into())));
        assert_eq!(a.who(&c, t0 + Duration::from_secs(2000)), Err(Error::InvalidAuthToken));
        assert_eq!(a.who(&Caller::Client(None), t0), Ok(Who::Anonymous));
        assert_eq!(a.who(&Caller::Internal, t0), Ok(Who::Anyone));
        // A changed password forgets the user's tokens.
        let token = a.issue_token("u", "def", rev, 8, t0).unwrap();
        a.user_change_password(&AuthUserChangePasswordRequest {
            name: "u".into(),
            hashed_password: "x".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(a.who(&Caller::Client(Some(token)), t0), Err(Error::InvalidAuthToken));
    }

    #[test]
    fn jwt_callers_are_checked_by_revision_only() {
        let mut a = store_with_user(&[]);
        let t0 = Instant::from_nanos(0);
        let rev = a.revision();
        let at = |revision| Caller::Jwt { user: "u".into(), revision };
        assert_eq!(a.who(&at(rev), t0), Ok(Who::User("u".into())));
        // A token from a member ahead of this one is taken too (etcd checks `<` only).
        assert_eq!(a.who(&at(rev + 1), t0), Ok(Who::User("u".into())));
        assert_eq!(a.who(&at(rev - 1), t0), Err(Error::AuthOldRevision));
        // Nothing is remembered: no token lives in the store.
        assert_eq!(a.token_count(), 0);
        a.role_add(&AuthRoleAddRequest { name: "r2".into() }).unwrap();
        assert_eq!(a.who(&at(rev), t0), Err(Error::AuthOldRevision));
        a.disable();
        assert_eq!(a.who(&at(0), t0), Ok(Who::Anyone));
    }

    #[test]
    fn image_round_trip() {
        let a = store_with_user(&[perm(permission::Type::Read, "a", b"b")]);
        let b = AuthStore::from_image(a.to_image(), Duration::from_secs(1)).unwrap();
        assert_eq!(b.to_image(), a.to_image());
        assert!(b.is_enabled());
        assert!(AuthStore::new(Duration::from_secs(1)).to_image().is_none());
    }
}
