//! The domain error of dynamic-container operations. Each variant maps to one gRPC status code at
//! the edge (`src/control`); messages name the offending field.

use crate::cri::CriError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A request field is malformed or not allowed.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The pod or container does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but the pod is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request asks for something the pod's containers may not have.
    #[error("{0}")]
    PermissionDenied(String),
    /// Not enough room (resources) for the request.
    #[error("{0}")]
    ResourceExhausted(String),
    /// podgraft cannot serve the call yet (its state is still loading); retry.
    #[error("{0}")]
    Unavailable(String),
    /// podgraft could not do its own part (e.g. a cgroup write failed); rolled back.
    #[error("{0}")]
    Internal(String),
    /// containerd refused or failed a step; everything done before it was rolled back.
    #[error("{context}: {source}")]
    Runtime { context: String, source: CriError },
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn runtime(context: impl Into<String>) -> impl FnOnce(CriError) -> Self {
        let context = context.into();
        move |source| Self::Runtime { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
