//! SSO portal, REST-JSON: `GET /federation/credentials` (`GetRoleCredentials`), answered
//! with `{"roleCredentials": {…}}`.

use std::time::SystemTime;

use super::encoding::parse_form;
use super::{Answer, Call, Shared};
use crate::http::Request;

/// SSO portal, `GetRoleCredentials`.
pub(super) fn sso(request: &Request, shared: &Shared) -> Result<(Call, Answer), (u16, String)> {
    let query = parse_form(&request.query).map_err(|e| (400, e))?;
    let param = |name: &str| {
        query
            .get(name)
            .cloned()
            .ok_or_else(|| (400, format!("missing query parameter {name}")))
    };
    let bearer_token = request
        .header("x-amz-sso_bearer_token")
        .ok_or_else(|| (401, "missing x-amz-sso_bearer_token".to_string()))?
        .to_string();
    let call = Call::GetRoleCredentials {
        role_name: param("role_name")?,
        account_id: param("account_id")?,
        bearer_token,
    };
    let issued = &shared.issued;
    let expiration = SystemTime::now() + issued.expires_in;
    let millis = expiration
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let body = serde_json::json!({
        "roleCredentials": {
            "accessKeyId": issued.access_key_id,
            "secretAccessKey": issued.secret_access_key,
            "sessionToken": issued.session_token,
            "expiration": millis,
        }
    })
    .to_string();
    Ok((call, (200, "application/json", body)))
}
