//! JWT auth tokens (`--auth-token jwt,...`), as etcd 3.4's `auth/jwt.go` makes them.
//!
//! A token is a JWT signed with the member's key, with the claims `username`, `revision` (the
//! auth store's revision when it was issued) and `exp` (wall-clock seconds since the epoch,
//! issue time + `ttl`). Tokens are stateless: Authenticate checks the password and signs,
//! without a raft round (etcd 3.4 still proposes its Authenticate through raft, for the simple
//! tokens' sake), and any member with the same keys accepts a token another one issued.
//! Verification (signature, algorithm, expiry) happens here, on the RPC's task; the engine
//! then sees a [`Caller::Jwt`] and checks only the revision. A token that does not verify stays
//! a [`Caller::Client`] token, which the engine does not know: "invalid auth token".
//!
//! Keys: RS*/PS* take RSA keys in PEM (PKCS#1 or PKCS#8), ES256/ES384 EC keys (the private one in
//! PKCS#8: `openssl pkcs8 -topk8 -nocrypt`), HS* the bytes of the `priv-key` file as the secret.
//! Without `priv-key` (RS*, PS*, ES*) the member verifies but does not sign, and Authenticate
//! fails as etcd's: "auth: token signing attempted with verify-only key". Unlike etcd, which
//! derives it from the private key, `pub-key` is always needed for RS*, PS* and ES*.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use detcd_engine::auth::Caller;

use crate::config::JwtOptions;

/// etcd's `ErrVerifyOnly` text.
pub const VERIFY_ONLY: &str = "auth: token signing attempted with verify-only key";

/// The claims etcd puts in a token (jwt-go writes a map's keys sorted: so do we).
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    exp: u64,
    revision: u64,
    username: String,
}

pub struct JwtTokens {
    algorithm: Algorithm,
    /// `None`: verify only.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
    ttl_s: u64,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens").field("algorithm", &self.algorithm).field("ttl_s", &self.ttl_s).finish()
    }
}

/// Wall-clock seconds since the epoch, which a JWT's `exp` counts in. The member's own clock
/// (`crate::clock`) is monotonic and starts at 0, so it cannot say what time it is; this is
/// the one place the member reads the wall clock.
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl JwtTokens {
    /// Reads the key files `options` names; any problem is a reason to refuse to start.
    pub fn load(options: &JwtOptions) -> Result<JwtTokens, String> {
        let read = |what: &str, path: &str| -> Result<Option<Vec<u8>>, String> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(path).map(Some).map_err(|e| format!("--auth-token jwt: cannot read {what} {path:?}: {e}"))
        };
        let public = read("pub-key", &options.pub_key)?;
        let private = read("priv-key", &options.priv_key)?;
        JwtTokens::from_keys(&options.sign_method, public.as_deref(), private.as_deref(), options.ttl_ms / 1000)
    }

    /// `public` and `private` are the key files' bytes (PEM, or the HMAC secret as `private`).
    pub fn from_keys(
        sign_method: &str,
        public: Option<&[u8]>,
        private: Option<&[u8]>,
        ttl_s: u64,
    ) -> Result<JwtTokens, String> {
        if sign_method == "ES512" {
            // etcd takes it; ring (the one crypto stack in the tree) has no P-521.
            return Err(
                "--auth-token jwt: sign-method ES512 is not supported by detcd (no P-521); use ES256 or ES384".into()
            );
        }
        let algorithm: Algorithm =
            sign_method.parse().map_err(|_| format!("--auth-token jwt: unknown sign-method {sign_method:?}"))?;
        let bad =
            |what: &str, e: jsonwebtoken::errors::Error| format!("--auth-token jwt: {what} for {sign_method}: {e}");
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret =
                    private.filter(|s| !s.is_empty()).ok_or("--auth-token jwt: empty HMAC secret (priv-key)")?;
                (Some(EncodingKey::from_secret(secret)), DecodingKey::from_secret(secret))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let public = public.ok_or("--auth-token jwt: pub-key is needed")?;
                let decoding =
                    DecodingKey::from_rsa_pem(public).map_err(|e| bad("pub-key is not an RSA public key", e))?;
                let encoding = private
                    .map(|p| EncodingKey::from_rsa_pem(p).map_err(|e| bad("priv-key is not an RSA private key", e)))
                    .transpose()?;
                (encoding, decoding)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let public = public.ok_or("--auth-token jwt: pub-key is needed")?;
                let decoding =
                    DecodingKey::from_ec_pem(public).map_err(|e| bad("pub-key is not an EC public key", e))?;
                let encoding = private
                    .map(|p| {
                        EncodingKey::from_ec_pem(p).map_err(|e| bad("priv-key is not an EC private key (PKCS#8)", e))
                    })
                    .transpose()?;
                (encoding, decoding)
            }
            other => return Err(format!("--auth-token jwt: sign-method {other:?} is not supported")),
        };
        let mut validation = Validation::new(algorithm);
        // Expiry is checked in `verify`, against the time it is given, with no leeway (jwt-go's
        // check: valid while now <= exp).
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let tokens = JwtTokens { algorithm, encoding, decoding, validation, ttl_s };
        // A key pair that does not match would make every token fail: find out now.
        if tokens.encoding.is_some() {
            let probe = tokens.sign("probe", 1, 0).map_err(|e| format!("--auth-token jwt: cannot sign: {e}"))?;
            if tokens.verify(&probe, 0).is_none() {
                return Err("--auth-token jwt: priv-key and pub-key are not a pair".into());
            }
        }
        Ok(tokens)
    }

    /// A token for `user` at auth revision `revision`, issued at `now_s` (seconds since the
    /// epoch).
    pub fn sign(&self, user: &str, revision: u64, now_s: u64) -> Result<String, String> {
        let key = self.encoding.as_ref().ok_or(VERIFY_ONLY)?;
        let claims = Claims { exp: now_s.saturating_add(self.ttl_s), revision, username: user.to_owned() };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    /// The user and revision of `token` if it is signed with our key and algorithm and has not
    /// expired at `now_s`.
    pub fn verify(&self, token: &str, now_s: u64) -> Option<(String, u64)> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        if data.header.alg != self.algorithm || now_s > data.claims.exp {
            return None;
        }
        Some((data.claims.username, data.claims.revision))
    }

    /// `caller` with its token verified: a [`Caller::Jwt`] if it is one of ours, else as it was.
    pub fn caller(&self, caller: Caller, now_s: u64) -> Caller {
        match &caller {
            Caller::Client(Some(token)) => match self.verify(token, now_s) {
                Some((user, revision)) => Caller::Jwt { user, revision },
                None => caller,
            },
            _ => caller,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generates keys with openssl into a temp dir: (public PEM, private PEM).
    fn openssl_keys(kind: &str) -> (Vec<u8>, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!("detcd-jwt-unit-{kind}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.pem");
        let public = dir.join("pub.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let key_s = key.to_str().unwrap();
        match kind {
            "rsa" => run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key_s]),
            _ => run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key_s]),
        }
        run(&["pkey", "-in", key_s, "-pubout", "-out", public.to_str().unwrap()]);
        let keys = (std::fs::read(&public).unwrap(), std::fs::read(&key).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        keys
    }

    fn check_round_trip(t: &JwtTokens) {
        let now = 1_700_000_000;
        let token = t.sign("alice", 7, now).unwrap();
        assert_eq!(t.verify(&token, now), Some(("alice".into(), 7)));
        assert_eq!(t.verify(&token, now + 60), Some(("alice".into(), 7)));
        // Expired one second after exp.
        assert_eq!(t.verify(&token, now + 61), None);
        // Tampered: the payload changed (another user), the signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = r#"{"exp":9999999999,"revision":7,"username":"root"}"#;
        use base64_like::encode_url;
        let forged = format!("{}.{}.{}", parts[0], encode_url(forged_claims.as_bytes()), parts[2]);
        assert_eq!(t.verify(&forged, now), None);
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(t.verify(&String::from_utf8(flipped).unwrap(), now), None);
        assert_eq!(t.verify("simpletoken.7", now), None);
        assert_eq!(t.caller(Caller::Client(Some(token)), now), Caller::Jwt { user: "alice".into(), revision: 7 });
        assert_eq!(t.caller(Caller::Client(Some("x".into())), now), Caller::Client(Some("x".into())));
        assert_eq!(t.caller(Caller::Client(None), now), Caller::Client(None));
    }

    /// Base64url without padding, for forging a payload.
    mod base64_like {
        pub fn encode_url(bytes: &[u8]) -> String {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn rsa_tokens_sign_verify_expire_and_refuse_tampering() {
        let (public, private) = openssl_keys("rsa");
        for method in ["RS256", "RS512", "PS256"] {
            let t = JwtTokens::from_keys(method, Some(&public), Some(&private), 60).unwrap();
            check_round_trip(&t);
        }
        // The same keys under another algorithm do not accept the token.
        let rs = JwtTokens::from_keys("RS256", Some(&public), Some(&private), 60).unwrap();
        let ps = JwtTokens::from_keys("PS256", Some(&public), Some(&private), 60).unwrap();
        assert_eq!(ps.verify(&rs.sign("a", 1, 0).unwrap(), 0), None);
        // Verify only: tokens of the signer are accepted, none is issued.
        let verifier = JwtTokens::from_keys("RS256", Some(&public), None, 60).unwrap();
        assert_eq!(verifier.verify(&rs.sign("a", 1, 0).unwrap(), 0), Some(("a".into(), 1)));
        assert_eq!(verifier.sign("a", 1, 0), Err(VERIFY_ONLY.to_string()));
        // Another key pair's tokens are refused, and a mismatched pair refuses to start.
        let (other_public, other_private) = openssl_keys("rsa");
        let other = JwtTokens::from_keys("RS256", Some(&other_public), Some(&other_private), 60).unwrap();
        assert_eq!(rs.verify(&other.sign("a", 1, 0).unwrap(), 0), None);
        assert!(JwtTokens::from_keys("RS256", Some(&other_public), Some(&private), 60).is_err());
        // Not keys at all, or the wrong kind.
        assert!(JwtTokens::from_keys("RS256", Some(b"junk"), Some(&private), 60).is_err());
        assert!(JwtTokens::from_keys("RS256", Some(&public), Some(b"junk"), 60).is_err());
        let (ec_public, _) = openssl_keys("ec");
        assert!(JwtTokens::from_keys("RS256", Some(&ec_public), None, 60).is_err());
    }

    #[test]
    fn ec_and_hmac_tokens() {
        let (public, private) = openssl_keys("ec");
        check_round_trip(&JwtTokens::from_keys("ES256", Some(&public), Some(&private), 60).unwrap());
        let secret = b"a shared secret";
        let hs = JwtTokens::from_keys("HS256", None, Some(secret), 60).unwrap();
        check_round_trip(&hs);
        let other = JwtTokens::from_keys("HS256", None, Some(b"another secret"), 60).unwrap();
        assert_eq!(other.verify(&hs.sign("a", 1, 0).unwrap(), 0), None);
        assert!(JwtTokens::from_keys("HS256", None, Some(b""), 60).is_err());
        assert!(JwtTokens::from_keys("none", None, Some(secret), 60).is_err());
        assert!(JwtTokens::from_keys("ES512", Some(&public), Some(&private), 60).unwrap_err().contains("ES512"));
    }
}
