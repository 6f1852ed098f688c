//! STS, query protocol: `AssumeRoleWithWebIdentity` and (SigV4-verified) `AssumeRole`,
//! answered with the `<…Response>` XML document.

use std::time::SystemTime;

use efs_proxy::iam::SigningTime;

use super::encoding::{parse_form, xml_escape};
use super::sigv4::verify_sigv4;
use super::{Answer, Call, Shared};
use crate::http::Request;

/// A role's account, in the ARNs of the answers.
const ACCOUNT: &str = "123456789012";

/// STS, query protocol.
pub(super) fn sts(request: &Request, shared: &Shared) -> Result<(Call, Answer), (u16, String)> {
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err((400, format!("unexpected content-type {content_type:?}")));
    }
    let body = std::str::from_utf8(&request.body).map_err(|_| (400, "body is not UTF-8".into()))?;
    let form = parse_form(body).map_err(|e| (400, e))?;
    let param = |name: &str| {
        form.get(name)
            .cloned()
            .ok_or_else(|| (400, format!("missing parameter {name}")))
    };
    if param("Version")? != "2011-06-15" {
        return Err((400, "unexpected Version".into()));
    }
    let action = param("Action")?;
    let role_arn = param("RoleArn")?;
    let role_session_name = param("RoleSessionName")?;
    let call = match action.as_str() {
        "AssumeRoleWithWebIdentity" => Call::AssumeRoleWithWebIdentity {
            role_arn: role_arn.clone(),
            role_session_name: role_session_name.clone(),
            web_identity_token: param("WebIdentityToken")?,
            authorization: request.header("authorization").map(str::to_string),
        },
        "AssumeRole" => Call::AssumeRole {
            role_arn: role_arn.clone(),
            role_session_name: role_session_name.clone(),
            signed_by: verify_sigv4(request, &shared.known_keys).map_err(|e| (403, e))?,
        },
        other => return Err((400, format!("unsupported Action {other:?}"))),
    };
    let issued = &shared.issued;
    let expiration = SigningTime::from_system_time(SystemTime::now() + issued.expires_in).rfc3339();
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let subject = if action == "AssumeRoleWithWebIdentity" {
        "<SubjectFromWebIdentityToken>system:serviceaccount:default:test</SubjectFromWebIdentityToken>"
    } else {
        ""
    };
    let body = format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
         <{action}Result>{subject}\n\
         <AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}</Arn>\
         <AssumedRoleId>AROAEXAMPLEROLEID:{session}</AssumedRoleId></AssumedRoleUser>\n\
         <Credentials><AccessKeyId>{akid}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\n\
         </{action}Result>\n\
         <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>\
         </ResponseMetadata>\n</{action}Response>\n",
        role = xml_escape(role_name),
        session = xml_escape(&role_session_name),
        akid = xml_escape(&issued.access_key_id),
        secret = xml_escape(&issued.secret_access_key),
        token = xml_escape(&issued.session_token),
    );
    Ok((call, (200, "text/xml", body)))
}
