//! Testing a connection: `WhoAmI` proves the tokens work for the instance.

use super::DataverseClient;
use crate::auth::is_guid;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Who the connection acts as, from the Dataverse `WhoAmI` function.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The `systemuserid` of the signed-in user or application user.
    pub user_id: String,
    /// The user's business unit id.
    pub business_unit_id: String,
    /// The organization (environment) id.
    pub organization_id: String,
}

/// Tests the connection: calls `GET WhoAmI` with the client's tokens and returns who they act
/// as, or the error that explains why they do not work (not authorized, refused token, no
/// access to the environment).
pub async fn who_am_i(client: &DataverseClient) -> Result<WhoAmI> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        user_id: String,
        business_unit_id: String,
        organization_id: String,
    }
    let response: Response = client.get_json("WhoAmI").await?;
    let ids = [
        &response.user_id,
        &response.business_unit_id,
        &response.organization_id,
    ];
    if ids.iter().any(|id| !is_guid(&id.to_ascii_lowercase())) {
        return Err(Error::decode(
            "the WhoAmI response does not hold three GUIDs; check that the instance URL points at a Dataverse environment",
        ));
    }
    Ok(WhoAmI {
        user_id: response.user_id.to_ascii_lowercase(),
        business_unit_id: response.business_unit_id.to_ascii_lowercase(),
        organization_id: response.organization_id.to_ascii_lowercase(),
    })
}
