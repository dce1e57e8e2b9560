//! The interception seam of the relay.
//!
//! Two kinds of hooks exist, so that the common case stays a zero-copy relay:
//! - a [`MessageInterceptor`] is registered for one method and sees that method's raw request and
//!   response messages (the relay buffers and re-frames those calls only);
//! - a [`CallObserver`] sees every call's outcome (method, status, latency) without touching its bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tonic::{Code, Status};

pub use crate::BoxFuture;

/// What an interceptor knows about the call it is looking at.
#[derive(Debug)]
pub struct CallContext {
    /// The gRPC method path, e.g. `/runtime.v1.RuntimeService/ListContainers`.
    pub method: String,
    /// The request metadata as the client sent it.
    pub metadata: HeaderMap,
    /// Room for an interceptor to carry something from `on_request` to `on_response` (e.g. the
    /// request, when the response alone does not say enough).
    pub stash: std::sync::Mutex<Option<Bytes>>,
}

/// Sees and may rewrite the raw protobuf messages of one method. Messages are the payloads without
/// the gRPC length prefix; helpers in [`crate::wire`] edit them while keeping unknown fields.
pub trait MessageInterceptor: Send + Sync + 'static {
    /// Whether this call needs the interceptor at all; when false the call is relayed untouched
    /// (streamed, never buffered). Checked once per call, so keep it cheap.
    fn active(&self) -> bool {
        true
    }

    /// A mask to apply to the response as it streams by, instead of buffering each message for
    /// [`MessageInterceptor::on_response`]; the request is then relayed untouched too.
    fn response_mask(&self) -> Option<super::mask::FieldMask> {
        None
    }

    /// Called with the request message before it is forwarded; an error answers the call with that
    /// status and the backend never sees it.
    fn on_request<'a>(
        &'a self,
        _call: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Bytes, Status>> {
        Box::pin(std::future::ready(Ok(msg)))
    }

    /// Called with each response message (each message of a stream); `None` drops it from a stream.
    /// An error ends the call with that status.
    fn on_response<'a>(
        &'a self,
        _call: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(std::future::ready(Ok(Some(msg))))
    }
}

/// One finished call, as an observer sees it.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    pub method: &'a str,
    pub code: Code,
    pub elapsed: Duration,
    pub response_bytes: u64,
}

/// Sees the outcome of every relayed call. Runs on the call's task: keep it cheap.
pub trait CallObserver: Send + Sync + 'static {
    fn call_finished(&self, call: &CallRecord<'_>);
}

/// Interceptors by method path, plus the observers of all calls.
#[derive(Default, Clone)]
pub struct Registry {
    by_method: HashMap<String, Arc<dyn MessageInterceptor>>,
    observers: Vec<Arc<dyn CallObserver>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `interceptor` for `method` (a full path). One interceptor per method: a second one
    /// for the same method is a programming error.
    pub fn intercept(&mut self, method: &str, interceptor: Arc<dyn MessageInterceptor>) {
        let previous = self.by_method.insert(method.to_string(), interceptor);
        assert!(
            previous.is_none(),
            "two interceptors registered for {method}"
        );
    }

    pub fn observe(&mut self, observer: Arc<dyn CallObserver>) {
        self.observers.push(observer);
    }

    pub fn interceptor(&self, method: &str) -> Option<&Arc<dyn MessageInterceptor>> {
        self.by_method.get(method)
    }

    pub fn observers(&self) -> Arc<[Arc<dyn CallObserver>]> {
        self.observers.clone().into()
    }
}
