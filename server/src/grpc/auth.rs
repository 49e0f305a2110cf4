//! etcd's Auth service. Everything but the password work is the engine's (`detcd_engine::auth`,
//! replicated through raft); here, as in etcd's `v3_server.go`:
//! - UserAdd / UserChangePassword hash the password with bcrypt *before* proposing, so only
//!   the hash is replicated (and the salt's randomness stays out of the engine);
//! - Authenticate reads the user's hash on this member, checks the password, draws a random
//!   simple token and proposes it (etcd's InternalAuthenticateRequest), so every member knows
//!   the token (`token.index`); with `--auth-token jwt,...` it signs a JWT instead, with no
//!   raft round (`crate::jwt`).

use detcd_engine::auth::Caller;
use detcd_engine::node::{Request, Response};
use detcd_engine::Error;
use detcd_proto::etcdserverpb::auth_server::Auth;
use detcd_proto::etcdserverpb::*;
use detcd_proto::internalpb::AuthTokenIssue;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::{status, unexpected};
use crate::driver::Handle;

#[derive(Debug, Clone, Copy)]
pub struct AuthOptions {
    pub bcrypt_cost: u32,
}

pub struct AuthService {
    pub handle: Handle,
    pub options: AuthOptions,
}

/// Runs bcrypt off the async threads (inline in the simulator, which has no blocking pool and
/// never calls auth).
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, Status> {
    #[cfg(madsim)]
    return Ok(f());
    #[cfg(not(madsim))]
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("detcd: bcrypt: {e}")))
}

async fn hash_password(password: String, cost: u32) -> Result<String, Status> {
    blocking(move || bcrypt::hash(password, cost)).await?.map_err(|e| Status::internal(format!("detcd: bcrypt: {e}")))
}

/// 16 random letters, as etcd's simple tokens (before the `.index` the apply adds).
fn random_token() -> Result<String, Status> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| Status::internal(format!("detcd: no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect())
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: GrpcRequest<AuthEnableRequest>,
    ) -> Result<GrpcResponse<AuthEnableResponse>, Status> {
        call_node!(self, req, AuthEnable)
    }

    async fn auth_disable(
        &self,
        req: GrpcRequest<AuthDisableRequest>,
    ) -> Result<GrpcResponse<AuthDisableResponse>, Status> {
        call_node!(self, req, AuthDisable)
    }

    async fn auth_status(
        &self,
        req: GrpcRequest<AuthStatusRequest>,
    ) -> Result<GrpcResponse<AuthStatusResponse>, Status> {
        call_node!(self, req, AuthStatus)
    }

    async fn authenticate(
        &self,
        req: GrpcRequest<AuthenticateRequest>,
    ) -> Result<GrpcResponse<AuthenticateResponse>, Status> {
        super::voters_only(&self.handle)?;
        let AuthenticateRequest { name, password } = req.into_inner();
        let (hash, revision) =
            match self.handle.call(Request::AuthPasswordOf { name: name.clone() }).await.map_err(status)? {
                Response::AuthPassword(p) => (p.hash, p.revision),
                other => return Err(unexpected(&other)),
            };
        let ok = blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await.unwrap_or(false);
        if !ok {
            return Err(status(Error::AuthFailed));
        }
        if let Some(tokens) = self.handle.jwt() {
            let token = tokens.sign(&name, revision, crate::jwt::unix_now_s()).map_err(Status::unknown)?;
            // The header as any local answer has it.
            let header = match self.handle.call(Request::AuthStatus(AuthStatusRequest {})).await.map_err(status)? {
                Response::AuthStatus(s) => s.header,
                other => return Err(unexpected(&other)),
            };
            return Ok(GrpcResponse::new(AuthenticateResponse { header, token }));
        }
        let issue = AuthTokenIssue { name, token: random_token()?, auth_revision: revision };
        match self.handle.call_as(Caller::Client(None), Request::Authenticate(issue)).await.map_err(status)? {
            Response::Authenticate(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }

    async fn user_add(
        &self,
        req: GrpcRequest<AuthUserAddRequest>,
    ) -> Result<GrpcResponse<AuthUserAddResponse>, Status> {
        super::voters_only(&self.handle)?;
        let caller = super::caller(&req);
        let mut r = req.into_inner();
        if r.name.is_empty() {
            return Err(status(Error::UserEmpty));
        }
        // Only root may add users once auth is on: check before paying for bcrypt.
        self.handle.call_as(caller.clone(), Request::AuthCheckAdmin).await.map_err(status)?;
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            r.hashed_password = hash_password(std::mem::take(&mut r.password), self.options.bcrypt_cost).await?;
        }
        r.password.clear();
        match self.handle.call_as(caller, Request::AuthUserAdd(r)).await.map_err(status)? {
            Response::AuthUserAdd(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }

    async fn user_get(
        &self,
        req: GrpcRequest<AuthUserGetRequest>,
    ) -> Result<GrpcResponse<AuthUserGetResponse>, Status> {
        call_node!(self, req, AuthUserGet)
    }

    async fn user_list(
        &self,
        req: GrpcRequest<AuthUserListRequest>,
    ) -> Result<GrpcResponse<AuthUserListResponse>, Status> {
        call_node!(self, req, AuthUserList)
    }

    async fn user_delete(
        &self,
        req: GrpcRequest<AuthUserDeleteRequest>,
    ) -> Result<GrpcResponse<AuthUserDeleteResponse>, Status> {
        call_node!(self, req, AuthUserDelete)
    }

    async fn user_change_password(
        &self,
        req: GrpcRequest<AuthUserChangePasswordRequest>,
    ) -> Result<GrpcResponse<AuthUserChangePasswordResponse>, Status> {
        super::voters_only(&self.handle)?;
        let caller = super::caller(&req);
        let mut r = req.into_inner();
        self.handle.call_as(caller.clone(), Request::AuthCheckAdmin).await.map_err(status)?;
        r.hashed_password = hash_password(std::mem::take(&mut r.password), self.options.bcrypt_cost).await?;
        match self.handle.call_as(caller, Request::AuthUserChangePassword(r)).await.map_err(status)? {
            Response::AuthUserChangePassword(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }

    async fn user_grant_role(
        &self,
        req: GrpcRequest<AuthUserGrantRoleRequest>,
    ) -> Result<GrpcResponse<AuthUserGrantRoleResponse>, Status> {
        call_node!(self, req, AuthUserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        req: GrpcRequest<AuthUserRevokeRoleRequest>,
    ) -> Result<GrpcResponse<AuthUserRevokeRoleResponse>, Status> {
        call_node!(self, req, AuthUserRevokeRole)
    }

    async fn role_add(
        &self,
        req: GrpcRequest<AuthRoleAddRequest>,
    ) -> Result<GrpcResponse<AuthRoleAddResponse>, Status> {
        call_node!(self, req, AuthRoleAdd)
    }

    async fn role_get(
        &self,
        req: GrpcRequest<AuthRoleGetRequest>,
    ) -> Result<GrpcResponse<AuthRoleGetResponse>, Status> {
        call_node!(self, req, AuthRoleGet)
    }

    async fn role_list(
        &self,
        req: GrpcRequest<AuthRoleListRequest>,
    ) -> Result<GrpcResponse<AuthRoleListResponse>, Status> {
        call_node!(self, req, AuthRoleList)
    }

    async fn role_delete(
        &self,
        req: GrpcRequest<AuthRoleDeleteRequest>,
    ) -> Result<GrpcResponse<AuthRoleDeleteResponse>, Status> {
        call_node!(self, req, AuthRoleDelete)
    }

    async fn role_grant_permission(
        &self,
        req: GrpcRequest<AuthRoleGrantPermissionRequest>,
    ) -> Result<GrpcResponse<AuthRoleGrantPermissionResponse>, Status> {
        call_node!(self, req, AuthRoleGrantPermission)
    }

    async fn role_revoke_permission(
        &self,
        req: GrpcRequest<AuthRoleRevokePermissionRequest>,
    ) -> Result<GrpcResponse<AuthRoleRevokePermissionResponse>, Status> {
        call_node!(self, req, AuthRoleRevokePermission)
    }
}
