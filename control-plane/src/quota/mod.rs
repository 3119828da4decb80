//! Usage and quota: the gRPC methods the filters call besides xDS. `warden.v1.Ledger/Report`
//! takes usage records; `warden.v1.Quota/Lease` hands out shares of budgets.
//!
//! Each is a hand-written tonic service of one unary method ([`Unary`]), with the messages from
//! `warden_policy`: the filter and the control plane share one definition, and no build script
//! or `.proto` is needed for two methods.

pub mod lease;
mod ledger;

pub use lease::Lease;
pub use ledger::Report;

use crate::pki::Caller;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{NamedService, UnaryService};

/// One unary gRPC method.
pub trait Method: Clone + Send + Sync + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;
    /// The service, e.g. `warden.v1.Ledger`.
    const SERVICE: &'static str;
    /// The method, e.g. `Report`.
    const METHOD: &'static str;
    /// The answer to one request from `caller` (authenticated by the TLS layer).
    fn answer(self, caller: Caller, request: Self::Request) -> BoxFuture<Self::Response, Status>;
}

/// A tonic service that serves one [`Method`].
#[derive(Clone)]
pub struct Unary<M>(pub M);

impl<M: Method> UnaryService<M::Request> for Unary<M> {
    type Response = M::Response;
    type Future = BoxFuture<tonic::Response<M::Response>, Status>;

    fn call(&mut self, request: tonic::Request<M::Request>) -> Self::Future {
        let caller = match Caller::of(&request) {
            Ok(caller) => caller,
            Err(status) => return Box::pin(async move { Err(status) }),
        };
        let answer = self.0.clone().answer(caller, request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

impl<M: Method, B> tonic::codegen::Service<http::Request<B>> for Unary<M>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != format!("/{}/{}", M::SERVICE, M::METHOD) {
            return Box::pin(async {
                let mut response = http::Response::new(Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(service, request).await)
        })
    }
}

impl<M: Method> NamedService for Unary<M> {
    const NAME: &'static str = M::SERVICE;
}
