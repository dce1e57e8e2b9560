//! The control API edge: authorizes each call by the caller's peer credentials ([`auth`]),
//! translates `podgraft.v1alpha1.Control` calls into the domain's types ([`convert`]), delegates
//! to [`Manager`](crate::dynamic::Manager), audits mutating and exec calls and every denial
//! ([`audit`]), and maps domain errors to gRPC statuses in one place. No domain logic lives here.

pub mod audit;
pub mod auth;
pub mod convert;
pub mod peer;
mod service;
mod status;
mod trace;

pub use service::ControlService;
pub use status::StatusInfo;

use tonic::Status;

use crate::dynamic::Error;

/// The one mapping from domain errors to gRPC statuses.
impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::AlreadyExists(_) => Status::already_exists(e.to_string()),
            Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            Error::ResourceExhausted(_) => Status::resource_exhausted(e.to_string()),
            Error::Unavailable(_) => Status::unavailable(e.to_string()),
            Error::Internal(_) => Status::internal(e.to_string()),
            Error::Runtime { source, .. } => {
                // containerd's verdict on the step, with podgraft's context in the message; its
                // catch-all UNKNOWN is a failure on the node's side: INTERNAL, never UNKNOWN.
                let code = match tonic::Code::from_i32(source.code) {
                    tonic::Code::Ok | tonic::Code::Unknown => tonic::Code::Internal,
                    code => code,
                };
                Status::new(code, e.to_string())
            }
        }
    }
}
