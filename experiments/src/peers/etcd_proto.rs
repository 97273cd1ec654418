//! The few messages of etcd's v3 gRPC API (package `etcdserverpb`, from etcd's rpc.proto
//! and kv.proto) that the peers benchmark sends, written out with prost derives so that
//! building needs no protoc, and a small KV client over a tonic channel. Field numbers
//! follow the .proto files; fields this benchmark never reads are left out (prost skips
//! them on decode).

use tonic::codec::ProstCodec;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// `Compare.CompareResult.EQUAL`.
pub const COMPARE_EQUAL: i32 = 0;
/// `Compare.CompareTarget.VALUE`.
pub const TARGET_VALUE: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    #[prost(int32, tag = "1")]
    pub result: i32,
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "CompareTarget", tags = "7")]
    pub target_union: Option<CompareTarget>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum CompareTarget {
    #[prost(bytes, tag = "7")]
    Value(Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "Request", tags = "1, 2")]
    pub request: Option<Request>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    #[prost(message, tag = "2")]
    Put(PutRequest),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseOp {
    #[prost(oneof = "Response", tags = "1, 2")]
    pub response: Option<Response>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Response {
    #[prost(message, tag = "1")]
    Range(RangeResponse),
    #[prost(message, tag = "2")]
    Put(PutResponse),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    pub responses: Vec<ResponseOp>,
}

/// etcd's `KV` service over one HTTP/2 connection (a channel multiplexes every request
/// in flight on it).
#[derive(Clone)]
pub struct Kv {
    grpc: tonic::client::Grpc<Channel>,
}

impl Kv {
    /// Connects to one member's client URL (`http://127.0.0.1:port`).
    pub async fn connect(url: String) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(url)?
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10))
            .connect()
            .await?;
        Ok(Kv {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn call<Q, R>(&self, method: &'static str, req: Q) -> anyhow::Result<R>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready().await?;
        let resp = grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(method),
                ProstCodec::<Q, R>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn put(&self, req: PutRequest) -> anyhow::Result<PutResponse> {
        self.call("/etcdserverpb.KV/Put", req).await
    }

    pub async fn txn(&self, req: TxnRequest) -> anyhow::Result<TxnResponse> {
        self.call("/etcdserverpb.KV/Txn", req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn put_request_encodes_like_protoc_would() {
        let req = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        // field 1 (bytes) "k", field 2 (bytes) "v"
        assert_eq!(req.encode_to_vec(), vec![0x0a, 1, b'k', 0x12, 1, b'v']);
    }

    #[test]
    fn txn_response_decodes_a_failed_compare_with_its_range() {
        let resp = TxnResponse {
            header: Some(ResponseHeader {
                revision: 42,
                ..Default::default()
            }),
            succeeded: false,
            responses: vec![ResponseOp {
                response: Some(Response::Range(RangeResponse {
                    header: None,
                    kvs: vec![KeyValue {
                        key: b"ctr".to_vec(),
                        value: b"17".to_vec(),
                        ..Default::default()
                    }],
                })),
            }],
        };
        let back = TxnResponse::decode(&resp.encode_to_vec()[..]).unwrap();
        assert_eq!(back, resp);
    }
}
