//! Who a gRPC request comes from: `authorization: Bearer <API key>` metadata holding a tenant's
//! API key (that tenant only) or the administrator key. Shared by the provisioning and voice
//! APIs, so that a credential reaches the same objects in both.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use switchboard_actors::tenant::{Directory, KeyScope};
use tokio::sync::watch;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Who is calling.
pub(crate) enum Caller {
    Admin,
    /// A tenant's API key: that tenant only.
    Tenant(String),
    /// A tenant's key that reads its statistics and nothing else (a wallboard's).
    Reader(String),
}

/// The keys a node accepts: its tenants' (from the current configuration) and the
/// administrator's.
#[derive(Clone)]
pub(crate) struct Keys {
    directory: watch::Receiver<Arc<Directory>>,
    admin_key: Option<String>,
}

impl Keys {
    pub(crate) fn new(
        directory: watch::Receiver<Arc<Directory>>,
        admin_key: Option<String>,
    ) -> Self {
        Self {
            directory,
            admin_key: admin_key.filter(|k| !k.is_empty()),
        }
    }

    pub(crate) fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        self.caller_by_key(key_of(metadata))
    }

    /// Who holds `key` (none: no key was sent). Shared by gRPC and HTTP, whose requests carry
    /// the key in different places.
    pub(crate) fn caller_by_key(&self, key: Option<&str>) -> Result<Caller, Status> {
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Status::unauthenticated("send `authorization: Bearer <API key>`"))?;
        if let Some(admin) = &self.admin_key
            && bool::from(key.as_bytes().ct_eq(admin.as_bytes()))
        {
            return Ok(Caller::Admin);
        }
        match self.directory.borrow().by_api_key(key) {
            Some((t, KeyScope::Full)) => Ok(Caller::Tenant(t.name.clone())),
            Some((t, KeyScope::Stats)) => Ok(Caller::Reader(t.name.clone())),
            None => Err(Status::unauthenticated("unknown API key")),
        }
    }

    /// The tenant a request may reach: the one it names, if the caller may reach it.
    pub(crate) fn tenant(&self, metadata: &MetadataMap, requested: &str) -> Result<String, Status> {
        tenant_of(self.caller(metadata)?, requested)
    }

    /// As [`Keys::tenant`], for the holder of `key`.
    pub(crate) fn tenant_by_key(
        &self,
        key: Option<&str>,
        requested: &str,
    ) -> Result<String, Status> {
        tenant_of(self.caller_by_key(key)?, requested)
    }

    /// The tenant whose statistics a request may read: as [`Keys::tenant`], a key that
    /// reads statistics only included.
    pub(crate) fn reader(&self, metadata: &MetadataMap, requested: &str) -> Result<String, Status> {
        reader_of(self.caller(metadata)?, requested)
    }

    /// As [`Keys::reader`], for the holder of `key`.
    pub(crate) fn reader_by_key(
        &self,
        key: Option<&str>,
        requested: &str,
    ) -> Result<String, Status> {
        reader_of(self.caller_by_key(key)?, requested)
    }

    pub(crate) fn admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        match self.caller(metadata)? {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) | Caller::Reader(_) => Err(Status::permission_denied(
                "this needs the administrator key",
            )),
        }
    }
}

pub(crate) fn read_only() -> Status {
    Status::permission_denied("this API key reads statistics only")
}

/// The key of an `Authorization` value `Bearer <key>` (the scheme case-insensitive, RFC 6750
/// after RFC 7235).
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, key) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The key of a gRPC request's `authorization` metadata.
fn key_of(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

/// The tenant `caller` may reach of `requested` (its own when empty).
fn tenant_of(caller: Caller, requested: &str) -> Result<String, Status> {
    match caller {
        Caller::Admin if requested.is_empty() => Err(Status::invalid_argument(
            "tenant: required with the administrator key",
        )),
        Caller::Admin => Ok(requested.to_owned()),
        Caller::Tenant(own) if requested.is_empty() || requested == own => Ok(own),
        Caller::Tenant(own) => Err(Status::permission_denied(format!(
            "this API key reaches tenant {own:?} only"
        ))),
        Caller::Reader(_) => Err(read_only()),
    }
}

/// As [`tenant_of`], a key that reads statistics only reaching its own tenant's.
fn reader_of(caller: Caller, requested: &str) -> Result<String, Status> {
    match caller {
        Caller::Reader(own) if requested.is_empty() || requested == own => Ok(own),
        Caller::Reader(own) => Err(Status::permission_denied(format!(
            "this API key reaches tenant {own:?} only"
        ))),
        caller => tenant_of(caller, requested),
    }
}
