//! The proxies of the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, and the
//! system's settings), read as reqwest reads them, for the client that sends URLs as written.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower_service::Service;

/// The error of a connection attempt.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens TCP connections directly, or through an HTTP `CONNECT` tunnel when the environment
/// names a proxy for the destination (with its credentials, if the proxy URL holds any).
#[derive(Clone)]
pub(super) struct ProxyConnector {
    tcp: HttpConnector,
    proxies: Arc<Matcher>,
}

impl ProxyConnector {
    /// A connector over `tcp` that follows the environment's proxy settings.
    pub fn from_system(tcp: HttpConnector) -> Self {
        Self::new(tcp, Matcher::from_system())
    }

    fn new(tcp: HttpConnector, proxies: Matcher) -> Self {
        Self {
            tcp,
            proxies: Arc::new(proxies),
        }
    }
}

impl Service<http::Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: http::Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let Some(proxy) = self.proxies.intercept(&destination) else {
            return Box::pin(async move { Ok(tcp.call(destination).await?) });
        };
        let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        Box::pin(async move { Ok(tunnel.call(destination).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn a_destination_the_environment_proxies_is_reached_through_a_connect_tunnel() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://user:pw@{}", proxy.local_addr().unwrap());
        let received = tokio::spawn(async move {
            let (stream, _) = proxy.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut head = String::new();
            while !head.ends_with("\r\n\r\n") {
                stream.read_line(&mut head).await.unwrap();
            }
            stream
                .get_mut()
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            head
        });
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        let mut connector = ProxyConnector::new(tcp, Matcher::builder().https(proxy_url).build());

        let destination: http::Uri = "https://org.crm.dynamics.com/api".parse().unwrap();
        connector.call(destination).await.unwrap();

        let head = received.await.unwrap();
        assert!(
            head.starts_with("CONNECT org.crm.dynamics.com:443 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic dxnlcjpwdw=="),
            "{head}"
        );
    }
}
