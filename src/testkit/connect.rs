//! Clients of a stand-in: a connection to it, and a client signed in as its application user
//! (client credentials), for tests, benchmarks and worker processes.

use super::StandIn;
use crate::{
    ClientCredentialsAuthorizer, ClientOptions, ClientSecret, Connection, DataverseClient,
    EntraApp, Result,
};
use std::sync::Arc;

impl StandIn {
    /// A connection to this instance, with its authority at the instance's own address.
    pub fn connection(&self) -> Connection {
        connection_at(&self.url()).expect("a stand-in's address is a valid instance URL")
    }

    /// A client of this instance, signed in as its application user ([`StandIn::CLIENT_ID`]
    /// with [`StandIn::CLIENT_SECRET`]) through the client credentials flow.
    pub fn client(&self, options: ClientOptions) -> Result<DataverseClient> {
        client_at(&self.url(), options)
    }
}

/// A client of the stand-in at `url` (its [`StandIn::url`]), signed in as [`StandIn::client`]
/// signs in: for a process that knows only the address of a stand-in another one started.
pub fn client_at(url: &str, options: ClientOptions) -> Result<DataverseClient> {
    let connection = connection_at(url)?;
    let app = EntraApp::builder(StandIn::TENANT_ID, StandIn::CLIENT_ID)
        .with_client_secret(ClientSecret::new(StandIn::CLIENT_SECRET))
        .build()?;
    let authorizer = ClientCredentialsAuthorizer::builder(&connection, app).build()?;
    DataverseClient::with_options(connection, Arc::new(authorizer), options)
}

fn connection_at(url: &str) -> Result<Connection> {
    Connection::builder("Stand-in", url)
        .with_authority(url)
        .build()
}
