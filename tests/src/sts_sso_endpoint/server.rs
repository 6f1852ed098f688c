//! The per-connection handler: reads one request, routes it to STS or the SSO portal,
//! records the [`Call`] and writes the answer or the API's error document.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::encoding::xml_escape;
use super::{Answer, Call, Shared, sso::sso, sts::sts};
use crate::http::{self, Request, read_request};

pub(super) async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let (request, answer) = match read_request(&mut stream).await {
        Ok(Some(request)) => {
            let answer = route(&request, &shared);
            (request.line(), answer)
        }
        Ok(None) => return,
        Err(reason) => ("(unreadable)".to_string(), Err((400, reason))),
    };
    let (status, content_type, body) = match answer {
        Ok((call, answer)) => {
            record(&shared, call);
            answer
        }
        Err((status, reason)) => {
            let body = error_document(&request, status, &reason);
            record(
                &shared,
                Call::Refused {
                    request,
                    status,
                    reason,
                },
            );
            body
        }
    };
    let headers = [
        ("Content-Type", content_type),
        ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000"),
    ];
    http::respond(&mut stream, status, &headers, &body).await;
}

fn record(shared: &Shared, call: Call) {
    if let Ok(mut calls) = shared.calls.lock() {
        calls.push(call);
    }
}

/// The call and its answer, or an error status and reason.
fn route(request: &Request, shared: &Shared) -> Result<(Call, Answer), (u16, String)> {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/") => sts(request, shared),
        ("GET", "/federation/credentials") => sso(request, shared),
        _ => Err((400, format!("no such API: {}", request.line()))),
    }
}

/// The error document of the API the request was meant for.
fn error_document(request: &str, status: u16, reason: &str) -> Answer {
    if request.starts_with("GET ") {
        let body = serde_json::json!({ "message": reason }).to_string();
        (status, "application/json", body)
    } else {
        let code = if status == 403 {
            "SignatureDoesNotMatch"
        } else {
            "InvalidRequest"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
             <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
            xml_escape(reason)
        );
        (status, "text/xml", body)
    }
}
