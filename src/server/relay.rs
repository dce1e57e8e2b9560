//! The CRI relay: every call is forwarded to the backend as raw HTTP/2 + gRPC frames.
//!
//! Methods without an interceptor never have their messages decoded: headers (metadata, `grpc-timeout`),
//! data frames and trailers are handed through as they are, so fields and methods this build has never
//! heard of reach containerd unchanged and its statuses come back as it sent them. Methods with an
//! interceptor are buffered one message at a time and re-framed after the interceptor has seen them.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use tonic::Status;

use super::backend::Backend;
use super::body::{self, BodyError, CallEnd, Oversize, RelayBody, RequestWatch, ResponseWatch};
use super::grpc::{
    MessageDecoder, encode_message, status_code, status_response, status_trailers, too_large,
};
use super::h2body::H2Body;
use super::intercept::{CallContext, MessageInterceptor, Registry};
use super::mask::{FieldMask, MaskedBody};

/// Path prefixes of the image services, which may live on their own endpoint.
const IMAGE_SERVICES: [&str; 2] = [
    "/runtime.v1.ImageService/",
    "/runtime.v1alpha2.ImageService/",
];

pub struct Relay {
    runtime: Backend,
    image: Option<Backend>,
    registry: Registry,
    observers: Arc<[Arc<dyn super::intercept::CallObserver>]>,
    max_message: usize,
}

impl Relay {
    pub fn new(
        runtime: Backend,
        image: Option<Backend>,
        registry: Registry,
        max_message: usize,
    ) -> Self {
        let observers = registry.observers();
        Self {
            runtime,
            image,
            registry,
            observers,
            max_message,
        }
    }

    fn backend_for(&self, path: &str) -> &Backend {
        match &self.image {
            Some(image) if IMAGE_SERVICES.iter().any(|p| path.starts_with(p)) => image,
            _ => &self.runtime,
        }
    }

    /// Serves one call. Never fails at the HTTP level: every problem becomes a gRPC status.
    /// `span` is the call's (see [`super::span`]): the relay records the IDs the request names
    /// and, at the end, the outcome in it.
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        span: tracing::Span,
    ) -> Result<Response<RelayBody>, Infallible>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BodyError>,
    {
        let method = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let end = (!self.observers.is_empty() || !span.is_disabled())
            .then(|| CallEnd::new(method.clone(), self.observers.clone(), span.clone()));
        let result = match self.registry.interceptor(method.path()) {
            Some(interceptor) if interceptor.active() => match interceptor.response_mask() {
                Some(mask) => self.pass_through(req, end, Some(mask), &span).await,
                None => self.intercepted(interceptor.clone(), req, end, &span).await,
            },
            _ => self.pass_through(req, end, None, &span).await,
        };
        Ok(result.unwrap_or_else(|(status, end)| {
            if let Some(end) = end {
                end.finish(status.code());
            }
            status_response(status)
        }))
    }

    /// Relays a call as it streams, the response through `mask` if one is given.
    async fn pass_through<B>(
        &self,
        req: Request<B>,
        end: Option<CallEnd>,
        mask: Option<FieldMask>,
        span: &tracing::Span,
    ) -> Result<Response<RelayBody>, Failure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BodyError>,
    {
        let backend = self.backend_for(req.uri().path());
        let (parts, body) = req.into_parts();
        let oversize = Oversize::default();
        let mut body = RequestWatch::new(body, self.max_message, oversize.clone());
        body.prefetch().await;
        if let Some(len) = oversize.get() {
            return Err((too_large(len, self.max_message), end));
        }
        // The first frame is in hand anyway: its leading field may name the pod or container.
        if let Some(data) = body.first_data() {
            super::span::record_frame_ids(span, parts.uri.path(), data);
        }
        let req = Request::from_parts(parts, body.boxed_unsync());
        match backend.send(to_backend(req)).await {
            Ok(resp) => match mask {
                Some(mask) if status_code(resp.headers()).is_none() => {
                    let resp = resp.map(|b| MaskedBody::new(b, mask).boxed_unsync());
                    Ok(self.watch_response(resp, end))
                }
                _ => Ok(self.watch_response(resp, end)),
            },
            Err(status) => {
                // A request cut off for its size makes the backend call fail; say why.
                let status = oversize
                    .get()
                    .map_or(status, |len| too_large(len, self.max_message));
                Err((status, end))
            }
        }
    }

    async fn intercepted<B>(
        &self,
        interceptor: Arc<dyn MessageInterceptor>,
        req: Request<B>,
        end: Option<CallEnd>,
        span: &tracing::Span,
    ) -> Result<Response<RelayBody>, Failure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BodyError>,
    {
        let (parts, mut body) = req.into_parts();
        let call = Arc::new(CallContext {
            method: parts.uri.path().to_string(),
            metadata: parts.headers.clone(),
            stash: Default::default(),
        });
        // CRI has no client-streaming methods: the request is complete once its body ends.
        let mut decoder = MessageDecoder::new(self.max_message);
        let mut forwarded = Vec::new();
        loop {
            match decoder.next_message() {
                Err(status) => return Err((status, end)),
                Ok(Some(msg)) => {
                    super::span::record_message_ids(span, &call.method, &msg);
                    match interceptor.on_request(&call, msg).await {
                        Ok(msg) => forwarded.extend_from_slice(&encode_message(&msg)),
                        Err(status) => return Err((status, end)),
                    }
                }
                Ok(None) => match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            decoder.push(data);
                        }
                    }
                    Some(Err(err)) => {
                        let err: BodyError = err.into();
                        return Err((
                            Status::cancelled(format!("podgraft: request body failed: {err}")),
                            end,
                        ));
                    }
                },
            }
        }
        if decoder.has_partial() {
            return Err((
                Status::internal("podgraft: request ended inside a gRPC message"),
                end,
            ));
        }

        let backend = self.backend_for(&call.method);
        let mut req = Request::from_parts(parts, body::full(Bytes::from(forwarded)));
        req.headers_mut().remove(http::header::CONTENT_LENGTH);
        let resp = match backend.send(to_backend(req)).await {
            Ok(resp) => resp,
            Err(status) => return Err((status, end)),
        };
        if status_code(resp.headers()).is_some() {
            // A trailers-only answer (an error) carries no message to intercept.
            return Ok(self.watch_response(resp, end));
        }
        let (mut parts, body) = resp.into_parts();
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let mapped = map_messages(
            body,
            MessageDecoder::new(self.max_message),
            interceptor,
            call,
        );
        let body = ResponseWatch::new(mapped, self.max_message, end, None).boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }

    fn watch_response<B>(&self, resp: Response<B>, end: Option<CallEnd>) -> Response<RelayBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let header_code = status_code(resp.headers());
        resp.map(|b| ResponseWatch::new(b, self.max_message, end, header_code).boxed_unsync())
    }
}

/// A failed call: the status to answer with, and the observer record still to close.
type Failure = (Status, Option<CallEnd>);

/// Gives the request the absolute URI an HTTP/2 client needs, keeping path, query and authority.
fn to_backend(mut req: Request<RelayBody>) -> Request<RelayBody> {
    let uri = req.uri();
    if uri.scheme().is_none() || uri.authority().is_none() {
        let mut parts = uri.clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        if parts.authority.is_none() {
            parts.authority = Some(Authority::from_static("localhost"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Passes each response message of `body` through the interceptor, then the trailers as they were.
fn map_messages(
    body: H2Body,
    decoder: MessageDecoder,
    interceptor: Arc<dyn MessageInterceptor>,
    call: Arc<CallContext>,
) -> RelayBody {
    struct St {
        body: H2Body,
        decoder: MessageDecoder,
        interceptor: Arc<dyn MessageInterceptor>,
        call: Arc<CallContext>,
        done: bool,
    }
    let fail = |st: St, status: Status| {
        let mut st = st;
        st.done = true;
        Some((
            Ok::<_, BodyError>(Frame::trailers(status_trailers(&status))),
            st,
        ))
    };
    let state = St {
        body,
        decoder,
        interceptor,
        call,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.decoder.next_message() {
                Err(status) => return fail(st, status),
                Ok(Some(msg)) => match st.interceptor.on_response(&st.call, msg).await {
                    Ok(Some(msg)) => return Some((Ok(Frame::data(encode_message(&msg))), st)),
                    Ok(None) => continue,
                    Err(status) => return fail(st, status),
                },
                Ok(None) => {}
            }
            match st.body.frame().await {
                None => return None,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => st.decoder.push(data),
                    Err(frame) => {
                        st.done = true;
                        return Some((Ok(frame), st));
                    }
                },
                Some(Err(err)) => {
                    let status =
                        Status::unavailable(format!("podgraft: CRI backend stream broke: {err}"));
                    return fail(st, status);
                }
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}
